import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type FakeUpstream, startFakeUpstream } from '@tollgate/backends/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { isConfigError, loadConfig } from './config.js';
import { type Gateway, startGateway } from './server.js';
import { captureLogger, tempDataDir, testStore } from './test-helpers.js';

const KEY = 'sk-server-test';
const cleanups: Array<() => Promise<unknown>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(
  reply: string,
  values: Record<string, unknown> = {},
): Promise<{ gateway: Gateway; upstream: FakeUpstream }> {
  const upstream = await startFakeUpstream({
    kind: 'openai',
    models: ['fake-model'],
    reply,
    chunkDelayMs: 20,
  });
  cleanups.push(() => upstream.close());
  const dataDir = tempDataDir();
  cleanups.push(dataDir.cleanup);
  const config = loadConfig({
    env: {},
    argv: { port: 0 },
    values: {
      api_keys: [KEY],
      backends: [{ url: upstream.baseURL }],
      data_dir: dataDir.path,
      ...values,
    },
  });
  const gateway = await startGateway(config, {
    logger: captureLogger().logger,
    store: await testStore(),
  });
  cleanups.push(() => gateway.close());
  return { gateway, upstream };
}

async function openStream(gateway: Gateway): Promise<ReadableStreamDefaultReader<Uint8Array>> {
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'go' }],
      stream: true,
    }),
  });
  expect(response.status).toBe(200);
  return response.body!.getReader();
}

async function readAll(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: string,
): Promise<string> {
  const decoder = new TextDecoder();
  let text = first;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text;
    text += decoder.decode(value, { stream: true });
  }
}

function contentOf(sse: string): string {
  let text = '';
  for (const line of sse.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const chunk = JSON.parse(line.slice(6)) as { choices: Array<{ delta?: { content?: string } }> };
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  return text;
}

describe('startGateway', { timeout: 60_000 }, () => {
  it('behavior: close() lets a stream in flight finish completely, and refuses new connections', async () => {
    const reply = Array.from({ length: 40 }, (_, index) => `w${index}`).join(' ');
    const { gateway } = await setup(reply, { shutdown: { grace_seconds: 30 } });
    const reader = await openStream(gateway);
    const first = new TextDecoder().decode((await reader.read()).value);
    const closed = gateway.close();
    await expect(fetch(`${gateway.url}/health`)).rejects.toThrow();
    const text = await readAll(reader, first);
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(contentOf(text)).toBe(reply);
    await closed;
  });

  it('behavior: after the grace period the remaining streams are cut', async () => {
    const reply = Array.from({ length: 400 }, (_, index) => `w${index}`).join(' ');
    const { gateway, upstream } = await setup(reply, { shutdown: { grace_seconds: 0.2 } });
    const reader = await openStream(gateway);
    await reader.read();
    await gateway.close();
    await expect(readAll(reader, '')).rejects.toThrow();
    await upstream.waitForClientAbort();
  });

  it('error: a port in use is a ConfigError that says what to do', async () => {
    const busy = createServer();
    await new Promise<void>((done) => busy.listen(0, '127.0.0.1', () => done()));
    cleanups.push(() => new Promise((done) => busy.close(done)));
    const port = (busy.address() as AddressInfo).port;
    const dataDir = tempDataDir();
    cleanups.push(dataDir.cleanup);
    const config = loadConfig({
      env: {},
      argv: { port },
      values: { api_keys: [KEY], data_dir: dataDir.path },
    });
    let caught: unknown;
    try {
      await startGateway(config, { logger: captureLogger().logger, store: await testStore() });
    } catch (error) {
      caught = error;
    }
    expect(isConfigError(caught)).toBe(true);
    expect((caught as Error).message).toContain('already in use');
  });

  it('behavior: with no keys on loopback it runs open and warns loudly', async () => {
    const log = captureLogger();
    const upstream = await startFakeUpstream({ kind: 'openai' });
    cleanups.push(() => upstream.close());
    const dataDir = tempDataDir();
    cleanups.push(dataDir.cleanup);
    const config = loadConfig({
      env: {},
      argv: { port: 0 },
      values: { backends: [{ url: upstream.baseURL }], data_dir: dataDir.path },
    });
    const gateway = await startGateway(config, { logger: log.logger, store: await testStore() });
    cleanups.push(() => gateway.close());
    const warning = await log.waitFor(
      (line) => line.level === 'warn' && String(line.msg).includes('NO API KEYS'),
    );
    expect(warning.msg).toContain('TOLLGATE_API_KEYS');
    const response = await fetch(`${gateway.url}/v1/models`);
    expect(response.status).toBe(200);
  });
});
