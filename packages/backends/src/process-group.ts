/**
 * Child processes in their own process group: started detached so that a server and every
 * helper it forks can be signalled at once, stopped with SIGTERM then SIGKILL after a grace
 * period, with the last lines they wrote kept for error messages. POSIX only for the group
 * signals; on Windows the direct child is killed.
 */
import type { ChildProcess, spawn as nodeSpawn } from 'node:child_process';
import { createServer } from 'node:net';

/** The `spawn` of `node:child_process`, injectable for tests. */
export type SpawnFunction = typeof nodeSpawn;

/** How a process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be started at all (e.g. ENOENT). */
  error?: Error;
}

/** The last lines a stream wrote, bounded in count and length. @internal */
export class LineTail {
  private readonly lines: string[] = [];
  private partial = '';

  constructor(
    private readonly maxLines = 20,
    private readonly maxLineLength = 400,
  ) {}

  push(chunk: string): void {
    const pieces = (this.partial + chunk).split(/\r?\n/);
    this.partial = (pieces.pop() ?? '').slice(-this.maxLineLength * 4);
    for (const piece of pieces) this.add(piece);
  }

  private add(line: string): void {
    const trimmed = line.trimEnd();
    if (!trimmed) return;
    this.lines.push(
      trimmed.length > this.maxLineLength ? `${trimmed.slice(0, this.maxLineLength)}...` : trimmed,
    );
    if (this.lines.length > this.maxLines) this.lines.shift();
  }

  /** The last `count` lines, the unfinished one included. */
  last(count: number): string[] {
    const all = this.partial.trim() ? [...this.lines, this.partial.trim()] : this.lines;
    return all.slice(-count);
  }
}

/** A started child process and what it left behind. @internal */
export interface GroupProcess {
  readonly child: ChildProcess;
  /** Undefined when spawning failed at once. */
  readonly pid: number | undefined;
  /** Resolves once, when the process has exited (or failed to start). Never rejects. */
  readonly exited: Promise<ProcessExit>;
  /** Set once the process has exited. */
  exit: ProcessExit | undefined;
  readonly stderr: LineTail;
  readonly stdout: LineTail;
}

const groupsSupported = process.platform !== 'win32';
/** How long to wait for the rest of a dead process's output, in ms. */
const OUTPUT_DRAIN_MS = 200;

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/** Starts a command in its own process group, stdout and stderr kept as tails. @internal */
export function spawnGroup(
  spawn: SpawnFunction,
  file: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv },
): GroupProcess {
  const child = spawn(file, args, {
    cwd: options.cwd,
    env: options.env,
    detached: groupsSupported,
    stdio: ['ignore', 'pipe', 'pipe'],
    windowsHide: true,
  });
  const stderr = new LineTail();
  const stdout = new LineTail();
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => stdout.push(chunk));
  let resolveExit!: (exit: ProcessExit) => void;
  const started: GroupProcess = {
    child,
    pid: child.pid,
    exited: new Promise<ProcessExit>((resolve) => {
      resolveExit = resolve;
    }),
    exit: undefined,
    stderr,
    stdout,
  };
  const finish = (exit: ProcessExit) => {
    if (started.exit) return;
    started.exit = exit;
    resolveExit(exit);
  };
  child.once('error', (error) => {
    // 'error' without a pid: the command never ran. With a pid, 'exit' still comes.
    if (child.pid === undefined) finish({ code: null, signal: null, error });
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  child.once('exit', (code, signal) => {
    // Its last words may still be in the pipes: wait for them briefly (a helper process that
    // inherited the pipes could hold them open for much longer).
    void Promise.race([closed, sleep(OUTPUT_DRAIN_MS)]).then(() => finish({ code, signal }));
  });
  return started;
}

function signalGroup(process_: GroupProcess, signal: NodeJS.Signals): void {
  const { pid } = process_;
  if (pid === undefined) return;
  try {
    if (groupsSupported) process.kill(-pid, signal);
    else process_.child.kill(signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/** Whether any process of the group still exists (zombies included). @internal */
export function groupAlive(process_: GroupProcess): boolean {
  const { pid } = process_;
  if (pid === undefined) return false;
  if (!groupsSupported) return process_.exit === undefined;
  try {
    process.kill(-pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Stops a process group: SIGTERM to the whole group, then SIGKILL once `graceMs` has passed
 * with the leader or any other member still there. Resolves when the leader has exited.
 * @internal
 */
export async function terminateGroup(
  process_: GroupProcess,
  graceMs: number,
): Promise<ProcessExit> {
  if (process_.pid === undefined) return process_.exited;
  const deadline = Date.now() + graceMs;
  signalGroup(process_, 'SIGTERM');
  await Promise.race([process_.exited, sleep(graceMs)]);
  // The leader may leave helpers behind; give them the rest of the grace period.
  while (process_.exit && groupAlive(process_) && Date.now() < deadline) await sleep(25);
  if (!process_.exit || groupAlive(process_)) signalGroup(process_, 'SIGKILL');
  return process_.exited;
}

/** SIGKILL to the group at once, for the last moments of the parent process. @internal */
export function killGroupNow(process_: GroupProcess): void {
  if (process_.exit && !groupAlive(process_)) return;
  signalGroup(process_, 'SIGKILL');
}

/**
 * A TCP port free on 127.0.0.1 now (the OS picks it). Another process could take it before the
 * server binds it; the readiness check then fails and the start is reported.
 * @internal
 */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no port was assigned'))));
    });
  });
}
