/**
 * Backend health as the router tracks it: consecutive failures (from probes and from real
 * calls alike) degrade a backend, one success brings it back, and a pair of unref'd timers
 * probe and relist in the background.
 */
import type { Backend, BackendHealth } from './backend.js';

/** A backend's health state, updated by probes and by the outcome of calls. */
export interface HealthRecord {
  state: 'healthy' | 'degraded';
  consecutiveFailures: number;
  lastHealth: (BackendHealth & { at: number }) | undefined;
}

/** What changed after one observation. */
export type HealthTransition = 'degraded' | 'recovered' | undefined;

/** A fresh record: backends start healthy, so the first request does not wait for a probe. */
export function createHealthRecord(): HealthRecord {
  return { state: 'healthy', consecutiveFailures: 0, lastHealth: undefined };
}

/** Records a success (a probe that said ok, or an upstream answer below 500). */
export function recordSuccess(record: HealthRecord): HealthTransition {
  record.consecutiveFailures = 0;
  if (record.state === 'healthy') return undefined;
  record.state = 'healthy';
  return 'recovered';
}

/**
 * Records a failure (a failed probe, a connection error, a timeout, a 5xx or a broken stream)
 * and degrades the backend once `threshold` of them happened in a row.
 */
export function recordFailure(record: HealthRecord, threshold: number): HealthTransition {
  record.consecutiveFailures++;
  if (record.state === 'degraded' || record.consecutiveFailures < threshold) return undefined;
  record.state = 'degraded';
  return 'degraded';
}

/**
 * One health probe bounded by `timeoutMs`. Never rejects: a probe that throws, hangs or
 * ignores its signal comes back as `{ ok: false, detail }`.
 */
export async function probeHealth(
  backend: Backend,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<BackendHealth> {
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<BackendHealth>((resolve) => {
    timer = setTimeout(() => {
      controller.abort();
      resolve({ ok: false, detail: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
    (timer as { unref?: () => void }).unref?.();
  });
  try {
    return await Promise.race([
      backend
        .health({ signal: controller.signal })
        .catch((error: unknown): BackendHealth => ({ ok: false, detail: describeError(error) })),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/** A short, secret-free description of an error for status pages and messages. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    const code =
      cause && typeof cause === 'object' ? (cause as { code?: unknown }).code : undefined;
    return typeof code === 'string' && !error.message.includes(code)
      ? `${error.message} (${code})`
      : error.message;
  }
  return String(error);
}

/** Options for {@link startTimers}. */
export interface WatchdogTimerOptions {
  /** Probe interval in ms. */
  intervalMs: number;
  /** Runs one probe round. Must not reject. */
  probe: () => Promise<void>;
  /** Relist interval in ms; no relist timer when undefined. */
  modelRefreshMs: number | undefined;
  /** Runs one relist round. Must not reject. */
  relist: () => Promise<void>;
}

/**
 * Starts the watchdog's timers. They are unref'd, so they never keep a process alive, and a
 * round that is still running when the next tick comes is not started twice.
 *
 * @returns a function that stops the timers.
 */
export function startTimers(options: WatchdogTimerOptions): () => void {
  const timers: Array<ReturnType<typeof setInterval>> = [];
  const every = (ms: number, run: () => Promise<void>) => {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      void run().finally(() => {
        running = false;
      });
    }, ms);
    (timer as { unref?: () => void }).unref?.();
    timers.push(timer);
  };
  every(options.intervalMs, options.probe);
  if (options.modelRefreshMs !== undefined) every(options.modelRefreshMs, options.relist);
  return () => {
    for (const timer of timers) clearInterval(timer);
    timers.length = 0;
  };
}
