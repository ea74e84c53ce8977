import type {
  DispatchOptions,
  DispatchOutcome,
  DispatchResult,
  Router,
  RouterBackendStatus,
  RouterModel,
} from '@tollgate/backends';
import { type Operation, type OperationRequest, TollgateError } from '@tollgate/protocol';
import { describe, expect, it } from 'vitest';
import { type AccessControl, createStaticKeyAccess, type SettleOutcome } from './access.js';
import { createApp } from './app.js';
import { captureLogger, deferred } from './test-helpers.js';

const KEY = 'sk-test-0123456789';

interface DispatchCall {
  operation: Operation;
  request: OperationRequest[Operation];
  options: DispatchOptions;
}

type Dispatch = (call: DispatchCall) => Promise<DispatchResult>;

function completed(response: Response, extra: Partial<DispatchOutcome> = {}): DispatchResult {
  return {
    response,
    backend: 'stub',
    model: 'stub-model',
    outcome: Promise.resolve({
      status: 'completed',
      httpStatus: response.status,
      streamed: false,
      totalMs: 1,
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
      ...extra,
    }),
  };
}

const okDispatch: Dispatch = async () =>
  completed(
    Response.json(
      { id: 'x', object: 'chat.completion', choices: [] },
      { headers: { 'x-upstream': 'kept', connection: 'keep-alive' } },
    ),
  );

function stubRouter(
  options: { dispatch?: Dispatch; models?: RouterModel[]; status?: RouterBackendStatus[] } = {},
) {
  const calls: DispatchCall[] = [];
  const router: Router = {
    async dispatch(operation, request, dispatchOptions) {
      const call = { operation, request, options: dispatchOptions } as DispatchCall;
      calls.push(call);
      return (options.dispatch ?? okDispatch)(call);
    },
    async ensureModel(model) {
      return { model };
    },
    async listModels() {
      return options.models ?? [{ id: 'stub-model', backends: ['stub'], ownedBy: 'stub-owner' }];
    },
    queues() {
      return [];
    },
    cutStreams() {
      return 0;
    },
    status() {
      return options.status ?? [];
    },
    async refresh() {},
    start() {},
    async close() {},
  };
  return { router, calls };
}

/** Static-key access whose admissions add a header and record their settlement. */
function recordingAccess() {
  const inner = createStaticKeyAccess([KEY]);
  const settles: SettleOutcome[] = [];
  const waiters: Array<(outcome: SettleOutcome) => void> = [];
  const access: AccessControl = {
    authenticate: (request) => inner.authenticate(request),
    async admit() {
      return {
        headers: { 'x-ratelimit-remaining-requests': '99' },
        async settle(outcome) {
          settles.push(outcome);
          for (const waiter of waiters.splice(0)) waiter(outcome);
        },
      };
    },
  };
  const nextSettle = () =>
    settles.length > 0
      ? Promise.resolve(settles[0]!)
      : new Promise<SettleOutcome>((resolve) => waiters.push(resolve));
  return { access, settles, nextSettle };
}

function setup(
  options: Parameters<typeof stubRouter>[0] & { maxBodyBytes?: number; origins?: string[] } = {},
) {
  const { router, calls } = stubRouter(options);
  const { access, settles, nextSettle } = recordingAccess();
  const log = captureLogger();
  const app = createApp({
    config: {
      limits: { maxBodyBytes: options.maxBodyBytes ?? 1024 },
      cors: { origins: options.origins ?? [] },
    },
    router,
    access,
    logger: log.logger,
  });
  return { app, calls, settles, nextSettle, log };
}

const chatBody = { model: 'stub-model', messages: [{ role: 'user', content: 'hello there' }] };

function post(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
  init: RequestInit = {},
): Request {
  return new Request(`http://gateway.test${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
}

async function errorOf(response: Response) {
  const body = (await response.json()) as {
    error: { message: string; type: string; param: string | null; code: string };
  };
  return body.error;
}

describe('authentication', () => {
  it('error: a request without a key is refused with 401 missing_api_key and a hint', async () => {
    const { app, calls } = setup();
    const response = await app.request(
      post('/v1/chat/completions', chatBody, { authorization: '' }),
    );
    expect(response.status).toBe(401);
    const error = await errorOf(response);
    expect(error.code).toBe('missing_api_key');
    expect(error.type).toBe('authentication_error');
    expect(error.message).toContain('Authorization: Bearer');
    expect(calls).toHaveLength(0);
  });

  it('error: a wrong key is refused with 401 invalid_api_key and is not echoed', async () => {
    const { app, calls } = setup();
    const response = await app.request(
      post('/v1/chat/completions', chatBody, { authorization: 'Bearer sk-wrong-secret' }),
    );
    expect(response.status).toBe(401);
    const error = await errorOf(response);
    expect(error.code).toBe('invalid_api_key');
    expect(error.message).not.toContain('sk-wrong-secret');
    expect(calls).toHaveLength(0);
  });

  it('error: a non-Bearer Authorization scheme is refused', async () => {
    const { app } = setup();
    const response = await app.request(
      post('/v1/chat/completions', chatBody, { authorization: `Basic ${KEY}` }),
    );
    expect(response.status).toBe(401);
    expect((await errorOf(response)).code).toBe('invalid_api_key');
  });

  it('behavior: the right key in Authorization is let through to the router', async () => {
    const { app, calls } = setup();
    const response = await app.request(post('/v1/chat/completions', chatBody));
    expect(response.status).toBe(200);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.operation).toBe('chat.completions');
  });

  it('behavior: the key is also accepted in x-api-key', async () => {
    const { app, calls } = setup();
    const response = await app.request(
      post('/v1/chat/completions', chatBody, { authorization: '', 'x-api-key': KEY }),
    );
    expect(response.status).toBe(200);
    expect(calls).toHaveLength(1);
  });

  it('error: GET /v1/models needs a key too', async () => {
    const { app } = setup();
    const response = await app.request('/v1/models');
    expect(response.status).toBe(401);
  });
});

describe('routes and envelopes', () => {
  it('error: an unknown route is a 404 route_not_found envelope', async () => {
    const { app } = setup();
    const response = await app.request('/v2/whatever');
    expect(response.status).toBe(404);
    const error = await errorOf(response);
    expect(error.code).toBe('route_not_found');
    expect(error.message).toContain('/v1/chat/completions');
  });

  it('error: a wrong method on a known route is a 405 with an allow header', async () => {
    const { app } = setup();
    const response = await app.request('/v1/chat/completions', {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST');
    expect((await errorOf(response)).code).toBe('method_not_allowed');
    const onModels = await app.request('/v1/models', { method: 'POST' });
    expect(onModels.status).toBe(405);
  });

  it('error: malformed JSON is a 400 invalid_json', async () => {
    const { app, calls } = setup();
    const response = await app.request(post('/v1/chat/completions', '{"model": "x", '));
    expect(response.status).toBe(400);
    expect((await errorOf(response)).code).toBe('invalid_json');
    expect(calls).toHaveLength(0);
  });

  it('error: an empty body is a 400 invalid_json', async () => {
    const { app } = setup();
    const response = await app.request(post('/v1/embeddings', ''));
    expect(response.status).toBe(400);
    expect((await errorOf(response)).code).toBe('invalid_json');
  });

  it('error: a missing model is a 400 with param "model"', async () => {
    const { app } = setup();
    const response = await app.request(
      post('/v1/chat/completions', { messages: chatBody.messages }),
    );
    expect(response.status).toBe(400);
    const error = await errorOf(response);
    expect(error.code).toBe('invalid_request');
    expect(error.param).toBe('model');
  });

  it('error: a body that is not an object is a 400', async () => {
    const { app } = setup();
    for (const body of ['[1, 2]', '"text"', '42', 'null']) {
      const response = await app.request(post('/v1/completions', body));
      expect(response.status, body).toBe(400);
      expect((await errorOf(response)).type).toBe('invalid_request_error');
    }
  });

  it('error: a body over the limit is a 413 body_too_large, with a content-length', async () => {
    const { app, calls } = setup({ maxBodyBytes: 100 });
    const body = JSON.stringify({ ...chatBody, padding: 'x'.repeat(500) });
    const response = await app.request(
      post('/v1/chat/completions', body, { 'content-length': String(body.length) }),
    );
    expect(response.status).toBe(413);
    expect((await errorOf(response)).code).toBe('body_too_large');
    expect(calls).toHaveLength(0);
  });

  it('error: a body over the limit is a 413 body_too_large, streamed without a content-length', async () => {
    const { app, calls } = setup({ maxBodyBytes: 100 });
    const bytes = new TextEncoder().encode(
      JSON.stringify({ ...chatBody, padding: 'x'.repeat(500) }),
    );
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let offset = 0; offset < bytes.length; offset += 64)
          controller.enqueue(bytes.slice(offset, offset + 64));
        controller.close();
      },
    });
    const request = new Request('http://gateway.test/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'transfer-encoding': 'chunked' },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect(request.headers.has('content-length')).toBe(false);
    const response = await app.request(request);
    expect(response.status).toBe(413);
    expect((await errorOf(response)).code).toBe('body_too_large');
    expect(calls).toHaveLength(0);
  });

  it('behavior: a body under the limit without a content-length is accepted', async () => {
    const { app, calls } = setup({ maxBodyBytes: 1000 });
    const bytes = new TextEncoder().encode(JSON.stringify(chatBody));
    const request = new Request('http://gateway.test/v1/chat/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: new ReadableStream({
        start(controller) {
          controller.enqueue(bytes);
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    const response = await app.request(request);
    expect(response.status).toBe(200);
    expect(calls[0]!.request.model).toBe('stub-model');
  });
});

describe('request ids', () => {
  it('behavior: a sane incoming x-request-id is echoed and forwarded to the router', async () => {
    const { app, calls } = setup();
    const response = await app.request(
      post('/v1/chat/completions', chatBody, { 'x-request-id': 'abc-123.def' }),
    );
    expect(response.headers.get('x-request-id')).toBe('abc-123.def');
    expect(calls[0]!.options.requestId).toBe('abc-123.def');
  });

  it('behavior: without one (or with an unusable one) an id is generated, also on errors', async () => {
    const { app } = setup();
    const generated = await app.request('/nowhere');
    expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const replaced = await app.request('/health', {
      headers: { 'x-request-id': 'bad id with spaces <script>' },
    });
    expect(replaced.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const unauthorized = await app.request(post('/v1/embeddings', {}, { authorization: '' }));
    expect(unauthorized.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('health', () => {
  const healthy: RouterBackendStatus = {
    name: 'local',
    kind: 'ollama',
    state: 'healthy',
    inFlight: 0,
    consecutiveFailures: 0,
    models: ['llama3'],
  };

  it('behavior: GET /health is 200 without a key', async () => {
    const { app } = setup();
    const response = await app.request('/health');
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('behavior: /health/ready is 200 when a healthy backend serves a model', async () => {
    const { app } = setup({ status: [healthy] });
    const response = await app.request('/health/ready');
    expect(response.status).toBe(200);
    const body = (await response.json()) as { status: string; backends: Array<{ name: string }> };
    expect(body.status).toBe('ready');
    expect(body.backends[0]!.name).toBe('local');
  });

  it('error: /health/ready is 503 with advice when no backend is configured', async () => {
    const { app } = setup({ status: [] });
    const response = await app.request('/health/ready');
    expect(response.status).toBe(503);
    const body = (await response.json()) as { status: string; reason: string };
    expect(body.status).toBe('not_ready');
    expect(body.reason).toContain('no backend configured');
    expect(body.reason).toContain('TOLLGATE_BACKEND_URL');
  });

  it('error: /health/ready is 503 naming the degraded backends and why', async () => {
    const degraded: RouterBackendStatus = {
      ...healthy,
      state: 'degraded',
      consecutiveFailures: 3,
      lastHealth: { ok: false, detail: 'connection refused', at: 0 },
    };
    const { app } = setup({ status: [degraded, { ...healthy, name: 'empty', models: [] }] });
    const response = await app.request('/health/ready');
    expect(response.status).toBe(503);
    const body = (await response.json()) as { reason: string };
    expect(body.reason).toContain('no healthy backend');
    expect(body.reason).toContain('local (connection refused)');
    expect(body.reason).toContain('empty (serves no models)');
  });
});

describe('models', () => {
  it('behavior: /v1/models lists models and aliases in the OpenAI shape', async () => {
    const { app } = setup({
      models: [
        { id: 'fast', backends: ['a'], aliasOf: 'llama3' },
        { id: 'llama3', backends: ['a'], ownedBy: 'library' },
      ],
    });
    const response = await app.request('/v1/models', {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      object: string;
      data: Array<Record<string, unknown>>;
    };
    expect(body.object).toBe('list');
    expect(body.data.map((model) => model.id)).toEqual(['fast', 'llama3']);
    expect(body.data[1]).toMatchObject({ object: 'model', owned_by: 'library' });
    expect(typeof body.data[0]!.created).toBe('number');
  });

  it('error: /v1/models/:id of an unknown model is a 404 listing the known ones', async () => {
    const { app } = setup();
    const response = await app.request('/v1/models/nope', {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(response.status).toBe(404);
    expect((await errorOf(response)).message).toContain('stub-model');
    const found = await app.request('/v1/models/stub-model', {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(((await found.json()) as { id: string }).id).toBe('stub-model');
  });
});

describe('dispatch', () => {
  it('behavior: the response passes through with admission headers, minus hop-by-hop headers', async () => {
    const { app } = setup();
    const response = await app.request(post('/v1/chat/completions', chatBody));
    expect(response.headers.get('x-upstream')).toBe('kept');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('99');
    expect(response.headers.get('connection')).toBeNull();
    expect(((await response.json()) as { id: string }).id).toBe('x');
  });

  it('behavior: unknown request fields reach the router', async () => {
    const { app, calls } = setup();
    await app.request(
      post('/v1/chat/completions', { ...chatBody, top_k: 5, chat_template_kwargs: { a: 1 } }),
    );
    expect(calls[0]!.request).toMatchObject({ top_k: 5, chat_template_kwargs: { a: 1 } });
  });

  it('error: model_not_found from the router passes through with its status and message', async () => {
    const { app, settles } = setup({
      dispatch: async () => {
        throw new TollgateError(
          'model_not_found',
          'The model "zzz" does not exist. Known models: a, b.',
          { param: 'model' },
        );
      },
    });
    const response = await app.request(post('/v1/chat/completions', { ...chatBody, model: 'zzz' }));
    expect(response.status).toBe(404);
    const error = await errorOf(response);
    expect(error).toMatchObject({
      code: 'model_not_found',
      param: 'model',
      message: 'The model "zzz" does not exist. Known models: a, b.',
    });
    expect(settles).toEqual([expect.objectContaining({ status: 'failed', httpStatus: 404 })]);
  });

  it('error: a 429 from the router keeps its retry-after header', async () => {
    const { app } = setup({
      dispatch: async () => {
        throw new TollgateError(
          'concurrency_limit',
          'Too many requests for this model; retry shortly.',
          {
            headers: { 'retry-after': '2' },
          },
        );
      },
    });
    const response = await app.request(post('/v1/chat/completions', chatBody));
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('2');
    expect(response.headers.get('x-request-id')).toBeTruthy();
    expect((await errorOf(response)).code).toBe('concurrency_limit');
  });

  it('error: an unexpected error is a 500 that reveals nothing and is logged with the request id', async () => {
    const { app, log } = setup({
      dispatch: async () => {
        throw new Error('secret internal detail');
      },
    });
    const response = await app.request(
      post('/v1/chat/completions', chatBody, { 'x-request-id': 'req-500' }),
    );
    expect(response.status).toBe(500);
    const error = await errorOf(response);
    expect(error.code).toBe('internal_error');
    expect(error.message).not.toContain('secret internal detail');
    const line = await log.waitFor((entry) => entry.msg === 'unhandled error');
    expect(line.requestId).toBe('req-500');
    expect(JSON.stringify(line)).not.toContain('    at ');
  });

  it('behavior: settle gets the outcome of a completed request', async () => {
    const { app, nextSettle } = setup();
    const response = await app.request(post('/v1/chat/completions', chatBody));
    await response.arrayBuffer();
    const outcome = await nextSettle();
    expect(outcome).toMatchObject({
      status: 'completed',
      httpStatus: 200,
      usage: { total_tokens: 5 },
    });
  });

  it('behavior: settle gets a failure when dispatch throws', async () => {
    const { app, nextSettle } = setup({
      dispatch: async () => {
        throw new TollgateError('upstream_unreachable', 'Could not connect to backend "x".');
      },
    });
    const response = await app.request(post('/v1/embeddings', { model: 'm', input: 'hi' }));
    expect(response.status).toBe(502);
    expect(await nextSettle()).toMatchObject({ status: 'failed', httpStatus: 502 });
  });

  it('behavior: a caller leaving while the dispatch waits aborts the router call and settles as aborted', async () => {
    const entered = deferred<AbortSignal>();
    const { app, nextSettle } = setup({
      dispatch: ({ options }) =>
        new Promise((_resolve, reject) => {
          entered.resolve(options.signal);
          options.signal.addEventListener('abort', () => reject(options.signal.reason), {
            once: true,
          });
        }),
    });
    const controller = new AbortController();
    const pending = app.request(
      post('/v1/chat/completions', chatBody, {}, { signal: controller.signal }),
    );
    const signal = await entered.promise;
    controller.abort();
    expect(signal.aborted).toBe(true);
    const response = await pending;
    expect(response.status).toBe(499);
    expect(await nextSettle()).toMatchObject({ status: 'aborted' });
  });

  it('behavior: a caller leaving mid-stream cancels the body and settles as aborted', async () => {
    const encoder = new TextEncoder();
    const { app, nextSettle } = setup({
      dispatch: async ({ options }) => {
        const outcome = deferred<DispatchOutcome>();
        const finish = () =>
          outcome.resolve({ status: 'aborted', httpStatus: 200, streamed: true, totalMs: 1 });
        options.signal.addEventListener('abort', finish, { once: true });
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(encoder.encode('data: {"choices":[]}\n\n'));
          },
          cancel: finish,
        });
        return {
          response: new Response(body, { headers: { 'content-type': 'text/event-stream' } }),
          backend: 'stub',
          model: 'stub-model',
          outcome: outcome.promise,
        };
      },
    });
    const controller = new AbortController();
    const response = await app.request(
      post(
        '/v1/chat/completions',
        { ...chatBody, stream: true },
        {},
        { signal: controller.signal },
      ),
    );
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('data:');
    await reader.cancel();
    controller.abort();
    expect(await nextSettle()).toMatchObject({ status: 'aborted', streamed: true });
  });
});

describe('answer bodies', () => {
  const encoder = new TextEncoder();

  function streamed(parts: Array<string | Error>, contentType = 'application/json'): Dispatch {
    return async () => {
      let index = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          const part = parts[index++];
          if (part === undefined) controller.close();
          else if (part instanceof Error) controller.error(part);
          else controller.enqueue(encoder.encode(part));
        },
      });
      return completed(new Response(body, { headers: { 'content-type': contentType } }));
    };
  }

  it('behavior: a non-streamed answer in several chunks arrives whole and unchanged', async () => {
    const { app } = setup({ dispatch: streamed(['{"id":', '"x","choices"', ':[]}']) });
    const response = await app.request(post('/v1/chat/completions', chatBody));
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"id":"x","choices":[]}');
  });

  it('error: a non-streamed answer that breaks mid-way fails the response, it does not end short', async () => {
    const { app } = setup({ dispatch: streamed(['{"id":"x",', new Error('upstream died')]) });
    const response = await app.request(post('/v1/chat/completions', chatBody));
    await expect(response.text()).rejects.toThrow();
  });

  it('behavior: an answer larger than the read-whole bound is streamed on, byte for byte', async () => {
    const piece = 'x'.repeat(1024 * 1024);
    const parts = ['[', ...Array.from({ length: 9 }, () => `"${piece}",`), '""]'];
    const { app } = setup({ dispatch: streamed(parts) });
    const response = await app.request(post('/v1/chat/completions', chatBody));
    const text = await response.text();
    expect(text).toBe(parts.join(''));
  });

  it('behavior: an event stream is handed on chunk by chunk, before it has ended', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { app } = setup({
      dispatch: async () => {
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (sent++ === 0) return controller.enqueue(encoder.encode('data: one\n\n'));
            await gate;
            controller.enqueue(encoder.encode('data: [DONE]\n\n'));
            controller.close();
          },
        });
        return completed(new Response(body, { headers: { 'content-type': 'text/event-stream' } }), {
          streamed: true,
        });
      },
    });
    const response = await app.request(post('/v1/chat/completions', { ...chatBody, stream: true }));
    const reader = response.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: one\n\n');
    release();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: [DONE]\n\n');
  });
});

describe('access log', () => {
  it('behavior: one line per request with the request id, status and usage, never the key', async () => {
    const { app, log } = setup();
    const response = await app.request(
      post('/v1/chat/completions', chatBody, { 'x-request-id': 'req-log-1' }),
    );
    await response.arrayBuffer();
    const line = await log.waitFor(
      (entry) => entry.msg === 'request' && entry.requestId === 'req-log-1',
    );
    expect(line).toMatchObject({
      method: 'POST',
      path: '/v1/chat/completions',
      status: 200,
      model: 'stub-model',
      backend: 'stub',
      promptTokens: 3,
      completionTokens: 2,
      outcome: 'completed',
    });
    expect(typeof line.durationMs).toBe('number');
    expect(line.principal).toMatch(/^static:[0-9a-f]{8}$/);
    expect(log.raw()).not.toContain(KEY);
    expect(log.raw()).not.toContain('hello there');
  });

  it('behavior: refused requests are logged too, without the presented key', async () => {
    const { app, log } = setup();
    await app.request(
      post('/v1/chat/completions', chatBody, {
        authorization: 'Bearer sk-leaked-maybe',
        'x-request-id': 'req-log-2',
      }),
    );
    const line = await log.waitFor((entry) => entry.requestId === 'req-log-2');
    expect(line.status).toBe(401);
    expect(log.raw()).not.toContain('sk-leaked-maybe');
  });
});

describe('cors', () => {
  it('behavior: off by default (no CORS headers)', async () => {
    const { app } = setup();
    const response = await app.request('/health', { headers: { origin: 'https://app.example' } });
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('behavior: listed origins get CORS headers exposing x-request-id, on errors too', async () => {
    const { app } = setup({ origins: ['https://app.example'] });
    const preflight = await app.request('/v1/chat/completions', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    const refused = await app.request(
      post('/v1/chat/completions', chatBody, { authorization: '', origin: 'https://app.example' }),
    );
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(refused.headers.get('access-control-expose-headers')).toContain('x-request-id');
    const other = await app.request('/health', { headers: { origin: 'https://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});
