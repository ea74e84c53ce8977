/**
 * The Ollama-compatible API through a real gateway socket, driven by the official `ollama`
 * client: chat and generate (streamed as NDJSON and whole), embed, list, ps and version, the
 * translation each request goes through on its way to an OpenAI-compatible (or an Ollama)
 * backend, errors in Ollama's shape with the OpenAI routes' statuses and headers, metering,
 * and a stream that breaks.
 */
import {
  type FakeUpstream,
  type StartFakeUpstreamOptions,
  startFakeUpstream,
} from '@tollgate/backends/testing';
import {
  decodeBhttpResponse,
  decodeKeyConfigs,
  encapsulateRequest,
  encodeBhttpRequest,
} from '@tollgate/ecies';
import type { Tenancy } from '@tollgate/tenancy';
import { Ollama } from 'ollama';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Logger } from './logger.js';
import type { Gateway } from './server.js';
import { captureLogger, startTestGateway } from './test-helpers.js';

vi.setConfig({ testTimeout: 30_000, hookTimeout: 30_000 });

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MODEL = 'fake-model';
const REPLY = 'one two three four five';
const cli = { actor: 'cli' };
let counter = 0;

async function start(
  options: {
    values?: Record<string, unknown>;
    upstream?: Partial<StartFakeUpstreamOptions>;
    logger?: Logger;
  } = {},
): Promise<{ gateway: Gateway; tenancy: Tenancy; upstream: FakeUpstream }> {
  const { gateway, upstream } = await startTestGateway(
    { ...options, upstream: { models: [MODEL], reply: REPLY, ...options.upstream } },
    (cleanup) => cleanups.push(cleanup),
  );
  return { gateway, tenancy: gateway.tenancy, upstream };
}

async function issue(tenancy: Tenancy, limits: Record<string, unknown> = {}) {
  const tenant = await tenancy.createTenant(
    { name: `ollama-${++counter}-${Date.now()}`, limits },
    cli,
  );
  const { key } = await tenancy.issueKey(tenant.id, {}, cli);
  return { tenant, key };
}

function client(gateway: Gateway, key: string): Ollama {
  return new Ollama({ host: gateway.url, headers: { authorization: `Bearer ${key}` } });
}

/** Awaits a call of the ollama client that must fail with an HTTP status. */
async function responseError(
  promise: Promise<unknown>,
): Promise<{ status_code: number; message: string }> {
  try {
    await promise;
  } catch (error) {
    const status = (error as { status_code?: unknown }).status_code;
    if (error instanceof Error && error.name === 'ResponseError' && typeof status === 'number') {
      return { status_code: status, message: error.message };
    }
    throw error;
  }
  throw new Error('expected the ollama client to throw a ResponseError');
}

/** The requests the fake upstream received at a path. */
function sent(upstream: FakeUpstream, path: string): Array<Record<string, unknown>> {
  return upstream.requests
    .filter((request) => request.path === path)
    .map((request) => request.body as Record<string, unknown>);
}

/** POSTs a JSON body to the gateway and parses the NDJSON lines of the answer. */
async function postLines(
  gateway: Gateway,
  path: string,
  key: string,
  body: unknown,
): Promise<{ response: Response; lines: Array<Record<string, unknown>> }> {
  const response = await fetch(`${gateway.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const lines = text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { response, lines };
}

describe('chat', () => {
  it('behavior: streams by default as NDJSON, one line per chunk, and ends with done, done_reason and the counts', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy);
    const ollama = client(gateway, key);
    const stream = await ollama.chat({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief' },
        { role: 'user', content: 'Say hello please' },
      ],
      stream: true,
      keep_alive: '10m',
      options: { temperature: 0.2, top_k: 20, num_predict: 64, stop: ['\n\n'], seed: 7 },
    });
    const parts: Array<Record<string, unknown>> = [];
    for await (const part of stream) parts.push(part as unknown as Record<string, unknown>);
    const pieces = parts.filter((part) => part.done === false);
    expect(pieces.length).toBe(5);
    expect(pieces.map((part) => (part.message as { content: string }).content).join('')).toBe(
      REPLY,
    );
    const last = parts.at(-1)!;
    expect(last).toMatchObject({
      model: MODEL,
      done: true,
      done_reason: 'stop',
      message: { role: 'assistant', content: '' },
      // The fake counts words: 2 + 3 in the messages, 5 in its reply.
      prompt_eval_count: 5,
      eval_count: 5,
      load_duration: 0,
    });
    for (const field of ['total_duration', 'prompt_eval_duration', 'eval_duration']) {
      expect(Number.isInteger(last[field])).toBe(true);
    }
    expect(Number.isNaN(Date.parse(last.created_at as string))).toBe(false);

    // What the OpenAI-compatible backend was asked.
    const [request] = sent(upstream, '/v1/chat/completions');
    expect(request).toMatchObject({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief' },
        { role: 'user', content: 'Say hello please' },
      ],
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.2,
      top_k: 20,
      max_tokens: 64,
      stop: ['\n\n'],
      seed: 7,
    });
    expect(request).not.toHaveProperty('keep_alive');
    expect(request).not.toHaveProperty('options');
  });

  it('behavior: the streamed answer is application/x-ndjson, carries the rate-limit headers, and completes upstream', async () => {
    const log = captureLogger();
    const { gateway, tenancy } = await start({ logger: log.logger });
    const { key } = await issue(tenancy, { requests_per_minute: 10 });
    const { response, lines } = await postLines(gateway, '/api/chat', key, {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/x-ndjson');
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('10');
    expect(response.headers.get('x-request-id')).toBeTruthy();
    expect(lines.at(-1)).toMatchObject({ done: true, done_reason: 'stop', eval_count: 5 });
    expect(lines.slice(0, -1).every((line) => line.done === false)).toBe(true);
    // The upstream stream was read to its end, not cancelled after [DONE].
    const line = await log.waitFor((entry) => entry.path === '/api/chat' && 'outcome' in entry);
    expect(line).toMatchObject({
      status: 200,
      outcome: 'completed',
      streamed: true,
      promptTokens: 1,
      completionTokens: 5,
    });
  });

  it('behavior: not streamed, one object with the whole message, done and the counts', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy);
    const answer = await client(gateway, key).chat({
      model: MODEL,
      messages: [{ role: 'user', content: 'Say hello please' }],
      format: 'json',
    });
    expect(answer).toMatchObject({
      model: MODEL,
      message: { role: 'assistant', content: REPLY },
      done: true,
      done_reason: 'stop',
      prompt_eval_count: 3,
      eval_count: 5,
    });
    const [request] = sent(upstream, '/v1/chat/completions');
    expect(request).toMatchObject({ stream: false, response_format: { type: 'json_object' } });
    expect(request).not.toHaveProperty('stream_options');
  });

  it('behavior: a JSON schema format becomes a json_schema response_format; images become image parts', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy);
    const schema = { type: 'object', properties: { answer: { type: 'string' } } };
    const png = 'iVBORw0KGgoAAAANSUhEUg==';
    await client(gateway, key).chat({
      model: MODEL,
      messages: [{ role: 'user', content: 'What is this?', images: [png] }],
      format: schema,
    });
    const [request] = sent(upstream, '/v1/chat/completions');
    expect(request).toMatchObject({
      response_format: { type: 'json_schema', json_schema: { name: 'response', schema } },
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${png}` } },
          ],
        },
      ],
    });
  });

  it('behavior: no messages only loads the model, without calling the backend', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy);
    const answer = await client(gateway, key).chat({ model: MODEL, messages: [] });
    expect(answer).toMatchObject({ model: MODEL, done: true, done_reason: 'load' });
    const unloaded = await client(gateway, key).chat({ model: MODEL, keep_alive: 0 });
    expect(unloaded.done_reason).toBe('unload');
    expect(sent(upstream, '/v1/chat/completions')).toHaveLength(0);
  });

  it('behavior: tool calls round-trip, streamed and not, as Ollama objects with parsed arguments', async () => {
    const { gateway, tenancy, upstream } = await start({
      upstream: { toolCall: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    });
    const { key } = await issue(tenancy);
    const ollama = client(gateway, key);
    const tools = [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'The weather in a city',
          parameters: {
            type: 'object',
            required: ['city'],
            properties: { city: { type: 'string', description: 'The city' } },
          },
        },
      },
    ];
    const messages = [{ role: 'user', content: 'Weather in Paris?' }];
    const whole = await ollama.chat({ model: MODEL, messages, tools });
    expect(whole.message.tool_calls).toEqual([
      expect.objectContaining({
        function: expect.objectContaining({ name: 'get_weather', arguments: { city: 'Paris' } }),
      }),
    ]);
    expect(whole.done_reason).toBe('stop');

    const parts = [];
    for await (const part of await ollama.chat({ model: MODEL, messages, tools, stream: true })) {
      parts.push(part);
    }
    const calls = parts.flatMap((part) => part.message.tool_calls ?? []);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.function).toMatchObject({ name: 'get_weather', arguments: { city: 'Paris' } });
    expect(parts.at(-1)).toMatchObject({ done: true, done_reason: 'stop' });

    // The caller answers the call: the history reaches the backend in OpenAI's terms.
    upstream.setBehavior({ toolCall: undefined });
    const final = await ollama.chat({
      model: MODEL,
      tools,
      messages: [
        ...messages,
        {
          role: 'assistant',
          content: '',
          tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }],
        },
        { role: 'tool', content: '18 degrees', tool_name: 'get_weather' },
      ],
    });
    expect(final.message.content).toBe(REPLY);
    const requests = sent(upstream, '/v1/chat/completions');
    expect(requests[0]!.tools).toEqual(tools);
    const history = requests.at(-1)!.messages as Array<Record<string, unknown>>;
    expect(history[1]).toEqual({
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          id: 'call_1_0',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
        },
      ],
    });
    expect(history[2]).toEqual({ role: 'tool', content: '18 degrees', tool_call_id: 'call_1_0' });
  });
});

describe('generate', () => {
  it('behavior: a prompt is a chat with the system and user messages, streamed as `response` pieces', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy);
    const parts = [];
    for await (const part of await client(gateway, key).generate({
      model: MODEL,
      prompt: 'Why is the sky blue',
      system: 'Answer in one line',
      stream: true,
    })) {
      parts.push(part);
    }
    expect(
      parts
        .filter((part) => !part.done)
        .map((part) => part.response)
        .join(''),
    ).toBe(REPLY);
    const last = parts.at(-1)!;
    expect(last).toMatchObject({
      done: true,
      done_reason: 'stop',
      response: '',
      prompt_eval_count: 9,
      eval_count: 5,
    });
    // `context` is deprecated by Ollama and means nothing here.
    expect(last).not.toHaveProperty('context');
    const [request] = sent(upstream, '/v1/chat/completions');
    expect(request!.messages).toEqual([
      { role: 'system', content: 'Answer in one line' },
      { role: 'user', content: 'Why is the sky blue' },
    ]);
  });

  it('behavior: not streamed, one object with the whole response', async () => {
    const { gateway, tenancy } = await start();
    const { key } = await issue(tenancy);
    const answer = await client(gateway, key).generate({ model: MODEL, prompt: 'Hello there' });
    expect(answer).toMatchObject({
      model: MODEL,
      response: REPLY,
      done: true,
      done_reason: 'stop',
      prompt_eval_count: 2,
      eval_count: 5,
    });
  });

  it('behavior: a raw prompt goes to /v1/completions as it is, streamed or not', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy);
    const ollama = client(gateway, key);
    const whole = await ollama.generate({
      model: MODEL,
      prompt: '<s>[INST] Hi [/INST]',
      raw: true,
    });
    expect(whole).toMatchObject({ response: REPLY, done: true, eval_count: 5 });
    const parts = [];
    for await (const part of await ollama.generate({
      model: MODEL,
      prompt: 'Once upon',
      raw: true,
      stream: true,
      options: { num_predict: 10 },
    })) {
      parts.push(part);
    }
    expect(
      parts
        .filter((part) => !part.done)
        .map((part) => part.response)
        .join(''),
    ).toBe(REPLY);
    expect(parts.at(-1)).toMatchObject({ done: true, prompt_eval_count: 2, eval_count: 5 });
    expect(sent(upstream, '/v1/completions')).toEqual([
      expect.objectContaining({ prompt: '<s>[INST] Hi [/INST]', stream: false }),
      expect.objectContaining({
        prompt: 'Once upon',
        stream: true,
        stream_options: { include_usage: true },
        max_tokens: 10,
      }),
    ]);
    expect(sent(upstream, '/v1/chat/completions')).toHaveLength(0);
  });

  it('behavior: an empty prompt only loads the model', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy);
    const answer = await client(gateway, key).generate({ model: MODEL, prompt: '' });
    expect(answer).toMatchObject({ done: true, done_reason: 'load', response: '' });
    expect(upstream.requests.filter((request) => request.method === 'POST')).toHaveLength(0);
  });
});

describe('embed', () => {
  it('behavior: a string and a list of strings get one vector each, with the prompt count', async () => {
    const { gateway, tenancy, upstream } = await start({ upstream: { embeddingDimensions: 4 } });
    const { key } = await issue(tenancy);
    const ollama = client(gateway, key);
    const one = await ollama.embed({ model: MODEL, input: 'hello world' });
    expect(one.model).toBe(MODEL);
    expect(one.embeddings).toHaveLength(1);
    expect(one.embeddings[0]).toHaveLength(4);
    expect(one.prompt_eval_count).toBe(2);
    expect(Number.isInteger(one.total_duration)).toBe(true);
    const many = await ollama.embed({ model: MODEL, input: ['a b', 'c', 'd e f'], truncate: true });
    expect(many.embeddings).toHaveLength(3);
    expect(many.prompt_eval_count).toBe(6);
    // Same input, same vector: the order of the inputs is kept.
    expect(many.embeddings[1]).not.toEqual(many.embeddings[0]);
    const again = await ollama.embed({ model: MODEL, input: 'c' });
    expect(again.embeddings[0]).toEqual(many.embeddings[1]);
    expect(sent(upstream, '/v1/embeddings')[1]).toMatchObject({
      input: ['a b', 'c', 'd e f'],
      encoding_format: 'float',
      truncate: true,
    });
  });

  it('behavior: the legacy /api/embeddings takes a prompt and answers one embedding', async () => {
    const { gateway, tenancy } = await start({ upstream: { embeddingDimensions: 4 } });
    const { key } = await issue(tenancy);
    const answer = await client(gateway, key).embeddings({ model: MODEL, prompt: 'hello' });
    expect(answer.embedding).toHaveLength(4);
  });
});

describe('models and version', () => {
  it('behavior: list (tags), ps and version', async () => {
    const { gateway, tenancy } = await start({ values: { aliases: { fast: MODEL } } });
    const { key } = await issue(tenancy);
    const ollama = client(gateway, key);
    const { models } = await ollama.list();
    expect(models.map((model) => model.name)).toEqual(['fake-model', 'fast']);
    expect(models[0]).toMatchObject({
      name: MODEL,
      model: MODEL,
      size: 0,
      details: { format: '', family: '', families: [], parent_model: '' },
    });
    expect(models[0]!.digest).toMatch(/^[0-9a-f]{64}$/);
    expect(Number.isNaN(Date.parse(String(models[0]!.modified_at)))).toBe(false);
    expect(models[1]!.details.parent_model).toBe(MODEL);

    const running = await ollama.ps();
    expect(running.models.map((model) => model.name)).toEqual(['fake-model', 'fast']);
    expect(running.models[0]).toMatchObject({ size_vram: 0 });
    expect(Date.parse(String(running.models[0]!.expires_at))).toBeGreaterThan(
      Date.now() + 100 * 365 * 24 * 3600_000,
    );

    // The version needs no key, like /health.
    const anonymous = new Ollama({ host: gateway.url });
    expect(await anonymous.version()).toEqual({ version: '0.12.6' });
  });
});

describe('errors', () => {
  it('error: an unknown model is a 404 in Ollama words, which the client raises', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy);
    const ollama = client(gateway, key);
    const error = await responseError(
      ollama.chat({ model: 'llama9', messages: [{ role: 'user', content: 'Hi' }] }),
    );
    expect(error.status_code).toBe(404);
    expect(error.message).toContain('model "llama9" not found');
    expect(error.message).toContain('fake-model');
    const generate = await responseError(ollama.generate({ model: 'llama9', prompt: '' }));
    expect(generate.status_code).toBe(404);
    const embed = await responseError(ollama.embed({ model: 'llama9', input: 'x' }));
    expect(embed.status_code).toBe(404);
    expect(upstream.requests.filter((request) => request.method === 'POST')).toHaveLength(0);
  });

  it('error: a bad key is a 401 and no key a 401, as {"error": "..."}', async () => {
    const { gateway, tenancy } = await start();
    await issue(tenancy);
    const bad = await responseError(client(gateway, 'tg_not-a-key').list());
    expect(bad.status_code).toBe(401);
    const response = await fetch(`${gateway.url}/api/chat`, {
      method: 'POST',
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
    });
    expect(response.status).toBe(401);
    const body = (await response.json()) as { error: unknown };
    expect(typeof body.error).toBe('string');
  });

  it('error: over the request rate, a 429 that keeps retry-after and the rate-limit headers', async () => {
    const { gateway, tenancy } = await start();
    const { key } = await issue(tenancy, { requests_per_minute: 1 });
    const ollama = client(gateway, key);
    await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
    const refused = await responseError(
      ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
    );
    expect(refused.status_code).toBe(429);
    const response = await fetch(`${gateway.url}/api/generate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: MODEL, prompt: 'Hi' }),
    });
    expect(response.status).toBe(429);
    expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('1');
    expect(response.headers.get('content-type')).toContain('application/json');
    const body = (await response.json()) as { error: unknown };
    expect(typeof body.error).toBe('string');
  });

  it('error: bad JSON, a wrong field, a wrong method and an unknown /api route, in Ollama shape', async () => {
    const { gateway, tenancy } = await start();
    const { key } = await issue(tenancy);
    const headers = { authorization: `Bearer ${key}` };
    const badJson = await fetch(`${gateway.url}/api/chat`, {
      method: 'POST',
      headers,
      body: '{"model": ',
    });
    expect(badJson.status).toBe(400);
    expect(((await badJson.json()) as { error: string }).error).toContain('not valid JSON');
    const badField = await fetch(`${gateway.url}/api/chat`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ model: MODEL, messages: 'hello' }),
    });
    expect(badField.status).toBe(400);
    expect(((await badField.json()) as { error: string }).error).toContain('"messages"');
    const wrongMethod = await fetch(`${gateway.url}/api/chat`, { headers });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    expect(typeof ((await wrongMethod.json()) as { error: unknown }).error).toBe('string');
    const unknown = await fetch(`${gateway.url}/api/pull`, { method: 'POST', headers });
    expect(unknown.status).toBe(404);
    expect(typeof ((await unknown.json()) as { error: unknown }).error).toBe('string');
  });

  it('error: an upstream error keeps its status, in Ollama shape', async () => {
    const { gateway, tenancy } = await start({
      upstream: { errorStatus: 400, errorMessage: 'context length exceeded' },
    });
    const { key } = await issue(tenancy);
    const error = await responseError(
      client(gateway, key).chat({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
    );
    expect(error.status_code).toBe(400);
    expect(error.message).toContain('context length exceeded');
  });

  it('error: a stream that breaks mid-way ends with an error line, which the client raises', async () => {
    const log = captureLogger();
    const { gateway, tenancy } = await start({
      upstream: { failAfterChunks: 3 },
      logger: log.logger,
    });
    const { key } = await issue(tenancy);
    const { response, lines } = await postLines(gateway, '/api/chat', key, {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
    });
    expect(response.status).toBe(200);
    expect(lines.filter((line) => line.done === false).length).toBeGreaterThan(0);
    const last = lines.at(-1)!;
    expect(Object.keys(last)).toEqual(['error']);
    expect(last.error).toContain('incomplete');
    expect(lines.some((line) => line.done === true)).toBe(false);
    const logged = await log.waitFor((entry) => entry.path === '/api/chat' && 'outcome' in entry);
    expect(logged).toMatchObject({ outcome: 'failed' });

    const stream = await client(gateway, key).chat({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
    });
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const part of stream) seen.push(part.message.content);
      })(),
    ).rejects.toThrow(/incomplete/);
    expect(seen.length).toBeGreaterThan(0);
  });

  it('behavior: a client that stops reading a stream cancels the upstream request', async () => {
    const { gateway, tenancy, upstream } = await start({
      upstream: { chunkDelayMs: 50, reply: 'a b c d e f g h i j k l m n o p q r s t' },
    });
    const { key } = await issue(tenancy);
    const stream = await client(gateway, key).chat({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
    });
    for await (const part of stream) {
      expect(part.done).toBe(false);
      break;
    }
    stream.abort();
    await upstream.waitForClientAbort();
    expect(upstream.clientAborts).toBe(1);
  });

  it('error: a stream still going when the shutdown grace period ends gets an error line saying so, which the client raises', async () => {
    const { gateway, tenancy, upstream } = await start({
      values: { shutdown: { grace_seconds: 0 } },
      upstream: { chunkDelayMs: 100, reply: 'a b c d e f g h i j k l m n o p q r s t' },
    });
    const { key } = await issue(tenancy);
    const stream = await client(gateway, key).chat({
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
    });
    const seen: string[] = [];
    let closing: Promise<void> | undefined;
    await expect(
      (async () => {
        for await (const part of stream) {
          seen.push(part.message.content);
          closing ??= gateway.close();
        }
      })(),
    ).rejects.toThrow(/shutting down/);
    await closing;
    expect(seen.length).toBeLessThan(20);
    await upstream.waitForClientAbort();
  });

  it('error: an error the backend sends inside its stream ends the NDJSON with its message', async () => {
    const { gateway, tenancy } = await start({
      upstream: { errorAfterChunks: 2, errorMessage: 'out of memory' },
    });
    const { key } = await issue(tenancy);
    const { lines } = await postLines(gateway, '/api/generate', key, {
      model: MODEL,
      prompt: 'Hi',
    });
    expect(lines.at(-1)).toEqual({ error: 'out of memory' });
  });
});

describe('metering', () => {
  it('behavior: streamed and whole Ollama requests are recorded with the backend token counts', async () => {
    const { gateway, tenancy } = await start();
    const { tenant, key } = await issue(tenancy, { requests_per_minute: 100 });
    const ollama = client(gateway, key);
    for await (const _ of await ollama.chat({
      model: MODEL,
      messages: [{ role: 'user', content: 'Say hello please' }],
      stream: true,
    })) {
      // Read to the end.
    }
    await ollama.generate({ model: MODEL, prompt: 'Hello there' });
    await ollama.embed({ model: MODEL, input: ['a b c d'] });
    await tenancy.flush();
    const [row] = await tenancy.usage({ tenantId: tenant.id });
    expect(row).toMatchObject({
      requests: 3,
      // 3 + 2 + 4 prompt words; 5 + 5 reply words.
      promptTokens: 9,
      completionTokens: 10,
      estimatedRequests: 0,
    });
  });
});

describe('any backend type', () => {
  it('behavior: an Ollama backend serves the Ollama routes (through its OpenAI translation)', async () => {
    const ollamaUpstream = await startFakeUpstream({
      kind: 'ollama',
      models: ['llama3.2:latest'],
      reply: 'hi from ollama',
      embeddingDimensions: 3,
    });
    cleanups.push(() => ollamaUpstream.close());
    const { gateway, tenancy } = await start({
      values: { backends: [{ name: 'local-ollama', type: 'ollama', url: ollamaUpstream.url }] },
    });
    const { key } = await issue(tenancy);
    const ollama = client(gateway, key);
    const parts = [];
    for await (const part of await ollama.chat({
      model: 'llama3.2:latest',
      messages: [{ role: 'user', content: 'Hello' }],
      stream: true,
      options: { num_ctx: 8192, temperature: 0 },
    })) {
      parts.push(part);
    }
    expect(
      parts
        .filter((part) => !part.done)
        .map((part) => part.message.content)
        .join(''),
    ).toBe('hi from ollama');
    expect(parts.at(-1)).toMatchObject({ done: true, prompt_eval_count: 1, eval_count: 3 });
    const [chat] = sent(ollamaUpstream, '/api/chat');
    expect(chat).toMatchObject({ options: { num_ctx: 8192, temperature: 0 }, stream: true });
    const embedded = await ollama.embed({ model: 'llama3.2:latest', input: 'x y' });
    expect(embedded.embeddings[0]).toHaveLength(3);
    expect(embedded.prompt_eval_count).toBe(2);
  });
});

describe('encryption', () => {
  it('behavior: with encryption.required, plaintext Ollama requests get a 415 and encapsulated ones are served', async () => {
    const { gateway, tenancy } = await start({ values: { encryption: { required: true } } });
    const { key } = await issue(tenancy);
    const body = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], stream: false };
    const plaintext = await fetch(`${gateway.url}/api/chat`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
      body: JSON.stringify(body),
    });
    expect(plaintext.status).toBe(415);
    expect(((await plaintext.json()) as { error: string }).error).toContain('Oblivious HTTP');

    const configs = await fetch(`${gateway.url}/.well-known/ohttp-gateway`);
    const [config] = decodeKeyConfigs(new Uint8Array(await configs.arrayBuffer()));
    const inner = encodeBhttpRequest({
      method: 'POST',
      scheme: 'https',
      authority: 'gateway.example',
      path: '/api/chat',
      headers: [
        ['content-type', 'application/json'],
        ['authorization', `Bearer ${key}`],
        ['date', new Date().toUTCString()],
      ],
      body: new TextEncoder().encode(JSON.stringify(body)),
    });
    const { encapsulatedRequest, context } = encapsulateRequest(config!, inner);
    const outer = await fetch(`${gateway.url}/.well-known/ohttp-gateway`, {
      method: 'POST',
      headers: { 'content-type': 'message/ohttp-req' },
      body: encapsulatedRequest as Uint8Array<ArrayBuffer>,
    });
    expect(outer.status).toBe(200);
    const answer = decodeBhttpResponse(
      context.decapsulateResponse(new Uint8Array(await outer.arrayBuffer())),
    );
    expect(answer.status).toBe(200);
    expect(JSON.parse(new TextDecoder().decode(answer.body))).toMatchObject({
      message: { role: 'assistant', content: REPLY },
      done: true,
    });
  });
});
