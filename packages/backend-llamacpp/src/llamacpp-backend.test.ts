/**
 * Real inference on a tiny GGUF (random weights: the text is gibberish, the protocol is not).
 * The model loads once per backend; every generation is a few tokens at temperature 0, so the
 * same request gives the same text and the suite stays fast.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createSseDecoder, isTollgateError } from '@tollgate/protocol';
import {
  type ChatHistoryItem,
  getLlama,
  type Llama,
  LlamaLogLevel,
  type LlamaModel,
  resolveChatWrapper,
} from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createLlamaCppBackend, type LlamaCppBackend } from './index.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are read loosely and checked by assertions.
type Loose = Record<string, any>;

const modelPath = fileURLToPath(
  new URL('../../../../shared/models/llama-2-tiny-random.gguf', import.meta.url),
);
const hasModel = existsSync(modelPath);
const model = 'llama-2-tiny-random';
const messages = [
  { role: 'system' as const, content: 'Be brief' },
  { role: 'user' as const, content: 'Say hello to me' },
];
const history: ChatHistoryItem[] = [
  { type: 'system', text: 'Be brief' },
  { type: 'user', text: 'Say hello to me' },
  { type: 'model', response: [] },
];
const greedy = { temperature: 0 };

function signal(): AbortSignal {
  return new AbortController().signal;
}

/** The data of every SSE event of a body, in order. */
async function readEvents(response: Response): Promise<string[]> {
  const events: string[] = [];
  const reader = response.body!.pipeThrough(createSseDecoder()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return events;
    events.push(value.data);
  }
}

function parsed(events: string[]): Loose[] {
  return events.filter((data) => data !== '[DONE]').map((data) => JSON.parse(data));
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** Reads one streamed response up to its first content chunk and returns the reader. */
async function readUntilContent(response: Response) {
  const reader = response.body!.pipeThrough(createSseDecoder()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new Error('the stream ended before any content');
    if (value.data !== '[DONE]' && JSON.parse(value.data).choices[0]?.delta?.content) return reader;
  }
}

const title = hasModel
  ? 'llamacpp: real inference on llama-2-tiny-random.gguf'
  : `llamacpp: real inference (skipped: no model file at ${modelPath}; put llama-2-tiny-random.gguf there to run it)`;

// Generous timeouts: real inference on a loaded 2-core machine.
describe.skipIf(!hasModel)(title, { timeout: 60_000 }, () => {
  let llama: Llama;
  let tokenizerModel: LlamaModel;
  let backend: LlamaCppBackend;

  beforeAll(async () => {
    // One Llama for every backend of this file; the backends do not dispose an injected one.
    llama = await getLlama({
      gpu: false,
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      logLevel: LlamaLogLevel.warn,
    });
    // A model of our own, to count tokens independently of the backend.
    tokenizerModel = await llama.loadModel({ modelPath, gpuLayers: 0 });
    // One thread: far faster than several for a model this small.
    backend = createLlamaCppBackend({ modelPath, contextSize: 512, threads: 1, llama });
    await backend.load();
  }, 60_000);

  afterAll(async () => {
    await backend?.close();
    await tokenizerModel?.dispose();
    await llama?.dispose();
  });

  test('behavior: health is ok and the listing names the model with its context size', async () => {
    expect(backend.kind).toBe('llamacpp');
    expect(await backend.health()).toEqual({ ok: true });
    expect(await backend.listModels()).toEqual([
      { id: model, ownedBy: 'llamacpp', contextLength: 512 },
    ]);
  });

  test('behavior: a backend not loaded yet is healthy (its file is there) and loads on its first request', async () => {
    const lazy = createLlamaCppBackend({ modelPath, contextSize: 256, threads: 1, llama });
    try {
      expect(await lazy.health()).toEqual({ ok: true });
      const response = await lazy.completions(
        { model, prompt: 'Once', max_tokens: 2, ...greedy },
        { signal: signal() },
      );
      expect(response.status).toBe(200);
      expect(((await response.json()) as Loose).usage.completion_tokens).toBe(2);
    } finally {
      await lazy.close();
    }
  });

  test('behavior: chat, not streamed, answers a chat.completion with real token counts', async () => {
    const response = await backend.chatCompletions(
      { model, messages, max_tokens: 6, ...greedy },
      { signal: signal() },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/application\/json/);
    const body = (await response.json()) as Loose;
    expect(body.object).toBe('chat.completion');
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(body.model).toBe(model);
    expect(body.choices).toHaveLength(1);
    expect(body.choices[0].message.role).toBe('assistant');
    expect(typeof body.choices[0].message.content).toBe('string');
    expect(body.choices[0].message.content.length).toBeGreaterThan(0);
    // The prompt as the model's chat template renders it, counted by a model of our own.
    const rendered = resolveChatWrapper(tokenizerModel)
      .generateContextState({ chatHistory: history })
      .contextText.tokenize(tokenizerModel.tokenizer);
    expect(body.usage.prompt_tokens).toBe(rendered.length);
    expect(body.usage.completion_tokens).toBeGreaterThan(0);
    expect(body.usage.completion_tokens).toBeLessThanOrEqual(6);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + body.usage.completion_tokens);
  });

  test('behavior: chat, streamed, sends the role, the text token by token, the finish reason, usage and [DONE]', async () => {
    const request = { model, messages, max_tokens: 6, ...greedy };
    const whole = (await (
      await backend.chatCompletions(request, { signal: signal() })
    ).json()) as Loose;

    const response = await backend.chatCompletions(
      { ...request, stream: true },
      { signal: signal() },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = await readEvents(response);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = parsed(events);
    for (const chunk of chunks) {
      expect(chunk.object).toBe('chat.completion.chunk');
      expect(chunk.id).toBe(chunks[0]!.id);
    }
    expect(chunks[0]!.choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const contentChunks = chunks.filter((chunk) => chunk.choices[0]?.delta?.content);
    expect(contentChunks.length).toBeGreaterThan(1);
    const text = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('');
    expect(text).toBe(whole.choices[0].message.content);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(whole.usage);
  });

  test('behavior: max_tokens caps the answer: completion_tokens equals it and finish_reason is length', async () => {
    for (const limit of [{ max_tokens: 3 }, { max_completion_tokens: 3, max_tokens: 50 }]) {
      const response = await backend.chatCompletions(
        { model, messages, ...limit, ...greedy },
        { signal: signal() },
      );
      const body = (await response.json()) as Loose;
      expect(body.usage.completion_tokens).toBe(3);
      expect(body.choices[0].finish_reason).toBe('length');
    }
  });

  test('behavior: without max_tokens the answer ends with the context, with finish_reason length', async () => {
    const small = createLlamaCppBackend({ modelPath, contextSize: 256, threads: 1, llama });
    try {
      const response = await small.chatCompletions(
        { model, messages, ...greedy },
        { signal: signal() },
      );
      const body = (await response.json()) as Loose;
      expect(body.choices[0].finish_reason).toBe('length');
      // LlamaChat keeps one token of the context free.
      expect(body.usage.total_tokens).toBe(255);
    } finally {
      await small.close();
    }
  });

  test('behavior: a stop sequence ends the answer before it, streamed or not, with finish_reason stop', async () => {
    const request = { model, messages, max_tokens: 12, ...greedy };
    const free = (await (
      await backend.chatCompletions(request, { signal: signal() })
    ).json()) as Loose;
    const text: string = free.choices[0].message.content;
    const stop = text.slice(5, 9);
    expect(stop).toHaveLength(4);
    const expected = text.slice(0, text.indexOf(stop));

    const stopped = (await (
      await backend.chatCompletions({ ...request, stop }, { signal: signal() })
    ).json()) as Loose;
    expect(stopped.choices[0].message.content).toBe(expected);
    expect(stopped.choices[0].finish_reason).toBe('stop');
    expect(stopped.usage.completion_tokens).toBeLessThan(free.usage.completion_tokens);

    const events = await readEvents(
      await backend.chatCompletions(
        { ...request, stop: ['never-generated', stop], stream: true },
        { signal: signal() },
      ),
    );
    const chunks = parsed(events);
    expect(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('')).toBe(expected);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('stop');
  });

  test('behavior: the same seed gives the same sampled answer', async () => {
    const request = { model, messages, max_tokens: 8, temperature: 1, seed: 42 };
    const first = (await (
      await backend.chatCompletions(request, { signal: signal() })
    ).json()) as Loose;
    const second = (await (
      await backend.chatCompletions(request, { signal: signal() })
    ).json()) as Loose;
    expect(second.choices[0].message.content).toBe(first.choices[0].message.content);
  });

  test('behavior: an assistant message last is continued (a prefill), its text part of the prompt', async () => {
    const response = await backend.chatCompletions(
      {
        model,
        messages: [...messages, { role: 'assistant', content: 'Hello there' }],
        max_tokens: 2,
        ...greedy,
      },
      { signal: signal() },
    );
    const body = (await response.json()) as Loose;
    const rendered = resolveChatWrapper(tokenizerModel)
      .generateContextState({
        chatHistory: [...history.slice(0, -1), { type: 'model', response: ['Hello there'] }],
      })
      .contextText.tokenize(tokenizerModel.tokenizer);
    expect(body.usage.prompt_tokens).toBe(rendered.length);
    expect(body.usage.completion_tokens).toBe(2);
  });

  test('behavior: completions, not streamed and streamed, count the prompt as the model tokenizes it (BOS included)', async () => {
    const prompt = 'Once upon a time';
    const promptTokens = tokenizerModel.tokenize(prompt, false, 'trimLeadingSpace').length + 1;
    const response = await backend.completions(
      { model, prompt, max_tokens: 5, ...greedy },
      { signal: signal() },
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as Loose;
    expect(body.object).toBe('text_completion');
    expect(body.id).toMatch(/^cmpl-/);
    expect(typeof body.choices[0].text).toBe('string');
    expect(body.choices[0].finish_reason).toBe('length');
    expect(body.usage).toEqual({
      prompt_tokens: promptTokens,
      completion_tokens: 5,
      total_tokens: promptTokens + 5,
    });

    const events = await readEvents(
      await backend.completions(
        { model, prompt: [prompt], max_tokens: 5, stream: true, ...greedy },
        { signal: signal() },
      ),
    );
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = parsed(events);
    expect(chunks.every((chunk) => chunk.object === 'text_completion')).toBe(true);
    expect(chunks.map((chunk) => chunk.choices[0]?.text ?? '').join('')).toBe(body.choices[0].text);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('length');
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage).toEqual(body.usage);
  });

  test('behavior: a completion prompt of token ids is the same prompt as its text', async () => {
    const prompt = 'Once upon a time';
    const tokens = tokenizerModel.tokenize(prompt, false, 'trimLeadingSpace');
    const answers: Loose[] = [];
    for (const input of [prompt, [...tokens], [[...tokens]]]) {
      const response = await backend.completions(
        { model, prompt: input, max_tokens: 4, ...greedy },
        { signal: signal() },
      );
      answers.push((await response.json()) as Loose);
    }
    for (const answer of answers.slice(1)) {
      expect(answer.choices[0].text).toBe(answers[0]!.choices[0].text);
      expect(answer.usage).toEqual(answers[0]!.usage);
    }
  });

  test('behavior: embeddings have the model size, unit length, stable values and counted tokens', async () => {
    const size = tokenizerModel.embeddingVectorSize;
    const response = await backend.embeddings(
      { model, input: ['hello world', 'goodbye'] },
      { signal: signal() },
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as Loose;
    expect(body.object).toBe('list');
    expect(body.model).toBe(model);
    expect(body.data.map((item: Loose) => item.index)).toEqual([0, 1]);
    for (const item of body.data) {
      expect(item.object).toBe('embedding');
      expect(item.embedding).toHaveLength(size);
      const length = Math.hypot(...(item.embedding as number[]));
      expect(length).toBeCloseTo(1, 5);
    }
    expect(body.data[0].embedding).not.toEqual(body.data[1].embedding);

    const single = (await (
      await backend.embeddings({ model, input: 'hello world' }, { signal: signal() })
    ).json()) as Loose;
    expect(single.data[0].embedding).toEqual(body.data[0].embedding);
    const other = (await (
      await backend.embeddings({ model, input: 'goodbye' }, { signal: signal() })
    ).json()) as Loose;
    expect(body.usage.prompt_tokens).toBe(single.usage.prompt_tokens + other.usage.prompt_tokens);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens);
    expect(single.usage.prompt_tokens).toBeGreaterThanOrEqual(
      tokenizerModel.tokenize('hello world').length,
    );

    const base64 = (await (
      await backend.embeddings(
        { model, input: 'hello world', encoding_format: 'base64' },
        { signal: signal() },
      )
    ).json()) as Loose;
    const floats = new Float32Array(
      new Uint8Array(Buffer.from(base64.data[0].embedding, 'base64')).buffer,
    );
    expect(Array.from(floats)).toEqual(
      (single.data[0].embedding as number[]).map((value) => Math.fround(value)),
    );
  });

  test('error: embeddings with the wrong dimensions or token ids outside the vocabulary get 400', async () => {
    const wrongSize = await backend.embeddings(
      { model, input: 'hi', dimensions: tokenizerModel.embeddingVectorSize + 1 },
      { signal: signal() },
    );
    expect(wrongSize.status).toBe(400);
    expect(((await wrongSize.json()) as Loose).error.param).toBe('dimensions');
    const badToken = await backend.embeddings(
      {
        model,
        input: [
          [1, 2],
          [3, 10_000_000],
        ],
      },
      { signal: signal() },
    );
    expect(badToken.status).toBe(400);
    expect(((await badToken.json()) as Loose).error.param).toBe('input[1][1]');
  });

  test('error: a prompt longer than the context gets 400 in OpenAI words; nothing is cut silently', async () => {
    const long = 'hello '.repeat(600);
    const chat = await backend.chatCompletions(
      { model, messages: [{ role: 'user', content: long }] },
      { signal: signal() },
    );
    expect(chat.status).toBe(400);
    const body = (await chat.json()) as Loose;
    expect(body.error.param).toBe('messages');
    expect(body.error.message).toMatch(/maximum context length is 512 tokens/);
    const completion = await backend.completions({ model, prompt: long }, { signal: signal() });
    expect(completion.status).toBe(400);
    expect(((await completion.json()) as Loose).error.param).toBe('prompt');
  });

  test('error: a completion prompt of token ids outside the vocabulary gets 400', async () => {
    const response = await backend.completions({ model, prompt: [1, -5] }, { signal: signal() });
    expect(response.status).toBe(400);
    expect(((await response.json()) as Loose).error.param).toBe('prompt[1]');
  });

  test('behavior: the caller aborting mid-stream errors the body and frees the sequence for the next request', async () => {
    const controller = new AbortController();
    const response = await backend.chatCompletions(
      { model, messages, stream: true, ...greedy },
      { signal: controller.signal },
    );
    const reader = await readUntilContent(response);
    const reason = new Error('caller left');
    controller.abort(reason);
    expect(await rejection(reader.read())).toBe(reason);
    // One sequence: this answers only if the aborted generation gave it back.
    const next = await backend.chatCompletions(
      { model, messages, max_tokens: 2, ...greedy },
      { signal: signal() },
    );
    expect(next.status).toBe(200);
    expect(((await next.json()) as Loose).usage.completion_tokens).toBe(2);
  });

  test('behavior: cancelling the body stops the generation and frees the sequence', async () => {
    const response = await backend.completions(
      { model, prompt: 'Once upon a time', stream: true, ...greedy },
      { signal: signal() },
    );
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel();
    const next = await backend.completions(
      { model, prompt: 'Once', max_tokens: 2, ...greedy },
      { signal: signal() },
    );
    expect(next.status).toBe(200);
  });

  test('behavior: a caller aborting a non-streamed request rejects with its reason', async () => {
    const controller = new AbortController();
    const reason = new Error('caller left');
    const pending = backend.chatCompletions(
      { model, messages, ...greedy },
      { signal: controller.signal },
    );
    controller.abort(reason);
    expect(await rejection(pending)).toBe(reason);
    const next = await backend.chatCompletions(
      { model, messages, max_tokens: 1, ...greedy },
      { signal: signal() },
    );
    expect(next.status).toBe(200);
  });

  test('behavior: with one sequence, concurrent requests wait their turn and all succeed', async () => {
    const requests = [4, 5, 6].map((max_tokens) =>
      backend.chatCompletions({ model, messages, max_tokens, ...greedy }, { signal: signal() }),
    );
    const streamed = backend.chatCompletions(
      { model, messages, max_tokens: 3, stream: true, ...greedy },
      { signal: signal() },
    );
    const bodies = await Promise.all(
      requests.map(async (response) => (await (await response).json()) as Loose),
    );
    expect(bodies.map((body) => body.usage.completion_tokens)).toEqual([4, 5, 6]);
    // Each answer is what the request alone would get: no state leaked between them.
    expect(
      bodies[1]!.choices[0].message.content.startsWith(bodies[0]!.choices[0].message.content),
    ).toBe(true);
    const chunks = parsed(await readEvents(await streamed));
    expect(chunks.at(-1)!.usage.completion_tokens).toBe(3);
  });

  test('behavior: a waiting request whose caller leaves rejects with its reason; the queue goes on', async () => {
    const holder = await backend.chatCompletions(
      { model, messages, stream: true, ...greedy },
      { signal: signal() },
    );
    const reader = await readUntilContent(holder);
    const controller = new AbortController();
    const leaving = backend.chatCompletions(
      { model, messages, max_tokens: 2, ...greedy },
      { signal: controller.signal },
    );
    const after = backend.chatCompletions(
      { model, messages, max_tokens: 2, ...greedy },
      { signal: signal() },
    );
    // Let both requests reach the queue before the first one leaves it.
    await new Promise((resolve) => setImmediate(resolve));
    const reason = new Error('tired of waiting');
    controller.abort(reason);
    expect(await rejection(leaving)).toBe(reason);
    await reader.cancel();
    const answer = await after;
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as Loose).usage.completion_tokens).toBe(2);
  });

  test('behavior: several sequences generate side by side', async () => {
    const parallel = createLlamaCppBackend({
      modelPath,
      contextSize: 256,
      sequences: 2,
      threads: 1,
      llama,
    });
    try {
      const [first, second] = await Promise.all(
        [3, 4].map(async (max_tokens) => {
          const response = await parallel.chatCompletions(
            { model, messages, max_tokens, ...greedy },
            { signal: signal() },
          );
          return (await response.json()) as Loose;
        }),
      );
      expect(first!.usage.completion_tokens).toBe(3);
      expect(second!.usage.completion_tokens).toBe(4);
    } finally {
      await parallel.close();
    }
  });

  test('behavior: close ends a running stream with an error and later requests get 503; the shared Llama lives on', async () => {
    const closing = createLlamaCppBackend({ modelPath, contextSize: 256, threads: 1, llama });
    const response = await closing.chatCompletions(
      { model, messages, stream: true, ...greedy },
      { signal: signal() },
    );
    const reader = await readUntilContent(response);
    await closing.close();
    const error = await rejection(
      (async () => {
        for (;;) if ((await reader.read()).done) return;
      })(),
    );
    expect(isTollgateError(error)).toBe(true);
    const after = await closing.chatCompletions({ model, messages }, { signal: signal() });
    expect(after.status).toBe(503);
    // The main backend shares the Llama and still answers.
    const still = await backend.completions(
      { model, prompt: 'Once', max_tokens: 1 },
      { signal: signal() },
    );
    expect(still.status).toBe(200);
  });
});
