/**
 * Edge cases of the Ollama translation, driven through `createOllama` with an injected fetch
 * that answers exactly the bytes each case needs.
 */
import { createSseDecoder, isTollgateError } from '@tollgate/protocol';
import { describe, expect, test } from 'vitest';
import { type Backend, createOllama } from './index.js';

// biome-ignore lint/suspicious/noExplicitAny: bodies are read loosely and checked by assertions.
type Loose = Record<string, any>;

interface Call {
  url: string;
  body: Loose;
}

/** An Ollama stand-in: records the requests and answers with the given status and body chunks. */
function scripted(answer: {
  status?: number;
  chunks?: Array<string | Uint8Array>;
  breakAfter?: boolean;
  json?: unknown;
}) {
  const calls: Call[] = [];
  const encoder = new TextEncoder();
  const fetch = (async (url: string | URL | Request, init?: RequestInit) => {
    calls.push({ url: String(url), body: JSON.parse(String(init?.body ?? 'null')) });
    if (answer.json !== undefined) {
      return new Response(JSON.stringify(answer.json), {
        status: answer.status ?? 200,
        headers: { 'content-type': 'application/json' },
      });
    }
    const chunks = answer.chunks ?? [];
    let index = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        const chunk = chunks[index++];
        if (chunk === undefined) {
          if (answer.breakAfter) controller.error(new TypeError('terminated'));
          else controller.close();
          return;
        }
        controller.enqueue(typeof chunk === 'string' ? encoder.encode(chunk) : chunk);
      },
    });
    return new Response(body, {
      status: answer.status ?? 200,
      headers: { 'content-type': 'application/x-ndjson' },
    });
  }) as typeof globalThis.fetch;
  return { calls, backend: createOllama({ url: 'http://127.0.0.1:11434', fetch }) };
}

const line = (value: unknown) => `${JSON.stringify(value)}\n`;
const doneLine = (extra: Loose = {}) =>
  line({
    model: 'm',
    created_at: '2025-01-01T00:00:00Z',
    message: { role: 'assistant', content: '' },
    done: true,
    done_reason: 'stop',
    prompt_eval_count: 3,
    eval_count: 2,
    ...extra,
  });
const contentLine = (content: string) =>
  line({
    model: 'm',
    created_at: '2025-01-01T00:00:00Z',
    message: { role: 'assistant', content },
    done: false,
  });

async function events(response: Response): Promise<string[]> {
  const out: string[] = [];
  const reader = response.body!.pipeThrough(createSseDecoder()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    out.push(value.data);
  }
}

const chunksOf = (data: string[]): Loose[] =>
  data.filter((item) => item !== '[DONE]').map((item) => JSON.parse(item));
const signal = () => new AbortController().signal;
const user = [{ role: 'user' as const, content: 'hi' }];

async function rejection(promise: Promise<unknown>): Promise<Loose> {
  try {
    await promise;
  } catch (error) {
    return error as Loose;
  }
  throw new Error('expected a rejection');
}

function chat(backend: Backend, request: Loose) {
  return backend.chatCompletions({ model: 'm', messages: user, ...request } as never, {
    signal: signal(),
  });
}

describe('ollama stream translation', () => {
  test('behavior: NDJSON lines split across chunks, even inside a UTF-8 character, are reassembled', async () => {
    const bytes = new TextEncoder().encode(contentLine('Hé') + contentLine(' llo') + doneLine());
    // Split inside the two bytes of "é", and inside the second line.
    const cut = bytes.indexOf(0xc3) + 1;
    const { backend } = scripted({
      chunks: [bytes.slice(0, cut), bytes.slice(cut, cut + 30), bytes.slice(cut + 30)],
    });
    const data = await events(await chat(backend, { stream: true }));
    expect(data.at(-1)).toBe('[DONE]');
    const chunks = chunksOf(data);
    expect(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('')).toBe('Hé llo');
    expect(chunks.at(-1)!.usage).toEqual({
      prompt_tokens: 3,
      completion_tokens: 2,
      total_tokens: 5,
    });
  });

  test('behavior: a final line without a trailing newline still ends the stream', async () => {
    const { backend } = scripted({ chunks: [contentLine('ok'), doneLine().trimEnd()] });
    const data = await events(await chat(backend, { stream: true }));
    expect(data.at(-1)).toBe('[DONE]');
  });

  test('error: an {"error"} line mid-stream makes the output stream error', async () => {
    const { backend } = scripted({
      chunks: [contentLine('partial'), line({ error: 'out of memory' }), doneLine()],
    });
    const response = await chat(backend, { stream: true });
    const error = await rejection(events(response));
    expect(isTollgateError(error)).toBe(true);
    expect(error.code).toBe('upstream_stream_error');
    expect(error.message).toContain('out of memory');
  });

  test('error: a stream that ends before its done line errors instead of ending cleanly', async () => {
    const { backend } = scripted({ chunks: [contentLine('partial')] });
    const error = await rejection(events(await chat(backend, { stream: true })));
    expect(error.code).toBe('upstream_stream_error');
  });

  test('error: a broken upstream connection errors the output stream', async () => {
    const { backend } = scripted({ chunks: [contentLine('partial')], breakAfter: true });
    const error = await rejection(events(await chat(backend, { stream: true })));
    expect(error.code).toBe('upstream_stream_error');
    expect(error.cause).toBeInstanceOf(TypeError);
  });

  test('behavior: streamed tool calls become OpenAI deltas with string arguments and finish_reason tool_calls', async () => {
    const toolLine = line({
      model: 'm',
      message: {
        role: 'assistant',
        content: '',
        tool_calls: [
          { function: { name: 'a', arguments: { x: 1 } } },
          { function: { name: 'b', arguments: { y: 'two' } } },
        ],
      },
      done: false,
    });
    const { backend } = scripted({ chunks: [toolLine, doneLine()] });
    const chunks = chunksOf(await events(await chat(backend, { stream: true, tools: [] })));
    const deltas = chunks.flatMap((chunk) => chunk.choices[0]?.delta?.tool_calls ?? []);
    expect(deltas.map((delta: Loose) => delta.index)).toEqual([0, 1]);
    expect(deltas.map((delta: Loose) => delta.function.arguments)).toEqual([
      '{"x":1}',
      '{"y":"two"}',
    ]);
    expect(
      deltas.every((delta: Loose) => typeof delta.id === 'string' && delta.type === 'function'),
    ).toBe(true);
    expect(chunks.find((chunk) => chunk.choices[0]?.finish_reason)!.choices[0].finish_reason).toBe(
      'tool_calls',
    );
  });

  test('behavior: done_reason "length" becomes finish_reason "length"; thinking becomes reasoning_content', async () => {
    const thinking = line({
      model: 'm',
      message: { role: 'assistant', content: '', thinking: 'hmm' },
      done: false,
    });
    const { backend } = scripted({
      chunks: [thinking, contentLine('a'), doneLine({ done_reason: 'length' })],
    });
    const chunks = chunksOf(await events(await chat(backend, { stream: true })));
    expect(chunks.some((chunk) => chunk.choices[0]?.delta?.reasoning_content === 'hmm')).toBe(true);
    expect(chunks.find((chunk) => chunk.choices[0]?.finish_reason)!.choices[0].finish_reason).toBe(
      'length',
    );
  });
});

describe('ollama request translation', () => {
  test('behavior: data: URL images become base64 `images`, text parts the content', async () => {
    const { backend, calls } = scripted({
      json: { message: { role: 'assistant', content: 'x' }, done: true },
    });
    await chat(backend, {
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          ],
        },
      ],
    });
    expect(calls[0]!.url).toBe('http://127.0.0.1:11434/api/chat');
    expect(calls[0]!.body.messages[0]).toEqual({
      role: 'user',
      content: 'What is this?',
      images: ['iVBORw0KGgo='],
    });
  });

  test('error: an image by http URL is refused with 400 before any upstream call', async () => {
    const { backend, calls } = scripted({ json: {} });
    const error = await rejection(
      chat(backend, {
        messages: [
          {
            role: 'user',
            content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }],
          },
        ],
      }),
    );
    expect(error.code).toBe('invalid_request');
    expect(error.status).toBe(400);
    expect(error.param).toBe('messages[0].content[0]');
    expect(calls).toHaveLength(0);
  });

  test('behavior: assistant tool calls go up with object arguments, tool results with the tool name', async () => {
    const { backend, calls } = scripted({
      json: { message: { role: 'assistant', content: 'done' }, done: true },
    });
    await chat(backend, {
      messages: [
        { role: 'developer', content: 'rules' },
        { role: 'user', content: 'weather?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Oslo"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp":3}' },
      ],
    });
    const sent = calls[0]!.body.messages;
    expect(sent[0]).toEqual({ role: 'system', content: 'rules' });
    expect(sent[2]).toEqual({
      role: 'assistant',
      content: '',
      tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Oslo' } } }],
    });
    expect(sent[3]).toEqual({ role: 'tool', content: '{"temp":3}', tool_name: 'get_weather' });
  });

  test('error: tool call arguments that are not JSON are refused with 400', async () => {
    const { backend, calls } = scripted({ json: {} });
    const error = await rejection(
      chat(backend, {
        messages: [
          {
            role: 'assistant',
            tool_calls: [
              { id: 'c', type: 'function', function: { name: 'f', arguments: '{oops' } },
            ],
          },
        ],
      }),
    );
    expect(error.code).toBe('invalid_request');
    expect(error.param).toBe('messages[0].tool_calls[0].function.arguments');
    expect(calls).toHaveLength(0);
  });

  test('args: sampling fields, Ollama option names and an explicit `options` object land in options', async () => {
    const { backend, calls } = scripted({
      json: { message: { role: 'assistant', content: 'x' }, done: true },
    });
    await chat(backend, {
      max_tokens: 50,
      temperature: 0.2,
      top_p: 0.9,
      seed: 7,
      stop: 'END',
      frequency_penalty: 0.1,
      presence_penalty: 0.3,
      top_k: 20,
      num_ctx: 8192,
      repeat_penalty: 1.1,
      options: { temperature: 0.5, mirostat: 1 },
      keep_alive: '5m',
      think: true,
    });
    const body = calls[0]!.body;
    expect(body.options).toEqual({
      num_predict: 50,
      temperature: 0.5,
      top_p: 0.9,
      seed: 7,
      stop: ['END'],
      frequency_penalty: 0.1,
      presence_penalty: 0.3,
      top_k: 20,
      num_ctx: 8192,
      repeat_penalty: 1.1,
      mirostat: 1,
    });
    expect(body.keep_alive).toBe('5m');
    expect(body.think).toBe(true);
    expect(body.stream).toBe(false);
    expect(body).not.toHaveProperty('max_tokens');
    expect(body).not.toHaveProperty('top_k');
  });

  test('args: max_completion_tokens wins over max_tokens', async () => {
    const { backend, calls } = scripted({
      json: { message: { role: 'assistant', content: 'x' }, done: true },
    });
    await chat(backend, { max_tokens: 10, max_completion_tokens: 20 });
    expect(calls[0]!.body.options.num_predict).toBe(20);
  });

  test('args: response_format json_object becomes format "json", json_schema its schema', async () => {
    const schema = { type: 'object', properties: { a: { type: 'number' } } };
    const { backend, calls } = scripted({
      json: { message: { role: 'assistant', content: '{}' }, done: true },
    });
    await chat(backend, { response_format: { type: 'json_object' } });
    await chat(backend, {
      response_format: { type: 'json_schema', json_schema: { name: 's', schema } },
    });
    await chat(backend, { response_format: { type: 'text' } });
    expect(calls.map((call) => call.body.format)).toEqual(['json', schema, undefined]);
  });

  test('error: n > 1 is refused with 400', async () => {
    const { backend, calls } = scripted({ json: {} });
    const error = await rejection(chat(backend, { n: 2 }));
    expect(error.param).toBe('n');
    expect(calls).toHaveLength(0);
  });

  test('behavior: completions take a prompt or an array of one; more are refused with 400 before any call', async () => {
    const { backend, calls } = scripted({
      json: { response: 'ok', done: true, done_reason: 'stop' },
    });
    const one = await backend.completions(
      { model: 'm', prompt: ['only one'] },
      { signal: signal() },
    );
    expect(((await one.json()) as Loose).choices[0].text).toBe('ok');
    expect(calls[0]!.url).toBe('http://127.0.0.1:11434/api/generate');
    expect(calls[0]!.body.prompt).toBe('only one');
    const error = await rejection(
      backend.completions({ model: 'm', prompt: ['a', 'b'] }, { signal: signal() }),
    );
    expect(error.code).toBe('invalid_request');
    expect(error.param).toBe('prompt');
    expect(calls).toHaveLength(1);
  });
});

describe('ollama answer translation', () => {
  test('behavior: a non-streamed tool call comes back with string arguments, null content and finish_reason tool_calls', async () => {
    const { backend } = scripted({
      json: {
        model: 'm',
        message: {
          role: 'assistant',
          content: '',
          tool_calls: [{ function: { name: 'f', arguments: { q: [1, 2] } } }],
        },
        done: true,
        done_reason: 'stop',
        eval_count: 4,
      },
    });
    const body = (await (await chat(backend, { tools: [] })).json()) as Loose;
    expect(body.choices[0].message.content).toBeNull();
    expect(body.choices[0].message.tool_calls[0].function).toEqual({
      name: 'f',
      arguments: '{"q":[1,2]}',
    });
    expect(body.choices[0].finish_reason).toBe('tool_calls');
    // Ollama leaves out a zero prompt_eval_count (a cached prompt).
    expect(body.usage).toEqual({ prompt_tokens: 0, completion_tokens: 4, total_tokens: 4 });
  });

  test('behavior: Ollama errors become the OpenAI envelope with the same status', async () => {
    const notFound = scripted({
      status: 404,
      json: { error: 'model "x" not found, try pulling it first' },
    });
    const response = await chat(notFound.backend, {});
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({
      error: {
        message: 'model "x" not found, try pulling it first',
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      },
    });
    const crashed = scripted({ status: 500, chunks: ['llama runner process has terminated'] });
    const failed = await chat(crashed.backend, { stream: true });
    expect(failed.status).toBe(500);
    expect(((await failed.json()) as Loose).error).toMatchObject({
      message: 'llama runner process has terminated',
      type: 'server_error',
    });
  });

  test('behavior: embeddings in base64 are little-endian float32, as OpenAI encodes them', async () => {
    const { backend, calls } = scripted({
      json: { model: 'm', embeddings: [[0.5, -1.25]], prompt_eval_count: 2 },
    });
    const response = await backend.embeddings(
      { model: 'm', input: 'two words', encoding_format: 'base64' },
      { signal: signal() },
    );
    const body = (await response.json()) as Loose;
    expect(calls[0]!.body).toEqual({ model: 'm', input: 'two words' });
    const bytes = Uint8Array.from(atob(body.data[0].embedding), (char) => char.charCodeAt(0));
    expect([...new Float32Array(bytes.buffer)]).toEqual([0.5, -1.25]);
    expect(body.usage).toEqual({ prompt_tokens: 2, total_tokens: 2 });
  });

  test('error: token-array embedding inputs are refused with 400', async () => {
    const { backend } = scripted({ json: {} });
    const error = await rejection(
      backend.embeddings({ model: 'm', input: [1, 2, 3] }, { signal: signal() }),
    );
    expect(error.code).toBe('invalid_request');
    expect(error.param).toBe('input');
  });
});
