/**
 * End to end: the official `openai` SDK talks to a real gateway socket, which talks to fake
 * upstream servers (OpenAI-compatible and Ollama) from @tollgate/backends/testing.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type FakeUpstream,
  type StartFakeUpstreamOptions,
  startFakeUpstream,
} from '@tollgate/backends/testing';
import OpenAI, { type APIError } from 'openai';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from './config.js';
import { type Gateway, startGateway } from './server.js';
import { apiError, captureLogger, tempDataDir, testStore } from './test-helpers.js';

// Generous: these run real sockets and may share a loaded machine.
vi.setConfig({ testTimeout: 30_000, hookTimeout: 30_000 });

const KEY = 'sk-e2e-4f1c2b9a7d';
const PROMPT = [{ role: 'user' as const, content: 'Say hello please' }];
const REPLY = 'Hello from the fake upstream.';
// The fakes count words: 3 in PROMPT, 5 in REPLY.
const USAGE = { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 };

/** Every status the gateway answered, across the whole file: none may be a 500. */
const statuses: Array<{ test: string; status: number }> = [];
let currentTest = '';

interface Harness {
  gateway: Gateway;
  openai: FakeUpstream;
  ollama: FakeUpstream;
  client: OpenAI;
  log: ReturnType<typeof captureLogger>;
  /** fetch against the gateway, recording the status. */
  raw(path: string, init?: RequestInit): Promise<Response>;
}

const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function recordingFetch(): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    statuses.push({ test: currentTest, status: response.status });
    return response;
  };
}

async function harness(
  options: {
    openai?: StartFakeUpstreamOptions;
    ollama?: StartFakeUpstreamOptions;
    values?: Record<string, unknown>;
    extraBackends?: Array<Record<string, unknown>>;
  } = {},
): Promise<Harness> {
  currentTest = expect.getState().currentTestName ?? '';
  const openai = await startFakeUpstream({
    kind: 'openai',
    models: ['fake-model'],
    ...options.openai,
  });
  cleanups.push(() => openai.close());
  const ollama = await startFakeUpstream({
    kind: 'ollama',
    models: ['llama3:latest'],
    ...options.ollama,
  });
  cleanups.push(() => ollama.close());
  const log = captureLogger();
  const dataDir = tempDataDir();
  cleanups.push(dataDir.cleanup);
  const config = loadConfig({
    env: {},
    argv: { port: 0 },
    values: {
      api_keys: [KEY],
      data_dir: dataDir.path,
      aliases: { fast: 'fake-model' },
      shutdown: { grace_seconds: 5 },
      backends: [
        { name: 'fake-openai', type: 'openai', url: openai.baseURL },
        { name: 'fake-ollama', type: 'ollama', url: ollama.url },
        ...(options.extraBackends ?? []),
      ],
      ...options.values,
    },
  });
  const gateway = await startGateway(config, { logger: log.logger, store: await testStore() });
  cleanups.push(() => gateway.close());
  const client = new OpenAI({
    baseURL: `${gateway.url}/v1`,
    apiKey: KEY,
    maxRetries: 0,
    fetch: recordingFetch(),
  });
  const tracked = recordingFetch();
  return {
    gateway,
    openai,
    ollama,
    client,
    log,
    raw: (path, init) => tracked(`${gateway.url}${path}`, init),
  };
}

function errorBody(error: APIError): {
  code?: string;
  message?: string;
  param?: string | null;
  type?: string;
} {
  return (error.error ?? {}) as never;
}

describe.each([
  { kind: 'openai', model: 'fake-model' },
  { kind: 'ollama', model: 'llama3:latest' },
])('OpenAI SDK through the gateway to a fake $kind server', ({ model }) => {
  it('behavior: chat completion, not streamed, with exact usage', async () => {
    const { client } = await harness();
    const completion = await client.chat.completions.create({ model, messages: PROMPT });
    expect(completion.choices[0]!.message.content).toBe(REPLY);
    expect(completion.choices[0]!.finish_reason).toBe('stop');
    expect(completion.usage).toMatchObject(USAGE);
  });

  it('behavior: streamed chat without include_usage delivers no usage chunk', async () => {
    const { client } = await harness();
    const stream = await client.chat.completions.create({ model, messages: PROMPT, stream: true });
    let text = '';
    const usages: unknown[] = [];
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usages.push(chunk.usage);
    }
    expect(text).toBe(REPLY);
    expect(usages).toEqual([]);
  });

  it('behavior: streamed chat with include_usage delivers the exact usage chunk last', async () => {
    const { client } = await harness();
    const stream = await client.chat.completions.create({
      model,
      messages: PROMPT,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject(USAGE);
    expect(chunks.map((chunk) => chunk.choices[0]?.delta?.content ?? '').join('')).toBe(REPLY);
  });

  it('behavior: tool calls, not streamed and streamed', async () => {
    const toolCall = { name: 'get_weather', arguments: '{"city":"Paris"}' };
    const { client } = await harness({ openai: { toolCall }, ollama: { toolCall } });
    const tools = [
      {
        type: 'function' as const,
        function: {
          name: 'get_weather',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ];
    const completion = await client.chat.completions.create({ model, messages: PROMPT, tools });
    const call = completion.choices[0]!.message.tool_calls![0]!;
    expect(completion.choices[0]!.finish_reason).toBe('tool_calls');
    expect(call.type).toBe('function');
    expect(call.type === 'function' && call.function).toEqual(toolCall);

    const stream = await client.chat.completions.create({
      model,
      messages: PROMPT,
      tools,
      stream: true,
    });
    let name = '';
    let args = '';
    let finish: string | null | undefined;
    for await (const chunk of stream) {
      for (const delta of chunk.choices[0]?.delta?.tool_calls ?? []) {
        name += delta.function?.name ?? '';
        args += delta.function?.arguments ?? '';
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect({ name, arguments: args }).toEqual(toolCall);
    expect(finish).toBe('tool_calls');
  });

  it('behavior: completions', async () => {
    const { client } = await harness();
    const completion = await client.completions.create({ model, prompt: 'Say hello please' });
    expect(completion.choices[0]!.text).toBe(REPLY);
    expect(completion.usage).toMatchObject(USAGE);
  });

  it('behavior: embeddings', async () => {
    const { client } = await harness({
      openai: { embeddingDimensions: 6 },
      ollama: { embeddingDimensions: 6 },
    });
    const floats = await client.embeddings.create({
      model,
      input: ['one two', 'three'],
      encoding_format: 'float',
    });
    expect(floats.data).toHaveLength(2);
    expect(floats.data[0]!.embedding).toHaveLength(6);
    expect(floats.usage.prompt_tokens).toBe(3);
    // The SDK's default asks for base64 and decodes it: the same vectors, at float32 precision.
    const decoded = await client.embeddings.create({ model, input: ['one two', 'three'] });
    for (const [index, entry] of decoded.data.entries()) {
      const expected = floats.data[index]!.embedding;
      expect(entry.embedding).toHaveLength(expected.length);
      for (const [at, value] of entry.embedding.entries())
        expect(value).toBeCloseTo(expected[at]!, 5);
    }
  });

  it('error: an upstream 4xx passes through with its status and message', async () => {
    const errorMessage = 'This model has a maximum context length of 4096 tokens';
    const { client } = await harness({
      openai: { errorStatus: 400, errorMessage },
      ollama: { errorStatus: 400, errorMessage },
    });
    const error = await apiError(client.chat.completions.create({ model, messages: PROMPT }));
    expect(error.status).toBe(400);
    expect(error.message).toContain(errorMessage);
  });

  it('error: an upstream dying mid-stream makes the stream throw, not end quietly', async () => {
    const { client, gateway } = await harness({
      openai: { failAfterChunks: 3, reply: 'one two three four five six seven eight' },
      ollama: { failAfterChunks: 3, reply: 'one two three four five six seven eight' },
    });
    const stream = await client.chat.completions.create({ model, messages: PROMPT, stream: true });
    let text = '';
    const consume = async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    };
    // The server must not print the failure (with its stack) to the console on its own.
    const consoleError = vi.spyOn(console, 'error');
    try {
      await expect(consume()).rejects.toThrow();
      // The SDK throws at the error event; the server ends the response just after it.
      for (let round = 0; round < 3000 && gateway.inFlight() > 0; round++) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      expect(gateway.inFlight()).toBe(0);
      expect(consoleError).not.toHaveBeenCalled();
    } finally {
      consoleError.mockRestore();
    }
    expect(text.length).toBeLessThan('one two three four five six seven eight'.length);
  });

  it('behavior: a client abort mid-stream reaches the upstream', async () => {
    const reply = Array.from({ length: 60 }, (_, index) => `word${index}`).join(' ');
    const { client, openai, ollama, log } = await harness({
      openai: { reply, chunkDelayMs: 50 },
      ollama: { reply, chunkDelayMs: 50 },
    });
    const fake = model === 'fake-model' ? openai : ollama;
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model, messages: PROMPT, stream: true },
      { signal: controller.signal, headers: { 'x-request-id': `abort-${model}` } },
    );
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content) controller.abort();
      }
    } catch {
      // The SDK reports the abort it was asked for.
    }
    await fake.waitForClientAbort(15_000);
    const line = await log.waitFor(
      (entry) => entry.msg === 'request' && entry.requestId === `abort-${model}`,
    );
    expect(line.outcome).toBe('aborted');
  });
});

describe('the gateway over a real socket', () => {
  it('behavior: /v1/models lists every backend model and the alias', async () => {
    const { client } = await harness();
    const models = [];
    for await (const model of client.models.list()) models.push(model.id);
    expect(models).toEqual(expect.arrayContaining(['fake-model', 'llama3:latest', 'fast']));
  });

  it('behavior: an alias routes to its target', async () => {
    const { client, openai } = await harness();
    const completion = await client.chat.completions.create({ model: 'fast', messages: PROMPT });
    expect(completion.choices[0]!.message.content).toBe(REPLY);
    const upstream = openai.requests.find((request) => request.path.endsWith('/chat/completions'));
    expect((upstream?.body as { model?: string } | undefined)?.model).toBe('fake-model');
  });

  it('behavior: the request id is echoed and forwarded upstream; logs carry it and never the key', async () => {
    const { client, openai, log } = await harness();
    const { response } = await client.chat.completions
      .create(
        { model: 'fake-model', messages: PROMPT },
        { headers: { 'x-request-id': 'e2e-req-1' } },
      )
      .withResponse();
    expect(response.headers.get('x-request-id')).toBe('e2e-req-1');
    const upstream = openai.requests.find((request) => request.path.endsWith('/chat/completions'));
    expect(upstream?.headers['x-request-id']).toBe('e2e-req-1');
    const line = await log.waitFor(
      (entry) => entry.msg === 'request' && entry.requestId === 'e2e-req-1',
    );
    expect(line).toMatchObject({
      status: 200,
      backend: 'fake-openai',
      promptTokens: 3,
      completionTokens: 5,
    });
    expect(log.raw()).not.toContain(KEY);
    expect(log.raw()).not.toContain('Say hello please');
  });

  it('behavior: a client abort before the upstream answers reaches the upstream (via the request signal)', async () => {
    const { client, openai, log } = await harness({ openai: { hang: true } });
    const controller = new AbortController();
    const pending = client.chat.completions.create(
      { model: 'fake-model', messages: PROMPT },
      { signal: controller.signal, headers: { 'x-request-id': 'abort-early' } },
    );
    pending.catch(() => {});
    // Wait until the upstream holds the request: only the request signal can cancel it now.
    while (!openai.requests.some((request) => request.path.endsWith('/chat/completions'))) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    controller.abort();
    await expect(pending).rejects.toThrow();
    await openai.waitForClientAbort(15_000);
    const line = await log.waitFor(
      (entry) => entry.msg === 'request' && entry.requestId === 'abort-early',
    );
    expect(line.outcome).toBe('aborted');
  });

  it('behavior: a client leaving while a non-streamed answer is still arriving closes the upstream request', async () => {
    // An upstream that sends headers and the start of a JSON body, then holds the rest.
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((resolve) => {
      upstreamClosed = resolve;
    });
    let upstreamReceived!: () => void;
    const received = new Promise<void>((resolve) => {
      upstreamReceived = resolve;
    });
    const slow = createServer((request, response) => {
      if (request.method === 'GET') {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ object: 'list', data: [{ id: 'slow-model' }] }));
        return;
      }
      request.resume();
      response.on('close', () => upstreamClosed());
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write('{"id":"held","choices":[', () => upstreamReceived());
    });
    slow.listen(0, '127.0.0.1');
    await new Promise((resolve) => slow.once('listening', resolve));
    cleanups.push(async () => {
      slow.closeAllConnections();
      await new Promise((resolve) => slow.close(resolve));
    });
    const port = (slow.address() as AddressInfo).port;
    const { raw, gateway, log } = await harness({
      extraBackends: [{ name: 'slow', type: 'openai', url: `http://127.0.0.1:${port}/v1` }],
    });
    const controller = new AbortController();
    const pending = raw('/v1/chat/completions', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEY}`,
        'content-type': 'application/json',
        'x-request-id': 'slow-json-abort',
      },
      body: JSON.stringify({ model: 'slow-model', messages: PROMPT }),
      signal: controller.signal,
    });
    pending.catch(() => {});
    // The gateway now holds the start of the answer, waiting for the rest.
    await received;
    controller.abort();
    await closed;
    const line = await log.waitFor(
      (entry) => entry.msg === 'request' && entry.requestId === 'slow-json-abort',
    );
    expect(line.outcome).toBe('aborted');
    for (let round = 0; round < 3000 && gateway.inFlight() > 0; round++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    expect(gateway.inFlight()).toBe(0);
  });

  it('behavior: a completion leaves with a content-length, a stream chunked', async () => {
    const { raw } = await harness();
    const request = (stream: boolean) =>
      raw('/v1/chat/completions', {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'fake-model', messages: PROMPT, stream }),
      });
    const plain = await request(false);
    const text = await plain.text();
    expect(plain.headers.get('content-length')).toBe(String(Buffer.byteLength(text)));
    expect(plain.headers.get('transfer-encoding')).toBeNull();
    expect(plain.headers.get('x-request-id')).toBeTruthy();
    const streamed = await request(true);
    expect(streamed.headers.get('transfer-encoding')).toBe('chunked');
    expect(streamed.headers.get('content-length')).toBeNull();
    expect(await streamed.text()).toContain('data: [DONE]');
  });

  it('behavior: /health and /health/ready', async () => {
    const { raw } = await harness();
    expect((await raw('/health')).status).toBe(200);
    const ready = await raw('/health/ready');
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { status: string }).status).toBe('ready');
  });

  it('error: malformed JSON is a 400 invalid_json envelope', async () => {
    const { raw } = await harness();
    const response = await raw('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: '{"model": "fake-model", "messages": [',
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
      'invalid_json',
    );
  });

  it('error: a missing model is a 400 naming the param', async () => {
    const { client } = await harness();
    const error = await apiError(client.chat.completions.create({ messages: PROMPT } as never));
    expect(error.status).toBe(400);
    expect(error.param).toBe('model');
  });

  it('error: an unknown model is a 404 listing the known models', async () => {
    const { client } = await harness();
    const error = await apiError(
      client.chat.completions.create({ model: 'no-such-model', messages: PROMPT }),
    );
    expect(error.status).toBe(404);
    expect(errorBody(error).code).toBe('model_not_found');
    expect(error.message).toContain('fake-model');
    expect(error.message).toContain('llama3:latest');
  });

  it('error: no key is a 401 and a wrong key is a 401', async () => {
    const { raw, gateway } = await harness();
    const missing = await raw('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake-model', messages: PROMPT }),
    });
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe(
      'missing_api_key',
    );
    const wrong = new OpenAI({
      baseURL: `${gateway.url}/v1`,
      apiKey: 'sk-not-a-key',
      maxRetries: 0,
      fetch: recordingFetch(),
    });
    const error = await apiError(
      wrong.chat.completions.create({ model: 'fake-model', messages: PROMPT }),
    );
    expect(error.status).toBe(401);
    expect(errorBody(error).code).toBe('invalid_api_key');
    // The status recorder behind the no-500 check at the end sees these answers.
    expect(
      statuses.filter((entry) => entry.test === currentTest).map((entry) => entry.status),
    ).toEqual([401, 401]);
  });

  it('error: a body over the limit is a 413, with and without a content-length', async () => {
    const { client, raw } = await harness({ values: { limits: { max_body_bytes: 2048 } } });
    const big = [{ role: 'user' as const, content: 'word '.repeat(1000) }];
    const error = await apiError(
      client.chat.completions.create({ model: 'fake-model', messages: big }),
    );
    expect(error.status).toBe(413);
    expect(errorBody(error).code).toBe('body_too_large');
    const bytes = new TextEncoder().encode(JSON.stringify({ model: 'fake-model', messages: big }));
    const chunked = await raw('/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: new ReadableStream<Uint8Array>({
        start(controller) {
          for (let offset = 0; offset < bytes.length; offset += 512)
            controller.enqueue(bytes.slice(offset, offset + 512));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
  });

  it('error: an upstream refusing connections is a 502 envelope', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const server = createServer();
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const { client } = await harness({
      extraBackends: [
        {
          name: 'gone',
          type: 'openai',
          url: `http://127.0.0.1:${closedPort}/v1`,
          models: ['ghost-model'],
        },
      ],
    });
    const error = await apiError(
      client.chat.completions.create({ model: 'ghost-model', messages: PROMPT }),
    );
    expect(error.status).toBe(502);
    expect(errorBody(error).code).toBe('upstream_unreachable');
    expect(errorBody(error).type).toBe('server_error');
  });

  it('error: unknown routes and wrong methods are 404 and 405 envelopes', async () => {
    const { raw } = await harness();
    const unknown = await raw('/v1/nothing-here', { headers: { authorization: `Bearer ${KEY}` } });
    expect(unknown.status).toBe(404);
    const wrongMethod = await raw('/v1/embeddings', {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(wrongMethod.status).toBe(405);
  });
});

afterAll(() => {
  // Bad input and upstream trouble must never surface as a gateway 500.
  const internal = statuses.filter((entry) => entry.status === 500);
  expect(internal).toEqual([]);
});
