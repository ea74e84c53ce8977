/**
 * The router's public types: how models map to backends and what a dispatch returns.
 */
import type { Operation, OperationRequest, TollgateError, Usage } from '@tollgate/protocol';
import type { Backend, BackendHealth } from './backend.js';

/** One backend as the router sees it. */
export interface RouterBackendEntry {
  /** The adapter. */
  backend: Backend;
  /**
   * Models this backend serves. When absent, they are listed from the server at start and
   * refreshed periodically.
   */
  models?: string[];
}

/** Concurrency limit for one model. */
export interface ModelConcurrency {
  /** Requests served at once across all of the model's backends. */
  maxConcurrent: number;
  /**
   * Requests allowed to wait for a slot; one more is refused with 429 `concurrency_limit`.
   * @default 0
   */
  maxQueue?: number;
  /**
   * How long a request may wait in the queue before it is refused with 429.
   * @default 30000
   */
  queueTimeoutMs?: number;
}

/** Options for {@link createRouter}. */
export interface RouterOptions {
  /** The backends, in order of preference for ties. */
  backends: RouterBackendEntry[];
  /** Alias -> model name. An alias is listed in /v1/models and routed as its target. */
  aliases?: Record<string, string>;
  /** Per-model concurrency limits, keyed by model name (after alias resolution). */
  concurrency?: Record<string, ModelConcurrency>;
  /** Health watchdog. */
  health?: {
    /** Probe interval. @default 10000 */
    intervalMs?: number;
    /** Consecutive failed probes (or failed calls) after which a backend is degraded. @default 3 */
    failureThreshold?: number;
    /** Timeout of one probe. @default 2000 */
    timeoutMs?: number;
  };
  /** How often backends without a static model list are listed again. @default 30000 */
  modelRefreshMs?: number;
  /**
   * Longest wait for an upstream's response headers (and, for streams, its first byte) before
   * giving up with 504. Streams are never cut once they have started.
   * @default 600000
   */
  firstByteTimeoutMs?: number;
  /** Clock, for tests. @default Date.now */
  now?: () => number;
  /**
   * Observer of health transitions and failed model listings (for logs and metrics). Called
   * synchronously; what it throws is ignored.
   */
  onEvent?: (event: RouterEvent) => void;
}

/** Something the router noticed, for logs and metrics. */
export type RouterEvent =
  | { type: 'backend_degraded'; backend: string; detail: string }
  | { type: 'backend_recovered'; backend: string }
  | { type: 'models_refresh_failed'; backend: string; error: unknown };

/** Per-dispatch options. */
export interface DispatchOptions {
  /** The caller's signal: aborting it aborts the upstream call, queued or in flight. */
  signal: AbortSignal;
  /** Forwarded upstream as `x-request-id`. */
  requestId?: string;
  /**
   * Called when the response body fails after it was handed back (the upstream broke, or the
   * caller went away), with the error the body is about to fail with. Return true when you
   * have cut the caller's connection yourself: the body then stays pending instead of
   * erroring, and is cancelled once the server notices. Saves wrapping the body in another
   * stream just to catch its error.
   * @default undefined (the body errors)
   */
  onBodyError?: (error: unknown) => boolean;
}

/** How a dispatched response ended. */
export interface DispatchOutcome {
  /** `completed`: the body was delivered whole; `failed`: the upstream broke; `aborted`: the caller left. */
  status: 'completed' | 'failed' | 'aborted';
  /** The HTTP status sent to the caller. */
  httpStatus: number;
  /** Usage the upstream reported, if any. */
  usage?: Usage;
  /** Whether the response was streamed. */
  streamed: boolean;
  /** Time from dispatch to the first body byte, in ms. */
  firstByteMs?: number;
  /** Time from dispatch to the end of the body, in ms. */
  totalMs: number;
  /** The error, when failed. */
  error?: unknown;
}

/** What {@link Router.dispatch} resolves with. */
export interface DispatchResult {
  /** The response to send to the caller, body streaming. */
  response: Response;
  /** The backend that answered. */
  backend: string;
  /** The model name sent upstream (aliases resolved). */
  model: string;
  /** Resolves (never rejects) when the body has been delivered, has failed, or was cancelled. */
  outcome: Promise<DispatchOutcome>;
}

/** One model in the router's list. */
export interface RouterModel {
  id: string;
  /** Backends that serve it (for an alias, its target's). */
  backends: string[];
  /** The target, when this entry is an alias. */
  aliasOf?: string;
  ownedBy?: string;
  /** The smallest context window, in tokens, that its backends report (when any does). */
  contextLength?: number;
}

/** What {@link Router.ensureModel} found. */
export interface ResolvedModel {
  /** The name the upstream will receive (aliases resolved, `:latest` added for Ollama). */
  model: string;
  /** The smallest context window its backends report, in tokens, when any does. */
  contextLength?: number;
}

/** A backend's state as the watchdog sees it. */
export interface RouterBackendStatus {
  name: string;
  kind: Backend['kind'];
  state: 'healthy' | 'degraded';
  inFlight: number;
  consecutiveFailures: number;
  models: string[];
  lastHealth?: BackendHealth & { at: number };
}

/** Where a model with a concurrency limit stands. */
export interface RouterQueueStatus {
  model: string;
  /** Requests holding a slot. */
  active: number;
  /** Requests waiting for one. */
  queued: number;
}

/** The router. */
export interface Router {
  /**
   * Routes one request: resolves aliases, picks the least busy healthy backend with the model,
   * waits for a concurrency slot, fails over to the next backend on a connection error or a
   * 5xx before any byte was sent, and hands back the response with its outcome.
   *
   * The returned response is the upstream's own status and headers (a 4xx passes through
   * unchanged) with a body that must be either read to its end or cancelled: the model's
   * concurrency slot and the backend's in-flight count are held until then, and `outcome`
   * settles only then. A broken or unfinished SSE stream ends with one OpenAI error event
   * (`code: "upstream_stream_error"`) and then a stream error.
   *
   * @throws {TollgateError} `model_not_found` (404, listing the known models),
   *   `concurrency_limit` (429 with `retry-after` / `retry-after-ms` headers),
   *   `upstream_unreachable` (502), `upstream_error` (502: the last backend answered 5xx or
   *   broke before its first byte), `upstream_unavailable` (503, with the upstream's
   *   `retry-after` when it sent one), `upstream_timeout` (504); an adapter's own
   *   non-upstream TollgateError (e.g. 400 `invalid_request`) unchanged.
   * @throws the signal's `reason` (not a TollgateError) when the caller aborts before the
   *   response is handed back.
   */
  dispatch<O extends Operation>(
    operation: O,
    request: OperationRequest[O],
    options: DispatchOptions,
  ): Promise<DispatchResult>;
  /**
   * Finds the model (or alias) a request names, listing the backends' models again once when
   * it is not known yet: lets a caller refuse an unknown model before doing anything else for
   * the request (admission, metering), and size a reservation by the model's context.
   * @throws {TollgateError} `model_not_found` (404, listing the known models).
   */
  ensureModel(model: string): Promise<ResolvedModel>;
  /** Every model and alias served, sorted by id. */
  listModels(): Promise<RouterModel[]>;
  /** Each backend's state. */
  status(): RouterBackendStatus[];
  /** The models with a concurrency limit: slots held and requests waiting, now. */
  queues(): RouterQueueStatus[];
  /** Probes every backend and lists models again now. */
  refresh(): Promise<void>;
  /** Starts the watchdog and model refresh timers (unref'd). Idempotent. */
  start(): void;
  /**
   * Ends every response body still being delivered, for a server that is shutting down: an
   * unfinished SSE stream gets one OpenAI error event with `error`'s code and message (on an
   * event boundary) and then a stream error; other bodies error with `error`. Each upstream
   * body is cancelled and each outcome settles as `aborted`. A body takes the cut on its next
   * read, so one whose caller has stopped reading is left to the server to close.
   * @returns how many bodies were cut.
   */
  cutStreams(error: TollgateError): number;
  /** Stops the timers. */
  close(): Promise<void>;
}
