/**
 * The queue in front of the context sequences, on its own: order, abort, bound and close are
 * checked here deterministically; the backend tests check them again with real generations.
 */
import { isTollgateError } from '@tollgate/protocol';
import { describe, expect, test } from 'vitest';
import { createSlotPool } from './slot-pool.js';

const live = () => new AbortController().signal;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('slot pool', () => {
  test('behavior: hands out free slots at once, then queues in arrival order', async () => {
    const pool = createSlotPool(['a', 'b'], { name: 'test', maxQueue: 10 });
    const first = await pool.acquire(live());
    const second = await pool.acquire(live());
    expect([first.value, second.value].sort()).toEqual(['a', 'b']);

    const served: string[] = [];
    const third = pool.acquire(live()).then((lease) => {
      served.push('third');
      return lease;
    });
    const fourth = pool.acquire(live()).then((lease) => {
      served.push('fourth');
      return lease;
    });
    expect(pool.waiting).toBe(2);
    second.release();
    const thirdLease = await third;
    expect(thirdLease.value).toBe(second.value);
    first.release();
    await fourth;
    expect(served).toEqual(['third', 'fourth']);
    expect(pool.waiting).toBe(0);
  });

  test('behavior: release counts once', async () => {
    const pool = createSlotPool(['only'], { name: 'test', maxQueue: 10 });
    const lease = await pool.acquire(live());
    lease.release();
    lease.release();
    await pool.acquire(live());
    // A second release of the first lease must not have freed the slot twice.
    const waiting = pool.acquire(live());
    expect(pool.waiting).toBe(1);
    pool.close(new Error('done'));
    await expect(waiting).rejects.toThrow('done');
  });

  test('behavior: an aborted waiter leaves the queue with its reason, and the slot goes to the next one', async () => {
    const pool = createSlotPool(['only'], { name: 'test', maxQueue: 10 });
    const holder = await pool.acquire(live());
    const controller = new AbortController();
    const leaving = pool.acquire(controller.signal);
    const next = pool.acquire(live());
    expect(pool.waiting).toBe(2);
    const reason = new Error('caller left');
    controller.abort(reason);
    expect(await rejection(leaving)).toBe(reason);
    expect(pool.waiting).toBe(1);
    holder.release();
    expect((await next).value).toBe('only');
  });

  test('error: a signal aborted before the call rejects with its reason and takes nothing', async () => {
    const pool = createSlotPool(['only'], { name: 'test', maxQueue: 10 });
    const controller = new AbortController();
    const reason = new Error('gone');
    controller.abort(reason);
    expect(await rejection(pool.acquire(controller.signal))).toBe(reason);
    expect((await pool.acquire(live())).value).toBe('only');
  });

  test('error: a full queue refuses with 503 service_unavailable and retry-after', async () => {
    const pool = createSlotPool(['only'], { name: 'llamacpp@tiny', maxQueue: 1 });
    await pool.acquire(live());
    void pool.acquire(live()).catch(() => undefined);
    const error = await rejection(pool.acquire(live()));
    expect(isTollgateError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'service_unavailable', status: 503 });
    expect((error as { headers: Record<string, string> }).headers['retry-after']).toBe('1');
    expect((error as Error).message).toContain('llamacpp@tiny');
  });

  test('error: close refuses the waiters and later callers', async () => {
    const pool = createSlotPool(['only'], { name: 'test', maxQueue: 10 });
    await pool.acquire(live());
    const waiting = pool.acquire(live());
    const reason = new Error('closed');
    pool.close(reason);
    expect(await rejection(waiting)).toBe(reason);
    expect(await rejection(pool.acquire(live()))).toBe(reason);
  });

  test('error: bad sizes are refused', () => {
    expect(() => createSlotPool([], { name: 'test', maxQueue: 1 })).toThrow(RangeError);
    expect(() => createSlotPool(['a'], { name: 'test', maxQueue: -1 })).toThrow(RangeError);
    expect(() => createSlotPool(['a'], { name: 'test', maxQueue: 1.5 })).toThrow(RangeError);
    expect(() =>
      createSlotPool(['a'], { name: 'test', maxQueue: Number.POSITIVE_INFINITY }),
    ).not.toThrow();
  });
});
