import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FakeUpstream, startFakeUpstream } from '@tollgate/backends/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type CliRun, runCli } from './test-helpers.js';

// Each run is a real process that opens the embedded database (seconds on a loaded machine).
vi.setConfig({ testTimeout: 60_000 });

const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(files: Record<string, string> = {}): string {
  const path = mkdtempSync(join(tmpdir(), 'tollgate-cli-'));
  cleanups.push(() => rmSync(path, { recursive: true, force: true }));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(path, name), content);
  return path;
}

function run(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): CliRun {
  return runCli(args, { env: options.env, cwd: options.cwd ?? tempDir() }, (cleanup) =>
    cleanups.push(cleanup),
  );
}

async function fake(): Promise<FakeUpstream> {
  const upstream = await startFakeUpstream({ kind: 'openai', models: ['fake-model'] });
  cleanups.push(() => upstream.close());
  return upstream;
}

describe('tollgate CLI', { timeout: 60_000 }, () => {
  it('args: --help explains the commands, the key variables and an example', async () => {
    const result = run(['--help']);
    expect(await result.exit).toBe(0);
    expect(result.stdout()).toContain('serve');
    expect(result.stdout()).toContain(
      'TOLLGATE_BACKEND_URL=http://127.0.0.1:11434 TOLLGATE_BACKEND_TYPE=ollama pnpm tollgate serve',
    );
  });

  it('args: serve --help lists flags and environment variables', async () => {
    const result = run(['serve', '--help']);
    expect(await result.exit).toBe(0);
    for (const text of [
      '--config',
      '--host',
      '--port',
      'TOLLGATE_API_KEYS',
      'TOLLGATE_BACKEND_TYPE',
    ]) {
      expect(result.stdout()).toContain(text);
    }
  });

  it('args: --version prints the package version', async () => {
    const result = run(['--version']);
    expect(await result.exit).toBe(0);
    expect(result.stdout().trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('error: an unknown command or flag exits 2 with a message', async () => {
    const command = run(['frobnicate']);
    expect(await command.exit).toBe(2);
    expect(command.stderr()).toContain('unknown command "frobnicate"');
    const flag = run(['serve', '--bogus']);
    expect(await flag.exit).toBe(2);
    expect(flag.stderr()).toContain('--bogus');
  });

  it('error: a bad configuration exits 1 listing every problem, without a stack trace', async () => {
    const cwd = tempDir({ 'tollgate.yaml': 'backends:\n  - url: nope\ncors: { origin: ["*"] }\n' });
    const result = run(['serve'], { cwd, env: { TOLLGATE_PORT: 'abc' } });
    expect(await result.exit).toBe(1);
    const stderr = result.stderr();
    expect(stderr).toContain(
      '- port: must be an integer between 0 and 65535 (from TOLLGATE_PORT="abc")',
    );
    expect(stderr).toContain('- backends[0].url: must be an http:// or https:// URL');
    expect(stderr).toContain('- cors.origin: unknown setting (did you mean "origins"?)');
    expect(stderr).not.toMatch(/\n\s+at /);
  });

  it('error: no keys and no tenants on a non-loopback host exits 1 saying how to make a key', async () => {
    const result = run(['serve', '--host', '0.0.0.0', '--port', '0']);
    expect(await result.exit).toBe(1);
    expect(result.stderr()).toContain('TOLLGATE_API_KEYS');
    expect(result.stderr()).toContain('pnpm tollgate tenants create');
  });

  it('behavior: serve --port 0 with TOLLGATE_BACKEND_URL serves, then exits 0 on SIGTERM', async () => {
    const upstream = await fake();
    const result = run(['serve', '--port', '0'], {
      env: { TOLLGATE_BACKEND_URL: upstream.baseURL, TOLLGATE_API_KEYS: 'sk-cli-test' },
    });
    const [, url] = await result.waitForStderr(/listening on (http:\/\/\S+) /);
    await result.waitForStderr(/backend openai@127\.0\.0\.1:\d+ .*fake-model/);
    const ready = await fetch(`${url}/health/ready`);
    expect(ready.status).toBe(200);
    const models = await fetch(`${url}/v1/models`, {
      headers: { authorization: 'Bearer sk-cli-test' },
    });
    expect(
      ((await models.json()) as { data: Array<{ id: string }> }).data.map((model) => model.id),
    ).toEqual(['fake-model']);
    result.child.kill('SIGTERM');
    expect(await result.exit).toBe(0);
    expect(result.stderr()).toContain('SIGTERM received');
  });

  it('behavior: a stop signal delivered twice at once (as to a whole process group) still drains; one sent later exits at once', async () => {
    const upstream = await startFakeUpstream({
      kind: 'openai',
      models: ['fake-model'],
      chunkDelayMs: 300,
      reply: 'one two three four five six seven eight',
    });
    cleanups.push(() => upstream.close());
    const start = async () => {
      const result = run(['serve', '--port', '0'], {
        env: { TOLLGATE_BACKEND_URL: upstream.baseURL, TOLLGATE_API_KEYS: 'sk-cli-test' },
      });
      const [, url] = await result.waitForStderr(/listening on (http:\/\/\S+) /);
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer sk-cli-test', 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'fake-model',
          messages: [{ role: 'user', content: 'hi' }],
          stream: true,
        }),
      });
      expect(response.status).toBe(200);
      const reader = response.body!.getReader();
      await reader.read();
      // The rest of the stream, or undefined if it was cut (never rejects).
      const rest = (async () => {
        let text = '';
        for (let next = await reader.read(); !next.done; next = await reader.read()) {
          text += new TextDecoder().decode(next.value);
        }
        return text;
      })().catch(() => undefined);
      return { result, rest };
    };

    const twice = await start();
    twice.result.child.kill('SIGTERM');
    // The relayed copy arrives just after the first was taken (two sent at once would merge).
    await twice.result.waitForStderr(/SIGTERM received/);
    twice.result.child.kill('SIGTERM');
    expect((await twice.rest)?.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(await twice.result.exit).toBe(0);
    expect(twice.result.stderr()).not.toContain('exiting now');

    const later = await start();
    later.result.child.kill('SIGTERM');
    await later.result.waitForStderr(/SIGTERM received/);
    await new Promise((resolve) => setTimeout(resolve, 1200));
    later.result.child.kill('SIGTERM');
    expect(await later.result.exit).toBe(1);
    expect(later.result.stderr()).toContain('SIGTERM again, exiting now');
    expect(await later.rest).toBeUndefined();
  });

  it('behavior: log lines written up to the exit all reach standard output', async () => {
    const upstream = await fake();
    const result = run(['serve', '--port', '0'], {
      env: {
        TOLLGATE_BACKEND_URL: upstream.baseURL,
        TOLLGATE_API_KEYS: 'sk-cli-test',
        TOLLGATE_LOG_LEVEL: 'info',
      },
    });
    const [, url] = await result.waitForStderr(/listening on (http:\/\/\S+) /);
    const response = await fetch(`${url}/v1/models`, {
      headers: { authorization: 'Bearer sk-cli-test', 'x-request-id': 'cli-log-1' },
    });
    expect(response.status).toBe(200);
    result.child.kill('SIGTERM');
    expect(await result.exit).toBe(0);
    const lines = result
      .stdout()
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as { msg?: string; requestId?: string });
    expect(lines.some((line) => line.msg === 'request' && line.requestId === 'cli-log-1')).toBe(
      true,
    );
    expect(lines.at(-1)?.msg).toBe('gateway stopped');
  });

  it('behavior: with no backend it still starts, says what to do, and is not ready', async () => {
    const result = run(['serve', '--port', '0']);
    const [, url] = await result.waitForStderr(/listening on (http:\/\/\S+) /);
    await result.waitForStderr(/No backend is configured/);
    expect(result.stderr()).toContain('WARNING: there are no API keys yet');
    expect(result.stderr()).toContain('pnpm tollgate keys issue');
    expect(result.stderr()).toContain('TOLLGATE_BACKEND_URL');
    const ready = await fetch(`${url}/health/ready`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reason: string }).reason).toContain('no backend configured');
    result.child.kill('SIGINT');
    expect(await result.exit).toBe(0);
  });
});
