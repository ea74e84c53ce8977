/**
 * A pool of slots (context sequences) with a bounded FIFO queue: one request per slot at a
 * time, the others wait their turn, and a waiter whose caller leaves drops out of the line.
 */
import { TollgateError } from '@tollgate/protocol';

/** A slot held by one request. */
export interface Lease<T> {
  /** The slot. */
  readonly value: T;
  /** Gives the slot back (to the oldest waiter first). Only the first call counts. */
  release(): void;
}

/** Options for {@link createSlotPool}. */
export interface SlotPoolOptions {
  /** What the slots belong to (a backend name), for error messages. */
  name: string;
  /** Requests allowed to wait; one more is refused. `Infinity` for no bound. */
  maxQueue: number;
}

/** Slots handed out one request at a time. */
export interface SlotPool<T> {
  /**
   * Takes a free slot, or waits for one in line.
   *
   * @throws {TollgateError} `service_unavailable` (503, `retry-after: 1`) when the queue is
   *   full; the error given to {@link SlotPool.close} once closed.
   * @throws the signal's reason when the signal aborts first (the waiter leaves the queue).
   */
  acquire(signal: AbortSignal): Promise<Lease<T>>;
  /** Refuses every waiter and every later `acquire` with `reason`. Held slots stay held. */
  close(reason: Error): void;
  /** Requests waiting now. */
  readonly waiting: number;
}

interface Waiter<T> {
  resolve(lease: Lease<T>): void;
  reject(reason: unknown): void;
  signal: AbortSignal;
  onAbort(): void;
}

/**
 * Creates a pool over the given slots. A released slot goes straight to the oldest waiter, so
 * a newcomer never overtakes the line.
 *
 * @throws {RangeError} when there is no slot or `maxQueue` is negative or not an integer.
 * @example
 * ```ts
 * const pool = createSlotPool([sequenceA, sequenceB], { name: 'llamacpp@tiny', maxQueue: 64 });
 * const lease = await pool.acquire(signal);
 * try { await generate(lease.value); } finally { lease.release(); }
 * ```
 */
export function createSlotPool<T>(slots: readonly T[], options: SlotPoolOptions): SlotPool<T> {
  const { name, maxQueue } = options;
  if (slots.length === 0) throw new RangeError(`The slot pool of "${name}" needs a slot.`);
  if (maxQueue !== Number.POSITIVE_INFINITY && (!Number.isInteger(maxQueue) || maxQueue < 0)) {
    throw new RangeError(
      `maxQueue of "${name}" must be a non-negative integer or Infinity, got ${maxQueue}.`,
    );
  }
  const free = [...slots];
  const waiters: Waiter<T>[] = [];
  let closedWith: Error | undefined;

  function lease(value: T): Lease<T> {
    let released = false;
    return {
      value,
      release() {
        if (released) return;
        released = true;
        const next = waiters.shift();
        if (next) {
          next.signal.removeEventListener('abort', next.onAbort);
          next.resolve(lease(value));
        } else {
          free.push(value);
        }
      },
    };
  }

  return {
    acquire(signal) {
      if (signal.aborted) return Promise.reject(signal.reason);
      if (closedWith) return Promise.reject(closedWith);
      const value = free.shift();
      if (value !== undefined) return Promise.resolve(lease(value));
      if (waiters.length >= maxQueue) {
        return Promise.reject(
          new TollgateError(
            'service_unavailable',
            `Backend "${name}" is busy: ${waiters.length} requests already wait for the model. Retry shortly.`,
            { headers: { 'retry-after': '1' } },
          ),
        );
      }
      return new Promise<Lease<T>>((resolve, reject) => {
        const waiter: Waiter<T> = {
          resolve,
          reject,
          signal,
          onAbort() {
            const index = waiters.indexOf(waiter);
            if (index >= 0) waiters.splice(index, 1);
            reject(signal.reason);
          },
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
        waiters.push(waiter);
      });
    },
    close(reason) {
      closedWith = reason;
      for (const waiter of waiters.splice(0)) {
        waiter.signal.removeEventListener('abort', waiter.onAbort);
        waiter.reject(reason);
      }
    },
    get waiting() {
      return waiters.length;
    },
  };
}
