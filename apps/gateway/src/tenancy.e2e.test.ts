/**
 * Tenancy through a real gateway socket with the official `openai` SDK: issued keys, limits
 * and their headers, 429s the SDK retries by, usage records, and the open mode that ends with
 * the first tenant.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FakeUpstream, StartFakeUpstreamOptions } from '@tollgate/backends/testing';
import { createPgliteStore, type Tenancy, type TenancyStore } from '@tollgate/tenancy';
import OpenAI from 'openai';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Gateway } from './server.js';
import { apiError, startTestGateway } from './test-helpers.js';

vi.setConfig({ testTimeout: 30_000, hookTimeout: 30_000 });

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MODEL = 'fake-model';
const PROMPT = [{ role: 'user' as const, content: 'Say hello please' }];
const cli = { actor: 'cli' };
let counter = 0;

async function start(
  options: {
    values?: Record<string, unknown>;
    upstream?: Partial<StartFakeUpstreamOptions>;
    store?: TenancyStore;
  } = {},
): Promise<{ gateway: Gateway; tenancy: Tenancy; upstream: FakeUpstream }> {
  const { gateway, upstream } = await startTestGateway(
    { ...options, upstream: { models: [MODEL], ...options.upstream } },
    (cleanup) => cleanups.push(cleanup),
  );
  return { gateway, tenancy: gateway.tenancy, upstream };
}

async function issue(tenancy: Tenancy, limits: Record<string, unknown> = {}) {
  const tenant = await tenancy.createTenant(
    { name: `e2e-${++counter}-${Date.now()}`, limits },
    cli,
  );
  const { key } = await tenancy.issueKey(tenant.id, {}, cli);
  return { tenant, key };
}

/** A fetch that records every status, to see the SDK's retries. */
function recording(): { fetch: typeof fetch; statuses: number[] } {
  const statuses: number[] = [];
  return {
    statuses,
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      statuses.push(response.status);
      return response;
    },
  };
}

describe('tenancy through the gateway', () => {
  it('behavior: the SDK gets a 429 with retry-after when over the concurrency limit, and retries by it', async () => {
    const { gateway, tenancy } = await start({
      upstream: { chunkDelayMs: 60, reply: 'one two three four five six seven eight' },
    });
    const { key } = await issue(tenancy, { max_concurrent: 1, requests_per_minute: 1000 });
    const slow = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
    const stream = await slow.chat.completions.create({
      model: MODEL,
      messages: PROMPT,
      stream: true,
    });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();

    const impatient = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
    const refused = await apiError(
      impatient.chat.completions.create({ model: MODEL, messages: PROMPT }),
    );
    expect(refused.status).toBe(429);
    expect(refused.code).toBe('concurrency_limit');
    expect(refused.headers?.get('retry-after')).toBe('1');
    expect(refused.headers?.get('retry-after-ms')).toBe('1000');
    expect(refused.headers?.get('x-ratelimit-limit-requests')).toBe('1000');

    const seen = recording();
    const patient = new OpenAI({
      baseURL: `${gateway.url}/v1`,
      apiKey: key,
      maxRetries: 3,
      fetch: seen.fetch,
    });
    const retried = patient.chat.completions.create({ model: MODEL, messages: PROMPT });
    // The first stream finishes meanwhile, freeing the slot for the retry.
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {}
    const completion = await retried;
    expect(completion.choices[0]!.message.content).toBe('one two three four five six seven eight');
    expect(seen.statuses[0]).toBe(429);
    expect(seen.statuses.at(-1)).toBe(200);
  });

  it('behavior: a streamed answer carries the rate-limit headers, and its usage is recorded', async () => {
    const { gateway, tenancy } = await start();
    const { tenant, key } = await issue(tenancy, {
      requests_per_minute: 10,
      tokens_per_minute: 50_000,
    });
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'x-request-id': 'req-stream-1',
      },
      body: JSON.stringify({ model: MODEL, messages: PROMPT, stream: true, max_tokens: 100 }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('10');
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('9');
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('50000');
    expect(response.headers.get('x-ratelimit-reset-tokens')).toMatch(/^\d+(ms|s)$|^\d+m\d+s$/);
    const text = await response.text();
    // The client did not ask for usage: the gateway asked for it and removed the extra chunk.
    expect(text).not.toContain('"usage"');
    await tenancy.flush();
    const [row] = await tenancy.usage({ tenantId: tenant.id });
    // The fake counts words: 3 in the prompt, 5 in its reply.
    expect(row).toMatchObject({
      requests: 1,
      promptTokens: 3,
      completionTokens: 5,
      estimatedRequests: 0,
    });
  });

  it('behavior: an upstream that reports no usage is recorded at an estimate, marked as such', async () => {
    const { gateway, tenancy } = await start({ upstream: { reportUsage: false } });
    const { tenant, key } = await issue(tenancy);
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
    await client.chat.completions.create({ model: MODEL, messages: PROMPT, max_tokens: 20 });
    await tenancy.flush();
    const [row] = await tenancy.usage({ tenantId: tenant.id });
    expect(row).toMatchObject({ requests: 1, estimatedRequests: 1, completionTokens: 20 });
    expect(row!.promptTokens).toBeGreaterThan(0);
  });

  it('error: a model outside the allow list is a 403 for the SDK, before the upstream is called', async () => {
    const { gateway, tenancy, upstream } = await start();
    const { key } = await issue(tenancy, { models: ['llama3*'] });
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
    const error = await apiError(
      client.chat.completions.create({ model: MODEL, messages: PROMPT }),
    );
    expect(error.status).toBe(403);
    expect(error.code).toBe('model_not_allowed');
    expect(
      upstream.requests.filter((request) => request.path.endsWith('/chat/completions')),
    ).toHaveLength(0);
  });

  it('error: an unknown model is a 404 that neither counts against the limits nor is recorded', async () => {
    const { gateway, tenancy } = await start();
    const { tenant, key } = await issue(tenancy, { requests_per_minute: 1 });
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
    const error = await apiError(
      client.chat.completions.create({ model: 'no-such-model', messages: PROMPT }),
    );
    expect(error.status).toBe(404);
    expect(error.code).toBe('model_not_found');
    // The one request of the minute is still there.
    await client.chat.completions.create({ model: MODEL, messages: PROMPT });
    await tenancy.flush();
    expect((await tenancy.usage({ tenantId: tenant.id }))[0]?.requests).toBe(1);
  });

  it('error: a tokens-per-minute refusal says when to retry, and the SDK sees the headers', async () => {
    const { gateway, tenancy } = await start();
    const { key } = await issue(tenancy, { tokens_per_minute: 100 });
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
    const error = await apiError(
      client.chat.completions.create({ model: MODEL, messages: PROMPT, max_tokens: 500 }),
    );
    expect(error.status).toBe(429);
    expect(error.code).toBe('rate_limit_exceeded');
    expect(Number(error.headers?.get('retry-after-ms'))).toBeGreaterThan(0);
    expect(error.headers?.get('x-ratelimit-limit-tokens')).toBe('100');
    expect(error.message).toContain('lower max_tokens');
  });

  it('behavior: open on loopback until the first tenant exists, then keys are required', async () => {
    // A store of its own: the shared one holds other tests' tenants.
    const store = await createPgliteStore({});
    cleanups.push(() => store.close());
    const { gateway, tenancy } = await start({ values: { admin_key: 'admin-secret' }, store });
    expect(gateway.openAccess).toBe(true);
    const anonymous = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: PROMPT }),
    });
    expect(anonymous.status).toBe(200);
    const created = await fetch(`${gateway.url}/admin/tenants`, {
      method: 'POST',
      headers: { authorization: 'Bearer admin-secret', 'content-type': 'application/json' },
      body: JSON.stringify({ name: `first-${Date.now()}` }),
    });
    expect(created.status).toBe(201);
    expect((await fetch(`${gateway.url}/v1/models`)).status).toBe(401);
    // What the anonymous caller used while it was open is on record.
    await tenancy.flush();
    expect((await tenancy.usage({ tenantId: 'anonymous' }))[0]).toMatchObject({
      requests: 1,
      promptTokens: 3,
    });
  });
});

describe('one tenant, hundreds of requests at once', () => {
  it('behavior: slots never exceed the concurrency limit and admitted usage stays within the budget plus what was in flight', async () => {
    // An upstream that counts the requests it is serving at once and answers after a pause.
    let serving = 0;
    let peak = 0;
    const server = createServer((request, response) => {
      if (request.method === 'GET') {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model' }] }));
        return;
      }
      serving++;
      peak = Math.max(peak, serving);
      request.resume();
      setTimeout(() => {
        serving--;
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(
          JSON.stringify({
            id: 'c1',
            object: 'chat.completion',
            created: 1,
            model: MODEL,
            choices: [
              { index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' },
            ],
            usage: { prompt_tokens: 10, completion_tokens: 40, total_tokens: 50 },
          }),
        );
      }, 15);
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
    cleanups.push(() => new Promise((done) => server.close(done)));
    const port = (server.address() as AddressInfo).port;
    const { gateway, tenancy } = await start({
      values: {
        backends: [{ name: 'counting', type: 'openai', url: `http://127.0.0.1:${port}/v1` }],
      },
    });
    const budget = 3000;
    const { tenant, key } = await issue(tenancy, {
      max_concurrent: 3,
      budget: { period: 'day', tokens: budget },
    });
    // Like SDK clients: a concurrency refusal is retried shortly; a budget refusal is final.
    const statuses = await Promise.all(
      Array.from({ length: 200 }, async (_, index) => {
        for (let attempt = 0; ; attempt++) {
          const response = await fetch(`${gateway.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: MODEL, messages: PROMPT, max_tokens: 90 }),
          });
          const body = (await response.json()) as { error?: { code: string } };
          if (response.status === 200) return 'ok';
          const status = `${response.status} ${body.error?.code}`;
          if (status !== '429 concurrency_limit' || attempt === 2000) return status;
          await new Promise((done) => setTimeout(done, 5 + ((index * 7 + attempt) % 20)));
        }
      }),
    );
    expect(peak).toBeLessThanOrEqual(3);
    const served = statuses.filter((status) => status === 'ok').length;
    expect(served).toBeGreaterThan(0);
    // The budget ran out: every client that was not served was finally refused for it.
    expect(new Set(statuses.filter((status) => status !== 'ok'))).toEqual(
      new Set(['429 insufficient_quota']),
    );
    await tenancy.flush();
    const [row] = await tenancy.usage({ tenantId: tenant.id });
    expect(row?.requests).toBe(served);
    // Each request reserves ~100 tokens and uses 50: the budget is reached, never overshot.
    expect(row!.totalTokens).toBeLessThanOrEqual(budget);
    expect(row!.totalTokens).toBeGreaterThan(budget - 3 * 100 - 100);
    expect(await tenancy.usage({ tenantId: tenant.id })).toHaveLength(1);
  });
});
