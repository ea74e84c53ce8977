/**
 * The supervisor: model servers started on demand from the operator's commands, stopped when
 * idle, and kept within a memory budget (after llama-swap and Docker Model Runner).
 *
 * Each model goes stopped -> starting -> ready -> stopping -> stopped, or to failed when its
 * server exits early, misses its start deadline or dies while serving. The first request
 * starts it; requests that arrive during the start wait for the same start.
 */
import { spawn as nodeSpawn } from 'node:child_process';
import { isTollgateError, TollgateError } from '@tollgate/protocol';
import { untilAborted } from './abort.js';
import type { Backend, BackendCallOptions, BackendHealth, BackendKind } from './backend.js';
import { splitCommandLine } from './command-line.js';
import { createBackend } from './create-backend.js';
import { estimateModelMemory, isKvCacheType, readGgufHeader } from './gguf.js';
import {
  findFreePort,
  type GroupProcess,
  killGroupNow,
  type ProcessExit,
  spawnGroup,
  terminateGroup,
} from './process-group.js';
import { validateRuntimeFlags } from './runtime-flags.js';
import type {
  SupervisedModelConfig,
  SupervisedModelState,
  SupervisedModelStatus,
  Supervisor,
  SupervisorOptions,
} from './supervisor-types.js';

// biome-ignore lint/suspicious/noTemplateCurlyInString: the literal placeholder operators write
const PORT_PLACEHOLDER = '${PORT}';
const DEFAULT_START_TIMEOUT_MS = 120_000;
const DEFAULT_STOP_GRACE_MS = 10_000;
const DEFAULT_MEMORY_WAIT_MS = 60_000;
const DEFAULT_READINESS_INTERVAL_MS = 250;
/** Longest wait of one readiness probe, in ms. */
const PROBE_TIMEOUT_MS = 2000;
/** Output lines quoted in error messages. */
const QUOTED_LINES = 5;
const supportedTypes: ReadonlySet<string> = new Set([
  'openai',
  'ollama',
  'llama-server',
  'vllm',
  'lm-studio',
  'mlx',
]);

type StopReason = 'ttl' | 'evicted' | 'unload' | 'reload' | 'close';

interface Estimate {
  /** The arguments it was made for. */
  key: string;
  promise: Promise<number>;
  bytes?: number;
  contextSize?: number;
}

interface ModelRecord {
  readonly id: string;
  readonly config: SupervisedModelConfig;
  readonly type: Exclude<BackendKind, 'llamacpp'>;
  readonly name: string;
  readonly command: readonly string[];
  readonly healthPath: string;
  readonly ttlMs: number;
  readonly startTimeoutMs: number;
  readonly stopGraceMs: number;
  state: SupervisedModelState;
  runtimeFlags: string[];
  process: GroupProcess | undefined;
  port: number | undefined;
  adapter: Backend | undefined;
  starting: Promise<Backend> | undefined;
  startController: AbortController | undefined;
  stopping: Promise<void> | undefined;
  /** Requests counted from their arrival to the end of their body. */
  inFlight: number;
  /** Callers waiting on the current start (requests and `load`). */
  waiting: number;
  lastUsedAt: number;
  lastError: string | undefined;
  /** Bytes held against the budget while starting, ready or stopping. */
  reservedBytes: number;
  /** The current start is waiting for memory held by busy models. */
  awaitingMemory: boolean;
  estimate: Estimate | undefined;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

const noop = () => {};

function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  return `${Math.ceil(bytes / 1024 ** 2)} MiB`;
}

function positiveOr(
  value: number | undefined,
  fallback: number,
  field: string,
  id: string,
): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`Model "${id}": ${field} must be a number of milliseconds >= 0.`);
  }
  return value;
}

/** What a model's configuration fixes for its whole life. */
type ModelSettings = Pick<
  ModelRecord,
  | 'id'
  | 'config'
  | 'type'
  | 'name'
  | 'command'
  | 'healthPath'
  | 'ttlMs'
  | 'startTimeoutMs'
  | 'stopGraceMs'
>;

function normalize(config: SupervisedModelConfig): ModelSettings {
  const { id } = config;
  if (typeof id !== 'string' || !id.trim()) {
    throw new TypeError('Every supervised model needs an "id" (the model name callers use).');
  }
  let command: string[];
  try {
    command =
      typeof config.command === 'string' ? splitCommandLine(config.command) : [...config.command];
  } catch (error) {
    throw new TypeError(`Model "${id}": the command cannot be read: ${(error as Error).message}`);
  }
  if (command.length === 0 || command.some((arg) => typeof arg !== 'string') || !command[0]) {
    throw new TypeError(`Model "${id}": "command" must name the program to run and its arguments.`);
  }
  if (!command.some((arg) => arg.includes(PORT_PLACEHOLDER))) {
    throw new TypeError(
      `Model "${id}": the command must contain ${PORT_PLACEHOLDER} where the port goes (e.g. "--port ${PORT_PLACEHOLDER}"); the supervisor picks a free port at each start.`,
    );
  }
  const type = config.type ?? 'llama-server';
  if (!supportedTypes.has(type)) {
    throw new TypeError(
      `Model "${id}": type "${String(type)}" cannot be supervised. Use one of: ${[...supportedTypes].join(', ')}.`,
    );
  }
  const healthPath = config.healthPath ?? '/health';
  if (!healthPath.startsWith('/')) {
    throw new TypeError(`Model "${id}": healthPath must start with "/", e.g. "/health".`);
  }
  if (
    config.memoryBytes !== undefined &&
    (!Number.isFinite(config.memoryBytes) || config.memoryBytes < 0)
  ) {
    throw new RangeError(`Model "${id}": memoryBytes must be a number of bytes >= 0.`);
  }
  return {
    id,
    config,
    type,
    name: `supervisor:${id}`,
    command,
    healthPath,
    ttlMs: positiveOr(config.ttlMs, 0, 'ttlMs', id),
    startTimeoutMs: positiveOr(
      config.startTimeoutMs,
      DEFAULT_START_TIMEOUT_MS,
      'startTimeoutMs',
      id,
    ),
    stopGraceMs: positiveOr(config.stopGraceMs, DEFAULT_STOP_GRACE_MS, 'stopGraceMs', id),
  };
}

/** The value of the last `-x value` / `--xx value` / `--xx=value` among `args`. */
function lastFlagValue(args: readonly string[], names: readonly string[]): string | undefined {
  let found: string | undefined;
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (names.includes(arg)) found = args[index + 1];
    else {
      const name = names.find((candidate) => arg.startsWith(`${candidate}=`));
      if (name) found = arg.slice(name.length + 1);
    }
  }
  return found;
}

function describeExit(exit: ProcessExit, cwd: string | undefined): string {
  if (exit.error) {
    const code = (exit.error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') return `could not run (${exit.error.message})`;
    // spawn says ENOENT for a missing working directory too.
    return cwd === undefined
      ? 'could not run (command not found)'
      : `could not run (command or working directory ${cwd} not found)`;
  }
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code}`;
}

function lastOutput(process_: GroupProcess): string {
  const lines = process_.stderr.last(QUOTED_LINES);
  const chosen = lines.length ? lines : process_.stdout.last(QUOTED_LINES);
  return chosen.length ? ` Last output: ${chosen.join(' | ')}` : ' It wrote nothing.';
}

function unavailable(message: string, cause?: unknown): TollgateError {
  return new TollgateError('upstream_unavailable', message, { cause });
}

/**
 * A copy of `response` whose body calls `onEnd` once when it has been read to its end, has
 * failed, or was cancelled (or at once when there is no body).
 */
function trackBody(response: Response, onEnd: () => void): Response {
  const source = response.body;
  if (!source) {
    onEnd();
    return response;
  }
  const reader = source.getReader();
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    onEnd();
  };
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            end();
            controller.close();
          } else {
            controller.enqueue(value);
          }
        } catch (error) {
          end();
          controller.error(error);
        }
      },
      cancel(reason) {
        end();
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}

/**
 * Creates a supervisor for models served by commands the operator configured.
 *
 * A model starts on its first request: the supervisor picks a free port, runs the command
 * (`${PORT}` replaced) in its own process group, and polls `healthPath` until it answers 200.
 * If the server exits first or `startTimeoutMs` passes, every waiting request fails with 503
 * `upstream_unavailable` giving the exit code (or the deadline) and the server's last output.
 * Idle models stop after `ttlMs`; under `memoryBudgetBytes`, a start first stops the least
 * recently used idle models and waits (up to `memoryWaitTimeoutMs`) rather than stop a busy
 * one. Stopping sends SIGTERM to the process group, then SIGKILL after `stopGraceMs`. If the
 * gateway exits without `close()`, running groups get SIGKILL on its way out.
 *
 * @throws {TypeError} for a model without an id, a unique id, a command with `${PORT}`, or
 *   with an unsupported `type`.
 * @throws {RangeError} for negative or non-numeric times and sizes.
 * @example
 * ```ts
 * const supervisor = createSupervisor({
 *   models: [
 *     {
 *       id: 'qwen2.5-7b',
 *       command: 'llama-server -m /models/qwen2.5-7b-q4_k_m.gguf -c 8192 --port ${PORT}',
 *       modelPath: '/models/qwen2.5-7b-q4_k_m.gguf',
 *       ttlMs: 10 * 60_000,
 *     },
 *   ],
 *   memoryBudgetBytes: 24 * 1024 ** 3,
 * });
 * const router = createRouter({ backends: supervisor.backends().map((backend) => ({ backend })) });
 * // ... on shutdown:
 * await supervisor.close();
 * ```
 */
export function createSupervisor(options: SupervisorOptions): Supervisor {
  const spawn = options.spawn ?? nodeSpawn;
  const findPort = options.findPort ?? findFreePort;
  const now = options.now ?? Date.now;
  const fetchImplementation = options.fetch ?? globalThis.fetch;
  const logger = options.logger;
  const budget = options.memoryBudgetBytes;
  if (budget !== undefined && (!Number.isFinite(budget) || budget <= 0)) {
    throw new RangeError('memoryBudgetBytes must be a positive number of bytes.');
  }
  const memoryWaitMs = options.memoryWaitTimeoutMs ?? DEFAULT_MEMORY_WAIT_MS;
  const readinessIntervalMs = options.readinessIntervalMs ?? DEFAULT_READINESS_INTERVAL_MS;

  const records = new Map<string, ModelRecord>();
  for (const config of options.models) {
    const base = normalize(config);
    if (records.has(base.id)) {
      throw new TypeError(`Two supervised models have the id "${base.id}"; ids must be unique.`);
    }
    records.set(base.id, {
      ...base,
      state: 'stopped',
      runtimeFlags: [],
      process: undefined,
      port: undefined,
      adapter: undefined,
      starting: undefined,
      startController: undefined,
      stopping: undefined,
      inFlight: 0,
      waiting: 0,
      lastUsedAt: now(),
      lastError: undefined,
      reservedBytes: 0,
      awaitingMemory: false,
      estimate: undefined,
      idleTimer: undefined,
    });
  }

  let closed = false;
  let memoryWaiters: Array<() => void> = [];
  let exitHookInstalled = false;

  const log = (level: 'info' | 'warn', record: ModelRecord, fields: object, message: string) => {
    try {
      logger?.[level]({ model: record.id, ...fields }, message);
    } catch {
      // A logger's failure must not break serving.
    }
  };

  /** Kills every running group when the gateway exits without close(). */
  function killAllNow(): void {
    for (const record of records.values()) if (record.process) killGroupNow(record.process);
  }

  function installExitHook(): void {
    if (exitHookInstalled) return;
    exitHookInstalled = true;
    process.once('exit', killAllNow);
  }

  /** Wakes every start waiting for memory, to look again. */
  function memoryChanged(): void {
    const waiters = memoryWaiters;
    memoryWaiters = [];
    for (const wake of waiters) wake();
  }

  function find(id: string): ModelRecord {
    const record = records.get(id);
    if (!record) {
      throw new TollgateError(
        'model_not_found',
        `No supervised model is called "${id}". Supervised models: ${[...records.keys()].join(', ') || 'none'}.`,
        { param: 'model' },
      );
    }
    return record;
  }

  function argsOf(record: ModelRecord): string[] {
    return [...record.command.slice(1), ...record.runtimeFlags];
  }

  /** The model's memory need in bytes: the configured one, the GGUF estimate, or 0. */
  function memoryNeed(record: ModelRecord): Promise<number> {
    const { memoryBytes, modelPath } = record.config;
    if (memoryBytes !== undefined) return Promise.resolve(memoryBytes);
    if (!modelPath) return Promise.resolve(0);
    const args = argsOf(record);
    const context = Number(lastFlagValue(args, ['-c', '--ctx-size']));
    const contextSize = Number.isInteger(context) && context > 0 ? context : undefined;
    const cacheType = lastFlagValue(args, ['-ctk', '--cache-type-k']);
    const kvCacheType = cacheType && isKvCacheType(cacheType) ? cacheType : undefined;
    const key = `${contextSize}|${kvCacheType}`;
    if (record.estimate?.key === key) return record.estimate.promise;
    const estimate: Estimate = {
      key,
      promise: readGgufHeader(modelPath).then((header) => {
        const result = estimateModelMemory(header, { contextSize, kvCacheType });
        estimate.bytes = result.totalBytes;
        estimate.contextSize = result.contextSize;
        return result.totalBytes;
      }),
    };
    estimate.promise.catch(() => {
      // Read again next time: the file may have been fixed.
      if (record.estimate === estimate) record.estimate = undefined;
    });
    record.estimate = estimate;
    return estimate.promise;
  }

  async function needFor(record: ModelRecord): Promise<number> {
    try {
      return await memoryNeed(record);
    } catch (error) {
      if (budget === undefined) return 0;
      throw unavailable(
        `Model "${record.id}" cannot start: its memory could not be estimated from ${record.config.modelPath} (${(error as Error).message}). Fix modelPath or set memoryBytes for it.`,
        error,
      );
    }
  }

  function usedBytes(except?: ModelRecord): number {
    let used = 0;
    for (const record of records.values()) if (record !== except) used += record.reservedBytes;
    return used;
  }

  /** Holds `need` bytes of the budget for `record`, stopping idle models or waiting for them. */
  async function reserveMemory(
    record: ModelRecord,
    need: number,
    signal: AbortSignal,
  ): Promise<void> {
    if (budget === undefined) {
      record.reservedBytes = need;
      return;
    }
    if (need > budget) {
      throw unavailable(
        `Model "${record.id}" needs about ${formatBytes(need)}, more than the whole memory budget (${formatBytes(budget)}). Raise the budget, lower its context size, or set memoryBytes for it.`,
      );
    }
    const deadline = now() + memoryWaitMs;
    let waited = false;
    for (;;) {
      signal.throwIfAborted();
      if (closed) throw closedError();
      const used = usedBytes(record);
      if (used + need <= budget) {
        record.reservedBytes = need;
        return;
      }
      const idle = [...records.values()]
        .filter(
          (other) =>
            other !== record &&
            other.state === 'ready' &&
            other.inFlight === 0 &&
            other.reservedBytes > 0,
        )
        .sort((a, b) => a.lastUsedAt - b.lastUsedAt);
      const victims: ModelRecord[] = [];
      let freed = 0;
      for (const other of idle) {
        if (used - freed + need <= budget) break;
        victims.push(other);
        freed += other.reservedBytes;
      }
      if (used - freed + need <= budget) {
        // Chosen and stopped in the same tick: no request can make a victim busy in between.
        for (const victim of victims) {
          log(
            'info',
            victim,
            { for: record.id, freedBytes: victim.reservedBytes },
            'stopping idle model to make room',
          );
        }
        await Promise.all(victims.map((victim) => stopModel(victim, 'evicted')));
        continue;
      }
      const remaining = deadline - now();
      if (remaining <= 0) {
        const busy = [...records.values()]
          .filter((other) => other !== record && other.reservedBytes > 0)
          .map(
            (other) =>
              `${other.id} (${formatBytes(other.reservedBytes)}, ${other.inFlight} in flight)`,
          )
          .join(', ');
        throw new TollgateError(
          'upstream_unavailable',
          `Model "${record.id}" needs about ${formatBytes(need)} but the memory budget (${formatBytes(budget)}) is held by models serving requests: ${busy}. Waited ${Math.round(memoryWaitMs / 1000)} s; retry later.`,
          { headers: { 'retry-after': '5' } },
        );
      }
      if (!waited) {
        waited = true;
        log(
          'info',
          record,
          { needBytes: need, usedBytes: used },
          'waiting for memory held by busy models',
        );
      }
      record.awaitingMemory = true;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, remaining);
        timer.unref();
        signal.addEventListener('abort', done, { once: true });
        function done() {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        }
        memoryWaiters.push(done);
      }).finally(() => {
        record.awaitingMemory = false;
      });
    }
  }

  function closedError(): TollgateError {
    return new TollgateError(
      'service_unavailable',
      'The gateway is shutting down; retry on another instance.',
    );
  }

  /** Polls the health path until it answers 200; rejects when the process exits or the deadline passes. */
  async function waitReady(
    record: ModelRecord,
    process_: GroupProcess,
    port: number,
    signal: AbortSignal,
  ): Promise<void> {
    const url = `http://127.0.0.1:${port}${record.healthPath}`;
    const stop = new AbortController();
    const polling = (async () => {
      while (!stop.signal.aborted) {
        try {
          const response = await fetchImplementation(url, {
            signal: AbortSignal.any([stop.signal, AbortSignal.timeout(PROBE_TIMEOUT_MS)]),
          });
          await response.body?.cancel().catch(noop);
          if (response.status === 200) return;
        } catch {
          // Not listening yet, or still loading.
        }
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            stop.signal.removeEventListener('abort', done);
            resolve();
          };
          const timer = setTimeout(done, readinessIntervalMs);
          stop.signal.addEventListener('abort', done, { once: true });
        });
      }
    })();
    let deadlineTimer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<never>((_, reject) => {
      deadlineTimer = setTimeout(() => {
        reject(
          unavailable(
            `Model "${record.id}" did not become ready within ${record.startTimeoutMs / 1000} s (GET ${record.healthPath} never answered 200).${lastOutput(process_)} Raise startTimeoutMs if it needs longer to load.`,
          ),
        );
      }, record.startTimeoutMs);
    });
    const exited = process_.exited.then((exit): never => {
      throw unavailable(
        `Model "${record.id}" failed to start: ${record.command[0]} ${describeExit(exit, record.config.cwd)} before it was ready.${lastOutput(process_)}`,
      );
    });
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
    try {
      await Promise.race([polling, deadline, exited, aborted]);
    } finally {
      stop.abort();
      clearTimeout(deadlineTimer);
      exited.catch(noop);
      deadline.catch(noop);
      aborted.catch(noop);
    }
  }

  function onUnexpectedExit(record: ModelRecord, process_: GroupProcess, exit: ProcessExit): void {
    if (record.process !== process_ || record.state !== 'ready') return;
    record.lastError = `Model "${record.id}" stopped unexpectedly: ${record.command[0]} ${describeExit(exit, record.config.cwd)} while serving.${lastOutput(process_)}`;
    log(
      'warn',
      record,
      { pid: process_.pid, code: exit.code, signal: exit.signal },
      'model server died',
    );
    record.state = 'failed';
    record.adapter = undefined;
    record.process = undefined;
    record.port = undefined;
    record.reservedBytes = 0;
    clearIdleTimer(record);
    memoryChanged();
    // Helpers it forked may still run.
    void terminateGroup(process_, record.stopGraceMs);
  }

  function startModel(record: ModelRecord): Promise<Backend> {
    record.state = 'starting';
    const controller = new AbortController();
    record.startController = controller;
    const run = async (): Promise<Backend> => {
      let process_: GroupProcess | undefined;
      const startedAt = now();
      try {
        const need = await needFor(record);
        await reserveMemory(record, need, controller.signal);
        const port = await findPort();
        controller.signal.throwIfAborted();
        const substitute = (value: string) => value.split(PORT_PLACEHOLDER).join(String(port));
        const [file, ...args] = [...record.command, ...record.runtimeFlags].map(substitute);
        const extraEnv = record.config.env;
        // The server inherits the gateway's environment, as spawn does by default.
        const env = extraEnv
          ? {
              ...process.env,
              ...Object.fromEntries(
                Object.entries(extraEnv).map(([name, value]) => [name, substitute(value)]),
              ),
            }
          : undefined;
        installExitHook();
        process_ = spawnGroup(spawn, file!, args, { cwd: record.config.cwd, env });
        record.process = process_;
        record.port = port;
        const started = process_;
        void started.exited.then((exit) => onUnexpectedExit(record, started, exit));
        log('info', record, { pid: process_.pid, port }, 'starting model server');
        await waitReady(record, process_, port, controller.signal);
        const adapter = createBackend({
          type: record.type,
          url:
            record.type === 'openai' ? `http://127.0.0.1:${port}/v1` : `http://127.0.0.1:${port}`,
          name: record.name,
          fetch: fetchImplementation,
          ...(record.config.apiKey ? { apiKey: record.config.apiKey } : {}),
        });
        record.adapter = adapter;
        record.state = 'ready';
        record.lastUsedAt = now();
        log(
          'info',
          record,
          { pid: process_.pid, port, startMs: now() - startedAt },
          'model server ready',
        );
        if (record.inFlight === 0) scheduleIdleCheck(record);
        return adapter;
      } catch (error) {
        const cancelled = controller.signal.aborted;
        if (process_) await terminateGroup(process_, record.stopGraceMs);
        record.process = undefined;
        record.port = undefined;
        record.reservedBytes = 0;
        memoryChanged();
        const failure = cancelled
          ? unavailable(
              `Model "${record.id}" was stopped while it was starting (${String(controller.signal.reason)}). Retry the request.`,
            )
          : isTollgateError(error)
            ? error
            : unavailable(
                `Model "${record.id}" could not be started: ${(error as Error).message}`,
                error,
              );
        if (cancelled) {
          record.state = 'stopped';
        } else {
          record.state = 'failed';
          record.lastError = failure.message;
          log('warn', record, { error: failure.message }, 'model server failed to start');
        }
        throw failure;
      } finally {
        record.starting = undefined;
        record.startController = undefined;
      }
    };
    const promise = run();
    promise.catch(noop);
    record.starting = promise;
    return promise;
  }

  /** Resolves with the running server's adapter, starting it or joining its start. */
  async function ensureReady(
    record: ModelRecord,
    signal: AbortSignal | undefined,
  ): Promise<Backend> {
    for (;;) {
      signal?.throwIfAborted();
      if (closed) throw closedError();
      if (record.state === 'ready' && record.adapter) return record.adapter;
      if (record.stopping) {
        await untilAborted(record.stopping, signal);
        continue;
      }
      const start = record.starting ?? startModel(record);
      record.waiting++;
      try {
        return await untilAborted(start, signal);
      } finally {
        record.waiting--;
        // A start waiting for memory gives up when nobody waits for it any more.
        if (record.waiting === 0 && record.awaitingMemory) {
          record.startController?.abort('every request for it left while it waited for memory');
        }
      }
    }
  }

  function stopModel(record: ModelRecord, reason: StopReason): Promise<void> {
    clearIdleTimer(record);
    if (record.stopping) return record.stopping;
    if (record.starting) {
      record.startController?.abort(
        reason === 'close' ? 'the gateway is shutting down' : `${reason}`,
      );
      return record.starting.then(noop, noop);
    }
    if (record.state === 'failed') {
      record.state = 'stopped';
      return Promise.resolve();
    }
    const process_ = record.process;
    if (record.state !== 'ready' || !process_) return Promise.resolve();
    record.state = 'stopping';
    record.adapter = undefined;
    log('info', record, { pid: process_.pid, reason }, 'stopping model server');
    const stopping = (async () => {
      const exit = await terminateGroup(process_, record.stopGraceMs);
      record.process = undefined;
      record.port = undefined;
      record.reservedBytes = 0;
      record.state = 'stopped';
      record.stopping = undefined;
      log('info', record, { reason, code: exit.code, signal: exit.signal }, 'model server stopped');
      memoryChanged();
    })();
    record.stopping = stopping;
    return stopping;
  }

  function clearIdleTimer(record: ModelRecord): void {
    if (record.idleTimer) clearTimeout(record.idleTimer);
    record.idleTimer = undefined;
  }

  function scheduleIdleCheck(record: ModelRecord, delayMs = record.ttlMs): void {
    clearIdleTimer(record);
    if (record.ttlMs <= 0 || closed) return;
    record.idleTimer = setTimeout(() => {
      record.idleTimer = undefined;
      if (record.state !== 'ready' || record.inFlight > 0) return;
      const idleMs = now() - record.lastUsedAt;
      if (idleMs >= record.ttlMs) void stopModel(record, 'ttl');
      else scheduleIdleCheck(record, record.ttlMs - idleMs);
    }, delayMs);
    record.idleTimer.unref();
  }

  function requestStarted(record: ModelRecord): () => void {
    record.inFlight++;
    record.lastUsedAt = now();
    clearIdleTimer(record);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      record.inFlight--;
      record.lastUsedAt = now();
      if (record.inFlight === 0) {
        if (record.state === 'ready') scheduleIdleCheck(record);
        memoryChanged();
      }
    };
  }

  function backendFor(record: ModelRecord): Backend {
    async function call(
      options: BackendCallOptions,
      run: (adapter: Backend) => Promise<Response>,
    ): Promise<Response> {
      const end = requestStarted(record);
      try {
        const adapter = await ensureReady(record, options.signal);
        return trackBody(await run(adapter), end);
      } catch (error) {
        end();
        throw error;
      }
    }
    return {
      name: record.name,
      kind: record.type,
      async listModels() {
        const estimate = record.config.modelPath
          ? await memoryNeed(record).then(
              () => record.estimate?.contextSize,
              () => undefined,
            )
          : undefined;
        return [estimate ? { id: record.id, contextLength: estimate } : { id: record.id }];
      },
      async health(healthOptions = {}): Promise<BackendHealth> {
        if (record.state === 'failed') {
          return { ok: false, detail: record.lastError ?? 'the last start failed' };
        }
        if (record.state === 'ready' && record.adapter) return record.adapter.health(healthOptions);
        return { ok: true };
      },
      chatCompletions: (request, callOptions) =>
        call(callOptions, (adapter) => adapter.chatCompletions(request, callOptions)),
      completions: (request, callOptions) =>
        call(callOptions, (adapter) => adapter.completions(request, callOptions)),
      embeddings: (request, callOptions) =>
        call(callOptions, (adapter) => adapter.embeddings(request, callOptions)),
    };
  }

  const backends = new Map([...records.values()].map((record) => [record.id, backendFor(record)]));

  function statusOf(record: ModelRecord): SupervisedModelStatus {
    const status: SupervisedModelStatus = {
      id: record.id,
      type: record.type,
      state: record.state,
      inFlight: record.inFlight,
      flags: [...record.runtimeFlags],
    };
    if (record.port !== undefined) status.port = record.port;
    if (record.process?.pid !== undefined && !record.process.exit) status.pid = record.process.pid;
    const memory = record.config.memoryBytes ?? record.estimate?.bytes;
    if (memory !== undefined) status.memoryEstimateBytes = memory;
    if (record.estimate?.contextSize !== undefined)
      status.contextSize = record.estimate.contextSize;
    if (record.state === 'ready' && record.inFlight === 0)
      status.idleMs = Math.max(0, now() - record.lastUsedAt);
    if (record.lastError !== undefined) status.lastError = record.lastError;
    return status;
  }

  // Estimates are read up front so the status shows them before the first start.
  for (const record of records.values())
    if (record.config.modelPath) memoryNeed(record).catch(noop);

  return {
    backends: () => [...backends.values()],

    backend(id) {
      return backends.get(find(id).id)!;
    },

    status: () => [...records.values()].map(statusOf),

    memory: () => ({ budgetBytes: budget, usedBytes: usedBytes() }),

    async load(id, loadOptions = {}) {
      const record = find(id);
      if (loadOptions.flags !== undefined) {
        const flags = validateRuntimeFlags(record.type, loadOptions.flags, {
          subject: `model "${id}"`,
          ...(record.config.allowedFlags ? { allowedFlags: record.config.allowedFlags } : {}),
        });
        const changed =
          flags.length !== record.runtimeFlags.length ||
          flags.some((flag, index) => flag !== record.runtimeFlags[index]);
        if (changed) {
          if (record.inFlight > 0) {
            throw new TollgateError(
              'conflict',
              `Model "${id}" is serving ${record.inFlight} request(s); its flags can change only when it is idle. Retry later, or unload it with force first.`,
            );
          }
          record.runtimeFlags = flags;
          await stopModel(record, 'reload');
        }
      }
      await ensureReady(record, loadOptions.signal);
      return statusOf(record);
    },

    async unload(id, unloadOptions = {}) {
      const record = find(id);
      if (record.inFlight > 0 && !unloadOptions.force) {
        throw new TollgateError(
          'conflict',
          `Model "${id}" is serving ${record.inFlight} request(s). Unload it when idle, or with force to cut them off.`,
        );
      }
      await stopModel(record, 'unload');
      return statusOf(record);
    },

    async close() {
      closed = true;
      memoryChanged();
      await Promise.all([...records.values()].map((record) => stopModel(record, 'close')));
      if (exitHookInstalled) {
        process.removeListener('exit', killAllNow);
        exitHookInstalled = false;
      }
    },
  };
}
