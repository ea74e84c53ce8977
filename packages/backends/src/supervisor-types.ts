/**
 * The supervisor's public types: how an operator declares a model served by a command, and
 * what the supervisor tells about each.
 */
import type { Backend, BackendKind } from './backend.js';
import type { SpawnFunction } from './process-group.js';

/** Where a supervised model is in its life. */
export type SupervisedModelState = 'stopped' | 'starting' | 'ready' | 'stopping' | 'failed';

/** One model the supervisor starts on demand. */
export interface SupervisedModelConfig {
  /** The model name callers use; also the name the server is sent in `model`. */
  id: string;
  /**
   * The command that serves the model, with `${PORT}` where the port goes (the supervisor picks
   * a free one on 127.0.0.1 at each start). An array of arguments, or one string split like a
   * shell would (quotes and backslashes, no variables or pipes).
   * @example ['llama-server', '-m', '/models/qwen.gguf', '--port', '${PORT}', '-c', '8192']
   */
  command: string | string[];
  /** Extra environment variables (`${PORT}` is replaced in values too). @default {} */
  env?: Record<string, string>;
  /** Working directory of the command. @default the gateway's */
  cwd?: string;
  /** Path polled until it answers 200 to know the server is ready. @default '/health' */
  healthPath?: string;
  /** The server's kind: which adapter talks to it and which runtime flags it accepts. @default 'llama-server' */
  type?: Exclude<BackendKind, 'llamacpp'>;
  /** Stop the server after this long without a request in flight, in ms. 0 never stops it. @default 0 */
  ttlMs?: number;
  /** Longest wait for the server to become ready, in ms. @default 120000 */
  startTimeoutMs?: number;
  /** Wait between SIGTERM and SIGKILL when stopping, in ms. @default 10000 */
  stopGraceMs?: number;
  /** A GGUF file to estimate the model's memory from (weights, KV cache for the context size). */
  modelPath?: string;
  /** The model's memory need in bytes, instead of the GGUF estimate. */
  memoryBytes?: number;
  /**
   * Runtime flags API callers may pass to `load` (flag names), replacing the server type's
   * built-in allowlist. `[]` allows none.
   * @default the built-in allowlist of `type`
   */
  allowedFlags?: string[];
  /** Sent as `authorization: Bearer <apiKey>` when the command sets one (e.g. `--api-key`). */
  apiKey?: string;
}

/** Where the supervisor writes what it does: a pino logger fits. */
export interface SupervisorLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
}

/** Options for {@link createSupervisor}. */
export interface SupervisorOptions {
  /** The models, each with the command that serves it. Ids must be unique. */
  models: SupervisedModelConfig[];
  /**
   * Memory the running models may take together, in bytes. Starting a model that would exceed
   * it first stops the least recently used idle models; models with requests in flight are
   * never stopped, so the start waits for one to become idle.
   * @default undefined (no budget)
   */
  memoryBudgetBytes?: number;
  /** Longest wait for memory held by busy models, in ms, before failing with 503. @default 60000 */
  memoryWaitTimeoutMs?: number;
  /** Interval between readiness polls while a server starts, in ms. @default 250 */
  readinessIntervalMs?: number;
  /** `spawn` from `node:child_process`, for tests. @default spawn */
  spawn?: SpawnFunction;
  /** Picks the port for a start. @default a free port on 127.0.0.1 chosen by the OS */
  findPort?: () => Promise<number>;
  /** Clock in ms, for idle times and TTLs. @default Date.now */
  now?: () => number;
  /** The fetch for readiness polls and the adapters. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Where starts, stops and crashes are logged. @default no logging */
  logger?: SupervisorLogger;
}

/** One model as {@link Supervisor.status} reports it. */
export interface SupervisedModelStatus {
  id: string;
  /** The server's kind. */
  type: BackendKind;
  state: SupervisedModelState;
  /** The port it listens on, while starting, ready or stopping. */
  port?: number;
  /** The process id (its process group id too), while it runs. */
  pid?: number;
  /** Memory it needs, in bytes (`memoryBytes`, or the GGUF estimate once read). */
  memoryEstimateBytes?: number;
  /** Context size the estimate assumed, in tokens, when known. */
  contextSize?: number;
  /** Time since its last request ended, in ms, when ready with nothing in flight. */
  idleMs?: number;
  /** Requests in flight, those waiting for it to start included. */
  inFlight: number;
  /** Runtime flags it starts with, from `load`. */
  flags: string[];
  /** Why the last start failed or the server last died. Kept after a later success. */
  lastError?: string;
}

/** Options for {@link Supervisor.load}. */
export interface SupervisorLoadOptions {
  /**
   * Runtime flags (checked against the allowlist), appended to the configured command from
   * now on. Different from the current ones, they restart an idle running server. Omitted, the
   * current flags stay; `[]` clears them.
   */
  flags?: string[];
  /** Gives up waiting (the start goes on). */
  signal?: AbortSignal;
}

/** Options for {@link Supervisor.unload}. */
export interface SupervisorUnloadOptions {
  /** Stop even with requests in flight (they fail). @default false */
  force?: boolean;
}

/** Memory the supervised models hold. */
export interface SupervisorMemory {
  /** The budget, when one is set. */
  budgetBytes: number | undefined;
  /** What starting, ready and stopping models hold, in bytes. */
  usedBytes: number;
}

/** The supervisor: starts models on demand, stops idle ones, keeps within a memory budget. */
export interface Supervisor {
  /**
   * One `Backend` per model, in the configured order, to give the router. Each starts its
   * server on the first request (concurrent requests wait for the same start), counts its
   * requests until their bodies end, and talks to the server through the adapter of its `type`.
   * `listModels()` returns the model's id, running or not; `health()` is ok while the model is
   * stopped or starting (a request will start it) and tells the failure after a failed start.
   */
  backends(): Backend[];
  /**
   * The `Backend` of one model.
   * @throws {TollgateError} `model_not_found` (404) for an unknown id.
   */
  backend(id: string): Backend;
  /** Every model's state, in the configured order. */
  status(): SupervisedModelStatus[];
  /** Memory held against the budget. */
  memory(): SupervisorMemory;
  /**
   * Starts a model (if not running) and resolves once it is ready.
   * @throws {TollgateError} `model_not_found` (404), `invalid_request` (400) for refused
   *   flags, `conflict` (409) to change the flags of a model with requests in flight,
   *   `upstream_unavailable` (503) when the start fails (with the reason) or memory stays held.
   */
  load(id: string, options?: SupervisorLoadOptions): Promise<SupervisedModelStatus>;
  /**
   * Stops a model (SIGTERM to its process group, SIGKILL after the grace period).
   * @throws {TollgateError} `model_not_found` (404), `conflict` (409) when requests are in
   *   flight and `force` is not set.
   */
  unload(id: string, options?: SupervisorUnloadOptions): Promise<SupervisedModelStatus>;
  /** Stops every model and refuses further requests with 503. Idempotent. */
  close(): Promise<void>;
}
