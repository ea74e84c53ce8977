/**
 * What the gateway benchmarks share (`bench/run.ts`, `bench/streams.ts`, `bench/soak.ts`):
 * free ports, child processes stopped and cleaned up at the end, waiting for HTTP, the
 * gateway compiled and laid out like an installed package, its memory read from /proc,
 * tenants with keys made through the admin API, and the clients' POSTs and SSE parsing.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { type Agent, type ClientRequest, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'tsup';

/** The repository root. */
export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

/**
 * Waits until `GET path` on 127.0.0.1:`port` answers 200.
 *
 * @throws Error if nothing does within 30 s.
 */
export async function waitForHttp(port: number, path: string): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    const status = await new Promise<number>((done) => {
      const probe = httpRequest({ host: '127.0.0.1', port, path, method: 'GET' }, (response) => {
        response.resume();
        done(response.statusCode ?? 0);
      });
      probe.on('error', () => done(0));
      probe.end();
    });
    if (status === 200) return;
    await sleep(100);
  }
  throw new Error(`nothing answered 200 on 127.0.0.1:${port}${path} within 30 s`);
}

/** The processes and temporary directories of one benchmark run, all released by `close()`. */
export interface BenchSession {
  /**
   * Starts `node <args>` (through tsx when the first argument is a .ts file) in the repository
   * root; stderr is shown, stdout ignored unless `stdout: 'pipe'`.
   */
  start(
    args: string[],
    env: Record<string, string>,
    options?: { stdout?: 'ignore' | 'pipe' },
  ): ChildProcess;
  /** A new empty directory under the system's temporary directory, removed by `close()`. */
  tempDir(prefix: string): string;
  /** Stops the processes (SIGTERM, then SIGKILL after 15 s) and removes the directories. */
  close(): Promise<void>;
}

/**
 * Creates a session. The processes it started also get a SIGTERM if this one exits without
 * `close()` (a crash, an exception).
 *
 * @example
 * ```ts
 * const session = createBenchSession();
 * try {
 *   session.start(['bench/upstream.ts', String(port)], {});
 * } finally {
 *   await session.close();
 * }
 * ```
 */
export function createBenchSession(): BenchSession {
  const children: ChildProcess[] = [];
  const directories: string[] = [];
  const running = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;
  const onExit = () => {
    // Once: a second SIGTERM tells the gateway to skip its graceful drain.
    for (const child of children) if (running(child) && !child.killed) child.kill('SIGTERM');
  };
  process.on('exit', onExit);
  return {
    start(args, env, options = {}) {
      const typescript = args.find((arg) => !arg.startsWith('-'))?.endsWith('.ts') ?? false;
      const child = spawn(process.execPath, [...(typescript ? ['--import', 'tsx'] : []), ...args], {
        cwd: root,
        env: { ...process.env, ...env },
        stdio: ['ignore', options.stdout ?? 'ignore', 'inherit'],
      });
      children.push(child);
      return child;
    },
    tempDir(prefix) {
      const directory = mkdtempSync(join(tmpdir(), prefix));
      directories.push(directory);
      return directory;
    },
    async close() {
      await Promise.all(
        children.filter(running).map(
          (child) =>
            new Promise<void>((done) => {
              const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
              child.once('exit', () => {
                clearTimeout(timer);
                done();
              });
              if (!child.killed) child.kill('SIGTERM');
            }),
        ),
      );
      process.off('exit', onExit);
      for (const directory of directories) rmSync(directory, { recursive: true, force: true });
    },
  };
}

/**
 * The gateway as users run it: compiled JavaScript, as the published `tollgate` bin is, not
 * TypeScript compiled on load by tsx. Workspace packages resolve to their sources, so the
 * whole program is bundled into one file, laid out like an installed package in a directory
 * of the session: dist/cli.js with package.json and the tenancy migrations one level up (both
 * are read relative to the code), and PGlite, which loads its WebAssembly and data files from
 * beside its own code, left outside the bundle and linked into node_modules; the optional
 * llama.cpp backend is left out, as a user who has not installed it has.
 *
 * @returns the path of the compiled `cli.js`.
 */
export async function buildGateway(session: BenchSession): Promise<string> {
  const packageDir = session.tempDir('tollgate-bench-build-');
  const outDir = resolve(packageDir, 'dist');
  const pglite = realpathSync(resolve(root, 'packages/tenancy/node_modules/@electric-sql/pglite'));
  await build({
    config: false,
    entry: {
      cli: resolve(root, 'apps/gateway/src/cli.ts'),
      // The embedded database's worker thread, loaded from beside the code that starts it.
      'store-worker': resolve(root, 'packages/tenancy/src/store-worker.ts'),
    },
    outDir,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    noExternal: [/^(?!@electric-sql\/pglite|@tollgate\/backend-llamacpp)/],
    // The in-process llama.cpp backend is an optional peer of the published gateway, imported
    // only for `llamacpp` backends (none here); bundling it would pull in node-llama-cpp.
    external: ['@electric-sql/pglite', '@tollgate/backend-llamacpp'],
    // Bundled CommonJS dependencies call require() for Node's built-ins.
    banner: {
      js: "import { createRequire as createRequireForBundle } from 'node:module'; const require = createRequireForBundle(import.meta.url);",
    },
    clean: true,
    silent: true,
  });
  cpSync(resolve(root, 'apps/gateway/package.json'), resolve(packageDir, 'package.json'));
  cpSync(resolve(root, 'packages/tenancy/migrations'), resolve(packageDir, 'migrations'), {
    recursive: true,
  });
  const link = resolve(packageDir, 'node_modules/@electric-sql/pglite');
  mkdirSync(dirname(link), { recursive: true });
  symlinkSync(pglite, link, 'dir');
  return resolve(outDir, 'cli.js');
}

/** A gateway process started by `startGateway`. */
export interface RunningGateway {
  process: ChildProcess;
  port: number;
  /** When it became ready (`performance.now()`), and its resident memory then, in bytes. */
  readyAt: number;
  readyRss: number;
  /** Its data directory (embedded database, journal), a temporary one of the session. */
  dataDir: string;
}

/**
 * Builds and starts the compiled gateway (`tollgate serve`) with one `openai` backend at
 * `upstreamPort`, the default info-level access log, a fresh data directory, and `env` on
 * top; resolves once `/health/ready` answers 200.
 */
export async function startGateway(
  session: BenchSession,
  options: {
    upstreamPort: number;
    env?: Record<string, string>;
    stdout?: 'ignore' | 'pipe';
    /** Options for node before the script, e.g. `['--cpu-prof']` to profile the gateway. */
    nodeArgs?: string[];
  },
): Promise<RunningGateway> {
  const cli = await buildGateway(session);
  const port = await freePort();
  const dataDir = session.tempDir('tollgate-bench-data-');
  const child = session.start(
    [...(options.nodeArgs ?? []), cli, 'serve', '--port', String(port)],
    {
      TOLLGATE_BACKEND_URL: `http://127.0.0.1:${options.upstreamPort}/v1`,
      TOLLGATE_BACKEND_TYPE: 'openai',
      TOLLGATE_LOG_LEVEL: 'info',
      TOLLGATE_DATA_DIR: dataDir,
      ...options.env,
    },
    { stdout: options.stdout ?? 'ignore' },
  );
  await waitForHttp(port, '/health/ready');
  return {
    process: child,
    port,
    dataDir,
    readyAt: performance.now(),
    readyRss: processMemory(child.pid!).rss,
  };
}

/** What /proc says about a process's memory, in bytes. */
export interface ProcessMemory {
  /** Resident set size now (VmRSS). */
  rss: number;
  /** The highest resident set size since the start or the last `resetPeakRss` (VmHWM). */
  peak: number;
}

/**
 * Reads a process's resident memory from /proc/<pid>/status (Linux only).
 *
 * @throws Error if the process is gone or /proc has no such figures.
 */
export function processMemory(pid: number): ProcessMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${field} (is this Linux?)`);
    return Number(match[1]) * 1024;
  };
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

/**
 * Waits until a gateway has let go of its embedded database's start-up memory. PGlite, as it
 * opens, leaves some 400 MiB of garbage in its worker thread (buffers it needs only while
 * opening: in a bare process, 630 MiB of external memory right after `PGlite.create()`, 2 MiB
 * after the next full collection), which V8 collects at that thread's next full collection,
 * within two minutes of the start on the development VM: until then the gateway's resident
 * memory is that much higher, and it drops by as much in the middle of whatever is being
 * measured. Resolves once the resident memory is `dropBytes` below `startRss` (read when the
 * gateway became ready), or at `deadline` (a `performance.now()` time).
 *
 * @returns whether the drop was seen.
 */
export async function waitForSettledRss(
  pid: number,
  options: { startRss: number; dropBytes?: number; deadline: number },
): Promise<boolean> {
  const threshold = options.startRss - (options.dropBytes ?? 200 * 1024 * 1024);
  while (processMemory(pid).rss > threshold) {
    if (performance.now() >= options.deadline) return false;
    await sleep(1000);
  }
  return true;
}

/** Resets a process's peak resident set size (VmHWM) to its current one (Linux >= 4.0). */
export function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/**
 * Checks that processes started from this one may open `needed` files. Node raises its own
 * soft limit to the hard limit when it starts, so the hard limit is the one that counts.
 *
 * @returns the hard limit on open files.
 * @throws Error if it is lower than `needed`.
 */
export function checkFileLimit(needed: number): number {
  const value = execFileSync('/bin/sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  const hard = value === 'unlimited' ? Number.POSITIVE_INFINITY : Number(value);
  if (hard < needed) {
    throw new Error(
      `This benchmark needs ${needed} open files per process, and the hard limit is ${hard}: raise it (ulimit -Hn as root, or nofile in /etc/security/limits.conf) or lower the number of streams.`,
    );
  }
  return hard;
}

/**
 * The unlabelled samples of a Prometheus text page (`name value` lines), e.g.
 * `nodejs_heap_size_used_bytes`.
 */
export async function scrapeMetrics(port: number): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  if (!response.ok) throw new Error(`GET /metrics answered ${response.status}`);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*) (\S+)$/.exec(line);
    if (match) samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

/**
 * POSTs `payload` (JSON) to 127.0.0.1:`port` with a bearer `key` over `agent`. `onData` sees
 * each piece of the answer as it arrives, with the request (to destroy it, say). `answer`
 * resolves with the status and the whole body, and rejects on a socket error or an answer cut
 * short.
 */
export function postJson(options: {
  port: number;
  agent: Agent;
  path: string;
  payload: string;
  key: string;
  onData?: (part: string, call: ClientRequest) => void;
}): { call: ClientRequest; answer: Promise<{ status: number; text: string }> } {
  let call!: ClientRequest;
  const answer = new Promise<{ status: number; text: string }>((resolveAnswer, reject) => {
    call = httpRequest(
      {
        host: '127.0.0.1',
        port: options.port,
        path: options.path,
        method: 'POST',
        agent: options.agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(options.payload),
          authorization: `Bearer ${options.key}`,
        },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (part: string) => {
          text += part;
          options.onData?.(part, call);
        });
        response.on('end', () => resolveAnswer({ status: response.statusCode ?? 0, text }));
        response.on('error', reject);
        response.on('aborted', () => reject(new Error('aborted')));
      },
    );
    call.on('error', reject);
    call.end(options.payload);
  });
  return { call, answer };
}

/** The JSON data events of an SSE body, parsed, and whether it ended with [DONE]. */
export function sseChunks<T>(text: string): { chunks: T[]; done: boolean } {
  const chunks: T[] = [];
  let done = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const data = line.slice(6);
    if (data === '[DONE]') done = true;
    else chunks.push(JSON.parse(data) as T);
  }
  return { chunks, done };
}

/** Limits of a tenant in the admin API's shape (`requests_per_minute`, ...). */
export type TenantLimits = Record<string, number | string[]>;

/**
 * Creates a tenant with `limits` through the admin API and issues it a key.
 *
 * @returns the key (`tg_...`).
 * @throws Error with the admin API's answer if either call fails.
 */
export async function createTenantKey(
  port: number,
  adminKey: string,
  name: string,
  limits: TenantLimits,
): Promise<string> {
  const call = async (path: string, body: unknown) => {
    const response = await fetch(`http://127.0.0.1:${port}/admin${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (response.status !== 201) throw new Error(`POST /admin${path}: ${response.status} ${text}`);
    return JSON.parse(text) as { key?: string };
  };
  await call('/tenants', { name, limits });
  const issued = await call(`/tenants/${name}/keys`, { name: 'bench' });
  if (!issued.key) throw new Error('POST /admin/tenants/:id/keys answered without a key');
  return issued.key;
}

/** The `p`th percentile (0-100) of `values`, nearest rank; NaN for none. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** The median of `values`. */
export function median(values: number[]): number {
  return percentile(values, 50);
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * Runs a benchmark's `main` and exits: with `process.exitCode` (0 unless the benchmark set
 * it), or 1 with the error's message. Exiting ends the child processes' pipes and timers.
 */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (error: unknown) => {
      console.error(error instanceof Error ? error.message : error);
      process.exit(1);
    },
  );
}
