/**
 * The router: model name -> backends, aliases, least-in-flight balancing with round-robin
 * ties, failover before the first byte, a health watchdog, and per-model concurrency limits
 * with a bounded queue.
 */
import {
  type ChatCompletionRequest,
  type CompletionRequest,
  type EmbeddingRequest,
  isTollgateError,
  type Operation,
  type OperationRequest,
  readUpstreamErrorMessage,
  TollgateError,
} from '@tollgate/protocol';
import { untilAborted } from './abort.js';
import type { Backend, BackendCallOptions } from './backend.js';
import { createSemaphore, type ReleaseSlot, type Semaphore } from './concurrency.js';
import {
  createHealthRecord,
  type HealthRecord,
  type HealthTransition,
  probeHealth,
  recordFailure,
  recordSuccess,
  startTimers,
} from './health-watchdog.js';
import type {
  DispatchOptions,
  DispatchOutcome,
  DispatchResult,
  ResolvedModel,
  Router,
  RouterBackendStatus,
  RouterEvent,
  RouterModel,
  RouterOptions,
} from './router-types.js';
import { type BodyRelay, createBodyRelay, type RelayEnd } from './stream-finisher.js';

/** Misses on unknown models relist the backends at most this often, in ms. */
const MISS_REFRESH_MIN_MS = 5000;
/** Listing a backend's models may take longer than a health probe (a server loading a model). */
const MIN_LIST_TIMEOUT_MS = 5000;
/** Bytes read from a 5xx body to find its message. */
const ERROR_BODY_LIMIT = 16 * 1024;
/** Longest wait for a 5xx body (its message), in ms. */
const ERROR_BODY_TIMEOUT_MS = 2000;
/** Models named in a 404 message before "and N more". */
const MAX_MODELS_IN_MESSAGE = 20;

interface BackendState {
  readonly backend: Backend;
  readonly name: string;
  /** No static list: the models come from the server. */
  readonly dynamic: boolean;
  models: string[];
  ownedBy: Map<string, string> | undefined;
  /** Context window per model, in tokens, where the server reports one. */
  contextLengths: Map<string, number> | undefined;
  /** A listing has been tried at least once (successful or not). */
  listAttempted: boolean;
  inFlight: number;
  readonly health: HealthRecord;
}

interface ModelRoute {
  readonly backends: BackendState[];
  ownedBy: string | undefined;
  /** The smallest context window its backends report, if any does. */
  contextLength: number | undefined;
  /** Advances on every dispatch, so equally busy backends take turns. */
  turn: number;
}

type FailureKind = 'unreachable' | 'timeout' | 'http' | 'broken';

interface AttemptFailure {
  backend: string;
  kind: FailureKind;
  /** The upstream's HTTP status, for `http`. */
  status?: number;
  /** Safe to show the caller. */
  detail: string;
  cause: unknown;
  retryAfter?: string | null;
}

interface DispatchContext {
  operation: Operation;
  request: OperationRequest[Operation];
  signal: AbortSignal;
  requestId: string | undefined;
  onBodyError: ((error: unknown) => boolean) | undefined;
  streamRequested: boolean;
  includeUsage: boolean;
  startedAt: number;
  release: ReleaseSlot | undefined;
}

type AttemptResult = { result: DispatchResult } | { failure: AttemptFailure };

const noop = () => {};

/**
 * Creates a router over a set of backends.
 *
 * `dispatch` resolves aliases (the upstream gets the target's name), waits for a concurrency
 * slot when the model has a limit, and tries the healthy backends serving the model, least
 * in flight first. A connection error, a timeout, a 5xx, or (for `stream: true`) a body that
 * ends or breaks before its first chunk moves on to the next backend; once a response is
 * handed back it is never retried. Upstream answers below 500 come back as they are.
 *
 * @throws {RangeError} when a concurrency limit is malformed.
 * @throws {TypeError} when two backends share a name.
 * @example
 * ```ts
 * const router = createRouter({
 *   backends: [{ backend: createOllama({ url: 'http://127.0.0.1:11434' }) }],
 *   aliases: { default: 'llama3.2:latest' },
 *   concurrency: { 'llama3.2:latest': { maxConcurrent: 2, maxQueue: 8 } },
 * });
 * router.start();
 * const { response, outcome } = await router.dispatch('chat.completions', request, { signal });
 * outcome.then((result) => record(result.usage));
 * return response;
 * ```
 */
export function createRouter(options: RouterOptions): Router {
  const now = options.now ?? Date.now;
  const intervalMs = options.health?.intervalMs ?? 10_000;
  const failureThreshold = Math.max(1, options.health?.failureThreshold ?? 3);
  const probeTimeoutMs = options.health?.timeoutMs ?? 2000;
  const listTimeoutMs = Math.max(probeTimeoutMs, MIN_LIST_TIMEOUT_MS);
  const modelRefreshMs = options.modelRefreshMs ?? 30_000;
  const firstByteTimeoutMs = options.firstByteTimeoutMs ?? 600_000;
  const onEvent = options.onEvent;
  // A Map, not the record: a model called "constructor" must not find Object.prototype's.
  const aliases = new Map(Object.entries(options.aliases ?? {}));

  const states: BackendState[] = [];
  const names = new Set<string>();
  for (const entry of options.backends) {
    const name = entry.backend.name;
    if (names.has(name))
      throw new TypeError(`Two backends are named "${name}"; give each a unique name.`);
    names.add(name);
    states.push({
      backend: entry.backend,
      name,
      dynamic: entry.models === undefined,
      models: entry.models ? [...entry.models] : [],
      ownedBy: undefined,
      contextLengths: undefined,
      listAttempted: entry.models !== undefined,
      inFlight: 0,
      health: createHealthRecord(),
    });
  }
  const hasDynamic = states.some((state) => state.dynamic);

  const semaphores = new Map<string, Semaphore>();
  for (const [model, limit] of Object.entries(options.concurrency ?? {})) {
    semaphores.set(model, createSemaphore({ name: model, ...limit, now }));
  }

  let routes = buildRoutes(new Map());
  let modelRefresh: Promise<void> | undefined;
  let probeRound: Promise<void> | undefined;
  let lastMissRefreshAt: number | undefined;
  let stopTimers: (() => void) | undefined;
  /** Bodies being delivered, for {@link Router.cutStreams}. */
  const delivering = new Set<BodyRelay>();

  function emit(event: RouterEvent): void {
    if (!onEvent) return;
    try {
      onEvent(event);
    } catch {
      // An observer's bug must not break routing.
    }
  }

  function observe(state: BackendState, transition: HealthTransition, detail: string): void {
    if (transition === 'degraded') emit({ type: 'backend_degraded', backend: state.name, detail });
    else if (transition === 'recovered') emit({ type: 'backend_recovered', backend: state.name });
  }

  function callSucceeded(state: BackendState): void {
    observe(state, recordSuccess(state.health), '');
  }

  function callFailed(state: BackendState, detail: string): void {
    observe(state, recordFailure(state.health, failureThreshold), detail);
  }

  function buildRoutes(previous: Map<string, ModelRoute>): Map<string, ModelRoute> {
    const next = new Map<string, ModelRoute>();
    for (const state of states) {
      for (const model of state.models) {
        let route = next.get(model);
        if (!route) {
          route = {
            backends: [],
            ownedBy: undefined,
            contextLength: undefined,
            turn: previous.get(model)?.turn ?? 0,
          };
          next.set(model, route);
        }
        if (route.backends.includes(state)) continue;
        route.backends.push(state);
        route.ownedBy ??= state.ownedBy?.get(model);
        const contextLength = state.contextLengths?.get(model);
        if (contextLength !== undefined)
          route.contextLength = Math.min(route.contextLength ?? contextLength, contextLength);
      }
    }
    return next;
  }

  function resolveModel(requested: string): { model: string; route: ModelRoute } | undefined {
    const target = aliases.get(requested) ?? requested;
    const route = routes.get(target);
    if (route) return { model: target, route };
    // Ollama serves "name" as "name:latest" and lists only the latter.
    if (!target.includes(':')) {
      const latest = `${target}:latest`;
      const latestRoute = routes.get(latest);
      if (latestRoute) return { model: latest, route: latestRoute };
    }
    return undefined;
  }

  function knownModelIds(): string[] {
    const ids = new Set(routes.keys());
    for (const [alias, target] of aliases) if (routes.has(target)) ids.add(alias);
    return [...ids].sort(compareIds);
  }

  function modelNotFound(requested: string): TollgateError {
    const known = knownModelIds();
    const shown = requested.length > 200 ? `${requested.slice(0, 200)}...` : requested;
    if (known.length === 0) {
      return new TollgateError(
        'model_not_found',
        `The model "${shown}" is not available: no backend serves any model right now. Check that the inference servers are running.`,
        { param: 'model' },
      );
    }
    const list =
      known.length > MAX_MODELS_IN_MESSAGE
        ? `${known.slice(0, MAX_MODELS_IN_MESSAGE).join(', ')} and ${known.length - MAX_MODELS_IN_MESSAGE} more (GET /v1/models lists them all)`
        : known.join(', ');
    return new TollgateError(
      'model_not_found',
      `The model "${shown}" does not exist here. Known models: ${list}.`,
      {
        param: 'model',
      },
    );
  }

  async function listOne(state: BackendState): Promise<void> {
    try {
      const models = await withTimeout(
        (signal) => state.backend.listModels({ signal }),
        listTimeoutMs,
      );
      state.models = models.map((model) => model.id);
      const ownedBy = new Map<string, string>();
      const contextLengths = new Map<string, number>();
      for (const model of models) {
        if (model.ownedBy !== undefined) ownedBy.set(model.id, model.ownedBy);
        if (model.contextLength !== undefined) contextLengths.set(model.id, model.contextLength);
      }
      state.ownedBy = ownedBy;
      state.contextLengths = contextLengths;
    } catch (error) {
      // Keep the last good list: one failed listing should not make a model vanish.
      emit({ type: 'models_refresh_failed', backend: state.name, error });
    } finally {
      state.listAttempted = true;
    }
  }

  function refreshModels(): Promise<void> {
    if (modelRefresh) return modelRefresh;
    const round = (async () => {
      try {
        await Promise.all(states.filter((state) => state.dynamic).map(listOne));
        routes = buildRoutes(routes);
      } finally {
        modelRefresh = undefined;
      }
    })();
    modelRefresh = round;
    return round;
  }

  function refreshOnMiss(): Promise<void> {
    if (modelRefresh) return modelRefresh;
    if (!hasDynamic) return Promise.resolve();
    const at = now();
    if (lastMissRefreshAt !== undefined && at - lastMissRefreshAt < MISS_REFRESH_MIN_MS)
      return Promise.resolve();
    lastMissRefreshAt = at;
    return refreshModels();
  }

  function probeAll(): Promise<void> {
    if (probeRound) return probeRound;
    const round = (async () => {
      try {
        await Promise.all(
          states.map(async (state) => {
            const health = await probeHealth(state.backend, probeTimeoutMs);
            state.health.lastHealth = { ...health, at: now() };
            if (health.ok) callSucceeded(state);
            else callFailed(state, health.detail ?? 'health probe failed');
          }),
        );
      } finally {
        probeRound = undefined;
      }
    })();
    probeRound = round;
    return round;
  }

  function candidatesFor(route: ModelRoute): BackendState[] {
    const all = route.backends;
    const turn = route.turn++;
    if (all.length === 1) return all;
    let pool = all.filter((state) => state.health.state === 'healthy');
    // Degraded backends are a last resort: used only when none serving the model is healthy.
    if (pool.length === 0) pool = all.slice();
    const offset = turn % pool.length;
    if (offset !== 0) pool = pool.slice(offset).concat(pool.slice(0, offset));
    // Array.prototype.sort is stable: equally busy backends keep the rotated order.
    return pool.sort((a, b) => a.inFlight - b.inFlight);
  }

  async function attempt(state: BackendState, context: DispatchContext): Promise<AttemptResult> {
    const { signal } = context;
    state.inFlight++;
    const controller = new AbortController();
    const onCallerAbort = () => controller.abort(signal.reason);
    signal.addEventListener('abort', onCallerAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(
        new TollgateError(
          'upstream_timeout',
          `Backend "${state.name}" sent nothing within ${firstByteTimeoutMs} ms.`,
        ),
      );
    }, firstByteTimeoutMs);

    let call: Promise<Response> | undefined;
    let response: Response | undefined;
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    let firstChunk: Uint8Array | undefined;
    let firstByteAt: number | undefined;
    let failure: AttemptFailure | undefined;
    let phase: 'call' | 'first-chunk' = 'call';

    const giveUp = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onCallerAbort);
      if (reader) reader.cancel().catch(noop);
      else if (response?.body) response.body.cancel().catch(noop);
      else if (call) {
        // The race was lost to an abort; a response that still arrives must not leak.
        call.then((late) => late.body?.cancel().catch(noop), noop);
      }
      if (!controller.signal.aborted) controller.abort();
      state.inFlight--;
    };

    try {
      call = callBackend(state.backend, context.operation, context.request, {
        signal: controller.signal,
        ...(context.requestId === undefined ? {} : { requestId: context.requestId }),
      });
      response = await untilAborted(call, controller.signal);
      if (response.status >= 500) {
        reader = response.body?.getReader();
        // Best effort and bounded: the message helps the caller, but must not hold up failover.
        const text = reader
          ? await readText(reader, ERROR_BODY_LIMIT, ERROR_BODY_TIMEOUT_MS, controller.signal)
          : '';
        if (signal.aborted) throw signal.reason;
        failure = {
          backend: state.name,
          kind: 'http',
          status: response.status,
          detail: readUpstreamErrorMessage(text) ?? (response.statusText || 'no message'),
          cause: undefined,
          retryAfter: response.headers.get('retry-after'),
        };
      } else if (context.streamRequested && response.ok) {
        phase = 'first-chunk';
        if (!response.body) {
          failure = {
            backend: state.name,
            kind: 'broken',
            detail: 'answered a stream request with no body',
            cause: undefined,
          };
        } else {
          reader = response.body.getReader();
          // Commit only once data flows: a server that sends headers and then dies is
          // still failed over.
          for (;;) {
            const result = await untilAborted(reader.read(), controller.signal);
            if (result.done) {
              failure = {
                backend: state.name,
                kind: 'broken',
                detail: 'closed its stream before sending any data',
                cause: undefined,
              };
              break;
            }
            if (result.value.byteLength > 0) {
              firstChunk = result.value;
              firstByteAt = now();
              break;
            }
          }
        }
      }
    } catch (error) {
      if (signal.aborted) {
        giveUp();
        throw signal.reason;
      }
      if (timedOut) {
        failure = {
          backend: state.name,
          kind: 'timeout',
          detail: `no answer within ${firstByteTimeoutMs} ms`,
          cause: error,
        };
      } else if (phase === 'first-chunk') {
        failure = {
          backend: state.name,
          kind: 'broken',
          detail: 'its stream broke before sending any data',
          cause: error,
        };
      } else {
        failure = classifyRejection(state.name, error);
        if (!failure) {
          // Not an upstream failure (a bad request the adapter refused, or a bug): no failover.
          giveUp();
          throw error;
        }
      }
    }

    if (failure) {
      giveUp();
      callFailed(state, failure.detail);
      return { failure };
    }
    // The caller may have left in the same tick the answer came.
    if (signal.aborted) {
      giveUp();
      throw signal.reason;
    }
    return {
      result: commit(
        state,
        context,
        response!,
        reader,
        firstChunk,
        firstByteAt,
        controller,
        timer,
        onCallerAbort,
      ),
    };
  }

  function commit(
    state: BackendState,
    context: DispatchContext,
    response: Response,
    lockedReader: ReadableStreamDefaultReader<Uint8Array> | undefined,
    firstChunk: Uint8Array | undefined,
    firstByteAtStart: number | undefined,
    controller: AbortController,
    timer: ReturnType<typeof setTimeout>,
    onAttemptAbort: () => void,
  ): DispatchResult {
    const { signal, startedAt, release } = context;
    // After this point no timer may cut the response.
    clearTimeout(timer);
    signal.removeEventListener('abort', onAttemptAbort);
    callSucceeded(state);

    const format = !response.ok ? 'raw' : isEventStream(response) ? 'sse' : 'json';
    let firstByteAt = firstByteAtStart;
    let resolveOutcome!: (outcome: DispatchOutcome) => void;
    const outcome = new Promise<DispatchOutcome>((resolve) => {
      resolveOutcome = resolve;
    });
    let onCallerAbort = noop;
    let relay: BodyRelay | undefined;

    const onEnd = (end: RelayEnd) => {
      if (relay) delivering.delete(relay);
      signal.removeEventListener('abort', onCallerAbort);
      state.inFlight--;
      release?.();
      if (end.status !== 'completed' && !controller.signal.aborted) controller.abort();
      if (end.status === 'failed') callFailed(state, 'the response stream broke');
      const result: DispatchOutcome = {
        status: end.status,
        httpStatus: response.status,
        streamed: format === 'sse',
        totalMs: now() - startedAt,
      };
      if (end.usage) result.usage = end.usage;
      if (firstByteAt !== undefined) result.firstByteMs = firstByteAt - startedAt;
      if (end.error !== undefined) result.error = end.error;
      resolveOutcome(result);
    };

    const base = { backend: state.name, model: context.request.model, outcome };
    if (!response.body) {
      onEnd({ status: 'completed', usage: undefined });
      return { ...base, response };
    }

    relay = createBodyRelay({
      reader: lockedReader ?? response.body.getReader(),
      format,
      stripUsage: format === 'sse' && !context.includeUsage,
      onFirstByte: () => {
        firstByteAt ??= now();
      },
      onEnd,
      ...(firstChunk ? { first: firstChunk } : {}),
      ...(context.onBodyError ? { onError: context.onBodyError } : {}),
    });
    const delivery = relay;
    delivering.add(delivery);
    onCallerAbort = () => {
      controller.abort(signal.reason);
      delivery.abort(signal.reason);
    };
    signal.addEventListener('abort', onCallerAbort, { once: true });

    let headers: Headers = response.headers;
    if (format === 'sse' && headers.has('content-length')) {
      // The finisher may drop or add bytes, so a length the upstream declared no longer holds.
      headers = new Headers(headers);
      headers.delete('content-length');
    }
    return {
      ...base,
      response: new Response(delivery.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      }),
    };
  }

  function allFailed(model: string, failures: AttemptFailure[]): TollgateError {
    const last = failures[failures.length - 1]!;
    const tried = failures
      .map((failure) => `${failure.backend} (${summarize(failure)})`)
      .join(', ');
    const triedNote = failures.length > 1 ? ` Tried: ${tried}.` : '';
    switch (last.kind) {
      case 'http': {
        const unavailable = last.status === 503;
        const headers: Record<string, string> = {};
        if (unavailable && last.retryAfter) headers['retry-after'] = last.retryAfter;
        return new TollgateError(
          unavailable ? 'upstream_unavailable' : 'upstream_error',
          `Backend "${last.backend}" failed with HTTP ${last.status} for model "${model}": ${last.detail.replace(/[.\s]+$/, '')}.${triedNote}`,
          { cause: last.cause, headers },
        );
      }
      case 'timeout':
        return new TollgateError(
          'upstream_timeout',
          `Backend "${last.backend}" timed out for model "${model}" (${last.detail}).${triedNote} Retry later.`,
          { cause: last.cause },
        );
      case 'broken':
        return new TollgateError(
          'upstream_error',
          `Backend "${last.backend}" ${last.detail} for model "${model}".${triedNote} Retry the request.`,
          { cause: last.cause },
        );
      default:
        return new TollgateError(
          'upstream_unreachable',
          `No backend serving model "${model}" could be reached (tried ${tried}). Check that the inference server is running.`,
          { cause: last.cause },
        );
    }
  }

  async function dispatch<O extends Operation>(
    operation: O,
    request: OperationRequest[O],
    dispatchOptions: DispatchOptions,
  ): Promise<DispatchResult> {
    const startedAt = now();
    const { signal } = dispatchOptions;
    signal.throwIfAborted();
    let resolved = resolveModel(request.model);
    if (!resolved) {
      await refreshOnMiss();
      signal.throwIfAborted();
      resolved = resolveModel(request.model);
      if (!resolved) throw modelNotFound(request.model);
    }
    const { model } = resolved;
    // Copy, never mutate: the caller may log or reuse its request.
    const upstreamRequest = model === request.model ? request : { ...request, model };
    const semaphore =
      semaphores.get(model) ?? semaphores.get(aliases.get(request.model) ?? request.model);
    const release = semaphore ? await semaphore.acquire(signal) : undefined;
    try {
      const streamed = request as ChatCompletionRequest;
      const context: DispatchContext = {
        operation,
        request: upstreamRequest,
        signal,
        requestId: dispatchOptions.requestId,
        onBodyError: dispatchOptions.onBodyError,
        streamRequested: streamed.stream === true,
        includeUsage: streamed.stream_options?.include_usage === true,
        startedAt,
        release,
      };
      // The list may have changed while queued.
      const route = routes.get(model) ?? resolved.route;
      const failures: AttemptFailure[] = [];
      for (const state of candidatesFor(route)) {
        signal.throwIfAborted();
        const result = await attempt(state, context);
        if ('result' in result) return result.result;
        failures.push(result.failure);
      }
      throw allFailed(model, failures);
    } catch (error) {
      release?.();
      throw error;
    }
  }

  return {
    dispatch,

    async ensureModel(model) {
      let resolved = resolveModel(model);
      if (!resolved) {
        await refreshOnMiss();
        resolved = resolveModel(model);
        if (!resolved) throw modelNotFound(model);
      }
      const found: ResolvedModel = { model: resolved.model };
      if (resolved.route.contextLength !== undefined)
        found.contextLength = resolved.route.contextLength;
      return found;
    },

    async listModels() {
      if (states.some((state) => !state.listAttempted)) await refreshModels();
      const list: RouterModel[] = [];
      for (const [id, route] of routes) {
        if (aliases.has(id)) continue;
        const entry: RouterModel = { id, backends: route.backends.map((state) => state.name) };
        if (route.ownedBy !== undefined) entry.ownedBy = route.ownedBy;
        if (route.contextLength !== undefined) entry.contextLength = route.contextLength;
        list.push(entry);
      }
      for (const [alias, target] of aliases) {
        const route = routes.get(target);
        if (!route) continue;
        const entry: RouterModel = {
          id: alias,
          backends: route.backends.map((state) => state.name),
          aliasOf: target,
        };
        if (route.ownedBy !== undefined) entry.ownedBy = route.ownedBy;
        if (route.contextLength !== undefined) entry.contextLength = route.contextLength;
        list.push(entry);
      }
      return list.sort((a, b) => compareIds(a.id, b.id));
    },

    queues() {
      return [...semaphores].map(([model, semaphore]) => ({
        model,
        active: semaphore.active,
        queued: semaphore.queued,
      }));
    },
    status() {
      return states.map((state): RouterBackendStatus => {
        const status: RouterBackendStatus = {
          name: state.name,
          kind: state.backend.kind,
          state: state.health.state,
          inFlight: state.inFlight,
          consecutiveFailures: state.health.consecutiveFailures,
          models: [...state.models],
        };
        if (state.health.lastHealth) status.lastHealth = { ...state.health.lastHealth };
        return status;
      });
    },

    async refresh() {
      await Promise.all([probeAll(), refreshModels()]);
    },

    start() {
      if (stopTimers) return;
      stopTimers = startTimers({
        intervalMs,
        probe: () => probeAll().catch(noop),
        modelRefreshMs: hasDynamic ? modelRefreshMs : undefined,
        relist: () => refreshModels().catch(noop),
      });
      void Promise.all([probeAll(), refreshModels()]).catch(noop);
    },

    cutStreams(error) {
      const cut = [...delivering];
      for (const delivery of cut) delivery.cut(error);
      return cut.length;
    },

    async close() {
      stopTimers?.();
      stopTimers = undefined;
      await Promise.all([probeRound?.catch(noop), modelRefresh?.catch(noop)]);
    },
  };
}

function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isEventStream(response: Response): boolean {
  return response.headers.get('content-type')?.toLowerCase().includes('text/event-stream') === true;
}

function summarize(failure: AttemptFailure): string {
  switch (failure.kind) {
    case 'http':
      return `HTTP ${failure.status}`;
    case 'timeout':
      return 'timed out';
    default:
      return failure.detail;
  }
}

/**
 * Sorts an adapter's rejection: upstream trouble fails over; anything else (a request the
 * adapter refused, a 4xx-class TollgateError) is the caller's answer. Errors that are not
 * TollgateErrors break the contract but most likely come from the network layer (fetch's
 * TypeError), so they count as "unreachable" — their text is kept as the cause only.
 */
function classifyRejection(backend: string, error: unknown): AttemptFailure | undefined {
  if (!isTollgateError(error)) {
    return { backend, kind: 'unreachable', detail: 'connection failed', cause: error };
  }
  if (error.code === 'upstream_timeout')
    return { backend, kind: 'timeout', detail: error.message, cause: error };
  if (error.code === 'upstream_unreachable')
    return { backend, kind: 'unreachable', detail: error.message, cause: error };
  if (error.status >= 502) {
    return {
      backend,
      kind: 'http',
      status: error.status,
      detail: error.message,
      cause: error,
      retryAfter: error.headers['retry-after'],
    };
  }
  return undefined;
}

function callBackend(
  backend: Backend,
  operation: Operation,
  request: OperationRequest[Operation],
  options: BackendCallOptions,
): Promise<Response> {
  try {
    switch (operation) {
      case 'chat.completions':
        return backend.chatCompletions(request as ChatCompletionRequest, options);
      case 'completions':
        return backend.completions(request as CompletionRequest, options);
      case 'embeddings':
        return backend.embeddings(request as EmbeddingRequest, options);
      default:
        return Promise.reject(new TypeError(`Unknown operation "${String(operation)}".`));
    }
  } catch (error) {
    // A handler that throws synchronously is treated like one that rejects.
    return Promise.reject(error);
  }
}

/**
 * Reads up to `limit` bytes of a body as text, for at most `ms` or until `signal` aborts;
 * never rejects: a body that breaks or stalls yields what came.
 */
async function readText(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  limit: number,
  ms: number,
  signal: AbortSignal,
): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  let size = 0;
  // Cancelling resolves the pending read as done, which ends the loop below.
  const stop = () => reader.cancel().catch(noop);
  const timer = setTimeout(stop, ms);
  signal.addEventListener('abort', stop, { once: true });
  try {
    if (signal.aborted) return '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      size += value.byteLength;
      if (size >= limit) {
        stop();
        break;
      }
    }
  } catch {
    // The message is best effort.
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', stop);
  }
  return text + decoder.decode();
}

/** Runs `run` with a signal that aborts after `ms`, and gives up on it then even if it hangs. */
async function withTimeout<T>(run: (signal: AbortSignal) => Promise<T>, ms: number): Promise<T> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new Error(`no answer within ${ms} ms`);
      controller.abort(error);
      reject(error);
    }, ms);
    (timer as { unref?: () => void }).unref?.();
  });
  try {
    return await Promise.race([run(controller.signal), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
