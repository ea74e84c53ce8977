/**
 * Router tests against fake `Backend` objects built here (plain objects returning Responses
 * whose bodies the test controls), so they exercise the router alone.
 */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type ChatCompletionRequest,
  isTollgateError,
  type Operation,
  TollgateError,
} from '@tollgate/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Backend, BackendCallOptions, BackendHealth, BackendModel } from './backend.js';
import { createRouter } from './router.js';
import type { DispatchResult, RouterEvent, RouterOptions } from './router-types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------------------------
// Fakes

type Handler = (
  request: ChatCompletionRequest,
  options: BackendCallOptions,
  operation: Operation,
) => Response | Promise<Response>;

interface FakeBackend extends Backend {
  calls: Array<{ operation: Operation; request: ChatCompletionRequest; signal: AbortSignal }>;
  handler: Handler;
  healthResult: BackendHealth;
  models: BackendModel[];
  listCalls: number;
}

function fakeBackend(name: string, handler: Handler, models: string[] = []): FakeBackend {
  const call = (operation: Operation) => (request: unknown, options: BackendCallOptions) => {
    backend.calls.push({
      operation,
      request: request as ChatCompletionRequest,
      signal: options.signal,
    });
    return Promise.resolve().then(() =>
      backend.handler(request as ChatCompletionRequest, options, operation),
    );
  };
  const backend: FakeBackend = {
    name,
    kind: 'openai',
    calls: [],
    handler,
    healthResult: { ok: true },
    models: models.map((id) => ({ id })),
    listCalls: 0,
    async listModels() {
      backend.listCalls++;
      return backend.models;
    },
    async health() {
      return backend.healthResult;
    },
    chatCompletions: call('chat.completions'),
    completions: call('completions'),
    embeddings: call('embeddings'),
  };
  return backend;
}

/** A body the test feeds by hand. */
function controlledBody() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let resolveCancelled!: (reason: unknown) => void;
  const cancelled = new Promise<unknown>((resolve) => {
    resolveCancelled = resolve;
  });
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel(reason) {
      resolveCancelled(reason);
    },
  });
  return {
    stream,
    cancelled,
    push(text: string) {
      controller.enqueue(encoder.encode(text));
    },
    close() {
      controller.close();
    },
    error(error: unknown) {
      controller.error(error);
    },
  };
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

function sseResponse(stream: ReadableStream<Uint8Array>): Response {
  return new Response(stream, { headers: { 'content-type': 'text/event-stream' } });
}

function sseOf(text: string): Response {
  return sseResponse(
    new ReadableStream({
      start(controller) {
        controller.enqueue(encoder.encode(text));
        controller.close();
      },
    }),
  );
}

const unreachable =
  (message = 'connect ECONNREFUSED') =>
  () =>
    Promise.reject(new TollgateError('upstream_unreachable', message));

const completion = (content = 'hi') => ({
  id: 'c1',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
});

const chunk = (content: string) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
const USAGE_CHUNK = `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } })}\n\n`;
const DONE = 'data: [DONE]\n\n';

function chat(model: string, extra: Partial<ChatCompletionRequest> = {}): ChatCompletionRequest {
  return {
    model,
    messages: [{ role: 'user', content: 'hello' }],
    ...extra,
  } as ChatCompletionRequest;
}

function signal() {
  return new AbortController().signal;
}

async function readText(response: Response): Promise<string> {
  return await response.text();
}

/** Consumes the body (the slot is held until then) and returns the outcome. */
async function settle(result: DispatchResult) {
  await result.response.arrayBuffer();
  return await result.outcome;
}

/** Reads a body to its end or its error; returns the text seen and the error, if any. */
async function drain(
  body: ReadableStream<Uint8Array> | null,
): Promise<{ text: string; error?: unknown }> {
  if (!body) return { text: '' };
  const reader = body.getReader();
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { text };
      text += decoder.decode(value, { stream: true });
    }
  } catch (error) {
    return { text, error };
  }
}

async function rejection(promise: Promise<unknown>): Promise<TollgateError> {
  try {
    await promise;
  } catch (error) {
    if (isTollgateError(error)) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}

/** Lets every pending promise job and I/O callback run (the fakes use no timers). */
function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let round = 0; round < 2000; round++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function router(options: RouterOptions) {
  return createRouter(options);
}

// ---------------------------------------------------------------------------------------------

describe('createRouter: models and aliases', () => {
  it('behavior: an alias routes to its target and the upstream gets the target name; the caller request is untouched', async () => {
    const a = fakeBackend('a', () => json(completion()), ['llama3:8b']);
    const r = router({
      backends: [{ backend: a, models: ['llama3:8b'] }],
      aliases: { fast: 'llama3:8b' },
    });
    const request = chat('fast');
    const result = await r.dispatch('chat.completions', request, { signal: signal() });
    expect(result.model).toBe('llama3:8b');
    expect(result.backend).toBe('a');
    expect(a.calls[0]!.request.model).toBe('llama3:8b');
    expect(a.calls[0]!.request.messages).toEqual(request.messages);
    expect(request.model).toBe('fast');
    expect(JSON.parse(await readText(result.response))).toEqual(completion());
  });

  it('behavior: listModels is the sorted union of backends and aliases', async () => {
    const a = fakeBackend('a', () => json({}), ['zeta', 'alpha']);
    a.models = [{ id: 'zeta', ownedBy: 'vllm' }, { id: 'alpha' }];
    const b = fakeBackend('b', () => json({}));
    const r = router({
      backends: [{ backend: a }, { backend: b, models: ['alpha', 'mid'] }],
      aliases: { best: 'zeta', ghost: 'not-served' },
    });
    expect(await r.listModels()).toEqual([
      { id: 'alpha', backends: ['a', 'b'] },
      { id: 'best', backends: ['a'], aliasOf: 'zeta', ownedBy: 'vllm' },
      { id: 'mid', backends: ['b'] },
      { id: 'zeta', backends: ['a'], ownedBy: 'vllm' },
    ]);
  });

  it('behavior: "name" finds a backend that lists only "name:latest" (Ollama naming)', async () => {
    const a = fakeBackend('a', () => json(completion()));
    const r = router({ backends: [{ backend: a, models: ['qwen:latest'] }] });
    const result = await r.dispatch('chat.completions', chat('qwen'), { signal: signal() });
    expect(result.model).toBe('qwen:latest');
    expect(a.calls[0]!.request.model).toBe('qwen:latest');
    await settle(result);
  });

  it('error: an unknown model is a 404 model_not_found listing the known models', async () => {
    const a = fakeBackend('a', () => json({}));
    const r = router({
      backends: [{ backend: a, models: ['one', 'two'] }],
      aliases: { uno: 'one' },
    });
    const error = await rejection(
      r.dispatch('chat.completions', chat('three'), { signal: signal() }),
    );
    expect(error.code).toBe('model_not_found');
    expect(error.status).toBe(404);
    expect(error.param).toBe('model');
    expect(error.message).toContain('"three"');
    expect(error.message).toContain('one, two, uno');
    expect(a.calls).toHaveLength(0);
  });

  it('behavior: ensureModel resolves for models and aliases, relists once on a miss, and 404s what no backend serves', async () => {
    const a = fakeBackend('a', () => json({}), ['one']);
    const r = router({ backends: [{ backend: a }], aliases: { uno: 'one' } });
    await r.refresh();
    expect(await r.ensureModel('one')).toEqual({ model: 'one' });
    expect(await r.ensureModel('uno')).toEqual({ model: 'one' });
    expect(a.listCalls).toBe(1);
    a.models = [{ id: 'one' }, { id: 'two' }];
    await r.ensureModel('two');
    expect(a.listCalls).toBe(2);
    const error = await rejection(r.ensureModel('three'));
    expect(error.code).toBe('model_not_found');
    expect(error.message).toContain('one, two, uno');
    expect(a.calls).toHaveLength(0);
  });

  it('behavior: a model reports the smallest context window its backends list', async () => {
    const a = fakeBackend('a', () => json({}), []);
    a.models = [{ id: 'm', contextLength: 8192 }, { id: 'solo' }];
    const b = fakeBackend('b', () => json({}), []);
    b.models = [{ id: 'm', contextLength: 4096 }];
    const r = router({ backends: [{ backend: a }, { backend: b }], aliases: { mm: 'm' } });
    await r.refresh();
    expect(await r.ensureModel('mm')).toEqual({ model: 'm', contextLength: 4096 });
    expect(await r.ensureModel('solo')).toEqual({ model: 'solo' });
    const listed = await r.listModels();
    expect(listed.find((entry) => entry.id === 'm')?.contextLength).toBe(4096);
    expect(listed.find((entry) => entry.id === 'mm')?.contextLength).toBe(4096);
  });

  it('error: a long list of known models is truncated in the 404 message', async () => {
    const models = Array.from(
      { length: 50 },
      (_, index) => `model-${String(index).padStart(2, '0')}`,
    );
    const r = router({ backends: [{ backend: fakeBackend('a', () => json({})), models }] });
    const error = await rejection(
      r.dispatch('chat.completions', chat('nope'), { signal: signal() }),
    );
    expect(error.message).toContain('model-00');
    expect(error.message).not.toContain('model-49');
    expect(error.message).toContain('and 30 more');
  });

  it('behavior: a miss relists the servers once, so a model pulled since start is found', async () => {
    const a = fakeBackend('a', () => json(completion()), ['old']);
    const r = router({ backends: [{ backend: a }] });
    await r.refresh();
    expect(a.listCalls).toBe(1);
    a.models = [{ id: 'old' }, { id: 'new' }];
    const result = await r.dispatch('chat.completions', chat('new'), { signal: signal() });
    expect(result.model).toBe('new');
    expect(a.listCalls).toBe(2);
    await settle(result);
  });

  it('behavior: concurrent misses share one relist and repeated misses do not relist again within seconds', async () => {
    let clock = 1_000_000;
    const a = fakeBackend('a', () => json({}), ['known']);
    const r = router({ backends: [{ backend: a }], now: () => clock });
    const misses = await Promise.allSettled(
      Array.from({ length: 5 }, () =>
        r.dispatch('chat.completions', chat('missing'), { signal: signal() }),
      ),
    );
    expect(misses.every((miss) => miss.status === 'rejected')).toBe(true);
    expect(a.listCalls).toBe(1);
    await rejection(r.dispatch('chat.completions', chat('missing'), { signal: signal() }));
    expect(a.listCalls).toBe(1);
    clock += 60_000;
    await rejection(r.dispatch('chat.completions', chat('missing'), { signal: signal() }));
    expect(a.listCalls).toBe(2);
  });
});

describe('createRouter: balancing', () => {
  it('behavior: the least busy backend gets the next request while another is still streaming', async () => {
    const bodies: Array<ReturnType<typeof controlledBody>> = [];
    const handler: Handler = () => {
      const body = controlledBody();
      bodies.push(body);
      body.push(chunk('x'));
      return sseResponse(body.stream);
    };
    const a = fakeBackend('a', handler);
    const b = fakeBackend('b', handler);
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
    });
    const streamed = chat('m', { stream: true });

    const first = await r.dispatch('chat.completions', streamed, { signal: signal() });
    const second = await r.dispatch('chat.completions', streamed, { signal: signal() });
    expect([first.backend, second.backend].sort()).toEqual(['a', 'b']);
    expect(r.status().map((status) => status.inFlight)).toEqual([1, 1]);

    // Finish the first; the next request must go where it was (now idle), not to the busy one.
    const firstDrained = drain(first.response.body);
    bodies[0]!.push(DONE);
    bodies[0]!.close();
    await firstDrained;
    await first.outcome;
    const third = await r.dispatch('chat.completions', streamed, { signal: signal() });
    expect(third.backend).toBe(first.backend);

    for (const body of bodies.slice(1)) {
      body.push(DONE);
      body.close();
    }
    await Promise.all([drain(second.response.body), drain(third.response.body)]);
    expect(r.status().map((status) => status.inFlight)).toEqual([0, 0]);
  });

  it('behavior: equally idle backends take turns (round robin)', async () => {
    const a = fakeBackend('a', () => json(completion()));
    const b = fakeBackend('b', () => json(completion()));
    const c = fakeBackend('c', () => json(completion()));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
        { backend: c, models: ['m'] },
      ],
    });
    const order: string[] = [];
    for (let index = 0; index < 6; index++) {
      const result = await r.dispatch('chat.completions', chat('m'), { signal: signal() });
      await result.response.arrayBuffer();
      await result.outcome;
      order.push(result.backend);
    }
    expect(order).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });
});

describe('createRouter: failover', () => {
  it('behavior: a connection error fails over to the next backend', async () => {
    const a = fakeBackend('a', unreachable());
    const b = fakeBackend('b', () => json(completion('from b')));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
    });
    const result = await r.dispatch('chat.completions', chat('m'), { signal: signal() });
    expect(result.backend).toBe('b');
    expect(JSON.parse(await readText(result.response)).choices[0].message.content).toBe('from b');
    expect(a.calls).toHaveLength(1);
    expect(r.status()[0]!.consecutiveFailures).toBe(1);
  });

  it('behavior: a 5xx fails over and its body is cancelled', async () => {
    const failedBody = controlledBody();
    // A 5xx whose body never ends: the router reads what it can for the message, gives up
    // on the rest and moves on.
    failedBody.push('{"error":{"message":"CUDA out of memory"');
    const a = fakeBackend('a', () => new Response(failedBody.stream, { status: 500 }));
    const b = fakeBackend('b', () => json(completion('from b')));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
      firstByteTimeoutMs: 50,
    });
    const result = await r.dispatch('chat.completions', chat('m'), { signal: signal() });
    expect(result.backend).toBe('b');
    await failedBody.cancelled;
    expect((await settle(result)).status).toBe('completed');
  });

  it('error: a lone 5xx is reported with its message once its body is read', async () => {
    const a = fakeBackend('a', () => json({ error: { message: 'CUDA out of memory' } }, 500));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const error = await rejection(r.dispatch('chat.completions', chat('m'), { signal: signal() }));
    expect(error.message).toContain('CUDA out of memory');
    expect(r.status()[0]!.inFlight).toBe(0);
  });

  it('behavior: a stream that dies before its first chunk fails over', async () => {
    const a = fakeBackend('a', () => {
      const body = controlledBody();
      queueMicrotask(() => body.error(new TypeError('terminated')));
      return sseResponse(body.stream);
    });
    const b = fakeBackend('b', () => sseOf(chunk('ok') + USAGE_CHUNK + DONE));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
    });
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    expect(result.backend).toBe('b');
    expect(await readText(result.response)).toBe(chunk('ok') + DONE);
  });

  it('behavior: a stream that ends with no data before its first chunk fails over', async () => {
    const a = fakeBackend('a', () => sseOf(''));
    const b = fakeBackend('b', () => sseOf(chunk('ok') + DONE));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
    });
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    expect(result.backend).toBe('b');
    await result.response.text();
  });

  it('behavior: headers then silence past firstByteTimeoutMs fails over; a started stream is never cut by the timer', async () => {
    const silent = controlledBody();
    const a = fakeBackend('a', () => sseResponse(silent.stream));
    const slow = controlledBody();
    slow.push(chunk('first'));
    const b = fakeBackend('b', () => sseResponse(slow.stream));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
      firstByteTimeoutMs: 30,
    });
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    expect(result.backend).toBe('b');
    await silent.cancelled;
    const drained = drain(result.response.body);
    // Well past the first-byte timeout: the stream must still be open and deliver the rest.
    await new Promise((resolve) => setTimeout(resolve, 150));
    slow.push(chunk('second'));
    slow.push(DONE);
    slow.close();
    const { text, error } = await drained;
    expect(error).toBeUndefined();
    expect(text).toBe(chunk('first') + chunk('second') + DONE);
    expect((await result.outcome).status).toBe('completed');
  });

  it('behavior: no failover after the first chunk: the caller gets an error event, then a stream error', async () => {
    const body = controlledBody();
    body.push(chunk('partial'));
    const a = fakeBackend('a', () => sseResponse(body.stream));
    const b = fakeBackend('b', () => sseOf(chunk('b') + DONE));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
    });
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    expect(result.backend).toBe('a');
    const drained = drain(result.response.body);
    await tick();
    body.error(new TypeError('terminated'));
    const { text, error } = await drained;
    expect(error).toBeDefined();
    expect(b.calls).toHaveLength(0);
    const events = text.split('\n\n').filter(Boolean);
    expect(`${events[0]}\n\n`).toBe(chunk('partial'));
    const last = JSON.parse(events[events.length - 1]!.replace(/^data: /, ''));
    expect(last.error.code).toBe('upstream_stream_error');
    expect(last.error.type).toBe('server_error');
    expect(last.error.param).toBeNull();
    const outcome = await result.outcome;
    expect(outcome.status).toBe('failed');
    expect(outcome.httpStatus).toBe(200);
    expect(outcome.streamed).toBe(true);
  });

  it('behavior: an upstream 4xx passes through untouched, with no failover', async () => {
    const body =
      '{"error":{"message":"context length exceeded","type":"invalid_request_error","param":"messages","code":null}}';
    const a = fakeBackend(
      'a',
      () =>
        new Response(body, {
          status: 400,
          headers: { 'content-type': 'application/json', 'x-upstream': 'yes' },
        }),
    );
    const b = fakeBackend('b', () => json(completion()));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
    });
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    expect(result.response.status).toBe(400);
    expect(result.response.headers.get('content-type')).toBe('application/json');
    expect(result.response.headers.get('x-upstream')).toBe('yes');
    expect(await result.response.text()).toBe(body);
    expect(b.calls).toHaveLength(0);
    expect(await result.outcome).toMatchObject({
      status: 'completed',
      httpStatus: 400,
      streamed: false,
    });
    expect(r.status()[0]!.consecutiveFailures).toBe(0);
  });

  it('error: when every backend is unreachable: 502 upstream_unreachable naming what was tried', async () => {
    const r = router({
      backends: [
        { backend: fakeBackend('a', unreachable('A refused')), models: ['m'] },
        { backend: fakeBackend('b', unreachable('B refused')), models: ['m'] },
      ],
    });
    const error = await rejection(r.dispatch('chat.completions', chat('m'), { signal: signal() }));
    expect(error.code).toBe('upstream_unreachable');
    expect(error.status).toBe(502);
    expect(error.message).toContain('a (A refused)');
    expect(error.message).toContain('b (B refused)');
  });

  it('error: a final 503 is upstream_unavailable (503) with the upstream message and its retry-after', async () => {
    const r = router({
      backends: [
        { backend: fakeBackend('a', unreachable()), models: ['m'] },
        {
          backend: fakeBackend('b', () =>
            json({ error: { message: 'Loading model' } }, 503, { 'retry-after': '7' }),
          ),
          models: ['m'],
        },
      ],
    });
    const error = await rejection(r.dispatch('chat.completions', chat('m'), { signal: signal() }));
    expect(error.code).toBe('upstream_unavailable');
    expect(error.status).toBe(503);
    expect(error.message).toContain('Loading model');
    expect(error.headers['retry-after']).toBe('7');
  });

  it('error: a final 500 is upstream_error (502) with the upstream message (Ollama and FastAPI shapes)', async () => {
    const ollama = router({
      backends: [
        { backend: fakeBackend('a', () => json({ error: 'model crashed' }, 500)), models: ['m'] },
      ],
    });
    const first = await rejection(
      ollama.dispatch('chat.completions', chat('m'), { signal: signal() }),
    );
    expect(first.code).toBe('upstream_error');
    expect(first.status).toBe(502);
    expect(first.message).toContain('model crashed');

    const vllm = router({
      backends: [
        { backend: fakeBackend('a', () => json({ detail: 'engine dead' }, 502)), models: ['m'] },
      ],
    });
    const second = await rejection(
      vllm.dispatch('chat.completions', chat('m'), { signal: signal() }),
    );
    expect(second.code).toBe('upstream_error');
    expect(second.message).toContain('engine dead');
  });

  it('error: timeouts are 504 upstream_timeout, also when a backend ignores its signal', async () => {
    const honours = fakeBackend(
      'a',
      (_request, options) =>
        new Promise<Response>((_, reject) => {
          options.signal.addEventListener('abort', () => reject(options.signal.reason));
        }),
    );
    const ignores = fakeBackend('b', () => new Promise<Response>(() => {}));
    const r = router({
      backends: [
        { backend: honours, models: ['m'] },
        { backend: ignores, models: ['m'] },
      ],
      firstByteTimeoutMs: 20,
    });
    const error = await rejection(r.dispatch('chat.completions', chat('m'), { signal: signal() }));
    expect(error.code).toBe('upstream_timeout');
    expect(error.status).toBe(504);
    expect(honours.calls[0]!.signal.aborted).toBe(true);
    expect(ignores.calls[0]!.signal.aborted).toBe(true);
    expect(r.status().every((status) => status.inFlight === 0)).toBe(true);
  });

  it('error: an adapter refusing the request itself (a 400 TollgateError) is not failed over', async () => {
    const a = fakeBackend('a', () =>
      Promise.reject(new TollgateError('invalid_request', 'tools are not supported')),
    );
    const b = fakeBackend('b', () => json(completion()));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
    });
    const error = await rejection(r.dispatch('chat.completions', chat('m'), { signal: signal() }));
    expect(error.code).toBe('invalid_request');
    expect(b.calls).toHaveLength(0);
    expect(r.status()[0]!.inFlight).toBe(0);
  });
});

describe('createRouter: health watchdog', () => {
  it('behavior: N failed probes degrade a backend, traffic avoids it, one good probe restores it', async () => {
    const events: RouterEvent[] = [];
    const a = fakeBackend('a', () => json(completion()));
    const b = fakeBackend('b', () => json(completion()));
    const r = router({
      backends: [
        { backend: a, models: ['m'] },
        { backend: b, models: ['m'] },
      ],
      health: { failureThreshold: 3 },
      onEvent: (event) => events.push(event),
    });
    a.healthResult = { ok: false, detail: 'connection refused' };
    await r.refresh();
    await r.refresh();
    expect(r.status()[0]).toMatchObject({ state: 'healthy', consecutiveFailures: 2 });
    await r.refresh();
    expect(r.status()[0]).toMatchObject({ state: 'degraded', consecutiveFailures: 3 });
    expect(r.status()[0]!.lastHealth).toMatchObject({ ok: false, detail: 'connection refused' });
    expect(events).toEqual([
      { type: 'backend_degraded', backend: 'a', detail: 'connection refused' },
    ]);

    for (let index = 0; index < 4; index++) {
      const result = await r.dispatch('chat.completions', chat('m'), { signal: signal() });
      await settle(result);
      expect(result.backend).toBe('b');
    }

    a.healthResult = { ok: true };
    await r.refresh();
    expect(r.status()[0]).toMatchObject({ state: 'healthy', consecutiveFailures: 0 });
    expect(events.at(-1)).toEqual({ type: 'backend_recovered', backend: 'a' });
  });

  it('behavior: failed calls degrade too, and one successful call restores', async () => {
    let failing = true;
    const a = fakeBackend('a', () => (failing ? unreachable()() : json(completion())));
    const r = router({
      backends: [{ backend: a, models: ['m'] }],
      health: { failureThreshold: 2 },
    });
    await rejection(r.dispatch('chat.completions', chat('m'), { signal: signal() }));
    expect(r.status()[0]!.state).toBe('healthy');
    await rejection(r.dispatch('chat.completions', chat('m'), { signal: signal() }));
    expect(r.status()[0]!.state).toBe('degraded');
    // Degraded but the only one serving the model: still tried.
    failing = false;
    const result = await r.dispatch('chat.completions', chat('m'), { signal: signal() });
    await settle(result);
    expect(r.status()[0]).toMatchObject({ state: 'healthy', consecutiveFailures: 0 });
  });

  it('behavior: start() probes and relists on its own timers; close() stops them', async () => {
    const a = fakeBackend('a', () => json({}));
    a.healthResult = { ok: false, detail: 'down' };
    const listed = fakeBackend('listed', () => json({}), ['late-model']);
    const r = router({
      backends: [{ backend: a, models: ['m'] }, { backend: listed }],
      health: { intervalMs: 5, failureThreshold: 2 },
      modelRefreshMs: 5,
    });
    r.start();
    r.start();
    await waitFor(() => listed.listCalls >= 2, 'the model list to be refreshed on its timer');
    expect(r.status()[1]!.models).toEqual(['late-model']);
    await waitFor(() => r.status()[0]!.state === 'degraded', 'the watchdog to degrade the backend');
    a.healthResult = { ok: true };
    await waitFor(() => r.status()[0]!.state === 'healthy', 'the watchdog to restore the backend');
    await r.close();
    const listsAtClose = listed.listCalls;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(listed.listCalls).toBe(listsAtClose);
  });

  it('behavior: a probe that hangs counts as a failure after its timeout', async () => {
    const a = fakeBackend('a', () => json({}));
    a.health = () => new Promise(() => {});
    const r = router({
      backends: [{ backend: a, models: ['m'] }],
      health: { timeoutMs: 10, failureThreshold: 1 },
    });
    await r.refresh();
    expect(r.status()[0]).toMatchObject({ state: 'degraded' });
    expect(r.status()[0]!.lastHealth?.ok).toBe(false);
  });
});

describe('createRouter: concurrency', () => {
  function heldBackend() {
    const bodies: Array<ReturnType<typeof controlledBody>> = [];
    const backend = fakeBackend('a', () => {
      const body = controlledBody();
      bodies.push(body);
      body.push(chunk('x'));
      return sseResponse(body.stream);
    });
    return { backend, bodies };
  }

  it('behavior: 2 run, 1 waits and then runs, the 4th gets 429 with retry-after', async () => {
    const { backend, bodies } = heldBackend();
    const r = router({
      backends: [{ backend, models: ['m'] }],
      aliases: { alias: 'm' },
      concurrency: { m: { maxConcurrent: 2, maxQueue: 1 } },
    });
    const streamed = chat('alias', { stream: true });
    const first = await r.dispatch('chat.completions', streamed, { signal: signal() });
    const second = await r.dispatch('chat.completions', streamed, { signal: signal() });
    let thirdDone = false;
    const third = r.dispatch('chat.completions', streamed, { signal: signal() }).finally(() => {
      thirdDone = true;
    });
    const fourth = await rejection(r.dispatch('chat.completions', streamed, { signal: signal() }));
    expect(fourth.code).toBe('concurrency_limit');
    expect(fourth.status).toBe(429);
    expect(fourth.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(fourth.headers['retry-after-ms']).toMatch(/^\d+$/);
    await tick();
    expect(thirdDone).toBe(false);
    expect(backend.calls).toHaveLength(2);

    const drained = drain(first.response.body);
    bodies[0]!.push(DONE);
    bodies[0]!.close();
    await drained;
    const thirdResult = await third;
    expect(backend.calls).toHaveLength(3);
    for (const body of bodies.slice(1)) {
      body.push(DONE);
      body.close();
    }
    await Promise.all([drain(second.response.body), drain(thirdResult.response.body)]);
  });

  it('behavior: a queued request whose caller aborts leaves the queue with the abort reason', async () => {
    const { backend, bodies } = heldBackend();
    const r = router({
      backends: [{ backend, models: ['m'] }],
      concurrency: { m: { maxConcurrent: 1, maxQueue: 1 } },
    });
    const streamed = chat('m', { stream: true });
    const first = await r.dispatch('chat.completions', streamed, { signal: signal() });
    const controller = new AbortController();
    const queued = r.dispatch('chat.completions', streamed, { signal: controller.signal });
    const reason = new Error('client went away');
    controller.abort(reason);
    await expect(queued).rejects.toBe(reason);
    // The queue has room again: this one waits instead of getting 429...
    const next = r.dispatch('chat.completions', streamed, { signal: signal() });
    // ...and gets the slot once the first is done.
    const drained = drain(first.response.body);
    bodies[0]!.push(DONE);
    bodies[0]!.close();
    await drained;
    const nextResult = await next;
    expect(backend.calls).toHaveLength(2);
    bodies[1]!.push(DONE);
    bodies[1]!.close();
    await drain(nextResult.response.body);
  });

  it('error: a request queued longer than queueTimeoutMs gets 429', async () => {
    const { backend, bodies } = heldBackend();
    const r = router({
      backends: [{ backend, models: ['m'] }],
      concurrency: { m: { maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 10 } },
    });
    const first = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    const error = await rejection(
      r.dispatch('chat.completions', chat('m', { stream: true }), { signal: signal() }),
    );
    expect(error.code).toBe('concurrency_limit');
    expect(error.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    await first.response.body?.cancel();
    await bodies[0]!.cancelled;
  });

  it('behavior: the slot comes back on completion, on upstream failure, on body cancel and on caller abort', async () => {
    let mode: 'ok' | 'fail' | 'hold' = 'ok';
    const held: Array<ReturnType<typeof controlledBody>> = [];
    const a = fakeBackend('a', () => {
      if (mode === 'fail') return unreachable()();
      const body = controlledBody();
      held.push(body);
      body.push(chunk('x'));
      if (mode === 'ok') {
        body.push(DONE);
        body.close();
      }
      return sseResponse(body.stream);
    });
    const r = router({
      backends: [{ backend: a, models: ['m'] }],
      concurrency: { m: { maxConcurrent: 1 } },
    });
    const streamed = chat('m', { stream: true });
    // With one slot and no queue, any leaked slot turns the next dispatch into a 429.
    const probeSlot = async () => {
      mode = 'ok';
      const result = await r.dispatch('chat.completions', streamed, { signal: signal() });
      await drain(result.response.body);
      expect((await result.outcome).status).toBe('completed');
    };

    await probeSlot(); // completion
    await probeSlot();

    mode = 'fail';
    expect(
      (await rejection(r.dispatch('chat.completions', streamed, { signal: signal() }))).code,
    ).toBe('upstream_unreachable');
    await probeSlot();

    mode = 'hold';
    const cancelled = await r.dispatch('chat.completions', streamed, { signal: signal() });
    expect(
      (await rejection(r.dispatch('chat.completions', streamed, { signal: signal() }))).code,
    ).toBe('concurrency_limit');
    await cancelled.response.body!.cancel(new Error('client left'));
    await held.at(-1)!.cancelled;
    expect((await cancelled.outcome).status).toBe('aborted');
    await probeSlot();

    mode = 'hold';
    const controller = new AbortController();
    const aborted = await r.dispatch('chat.completions', streamed, { signal: controller.signal });
    const reading = drain(aborted.response.body);
    controller.abort(new Error('client left'));
    expect(await held.at(-1)!.cancelled).toBeDefined();
    expect((await aborted.outcome).status).toBe('aborted');
    expect((await reading).error).toBeDefined();
    // The caller leaving says nothing about the backend's health.
    expect(r.status()[0]!.consecutiveFailures).toBe(0);
    await probeSlot();

    mode = 'hold';
    const broken = await r.dispatch('chat.completions', streamed, { signal: signal() });
    const brokenReading = drain(broken.response.body);
    held.at(-1)!.error(new TypeError('terminated'));
    expect((await broken.outcome).status).toBe('failed');
    await brokenReading;
    expect(r.status()[0]!.consecutiveFailures).toBe(1);
    await probeSlot();
    expect(r.status()[0]!.inFlight).toBe(0);
  });
});

describe('createRouter: streams, usage and outcome', () => {
  const upstreamText = chunk('Hel') + chunk('lo') + USAGE_CHUNK + DONE;

  it('behavior: the usage-only chunk is removed when the caller did not ask, and usage is still recorded', async () => {
    const a = fakeBackend('a', () => sseOf(upstreamText));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    expect(await result.response.text()).toBe(chunk('Hel') + chunk('lo') + DONE);
    const outcome = await result.outcome;
    expect(outcome).toMatchObject({
      status: 'completed',
      httpStatus: 200,
      streamed: true,
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
    });
    expect(outcome.firstByteMs).toBeTypeOf('number');
    expect(outcome.totalMs).toBeTypeOf('number');
  });

  it('behavior: the usage chunk is kept byte for byte when the caller asked', async () => {
    const a = fakeBackend('a', () => sseOf(upstreamText));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const result = await r.dispatch(
      'chat.completions',
      chat('m', { stream: true, stream_options: { include_usage: true } }),
      { signal: signal() },
    );
    expect(await result.response.text()).toBe(upstreamText);
    expect((await result.outcome).usage).toEqual({
      prompt_tokens: 5,
      completion_tokens: 2,
      total_tokens: 7,
    });
  });

  it('behavior: events split across chunks in odd places still pass through whole', async () => {
    const body = controlledBody();
    const a = fakeBackend('a', () => sseResponse(body.stream));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const all = chunk('a') + USAGE_CHUNK + chunk('b') + DONE;
    const cuts = [3, 40, 41, 150, 151, 152, all.length - 3];
    body.push(all.slice(0, cuts[0]));
    const pending = r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    for (let index = 0; index < cuts.length; index++)
      body.push(all.slice(cuts[index], cuts[index + 1]));
    body.close();
    const result = await pending;
    expect(await result.response.text()).toBe(chunk('a') + chunk('b') + DONE);
    expect((await result.outcome).usage?.total_tokens).toBe(7);
  });

  it('error: a stream that ends without [DONE] gets an error event, then a stream error', async () => {
    const a = fakeBackend('a', () => sseOf(chunk('cut') + 'data: {"partial'));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    const { text, error } = await drain(result.response.body);
    expect(error).toBeDefined();
    expect(text.startsWith(chunk('cut'))).toBe(true);
    // The unfinished event is dropped; the error event starts on a clean boundary.
    const rest = text.slice(chunk('cut').length);
    expect(rest.startsWith('data: {"error":')).toBe(true);
    expect(JSON.parse(rest.slice(6)).error.code).toBe('upstream_stream_error');
    const outcome = await result.outcome;
    expect(outcome.status).toBe('failed');
    expect(isTollgateError(outcome.error) && outcome.error.code).toBe('upstream_stream_error');
  });

  it('behavior: over a real socket, the error event reaches the client before the connection is cut', async () => {
    const a = fakeBackend('a', () => {
      const body = controlledBody();
      body.push(chunk('Hel'));
      setTimeout(() => body.error(new TypeError('terminated')), 10);
      return sseResponse(body.stream);
    });
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    // Writes the body the way Node servers do (@hono/node-server among them): each chunk as it
    // comes, and the socket destroyed the moment the body errors.
    const server = createServer(async (_incoming, outgoing) => {
      const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
        signal: signal(),
      });
      outgoing.writeHead(result.response.status, { 'content-type': 'text/event-stream' });
      const reader = result.response.body!.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          outgoing.write(value);
        }
        outgoing.end();
      } catch (error) {
        outgoing.destroy(error as Error);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const response = await fetch(`http://127.0.0.1:${port}/`);
      const { text, error } = await drain(response.body);
      expect(error).toBeDefined();
      expect(text).toContain(chunk('Hel'));
      expect(text).toContain('"code":"upstream_stream_error"');
    } finally {
      server.close();
    }
  });

  it('behavior: a non-streamed JSON answer records usage and completes', async () => {
    const a = fakeBackend('a', () => json(completion()));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const result = await r.dispatch('chat.completions', chat('m'), { signal: signal() });
    expect(result.response.headers.get('content-type')).toBe('application/json');
    await result.response.arrayBuffer();
    expect(await result.outcome).toMatchObject({
      status: 'completed',
      httpStatus: 200,
      streamed: false,
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    });
  });

  it('behavior: cancelling the body cancels the upstream and the outcome says aborted', async () => {
    const body = controlledBody();
    body.push(chunk('x'));
    const a = fakeBackend('a', () => sseResponse(body.stream));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
    });
    const reader = result.response.body!.getReader();
    await reader.read();
    const reason = new Error('gone');
    await reader.cancel(reason);
    expect(await body.cancelled).toBe(reason);
    const outcome = await result.outcome;
    expect(outcome.status).toBe('aborted');
    expect(outcome.streamed).toBe(true);
  });

  it('behavior: the caller signal aborting mid-stream reaches the adapter and the upstream body', async () => {
    const body = controlledBody();
    body.push(chunk('x'));
    const a = fakeBackend('a', () => sseResponse(body.stream));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const controller = new AbortController();
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: controller.signal,
    });
    const reading = drain(result.response.body);
    controller.abort(new Error('bye'));
    expect(a.calls[0]!.signal.aborted).toBe(true);
    await body.cancelled;
    expect((await result.outcome).status).toBe('aborted');
    expect((await reading).error).toBeDefined();
  });

  it('behavior: cutStreams ends every body being delivered (an error event for SSE), settles each as aborted, frees their slots and skips finished ones', async () => {
    const bodies: Array<ReturnType<typeof controlledBody>> = [];
    const a = fakeBackend('a', (request) => {
      if (!request.stream) return json(completion());
      const body = controlledBody();
      bodies.push(body);
      body.push(chunk('x'));
      return sseResponse(body.stream);
    });
    const r = router({
      backends: [{ backend: a, models: ['m'] }],
      concurrency: { m: { maxConcurrent: 2 } },
    });
    const finished = await r.dispatch('chat.completions', chat('m'), { signal: signal() });
    expect((await settle(finished)).status).toBe('completed');
    const streams = await Promise.all(
      [1, 2].map(() =>
        r.dispatch('chat.completions', chat('m', { stream: true }), { signal: signal() }),
      ),
    );
    const readings = streams.map((result) => drain(result.response.body));
    const reason = new TollgateError('service_unavailable', 'Shutting down.');
    expect(r.cutStreams(reason)).toBe(2);
    for (const [index, result] of streams.entries()) {
      const { text, error } = await readings[index]!;
      expect(text.startsWith(chunk('x'))).toBe(true);
      expect(text).toContain('"code":"service_unavailable"');
      expect(error).toBe(reason);
      expect(await bodies[index]!.cancelled).toBe(reason);
      expect(await result.outcome).toMatchObject({ status: 'aborted', error: reason });
    }
    expect(r.cutStreams(reason)).toBe(0);
    expect(r.queues()).toEqual([{ model: 'm', active: 0, queued: 0 }]);
  });

  it('error: a caller that aborts while the upstream is thinking gets its abort reason, and nothing leaks', async () => {
    const a = fakeBackend('a', () => new Promise<Response>(() => {}));
    const r = router({
      backends: [{ backend: a, models: ['m'] }],
      concurrency: { m: { maxConcurrent: 1 } },
    });
    const controller = new AbortController();
    const pending = r.dispatch('chat.completions', chat('m'), { signal: controller.signal });
    await tick();
    const reason = new Error('bye');
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(r.status()[0]).toMatchObject({ inFlight: 0, consecutiveFailures: 0 });
    a.handler = () => json(completion());
    await settle(await r.dispatch('chat.completions', chat('m'), { signal: signal() }));
  });

  it('behavior: onBodyError gets a mid-stream failure, after the error event, and may take it over', async () => {
    const body = controlledBody();
    body.push(chunk('x'));
    const a = fakeBackend('a', () => sseResponse(body.stream));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    const seen: unknown[] = [];
    const result = await r.dispatch('chat.completions', chat('m', { stream: true }), {
      signal: signal(),
      onBodyError: (error) => {
        seen.push(error);
        return true;
      },
    });
    const reader = result.response.body!.getReader();
    await reader.read();
    body.error(new TypeError('terminated'));
    const event = await reader.read();
    expect(decoder.decode(event.value)).toContain('upstream_stream_error');
    const pending = reader.read();
    await waitFor(() => seen.length === 1, 'onBodyError');
    expect(isTollgateError(seen[0]) && seen[0].code).toBe('upstream_stream_error');
    expect((await result.outcome).status).toBe('failed');
    // Taken over: the body neither errors nor ends until the server cancels it.
    await reader.cancel(new Error('connection cut'));
    expect((await pending).done).toBe(true);
  });

  it('behavior: completions and embeddings reach the matching handler', async () => {
    const a = fakeBackend('a', (_request, _options, operation) => json({ operation }));
    const r = router({ backends: [{ backend: a, models: ['m'] }] });
    for (const operation of ['completions', 'embeddings'] as const) {
      const request =
        operation === 'completions' ? { model: 'm', prompt: 'x' } : { model: 'm', input: 'x' };
      const result = await r.dispatch(operation, request, { signal: signal() });
      expect(await result.response.json()).toEqual({ operation });
    }
  });
});

describe('createRouter: property', () => {
  type Fate = 'finish' | 'break' | 'cancel' | 'abort';
  type Kind = 'stream' | 'json' | 'unreachable' | '5xx';

  it('behavior: any interleaving of completions, failures and aborts leaves no slot or in-flight count behind', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom<Kind>('stream', 'stream', 'json', 'unreachable', '5xx'), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.array(
          fc.record({
            pick: fc.nat(),
            fate: fc.constantFrom<Fate | 'abortQueued'>(
              'finish',
              'break',
              'cancel',
              'abort',
              'abortQueued',
            ),
          }),
          { maxLength: 12 },
        ),
        async (kinds, steps) => {
          const bodies = new Map<number, ReturnType<typeof controlledBody>>();
          const handler: Handler = (request) => {
            const index = (request as unknown as { index: number }).index;
            const kind = kinds[index]!;
            if (kind === 'unreachable') return unreachable()();
            if (kind === '5xx') return json({ error: 'boom' }, 500);
            const body = controlledBody();
            bodies.set(index, body);
            if (kind === 'stream') {
              body.push(chunk('x'));
              return sseResponse(body.stream);
            }
            body.push('{"usage":');
            return new Response(body.stream, { headers: { 'content-type': 'application/json' } });
          };
          const a = fakeBackend('a', handler);
          const b = fakeBackend('b', handler);
          const r = router({
            backends: [
              { backend: a, models: ['m'] },
              { backend: b, models: ['m'] },
            ],
            concurrency: { m: { maxConcurrent: 2, maxQueue: 2 } },
          });

          interface Live {
            index: number;
            controller: AbortController;
            result?: DispatchResult;
            reader?: ReadableStreamDefaultReader<Uint8Array>;
            settled: boolean;
          }
          const all: Live[] = [];
          const settledPromises: Promise<unknown>[] = [];
          for (let index = 0; index < kinds.length; index++) {
            const live: Live = { index, controller: new AbortController(), settled: false };
            all.push(live);
            const request = { ...chat('m', { stream: kinds[index] === 'stream' }), index };
            settledPromises.push(
              r.dispatch('chat.completions', request, { signal: live.controller.signal }).then(
                (result) => {
                  live.result = result;
                  live.reader = result.response.body!.getReader();
                  // A consumer that reads until the end or an error.
                  const reader = live.reader;
                  void (async () => {
                    try {
                      for (;;) if ((await reader.read()).done) break;
                    } catch {}
                  })();
                  return result.outcome.then(() => {
                    live.settled = true;
                  });
                },
                () => {
                  live.settled = true;
                },
              ),
            );
          }

          const apply = (live: Live, fate: Fate) => {
            const body = bodies.get(live.index);
            if (fate === 'finish') {
              try {
                body?.push(kinds[live.index] === 'stream' ? DONE : '{"prompt_tokens":1}}');
                body?.close();
              } catch {}
            } else if (fate === 'break') {
              try {
                body?.error(new TypeError('terminated'));
              } catch {}
            } else if (fate === 'cancel') {
              live.reader?.cancel(new Error('client left')).catch(() => {});
            } else {
              live.controller.abort(new Error('client left'));
            }
          };

          for (const step of steps) {
            await tick();
            if (step.fate === 'abortQueued') {
              const queued = all.filter((live) => !live.settled && !live.result);
              if (queued.length > 0)
                queued[step.pick % queued.length]!.controller.abort(new Error('left queue'));
              continue;
            }
            const running = all.filter((live) => !live.settled && live.result);
            if (running.length > 0) apply(running[step.pick % running.length]!, step.fate);
          }
          // Wind down: finish whatever runs, and let the queue drain into the freed slots.
          for (let round = 0; round < 50 && all.some((live) => !live.settled); round++) {
            await tick();
            for (const live of all) if (!live.settled && live.result) apply(live, 'finish');
          }
          await Promise.all(settledPromises);

          expect(r.status().map((status) => status.inFlight)).toEqual([0, 0]);
          // Exactly 2 slots and 2 queue places are free again: the 5th concurrent request,
          // and not an earlier one, is refused.
          const holders: AbortController[] = [];
          const fresh: Array<Promise<unknown>> = [];
          a.handler = b.handler = () => sseResponse(controlledBody().stream);
          for (let index = 0; index < 4; index++) {
            const controller = new AbortController();
            holders.push(controller);
            fresh.push(
              r
                .dispatch('chat.completions', chat('m'), { signal: controller.signal })
                .catch((error) => error),
            );
          }
          // A 429 comes at once; a fifth that got queued instead (an over-released slot) is
          // aborted so the run fails rather than hangs.
          const fifthController = new AbortController();
          const fifth = r
            .dispatch('chat.completions', chat('m'), { signal: fifthController.signal })
            .catch((error) => error);
          await tick();
          fifthController.abort(new Error('queued, not refused'));
          const fifthResult = await fifth;
          expect(isTollgateError(fifthResult) && fifthResult.code).toBe('concurrency_limit');
          await tick();
          for (const controller of holders) controller.abort(new Error('done'));
          const results = await Promise.all(fresh);
          expect(
            results.map((result) =>
              isTollgateError(result)
                ? result.code
                : 'response' in (result as object)
                  ? 'ran'
                  : 'queued',
            ),
          ).toEqual(['ran', 'ran', 'queued', 'queued']);
          for (const result of results.slice(0, 2))
            await (result as DispatchResult).response.body?.cancel();
        },
      ),
      { numRuns: 60 },
    );
  });
});
