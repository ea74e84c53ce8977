import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createMemoryReplayGuard, createRedisReplayGuard } from './replay.js';

const redisUrl = process.env.TOLLGATE_TEST_REDIS_URL;

describe('replay guards', () => {
  it('behavior: in memory, an id is admitted once within the window and again after it', async () => {
    const guard = createMemoryReplayGuard(60_000);
    const id = randomBytes(32);
    expect(await guard.admit(id, 1_000)).toBe(true);
    expect(await guard.admit(id, 30_000)).toBe(false);
    expect(await guard.admit(randomBytes(32), 30_000)).toBe(true);
    expect(await guard.admit(id, 61_001)).toBe(true);
    await guard.close();
  });

  it.skipIf(!redisUrl)(
    'behavior: in Redis, two gateways share what they have seen (TOLLGATE_TEST_REDIS_URL unset: skipped)',
    async () => {
      const keyPrefix = `tollgate-test:${randomBytes(6).toString('hex')}:`;
      const first = createRedisReplayGuard({ url: redisUrl!, windowMs: 60_000, keyPrefix });
      const second = createRedisReplayGuard({ url: redisUrl!, windowMs: 60_000, keyPrefix });
      try {
        const id = randomBytes(32);
        expect(await first.admit(id, Date.now())).toBe(true);
        expect(await second.admit(id, Date.now())).toBe(false);
        expect(await second.admit(randomBytes(32), Date.now())).toBe(true);
      } finally {
        await first.close();
        await second.close();
      }
    },
  );

  it('error: an unreachable Redis rejects instead of admitting', async () => {
    const guard = createRedisReplayGuard({ url: 'redis://127.0.0.1:1', windowMs: 60_000 });
    await expect(guard.admit(randomBytes(32), Date.now())).rejects.toThrow();
    await guard.close();
  });
});
