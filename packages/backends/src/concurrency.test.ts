import { isTollgateError, type TollgateError } from '@tollgate/protocol';
import { describe, expect, it } from 'vitest';
import { createSemaphore } from './concurrency.js';

async function refusal(promise: Promise<unknown>): Promise<TollgateError> {
  try {
    await promise;
  } catch (error) {
    if (isTollgateError(error)) return error;
    throw error;
  }
  throw new Error('expected a rejection');
}

describe('createSemaphore', () => {
  it('behavior: waiters get freed slots first in, first out', async () => {
    const slots = createSemaphore({ name: 'm', maxConcurrent: 1, maxQueue: 3 });
    const release = await slots.acquire();
    const order: number[] = [];
    const waiting = [1, 2, 3].map((index) =>
      slots.acquire().then((next) => {
        order.push(index);
        return next;
      }),
    );
    expect(slots.queued).toBe(3);
    release();
    (await waiting[0]!)();
    (await waiting[1]!)();
    (await waiting[2]!)();
    expect(order).toEqual([1, 2, 3]);
    expect(slots.active).toBe(0);
    expect(slots.queued).toBe(0);
  });

  it('behavior: releasing twice frees one slot only', async () => {
    const slots = createSemaphore({ name: 'm', maxConcurrent: 2 });
    const first = await slots.acquire();
    await slots.acquire();
    first();
    first();
    expect(slots.active).toBe(1);
    await slots.acquire();
    await expect(slots.acquire()).rejects.toMatchObject({ code: 'concurrency_limit' });
  });

  it('error: a full queue refuses with 429 and integer retry-after headers', async () => {
    const slots = createSemaphore({ name: 'llama', maxConcurrent: 1, maxQueue: 1 });
    await slots.acquire();
    void slots.acquire();
    const error = await refusal(slots.acquire());
    expect(error.code).toBe('concurrency_limit');
    expect(error.status).toBe(429);
    expect(error.message).toContain('llama');
    expect(error.headers['retry-after']).toBe('1');
    expect(error.headers['retry-after-ms']).toBe('1000');
  });

  it('behavior: retry-after follows how long slots are held', async () => {
    let clock = 0;
    const slots = createSemaphore({ name: 'm', maxConcurrent: 1, now: () => clock });
    const release = await slots.acquire();
    clock += 9000;
    release();
    await slots.acquire();
    const error = await refusal(slots.acquire());
    expect(error.headers['retry-after']).toBe('9');
    expect(error.headers['retry-after-ms']).toBe('9000');
  });

  it('error: a waiter past queueTimeoutMs is refused with 429 and leaves the queue', async () => {
    const slots = createSemaphore({ name: 'm', maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 5 });
    await slots.acquire();
    const error = await refusal(slots.acquire());
    expect(error.code).toBe('concurrency_limit');
    expect(error.headers['retry-after']).toMatch(/^[1-9]\d*$/);
    expect(slots.queued).toBe(0);
  });

  it('behavior: an aborted waiter leaves the queue with the abort reason and never takes a slot', async () => {
    const slots = createSemaphore({ name: 'm', maxConcurrent: 1, maxQueue: 2 });
    const release = await slots.acquire();
    const controller = new AbortController();
    const aborted = slots.acquire(controller.signal);
    const next = slots.acquire();
    const reason = new Error('gone');
    controller.abort(reason);
    await expect(aborted).rejects.toBe(reason);
    expect(slots.queued).toBe(1);
    release();
    (await next)();
    expect(slots.active).toBe(0);
  });

  it('error: an already aborted signal is refused at once', async () => {
    const slots = createSemaphore({ name: 'm', maxConcurrent: 1 });
    const reason = new Error('gone');
    await expect(slots.acquire(AbortSignal.abort(reason))).rejects.toBe(reason);
    expect(slots.active).toBe(0);
  });

  it('args: malformed limits are refused with RangeError', () => {
    expect(() => createSemaphore({ name: 'm', maxConcurrent: 0 })).toThrow(RangeError);
    expect(() => createSemaphore({ name: 'm', maxConcurrent: 1.5 })).toThrow(RangeError);
    expect(() => createSemaphore({ name: 'm', maxConcurrent: 1, maxQueue: -1 })).toThrow(
      RangeError,
    );
    expect(() => createSemaphore({ name: 'm', maxConcurrent: 1, queueTimeoutMs: -1 })).toThrow(
      RangeError,
    );
  });
});
