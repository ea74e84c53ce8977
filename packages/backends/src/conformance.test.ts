/**
 * One conformance suite, run against every adapter talking to a fake of its server: what the
 * `Backend` contract promises must hold whatever the server speaks underneath.
 */
import { createSseDecoder, isTollgateError } from '@tollgate/protocol';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import {
  type Backend,
  createLlamaServer,
  createLmStudio,
  createMlx,
  createOllama,
  createOpenAICompatible,
  createVllm,
} from './index.js';
import {
  FAKE_CONTEXT_LENGTH,
  FAKE_VERSIONS,
  type FakeUpstream,
  type FakeUpstreamKind,
  startFakeUpstream,
} from './testing/index.js';

interface AdapterCase {
  label: string;
  /** The fake server the adapter talks to. */
  kind: FakeUpstreamKind;
  /** Builds the adapter for a server at `url` (root URL). */
  create(url: string, options?: { timeoutMs?: number; apiKey?: string }): Backend;
  /** Whether the listing tells the context length. */
  contextLength: boolean;
  /** The version health reports, if the server tells one. */
  version?: string;
  /** Where the unknown request fields of the test land in the upstream body. */
  forwarded(body: Record<string, unknown>): Record<string, unknown>;
  /** Whether the adapter sends `authorization` (Ollama's adapter has no API key). */
  sendsApiKey: boolean;
}

const topLevel = (body: Record<string, unknown>) => body;
const ollamaForwarded = (body: Record<string, unknown>) => ({
  ...body,
  ...(body.options as Record<string, unknown>),
});

const adapters: AdapterCase[] = [
  {
    label: 'openai-compatible',
    kind: 'openai',
    create: (url, options) => createOpenAICompatible({ baseURL: `${url}/v1`, ...options }),
    contextLength: false,
    forwarded: topLevel,
    sendsApiKey: true,
  },
  {
    label: 'llama-server',
    kind: 'llama-server',
    create: (url, options) => createLlamaServer({ url, ...options }),
    contextLength: true,
    forwarded: topLevel,
    sendsApiKey: true,
  },
  {
    label: 'vllm',
    kind: 'vllm',
    create: (url, options) => createVllm({ url, ...options }),
    contextLength: true,
    version: FAKE_VERSIONS.vllm,
    forwarded: topLevel,
    sendsApiKey: true,
  },
  {
    label: 'lm-studio',
    kind: 'lm-studio',
    create: (url, options) => createLmStudio({ url, ...options }),
    contextLength: true,
    forwarded: topLevel,
    sendsApiKey: true,
  },
  {
    label: 'mlx',
    kind: 'openai',
    create: (url, options) => createMlx({ url, ...options }),
    contextLength: false,
    forwarded: topLevel,
    sendsApiKey: true,
  },
  {
    label: 'ollama',
    kind: 'ollama',
    create: (url, options) => createOllama({ url, timeoutMs: options?.timeoutMs }),
    contextLength: true,
    version: FAKE_VERSIONS.ollama,
    forwarded: ollamaForwarded,
    sendsApiKey: false,
  },
];

const reply = 'Hello from the fake upstream.';
// 2 + 4 words: the fakes count words as tokens.
const messages = [
  { role: 'system' as const, content: 'Be brief' },
  { role: 'user' as const, content: 'Say hello to me' },
];
const expectedUsage = { prompt_tokens: 6, completion_tokens: 5, total_tokens: 11 };
const tools = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
];
const toolCall = { name: 'get_weather', arguments: '{"city":"Paris"}' };

// biome-ignore lint/suspicious/noExplicitAny: response bodies are read loosely and checked by assertions.
type Loose = Record<string, any>;

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

function signal(): AbortSignal {
  return new AbortController().signal;
}

/** A root URL where nothing listens: a fake's port right after it closed. */
async function closedPortURL(): Promise<string> {
  const fake = await startFakeUpstream();
  await fake.close();
  return fake.url;
}

async function expectRejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

// Generous timeouts: the suite opens real sockets and must pass on a loaded 2-core machine.
describe.each(adapters)('conformance: $label', { timeout: 30_000 }, (adapter) => {
  let fake: FakeUpstream;
  let backend: Backend;

  beforeEach(async () => {
    fake = await startFakeUpstream({ kind: adapter.kind, reply });
    backend = adapter.create(fake.url);
  });
  afterEach(async () => {
    await fake.close();
  });

  test('behavior: has a name and the right kind', () => {
    expect(backend.name).toContain('127.0.0.1');
    expect(backend.kind).toBe(adapter.label === 'openai-compatible' ? 'openai' : adapter.label);
  });

  test('behavior: listModels lists the served models', async () => {
    fake.setBehavior({ models: ['fake-model', 'other-model'] });
    const models = await backend.listModels();
    expect(models.map((model) => model.id)).toEqual(['fake-model', 'other-model']);
    if (adapter.contextLength) expect(models[0]!.contextLength).toBe(FAKE_CONTEXT_LENGTH);
    else expect(models[0]!.contextLength).toBeUndefined();
  });

  test('behavior: health is ok when the server answers', async () => {
    const health = await backend.health();
    expect(health.ok).toBe(true);
    if (adapter.version) expect(health.version).toBe(adapter.version);
  });

  test('error: health is not ok, with a reason, when the server is down', async () => {
    const down = adapter.create(await closedPortURL());
    const health = await down.health();
    expect(health.ok).toBe(false);
    expect(health.detail).toMatch(/connection refused/);
  });

  test('behavior: chat, not streamed, answers the content with exact usage', async () => {
    const response = await backend.chatCompletions(
      { model: 'fake-model', messages },
      { signal: signal() },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/application\/json/);
    const body = (await response.json()) as Loose;
    expect(body.object).toBe('chat.completion');
    expect(body.choices[0].message).toMatchObject({ role: 'assistant', content: reply });
    expect(body.choices[0].finish_reason).toBe('stop');
    expect(body.usage).toEqual(expectedUsage);
  });

  test('behavior: chat, streamed, sends chunks in order and ends with usage and [DONE] though the caller did not ask for usage', async () => {
    const response = await backend.chatCompletions(
      { model: 'fake-model', messages, stream: true },
      { signal: signal() },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/text\/event-stream/);
    const events = await readEvents(response);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = parsed(events);
    expect(chunks[0]!.choices[0].delta.role).toBe('assistant');
    const text = chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('');
    expect(text).toBe(reply);
    // More than one content chunk: the answer really streamed.
    expect(chunks.filter((chunk) => chunk.choices[0]?.delta?.content).length).toBe(5);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('stop');
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(expectedUsage);
  });

  test("behavior: streamed requests ask the upstream for usage and keep the caller's other stream_options", async () => {
    const response = await backend.chatCompletions(
      {
        model: 'fake-model',
        messages,
        stream: true,
        stream_options: { include_usage: false, continuous_usage_stats: true },
      },
      { signal: signal() },
    );
    await readEvents(response);
    const sent = fake.requests.at(-1)!.body as Loose;
    if (adapter.kind === 'ollama') {
      // Ollama's native API always reports its counts; there is nothing to ask for.
      expect(sent.stream).toBe(true);
    } else {
      expect(sent.stream_options).toEqual({ include_usage: true, continuous_usage_stats: true });
    }
  });

  test('behavior: a tool call, not streamed, comes back with finish_reason tool_calls and arguments as a JSON string', async () => {
    fake.setBehavior({ toolCall });
    const response = await backend.chatCompletions(
      { model: 'fake-model', messages, tools },
      { signal: signal() },
    );
    const body = (await response.json()) as Loose;
    const choice = body.choices[0];
    expect(choice.finish_reason).toBe('tool_calls');
    const call = choice.message.tool_calls[0];
    expect(call.type).toBe('function');
    expect(typeof call.id).toBe('string');
    expect(call.function.name).toBe('get_weather');
    expect(typeof call.function.arguments).toBe('string');
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' });
  });

  test('behavior: a tool call, streamed, comes back as tool_call deltas with finish_reason tool_calls', async () => {
    fake.setBehavior({ toolCall });
    const response = await backend.chatCompletions(
      { model: 'fake-model', messages, tools, stream: true },
      { signal: signal() },
    );
    const events = await readEvents(response);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = parsed(events);
    const calls = new Map<number, { id?: string; name: string; arguments: string }>();
    for (const chunk of chunks) {
      for (const delta of chunk.choices[0]?.delta?.tool_calls ?? []) {
        const call = calls.get(delta.index) ?? { name: '', arguments: '' };
        if (delta.id) call.id = delta.id;
        call.name += delta.function?.name ?? '';
        call.arguments += delta.function?.arguments ?? '';
        calls.set(delta.index, call);
      }
    }
    expect([...calls.keys()]).toEqual([0]);
    const call = calls.get(0)!;
    expect(typeof call.id).toBe('string');
    expect(call.name).toBe('get_weather');
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Paris' });
    expect(chunks.some((chunk) => chunk.choices[0]?.finish_reason === 'tool_calls')).toBe(true);
    expect(chunks.at(-1)!.usage).toBeDefined();
  });

  test('behavior: completions, not streamed and streamed', async () => {
    const response = await backend.completions(
      { model: 'fake-model', prompt: 'Once upon a time' },
      { signal: signal() },
    );
    const body = (await response.json()) as Loose;
    expect(body.object).toBe('text_completion');
    expect(body.choices[0].text).toBe(reply);
    expect(body.usage).toEqual({ prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 });

    const streamed = await backend.completions(
      { model: 'fake-model', prompt: 'Once upon a time', stream: true },
      { signal: signal() },
    );
    const events = await readEvents(streamed);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = parsed(events);
    expect(chunks.map((chunk) => chunk.choices[0]?.text ?? '').join('')).toBe(reply);
    expect(chunks.at(-1)!.usage).toEqual({
      prompt_tokens: 4,
      completion_tokens: 5,
      total_tokens: 9,
    });
  });

  test('behavior: embeddings come back as an OpenAI list with usage', async () => {
    const response = await backend.embeddings(
      { model: 'fake-model', input: ['one two', 'three'] },
      { signal: signal() },
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as Loose;
    expect(body.object).toBe('list');
    expect(body.data).toHaveLength(2);
    expect(body.data.map((item: Record<string, unknown>) => item.index)).toEqual([0, 1]);
    for (const item of body.data) {
      expect(item.object).toBe('embedding');
      expect(item.embedding).toHaveLength(8);
    }
    expect(body.usage).toEqual({ prompt_tokens: 3, total_tokens: 3 });
  });

  test('error: an unknown model comes back as 404 with an OpenAI envelope', async () => {
    const response = await backend.chatCompletions(
      { model: 'no-such-model', messages },
      { signal: signal() },
    );
    expect(response.status).toBe(404);
    const body = (await response.json()) as Loose;
    expect(typeof body.error.message).toBe('string');
    expect(body.error.message).toContain('no-such-model');
    expect(typeof body.error.type).toBe('string');
  });

  test('error: an upstream 400 comes back with its status and message, streamed or not', async () => {
    fake.setBehavior({ errorStatus: 400, errorMessage: 'context length exceeded' });
    for (const stream of [false, true]) {
      const response = await backend.chatCompletions(
        { model: 'fake-model', messages, stream },
        { signal: signal() },
      );
      expect(response.status).toBe(400);
      const body = (await response.json()) as Loose;
      expect(body.error.message).toBe('context length exceeded');
    }
  });

  test('behavior: unknown request fields reach the upstream untouched', async () => {
    const response = await backend.chatCompletions(
      {
        model: 'fake-model',
        messages,
        top_k: 7,
        min_p: 0.05,
        custom_field: { nested: [1, 'two'] },
      },
      { signal: signal() },
    );
    await response.arrayBuffer();
    const sent = adapter.forwarded(fake.requests.at(-1)!.body as Record<string, unknown>);
    expect(sent.top_k).toBe(7);
    expect(sent.min_p).toBe(0.05);
    expect(sent.custom_field).toEqual({ nested: [1, 'two'] });
  });

  test('behavior: x-request-id and the API key travel upstream', async () => {
    const keyed = adapter.create(fake.url, { apiKey: 'secret-key' });
    const response = await keyed.chatCompletions(
      { model: 'fake-model', messages },
      { signal: signal(), requestId: 'request-123' },
    );
    await response.arrayBuffer();
    const { headers } = fake.requests.at(-1)!;
    expect(headers['x-request-id']).toBe('request-123');
    expect(headers.authorization).toBe(adapter.sendsApiKey ? 'Bearer secret-key' : undefined);
  });

  test('error: connection refused rejects with upstream_unreachable naming the backend and URL', async () => {
    const url = await closedPortURL();
    const down = adapter.create(url);
    const error = await expectRejection(
      down.chatCompletions({ model: 'fake-model', messages }, { signal: signal() }),
    );
    expect(isTollgateError(error)).toBe(true);
    expect((error as { code: string }).code).toBe('upstream_unreachable');
    expect((error as Error).message).toContain(url);
    expect((error as Error).message).toContain(down.name);
    expect((error as Error).message).toMatch(/not running or not reachable/);
  });

  test('error: a server that never answers rejects with upstream_timeout', async () => {
    fake.setBehavior({ hang: true });
    const slow = adapter.create(fake.url, { timeoutMs: 300 });
    const error = await expectRejection(
      slow.chatCompletions({ model: 'fake-model', messages }, { signal: signal() }),
    );
    expect(isTollgateError(error)).toBe(true);
    expect((error as { code: string }).code).toBe('upstream_timeout');
    // The timeout also hung up on the server.
    await fake.waitForClientAbort();
  });

  test('error: a stream that dies mid-way makes reading the body reject', async () => {
    fake.setBehavior({ failAfterChunks: 2 });
    const response = await backend.chatCompletions(
      { model: 'fake-model', messages, stream: true },
      { signal: signal() },
    );
    expect(response.status).toBe(200);
    await expect(readEvents(response)).rejects.toBeDefined();
  });

  test('behavior: the caller aborting mid-stream reaches the upstream', async () => {
    fake.setBehavior({ chunkDelayMs: 20, reply: 'word '.repeat(500).trim() });
    const controller = new AbortController();
    const response = await backend.chatCompletions(
      { model: 'fake-model', messages, stream: true },
      { signal: controller.signal },
    );
    const reader = response.body!.getReader();
    await reader.read();
    const reason = new Error('caller left');
    controller.abort(reason);
    await fake.waitForClientAbort();
    await expect(reader.read()).rejects.toBeDefined();
  });

  test('behavior: cancelling the returned body cancels the upstream request', async () => {
    fake.setBehavior({ chunkDelayMs: 20, reply: 'word '.repeat(500).trim() });
    const response = await backend.chatCompletions(
      { model: 'fake-model', messages, stream: true },
      { signal: signal() },
    );
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel();
    await fake.waitForClientAbort();
    expect(fake.clientAborts).toBe(1);
  });

  test('error: a caller signal aborted before the call rejects with its reason, and nothing is sent', async () => {
    const controller = new AbortController();
    const reason = new Error('already gone');
    controller.abort(reason);
    const error = await expectRejection(
      backend.chatCompletions({ model: 'fake-model', messages }, { signal: controller.signal }),
    );
    expect(error).toBe(reason);
    expect(fake.requests.filter((request) => request.method === 'POST')).toHaveLength(0);
  });

  test('behavior: a server that never reports usage still ends its stream with [DONE], without a usage chunk', async () => {
    fake.setBehavior({ reportUsage: false });
    const response = await backend.chatCompletions(
      { model: 'fake-model', messages, stream: true },
      { signal: signal() },
    );
    const events = await readEvents(response);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = parsed(events);
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);
    expect(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('')).toBe(reply);
  });
});
