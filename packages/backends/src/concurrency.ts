/**
 * A counting semaphore with a bounded FIFO queue, used by the router to cap how many requests
 * one model serves at once.
 */
import { TollgateError } from '@tollgate/protocol';

/** Gives a slot back. Safe to call more than once: only the first call counts. */
export type ReleaseSlot = () => void;

/** Options for {@link createSemaphore}. */
export interface SemaphoreOptions {
  /** What the slots guard (a model name), used in error messages. */
  name: string;
  /** Slots held at once. A positive integer. */
  maxConcurrent: number;
  /**
   * Callers allowed to wait for a slot; one more is refused with 429 `concurrency_limit`.
   * @default 0
   */
  maxQueue?: number;
  /**
   * Longest wait in the queue before the caller is refused with 429, in ms.
   * @default 30000
   */
  queueTimeoutMs?: number;
  /** Clock in ms, used to estimate `retry-after`. @default Date.now */
  now?: () => number;
}

/** A semaphore with a bounded queue. */
export interface Semaphore {
  /**
   * Takes a slot, waiting in the queue when all are held.
   *
   * @throws {TollgateError} `concurrency_limit` (429, with `retry-after` and `retry-after-ms`
   *   headers) when the queue is full or the wait exceeded `queueTimeoutMs`.
   * @throws the signal's reason when the signal aborts while waiting.
   */
  acquire(signal?: AbortSignal): Promise<ReleaseSlot>;
  /** Slots held now. */
  readonly active: number;
  /** Callers waiting now. */
  readonly queued: number;
}

interface Waiter {
  resolve: (release: ReleaseSlot) => void;
  timer: ReturnType<typeof setTimeout>;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** Shortest and longest `retry-after` the estimate gives, in ms. */
const MIN_RETRY_MS = 1000;
const MAX_RETRY_MS = 60_000;

/**
 * Creates a semaphore. A released slot goes straight to the oldest waiter, so the queue is
 * strictly first in, first out and a newcomer never overtakes it.
 *
 * @throws {RangeError} when `maxConcurrent` is not a positive integer or `maxQueue` /
 *   `queueTimeoutMs` are negative.
 * @example
 * ```ts
 * const slots = createSemaphore({ name: 'llama3', maxConcurrent: 2, maxQueue: 8 });
 * const release = await slots.acquire(request.signal);
 * try { await work(); } finally { release(); }
 * ```
 */
export function createSemaphore(options: SemaphoreOptions): Semaphore {
  const { name, maxConcurrent } = options;
  const maxQueue = options.maxQueue ?? 0;
  const queueTimeoutMs = options.queueTimeoutMs ?? 30_000;
  const now = options.now ?? Date.now;
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
    throw new RangeError(
      `maxConcurrent for "${name}" must be a positive integer, got ${maxConcurrent}.`,
    );
  }
  if (!Number.isInteger(maxQueue) || maxQueue < 0) {
    throw new RangeError(`maxQueue for "${name}" must be a non-negative integer, got ${maxQueue}.`);
  }
  if (!(queueTimeoutMs >= 0)) {
    throw new RangeError(`queueTimeoutMs for "${name}" must be >= 0, got ${queueTimeoutMs}.`);
  }

  let active = 0;
  // A Set keeps insertion order (FIFO) and removes an aborted waiter from the middle in O(1).
  const waiters = new Set<Waiter>();
  // Smoothed time a slot is held, to tell refused callers roughly when one frees up.
  let averageHoldMs: number | undefined;

  function grant(): ReleaseSlot {
    const acquiredAt = now();
    let released = false;
    return function releaseSlot() {
      if (released) return;
      released = true;
      const held = Math.max(0, now() - acquiredAt);
      averageHoldMs = averageHoldMs === undefined ? held : averageHoldMs * 0.8 + held * 0.2;
      const next = waiters.values().next();
      if (next.done) {
        active--;
        return;
      }
      // Hand the slot over without ever dropping `active`, so nobody can slip in between.
      const waiter = next.value;
      forget(waiter);
      waiter.resolve(grant());
    };
  }

  function forget(waiter: Waiter): void {
    waiters.delete(waiter);
    clearTimeout(waiter.timer);
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
  }

  function limitError(reason: string): TollgateError {
    // Roughly when a slot frees for someone at the back of the line: each slot turns over
    // once per average hold time.
    const estimate =
      averageHoldMs === undefined
        ? MIN_RETRY_MS
        : (averageHoldMs * (waiters.size + 1)) / maxConcurrent;
    const retryMs = Math.round(Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, estimate)));
    return new TollgateError(
      'concurrency_limit',
      `Model "${name}" is busy (${active} of ${maxConcurrent} requests running, ${waiters.size} waiting): ${reason}. Retry after ${Math.ceil(retryMs / 1000)} s.`,
      {
        headers: {
          'retry-after': String(Math.ceil(retryMs / 1000)),
          'retry-after-ms': String(retryMs),
        },
      },
    );
  }

  return {
    acquire(signal) {
      if (signal?.aborted) return Promise.reject(signal.reason);
      if (active < maxConcurrent && waiters.size === 0) {
        active++;
        return Promise.resolve(grant());
      }
      if (waiters.size >= maxQueue) {
        return Promise.reject(
          limitError(maxQueue === 0 ? 'no queue is configured' : 'the queue is full'),
        );
      }
      return new Promise<ReleaseSlot>((resolve, reject) => {
        const waiter: Waiter = {
          resolve,
          timer: setTimeout(() => {
            forget(waiter);
            reject(limitError(`waited ${queueTimeoutMs} ms in the queue`));
          }, queueTimeoutMs),
          signal,
          onAbort: undefined,
        };
        if (signal) {
          waiter.onAbort = () => {
            forget(waiter);
            reject(signal.reason);
          };
          signal.addEventListener('abort', waiter.onAbort, { once: true });
        }
        waiters.add(waiter);
      });
    },
    get active() {
      return active;
    },
    get queued() {
      return waiters.size;
    },
  };
}
