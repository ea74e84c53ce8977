/**
 * The supervisor against real child processes: the fake llama-server program
 * (testing/fake-llama-server.mjs) started with `node`, slow to start, crashing on start or
 * mid-stream, forking helpers or ignoring SIGTERM. No timing assertions: tests wait for states.
 */
import { spawn as nodeSpawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ChatCompletionRequest, isTollgateError } from '@tollgate/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Backend,
  createRouter,
  createSupervisor,
  estimateModelMemory,
  readGgufHeader,
  type SpawnFunction,
  type SupervisedModelConfig,
  type SupervisedModelStatus,
  type Supervisor,
  type SupervisorOptions,
} from './index.js';
import { type FakeLlamaServerFlags, fakeLlamaServerCommand } from './testing/index.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const TINY_MODEL = resolve(here, '../../../../shared/models/llama-2-tiny-random.gguf');
const hasTinyModel = existsSync(TINY_MODEL);

interface Supervised extends Supervisor {
  /** Every command spawned, program first. */
  spawned: string[][];
  logs: Array<{ level: string; message: string; fields: Record<string, unknown> }>;
}

const open: Supervisor[] = [];
const pids = new Set<number>();

afterEach(async () => {
  await Promise.all(open.splice(0).map((supervisor) => supervisor.close()));
  for (const pid of pids) {
    expect(isAlive(pid), `process ${pid} outlived its test`).toBe(false);
  }
  pids.clear();
});

function supervise(
  models: SupervisedModelConfig[],
  options: Omit<SupervisorOptions, 'models'> = {},
): Supervised {
  const spawned: string[][] = [];
  const logs: Supervised['logs'] = [];
  const spawn = ((file: string, args: string[], spawnOptions: object) => {
    spawned.push([file, ...args]);
    const child = nodeSpawn(file, args, spawnOptions);
    if (child.pid) pids.add(child.pid);
    return child;
  }) as unknown as SpawnFunction;
  const supervisor = createSupervisor({
    spawn,
    readinessIntervalMs: 50,
    logger: {
      info: (fields, message) => logs.push({ level: 'info', message, fields }),
      warn: (fields, message) => logs.push({ level: 'warn', message, fields }),
    },
    ...options,
    models,
  });
  open.push(supervisor);
  return Object.assign(supervisor, { spawned, logs });
}

function model(
  id: string,
  flags: FakeLlamaServerFlags = {},
  extra: Partial<SupervisedModelConfig> = {},
) {
  return { id, command: fakeLlamaServerCommand(flags), stopGraceMs: 2000, ...extra };
}

function request(model: string, stream = false): ChatCompletionRequest {
  return { model, messages: [{ role: 'user', content: 'Say hello' }], stream };
}

function chat(backend: Backend, stream = false, signal = AbortSignal.timeout(20_000)) {
  return backend.chatCompletions(request('m', stream), { signal });
}

/** Whether a process still runs (a zombie waiting for its parent counts as gone). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true;
  }
}

async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function statusOf(supervisor: Supervisor, id: string): SupervisedModelStatus {
  const found = supervisor.status().find((status) => status.id === id);
  if (!found) throw new Error(`no model ${id}`);
  return found;
}

async function rejection(
  promise: Promise<unknown>,
): Promise<{ status: number; code: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (!isTollgateError(error)) throw error;
    return { status: error.status, code: error.code, message: error.message };
  }
  throw new Error('expected a rejection');
}

async function json(response: Response): Promise<Record<string, unknown>> {
  return (await response.json()) as Record<string, unknown>;
}

async function debug(
  status: SupervisedModelStatus,
  path: string,
): Promise<Record<string, unknown>> {
  return json(await fetch(`http://127.0.0.1:${status.port}${path}`));
}

describe('createSupervisor', { timeout: 30_000 }, () => {
  it('behavior: the first request starts the server and concurrent requests join that start', async () => {
    const supervisor = supervise([model('m', { startDelayMs: 300 })]);
    const backend = supervisor.backend('m');
    expect(statusOf(supervisor, 'm')).toMatchObject({ state: 'stopped', inFlight: 0 });

    const responses = Promise.all([chat(backend), chat(backend, true), chat(backend)]);
    await waitFor('the start', () => statusOf(supervisor, 'm').state === 'starting');
    expect(statusOf(supervisor, 'm').inFlight).toBe(3);
    const [first, streamed, third] = await responses;
    expect(supervisor.spawned).toHaveLength(1);
    expect(supervisor.spawned[0]).toContain('--port');
    expect(supervisor.spawned[0]).not.toContain(`\${PORT}`);

    expect(await json(first!)).toMatchObject({
      object: 'chat.completion',
      choices: [{ message: { content: 'Hello from the fake llama-server.' } }],
    });
    expect(await streamed!.text()).toMatch(/data: \[DONE\]/);
    await third!.body?.cancel();
    const ready = statusOf(supervisor, 'm');
    expect(ready).toMatchObject({ state: 'ready', inFlight: 0 });
    expect(ready.port).toBe(
      Number(supervisor.spawned[0]![supervisor.spawned[0]!.indexOf('--port') + 1]),
    );
    expect(ready.pid).toBeGreaterThan(0);
    expect(ready.idleMs).toBeGreaterThanOrEqual(0);
    expect(supervisor.logs.map((line) => line.message)).toEqual([
      'starting model server',
      'model server ready',
    ]);
  });

  it('behavior: a request that gives up while the server starts leaves the start going', async () => {
    const supervisor = supervise([model('m', { startDelayMs: 300 })]);
    const controller = new AbortController();
    const waiting = chat(supervisor.backend('m'), false, controller.signal);
    await waitFor('the start', () => statusOf(supervisor, 'm').state === 'starting');
    controller.abort(new Error('client left'));
    await expect(waiting).rejects.toThrow('client left');
    expect(statusOf(supervisor, 'm').inFlight).toBe(0);
    await waitFor('ready', () => statusOf(supervisor, 'm').state === 'ready');
  });

  it('error: a server that exits before it is ready fails the waiting requests with 503 and its reason', async () => {
    const supervisor = supervise([model('m', { crashOnStart: true })]);
    const backend = supervisor.backend('m');
    const [one, two] = await Promise.all([rejection(chat(backend)), rejection(chat(backend))]);
    expect(one).toEqual(two);
    expect(one).toMatchObject({ status: 503, code: 'upstream_unavailable' });
    expect(one.message).toMatch(
      /^Model "m" failed to start: .* exited with code 3 before it was ready\./,
    );
    expect(one.message).toMatch(/error loading model: tensor 'blk\.0\.ffn' missing/);
    expect(supervisor.spawned).toHaveLength(1);

    expect(statusOf(supervisor, 'm')).toMatchObject({ state: 'failed', lastError: one.message });
    expect(await backend.health()).toEqual({ ok: false, detail: one.message });
    // The next request tries again.
    await rejection(chat(backend));
    expect(supervisor.spawned).toHaveLength(2);
  });

  it('error: a server that misses its start deadline is killed and reported', async () => {
    const supervisor = supervise([model('m', { startDelayMs: 60_000 }, { startTimeoutMs: 700 })]);
    const error = await rejection(chat(supervisor.backend('m')));
    expect(error).toMatchObject({ status: 503, code: 'upstream_unavailable' });
    expect(error.message).toMatch(
      /did not become ready within 0\.7 s \(GET \/health never answered 200\)/,
    );
    expect(error.message).toMatch(/Last output: .*loading model/);
    expect(error.message).toMatch(/Raise startTimeoutMs/);
    const pid = [...pids][0]!;
    expect(isAlive(pid)).toBe(false);
    expect(statusOf(supervisor, 'm')).toMatchObject({ state: 'failed' });
    expect(statusOf(supervisor, 'm').pid).toBeUndefined();
  });

  it('error: a command that does not exist is reported as such', async () => {
    const supervisor = supervise([
      { id: 'm', command: ['/nonexistent/llama-server', '--port', `\${PORT}`] },
    ]);
    const error = await rejection(chat(supervisor.backend('m')));
    expect(error.message).toBe(
      'Model "m" failed to start: /nonexistent/llama-server could not run (command not found) before it was ready. It wrote nothing.',
    );
  });

  it('behavior: a server dying mid-stream breaks the stream, fails the model, and the next request restarts it', async () => {
    const supervisor = supervise([model('m', { crashAfterChunks: 2 })]);
    const backend = supervisor.backend('m');
    const response = await chat(backend, true);
    await expect(response.text()).rejects.toThrow();
    const failed = await waitFor('the failure', () => {
      const status = statusOf(supervisor, 'm');
      return status.state === 'failed' && status;
    });
    expect(failed.lastError).toMatch(
      /exited with code 1 while serving\. Last output: .*simulated crash after 2 chunks/,
    );
    expect(failed.inFlight).toBe(0);
    expect((await backend.health()).ok).toBe(false);

    // Not streamed, this fake does not crash: the restart serves it.
    const again = await chat(backend);
    expect(again.status).toBe(200);
    await again.body?.cancel();
    expect(supervisor.spawned).toHaveLength(2);
    expect(statusOf(supervisor, 'm').state).toBe('ready');
  });

  it('behavior: an idle server stops after its TTL, and not while a request is in flight', async () => {
    const supervisor = supervise([
      model('m', { chunkDelayMs: 60, reply: 'one two three four five six seven' }, { ttlMs: 150 }),
    ]);
    const response = await chat(supervisor.backend('m'), true);
    const reader = response.body!.getReader();
    // The stream outlives the TTL several times over; the model stays up while it flows.
    for (;;) {
      const { done } = await reader.read();
      if (done) break;
      expect(statusOf(supervisor, 'm')).toMatchObject({ state: 'ready', inFlight: 1 });
    }
    const pid = statusOf(supervisor, 'm').pid!;
    await waitFor('the TTL stop', () => statusOf(supervisor, 'm').state === 'stopped');
    expect(isAlive(pid)).toBe(false);
    expect(
      supervisor.logs.find((line) => line.message === 'stopping model server')?.fields,
    ).toMatchObject({
      reason: 'ttl',
    });
  });

  it('behavior: unload stops the whole process group; SIGKILL follows a SIGTERM that is ignored', async () => {
    const supervisor = supervise([
      model('polite', { spawnChild: true }),
      model('stubborn', { spawnChild: true, ignoreSigterm: true }, { stopGraceMs: 300 }),
    ]);
    const loaded = await Promise.all([supervisor.load('polite'), supervisor.load('stubborn')]);
    const processes: number[] = [];
    for (const status of loaded) {
      const child = (await debug(status, '/debug/child')).pid as number;
      expect(isAlive(child)).toBe(true);
      processes.push(status.pid!, child);
      pids.add(child);
    }
    const stopped = await Promise.all([supervisor.unload('polite'), supervisor.unload('stubborn')]);
    expect(stopped.map((status) => status.state)).toEqual(['stopped', 'stopped']);
    await waitFor('every process to end', () => processes.every((pid) => !isAlive(pid)));
    const exits = supervisor.logs.filter((line) => line.message === 'model server stopped');
    expect(exits.map((line) => [line.fields.model, line.fields.signal])).toEqual(
      expect.arrayContaining([
        ['polite', null],
        ['stubborn', 'SIGKILL'],
      ]),
    );
  });

  it('behavior: close() stops every server and refuses later requests', async () => {
    const supervisor = supervise([
      model('a', { spawnChild: true }),
      model('b'),
      model('c', { startDelayMs: 60_000 }),
    ]);
    const statuses = await Promise.all([supervisor.load('a'), supervisor.load('b')]);
    const child = (await debug(statuses[0]!, '/debug/child')).pid as number;
    pids.add(child);
    const starting = rejection(chat(supervisor.backend('c')));
    await waitFor('c to start', () => statusOf(supervisor, 'c').pid);
    await supervisor.close();
    expect(supervisor.status().map((status) => status.state)).toEqual([
      'stopped',
      'stopped',
      'stopped',
    ]);
    expect((await starting).message).toMatch(/was stopped while it was starting/);
    for (const pid of pids) expect(isAlive(pid), `pid ${pid}`).toBe(false);
    expect(await rejection(chat(supervisor.backend('a')))).toMatchObject({
      status: 503,
      code: 'service_unavailable',
    });
    await supervisor.close();
  });

  it('behavior: a start over the memory budget stops the least recently used idle models first', async () => {
    const supervisor = supervise(
      [
        model('a', {}, { memoryBytes: 400 }),
        model('b', {}, { memoryBytes: 400 }),
        model('c', {}, { memoryBytes: 400 }),
      ],
      { memoryBudgetBytes: 1000 },
    );
    await supervisor.load('a');
    await supervisor.load('b');
    await (await chat(supervisor.backend('a'))).text(); // a is now used more recently than b
    expect(supervisor.memory()).toEqual({ budgetBytes: 1000, usedBytes: 800 });

    await (await chat(supervisor.backend('c'))).text();
    expect(supervisor.status().map((status) => [status.id, status.state])).toEqual([
      ['a', 'ready'],
      ['b', 'stopped'],
      ['c', 'ready'],
    ]);
    expect(supervisor.memory().usedBytes).toBe(800);
    expect(
      supervisor.logs.find((line) => line.message === 'stopping idle model to make room')?.fields,
    ).toMatchObject({
      model: 'b',
      for: 'c',
    });
  });

  it('behavior: a busy model is never evicted; the start waits until it is idle', async () => {
    const supervisor = supervise(
      [
        model('busy', { chunkDelayMs: 30, reply: 'a b c d e f g h i j' }, { memoryBytes: 600 }),
        model('next', {}, { memoryBytes: 600 }),
      ],
      { memoryBudgetBytes: 1000 },
    );
    const stream = await chat(supervisor.backend('busy'), true);
    const reader = stream.body!.getReader();
    const queued = chat(supervisor.backend('next'));
    await waitFor('the wait for memory', () =>
      supervisor.logs.some((line) => line.message === 'waiting for memory held by busy models'),
    );
    expect(statusOf(supervisor, 'next')).toMatchObject({ state: 'starting', inFlight: 1 });
    expect(statusOf(supervisor, 'next').pid).toBeUndefined();
    while (!(await reader.read()).done) {
      expect(statusOf(supervisor, 'busy').state).toBe('ready');
    }
    // Idle now: it is stopped to make room, and the queued request is served.
    const response = await queued;
    expect(response.status).toBe(200);
    await response.body?.cancel();
    expect(supervisor.status().map((status) => [status.id, status.state])).toEqual([
      ['busy', 'stopped'],
      ['next', 'ready'],
    ]);
  });

  it('error: waiting for memory held by busy models is bounded', async () => {
    const supervisor = supervise(
      [
        model(
          'busy',
          { chunkDelayMs: 200, reply: 'a b c d e f g h i j k l m n o p' },
          { memoryBytes: 600 },
        ),
        model('next', {}, { memoryBytes: 600 }),
      ],
      { memoryBudgetBytes: 1000, memoryWaitTimeoutMs: 300 },
    );
    const stream = await chat(supervisor.backend('busy'), true);
    const error = await rejection(chat(supervisor.backend('next')));
    expect(error).toMatchObject({ status: 503, code: 'upstream_unavailable' });
    expect(error.message).toMatch(
      /is held by models serving requests: busy \(1 MiB, 1 in flight\)\. Waited 0 s; retry later\./,
    );
    expect(statusOf(supervisor, 'busy')).toMatchObject({ state: 'ready', inFlight: 1 });
    expect(supervisor.spawned).toHaveLength(1);
    await stream.body?.cancel();
  });

  it('behavior: a start waiting for memory is abandoned when every caller left', async () => {
    const supervisor = supervise(
      [
        model(
          'busy',
          { chunkDelayMs: 100, reply: 'a b c d e f g h i j k l m n o p' },
          { memoryBytes: 600 },
        ),
        model('next', {}, { memoryBytes: 600 }),
      ],
      { memoryBudgetBytes: 1000 },
    );
    const stream = await chat(supervisor.backend('busy'), true);
    const controller = new AbortController();
    const waiting = chat(supervisor.backend('next'), false, controller.signal);
    await waitFor('the wait for memory', () =>
      supervisor.logs.some((line) => line.message === 'waiting for memory held by busy models'),
    );
    controller.abort(new Error('client left'));
    await expect(waiting).rejects.toThrow('client left');
    await waitFor(
      'the start to be dropped',
      () => statusOf(supervisor, 'next').state === 'stopped',
    );
    expect(statusOf(supervisor, 'next').lastError).toBeUndefined();
    expect(statusOf(supervisor, 'busy')).toMatchObject({ state: 'ready', inFlight: 1 });
    expect(supervisor.spawned).toHaveLength(1);
    await stream.body?.cancel();
  });

  it('error: a model bigger than the whole budget fails at once', async () => {
    const supervisor = supervise([model('big', {}, { memoryBytes: 3 * 1024 ** 3 })], {
      memoryBudgetBytes: 2 * 1024 ** 3,
    });
    const error = await rejection(chat(supervisor.backend('big')));
    expect(error.message).toBe(
      'Model "big" needs about 3.0 GiB, more than the whole memory budget (2.0 GiB). Raise the budget, lower its context size, or set memoryBytes for it.',
    );
    expect(supervisor.spawned).toHaveLength(0);
  });

  it.skipIf(!hasTinyModel)(
    'behavior: the memory need comes from the GGUF header and the context size in the command',
    async () => {
      const header = await readGgufHeader(TINY_MODEL);
      const supervisor = supervise([
        model('default', {}, { modelPath: TINY_MODEL }),
        {
          ...model('small', {}, { modelPath: TINY_MODEL }),
          command: [...fakeLlamaServerCommand(), '-c', '512'],
        },
      ]);
      await waitFor('the estimates', () =>
        supervisor.status().every((status) => status.memoryEstimateBytes),
      );
      expect(statusOf(supervisor, 'default')).toMatchObject({
        memoryEstimateBytes: estimateModelMemory(header).totalBytes,
        contextSize: 4096,
      });
      expect(statusOf(supervisor, 'small')).toMatchObject({
        memoryEstimateBytes: estimateModelMemory(header, { contextSize: 512 }).totalBytes,
        contextSize: 512,
      });
      // Runtime flags that change the context change the estimate.
      await supervisor.load('default', { flags: ['--ctx-size', '1024'] });
      expect(statusOf(supervisor, 'default')).toMatchObject({
        memoryEstimateBytes: estimateModelMemory(header, { contextSize: 1024 }).totalBytes,
        contextSize: 1024,
      });
      expect(await supervisor.backend('small').listModels()).toEqual([
        { id: 'small', contextLength: 512 },
      ]);
    },
  );

  it('error: an unreadable GGUF fails the start only under a memory budget', async () => {
    const missing = resolve(here, 'missing.gguf');
    const budgeted = supervise([model('m', {}, { modelPath: missing })], {
      memoryBudgetBytes: 1e9,
    });
    const error = await rejection(chat(budgeted.backend('m')));
    expect(error.message).toMatch(
      /its memory could not be estimated from .*missing\.gguf \(ENOENT.*Fix modelPath or set memoryBytes/,
    );
    const unbudgeted = supervise([model('m', {}, { modelPath: missing })]);
    const response = await chat(unbudgeted.backend('m'));
    expect(response.status).toBe(200);
    await response.body?.cancel();
  });

  it('behavior: load() with runtime flags restarts the server with them; bad flags are refused', async () => {
    const supervisor = supervise([model('m')]);
    const first = await supervisor.load('m');
    const restarted = await supervisor.load('m', { flags: ['-c', '2048', '--flash-attn', 'on'] });
    expect(restarted.pid).not.toBe(first.pid);
    expect(restarted.flags).toEqual(['-c', '2048', '--flash-attn', 'on']);
    expect((await debug(restarted, '/debug/args')).args).toEqual(
      expect.arrayContaining(['-c', '2048', '--flash-attn', 'on']),
    );
    // The same flags, or none given, keep the running server.
    expect((await supervisor.load('m', { flags: ['-c', '2048', '--flash-attn', 'on'] })).pid).toBe(
      restarted.pid,
    );
    expect((await supervisor.load('m')).pid).toBe(restarted.pid);

    expect(
      await rejection(supervisor.load('m', { flags: ['--model', '/etc/passwd'] })),
    ).toMatchObject({
      status: 400,
      code: 'invalid_request',
    });
    expect(statusOf(supervisor, 'm').pid).toBe(restarted.pid);
  });

  it('error: flags change and unload wait for in-flight requests unless forced', async () => {
    const supervisor = supervise([model('m', { chunkDelayMs: 50, reply: 'a b c d e f g h' })]);
    const stream = await chat(supervisor.backend('m'), true);
    expect(await rejection(supervisor.load('m', { flags: ['-c', '64'] }))).toMatchObject({
      status: 409,
      code: 'conflict',
    });
    const refused = await rejection(supervisor.unload('m'));
    expect(refused).toMatchObject({ status: 409, code: 'conflict' });
    expect(refused.message).toMatch(/serving 1 request\(s\)/);
    const forced = await supervisor.unload('m', { force: true });
    expect(forced.state).toBe('stopped');
    await expect(stream.text()).rejects.toThrow();
    await waitFor('the request to end', () => statusOf(supervisor, 'm').inFlight === 0);
  });

  it('behavior: listModels and health tell the model is there while it is stopped', async () => {
    const supervisor = supervise([model('m', {}, { type: 'llama-server' })]);
    const backend = supervisor.backend('m');
    expect(backend).toMatchObject({ name: 'supervisor:m', kind: 'llama-server' });
    expect(await backend.listModels()).toEqual([{ id: 'm' }]);
    expect(await backend.health()).toEqual({ ok: true });
    await supervisor.load('m');
    expect(await backend.health()).toEqual({ ok: true });
    expect(supervisor.backends()).toEqual([backend]);
  });

  it('behavior: behind the router, a start failure is a 503 that carries the reason', async () => {
    const supervisor = supervise([model('good'), model('bad', { crashOnStart: true })]);
    const router = createRouter({
      backends: supervisor.backends().map((backend) => ({ backend })),
    });
    const signal = AbortSignal.timeout(20_000);
    const { response, outcome } = await router.dispatch('chat.completions', request('good', true), {
      signal,
    });
    expect(await response.text()).toMatch(/Hello/);
    expect((await outcome).status).toBe('completed');
    const error = await rejection(router.dispatch('chat.completions', request('bad'), { signal }));
    expect(error).toMatchObject({ status: 503, code: 'upstream_unavailable' });
    expect(error.message).toMatch(/exited with code 3 before it was ready/);
    await router.close();
  });

  it('behavior: a command given as one string is split like a shell would', async () => {
    const [node, script] = fakeLlamaServerCommand();
    const supervisor = supervise([
      { id: 'm', command: `'${node}' "${script}" --port \${PORT} --reply 'Hi there'` },
    ]);
    expect(await json(await chat(supervisor.backend('m')))).toMatchObject({
      choices: [{ message: { content: 'Hi there' } }],
    });
  });

  it('args: configurations that cannot work are refused when the supervisor is created', () => {
    const base = model('m');
    expect(() =>
      createSupervisor({ models: [{ ...base, command: ['llama-server', '-m', 'x'] }] }),
    ).toThrow(/must contain \$\{PORT\}/);
    expect(() => createSupervisor({ models: [base, base] })).toThrow(
      /Two supervised models have the id "m"/,
    );
    expect(() => createSupervisor({ models: [{ ...base, type: 'llamacpp' as 'openai' }] })).toThrow(
      /type "llamacpp" cannot be supervised/,
    );
    expect(() =>
      createSupervisor({ models: [{ ...base, command: `node 'x --port \${PORT}` }] }),
    ).toThrow(/Unclosed single quote/);
    expect(() => createSupervisor({ models: [{ ...base, ttlMs: -1 }] })).toThrow(RangeError);
    expect(() => createSupervisor({ models: [{ ...base, healthPath: 'health' }] })).toThrow(
      /start with "\/"/,
    );
    expect(() => createSupervisor({ models: [base], memoryBudgetBytes: 0 })).toThrow(RangeError);
    const supervisor = createSupervisor({ models: [base] });
    expect(() => supervisor.backend('other')).toThrow(
      /No supervised model is called "other". Supervised models: m\./,
    );
  });
});
