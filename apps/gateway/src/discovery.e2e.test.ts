/**
 * Discovery through the gateway: `tollgate discover` as a real process, and `tollgate serve`
 * with no backend configured, which serves what it finds (fake servers on random ports, named
 * through TOLLGATE_DISCOVERY_PORTS) or, finding nothing, starts and says why it is not ready.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FakeUpstream, startFakeUpstream } from '@tollgate/backends/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from './config.js';
import { startGateway } from './server.js';
import { captureLogger, runCli, tempDataDir, testStore } from './test-helpers.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function fake(kind: 'ollama' | 'openai', models: string[]): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream({ kind, models });
  cleanups.push(() => upstream.close());
  return upstream;
}

function portOf(upstream: FakeUpstream): number {
  return Number(new URL(upstream.url).port);
}

function cwd(): string {
  const path = mkdtempSync(join(tmpdir(), 'tollgate-discover-'));
  cleanups.push(() => rmSync(path, { recursive: true, force: true }));
  return path;
}

describe('discovery through the gateway', () => {
  it('behavior: tollgate discover --json lists the servers on the given ports, typed, with their models', async () => {
    const ollama = await fake('ollama', ['llama3.2:latest']);
    const generic = await fake('openai', ['some-model']);
    const result = runCli(
      ['discover', '--json', '--ports', `${portOf(ollama)}:box,${portOf(generic)}`],
      { cwd: cwd() },
      (cleanup) => cleanups.push(cleanup),
    );
    expect(await result.exit).toBe(0);
    const servers = JSON.parse(result.stdout()) as Array<Record<string, unknown>>;
    expect(servers).toEqual(
      expect.arrayContaining([
        {
          url: ollama.url,
          host: '127.0.0.1',
          port: portOf(ollama),
          type: 'ollama',
          version: expect.any(String),
          models: ['llama3.2:latest'],
          healthy: true,
          label: 'box',
        },
        {
          url: generic.baseURL,
          host: '127.0.0.1',
          port: portOf(generic),
          type: 'openai',
          version: null,
          models: ['some-model'],
          healthy: true,
        },
      ]),
    );
  });

  it('behavior: tollgate discover prints a table; bad flags exit 2', async () => {
    const ollama = await fake('ollama', ['llama3.2:latest']);
    const table = runCli(
      ['discover', '--ports', String(portOf(ollama))],
      { cwd: cwd() },
      (cleanup) => cleanups.push(cleanup),
    );
    expect(await table.exit).toBe(0);
    expect(table.stdout()).toMatch(
      new RegExp(`ollama.*${portOf(ollama)}|${portOf(ollama)}.*ollama`),
    );
    const bad = runCli(['discover', '--ports', 'eighty'], { cwd: cwd() }, (cleanup) =>
      cleanups.push(cleanup),
    );
    expect(await bad.exit).toBe(2);
    expect(bad.stderr()).toMatch(/eighty/);
  });

  it('behavior: serve with no backend configured serves what discovery finds and says so', async () => {
    const ollama = await fake('ollama', ['llama3.2:latest']);
    const result = runCli(
      ['serve', '--port', '0'],
      {
        cwd: cwd(),
        env: { TOLLGATE_DISCOVERY_PORTS: String(portOf(ollama)), TOLLGATE_API_KEYS: 'sk-d' },
      },
      (cleanup) => cleanups.push(cleanup),
    );
    const [, url] = await result.waitForStderr(/listening on (http:\/\/\S+) /);
    await result.waitForStderr(/serving the \d+ server\(s\) discovery found/);
    await result.waitForStderr(
      new RegExp(`backend ollama@127\\.0\\.0\\.1:${portOf(ollama)} .*llama3\\.2:latest`),
    );
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-d', 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'llama3.2:latest',
        messages: [{ role: 'user', content: 'Hi' }],
      }),
    });
    expect(response.status).toBe(200);
    result.child.kill('SIGTERM');
    expect(await result.exit).toBe(0);
  });

  it('behavior: with nothing found the gateway still starts, and /health/ready says why and what to do', async () => {
    const data = tempDataDir();
    cleanups.push(data.cleanup);
    const { logger } = captureLogger();
    const gateway = await startGateway(
      loadConfig({ env: {}, argv: { port: 0 }, values: { data_dir: data.path } }),
      { logger, store: await testStore(), discover: async () => [] },
    );
    cleanups.push(() => gateway.close());
    expect(gateway.discoveryRan).toBe(true);
    const ready = await fetch(`${gateway.url}/health/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({
      status: 'not_ready',
      reason: expect.stringContaining('discovery found no inference server on this machine'),
    });
  });

  it('behavior: discovery does not run when a backend is configured, nor when it is turned off', async () => {
    const data = tempDataDir();
    cleanups.push(data.cleanup);
    let scans = 0;
    const gateway = await startGateway(
      loadConfig({
        env: {},
        argv: { port: 0 },
        values: { data_dir: data.path, discovery: { enabled: false } },
      }),
      {
        logger: captureLogger().logger,
        store: await testStore(),
        discover: async () => {
          scans += 1;
          return [];
        },
      },
    );
    cleanups.push(() => gateway.close());
    expect(gateway.discoveryRan).toBe(false);
    expect(scans).toBe(0);
  });
});
