import { readFileSync } from 'node:fs';
/**
 * GET /metrics through a real gateway: what is counted after real traffic, that label values
 * stay bounded whatever callers send, the overhead header, and who may read the metrics.
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Gateway } from './server.js';
import { startTestGateway } from './test-helpers.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEY = 'sk-metrics';

async function start(values: Record<string, unknown> = {}): Promise<Gateway> {
  const { gateway } = await startTestGateway(
    { values: { api_keys: [KEY], ...values }, upstream: { chunkDelayMs: 1 } },
    (cleanup) => cleanups.push(cleanup),
  );
  return gateway;
}

async function scrape(gateway: Gateway, headers: Record<string, string> = {}): Promise<string> {
  const response = await fetch(`${gateway.url}/metrics`, { headers });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/plain');
  return response.text();
}

/** The value of one sample line, e.g. `tollgate_requests_total{route="...",...}`. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inside = line.slice(name.length + 1, line.indexOf('}'));
    const found = Object.fromEntries(
      [...inside.matchAll(/(\w+)="([^"]*)"/g)].map((match) => [match[1], match[2]]),
    );
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return undefined;
}

describe('GET /metrics', () => {
  it('behavior: requests, tokens, first-token and overhead histograms, streams and backends are counted', async () => {
    const gateway = await start();
    const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const { response } = await openai.chat.completions
      .create({ model: 'fake-model', messages: [{ role: 'user', content: 'Hi' }] })
      .withResponse();
    expect(Number(response.headers.get('x-tollgate-overhead-ms'))).toBeGreaterThanOrEqual(0);
    const stream = await openai.chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'Hi' }],
      stream: true,
    });
    for await (const _chunk of stream) {
      // read to the end
    }
    // The access log (and the metrics) are written a turn after the answer.
    let text = '';
    for (let attempt = 0; attempt < 50; attempt++) {
      text = await scrape(gateway);
      if (
        sample(text, 'tollgate_requests_total', {
          route: '/v1/chat/completions',
          status: '200',
        }) === 2
      ) {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const tenant = `static:${(await import('node:crypto')).createHash('sha256').update(KEY).digest('hex').slice(0, 8)}`;
    expect(
      sample(text, 'tollgate_requests_total', {
        route: '/v1/chat/completions',
        model: 'fake-model',
        tenant,
        status: '200',
      }),
    ).toBe(2);
    expect(
      sample(text, 'tollgate_tokens_total', { model: 'fake-model', kind: 'completion' }),
    ).toBeGreaterThan(0);
    expect(
      sample(text, 'tollgate_tokens_total', { model: 'fake-model', kind: 'prompt' }),
    ).toBeGreaterThan(0);
    expect(
      sample(text, 'tollgate_time_to_first_token_seconds_count', { model: 'fake-model' }),
    ).toBe(2);
    expect(sample(text, 'tollgate_overhead_seconds_count', { route: '/v1/chat/completions' })).toBe(
      2,
    );
    expect(sample(text, 'tollgate_backend_up', { kind: 'openai' })).toBe(1);
    expect(sample(text, 'tollgate_dependency_up', { dependency: 'database' })).toBe(1);
    expect(sample(text, 'tollgate_dependency_up', { dependency: 'limiter' })).toBe(1);
    const { version } = JSON.parse(
      readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    expect(sample(text, 'tollgate_build_info', { version, node: process.version })).toBe(1);
    // Nothing left in flight once both answers ended (the scrape itself is the one in flight).
    expect(text).toMatch(/^tollgate_streams_in_flight 0$/m);
    expect(text).toMatch(/^tollgate_requests_in_flight 1$/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
  });

  it('behavior: label values stay bounded: unknown models, odd paths and payers never become labels', async () => {
    const gateway = await start();
    const chat = (model: string) =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }] }),
      });
    expect((await chat('model-the-caller-made-up-1234')).status).toBe(404);
    expect((await fetch(`${gateway.url}/some/random/path-5678`)).status).toBe(404);
    const text = await scrape(gateway);
    expect(text).not.toContain('made-up-1234');
    expect(text).not.toContain('path-5678');
    expect(sample(text, 'tollgate_requests_total', { route: 'other', status: '404' })).toBe(1);
    expect(
      sample(text, 'tollgate_requests_total', {
        route: '/v1/chat/completions',
        model: '',
        status: '404',
      }),
    ).toBe(1);
  });

  it('behavior: refusals by limits are counted by reason', async () => {
    const { gateway } = await startTestGateway({}, (cleanup) => cleanups.push(cleanup));
    const tenant = await gateway.tenancy.createTenant(
      { name: `metrics-${Date.now()}`, limits: { requests_per_minute: 1 } },
      { actor: 'cli' },
    );
    const { key } = await gateway.tenancy.issueKey(tenant.id, {}, { actor: 'cli' });
    const chat = () =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'x' }] }),
      });
    expect((await chat()).status).toBe(200);
    expect((await chat()).status).toBe(429);
    const text = await scrape(gateway);
    expect(sample(text, 'tollgate_limit_rejections_total', { reason: 'rate_limit_exceeded' })).toBe(
      1,
    );
  });

  it('error: with a token, /metrics needs it; it can be turned off', async () => {
    const gateway = await start({ metrics: { token: 'scrape-me' } });
    const without = await fetch(`${gateway.url}/metrics`);
    expect(without.status).toBe(401);
    expect(await without.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
    await scrape(gateway, { authorization: 'Bearer scrape-me' });
    const off = await start({ metrics: { enabled: false } });
    expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
  });
});
