import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizationKey,
  createMemoryReplayLock,
  createRedisReplayLock,
  type RedisLike,
} from './index.js';
import { PAYER, SEPOLIA } from './test-fixtures.js';

const redisUrl = process.env.TOLLGATE_TEST_REDIS_URL;

describe('authorizationKey', () => {
  it('behavior: names one authorization whatever the case of its hex', () => {
    const nonce = `0x${'Ab'.repeat(32)}` as const;
    const key = authorizationKey(SEPOLIA.id, SEPOLIA.usdc.address, { from: PAYER.address, nonce });
    expect(key).toBe(
      `eip155:84532:${SEPOLIA.usdc.address.toLowerCase()}:${PAYER.address.toLowerCase()}:0x${'ab'.repeat(32)}`,
    );
    expect(
      authorizationKey(SEPOLIA.id, SEPOLIA.usdc.address.toUpperCase(), {
        from: PAYER.address.toLowerCase() as `0x${string}`,
        nonce: nonce.toUpperCase() as `0x${string}`,
      }),
    ).toBe(key);
  });

  it('behavior: another network, asset, payer or nonce is another key', () => {
    const base = { from: PAYER.address, nonce: `0x${'01'.repeat(32)}` } as const;
    const key = authorizationKey(SEPOLIA.id, SEPOLIA.usdc.address, base);
    expect(authorizationKey('eip155:8453', SEPOLIA.usdc.address, base)).not.toBe(key);
    expect(authorizationKey(SEPOLIA.id, `0x${'00'.repeat(20)}`, base)).not.toBe(key);
    expect(
      authorizationKey(SEPOLIA.id, SEPOLIA.usdc.address, { ...base, from: `0x${'00'.repeat(20)}` }),
    ).not.toBe(key);
    expect(
      authorizationKey(SEPOLIA.id, SEPOLIA.usdc.address, {
        ...base,
        nonce: `0x${'02'.repeat(32)}`,
      }),
    ).not.toBe(key);
  });
});

describe('createMemoryReplayLock', () => {
  function clock(start = 1_000_000) {
    let now = start;
    return {
      now: () => now,
      advance(ms: number) {
        now += ms;
      },
    };
  }

  it('behavior: acquire, refuse a second acquire, release, acquire again', async () => {
    const lock = createMemoryReplayLock({ now: clock().now });
    const release = await lock.acquire('a', 60_000);
    expect(release).toBeTypeOf('function');
    expect(await lock.acquire('a', 60_000)).toBeUndefined();
    expect(await lock.acquire('b', 60_000)).toBeTypeOf('function');
    await release!();
    expect(await lock.acquire('a', 60_000)).toBeTypeOf('function');
  });

  it('behavior: a lock expires after its ttl', async () => {
    const time = clock();
    const lock = createMemoryReplayLock({ now: time.now });
    await lock.acquire('a', 1000);
    time.advance(999);
    expect(await lock.acquire('a', 1000)).toBeUndefined();
    time.advance(1);
    expect(await lock.acquire('a', 1000)).toBeTypeOf('function');
  });

  it('behavior: releasing an expired lock that someone else took since leaves theirs', async () => {
    const time = clock();
    const lock = createMemoryReplayLock({ now: time.now });
    const mine = await lock.acquire('a', 1000);
    time.advance(1000);
    const theirs = await lock.acquire('a', 1000);
    expect(theirs).toBeTypeOf('function');
    await mine!();
    expect(await lock.acquire('a', 1000)).toBeUndefined();
    await theirs!();
    expect(await lock.acquire('a', 1000)).toBeTypeOf('function');
  });

  it("behavior: releasing twice does not free the next holder's lock of the same ms", async () => {
    const lock = createMemoryReplayLock({ now: clock().now });
    const release = await lock.acquire('a', 1000);
    await release!();
    const again = await lock.acquire('a', 1000);
    await release!();
    expect(await lock.acquire('a', 1000)).toBeUndefined();
    await again!();
  });

  it('behavior: expired locks are swept, so the map holds only live ones', async () => {
    const time = clock();
    const lock = createMemoryReplayLock({ now: time.now });
    for (let index = 0; index < 100; index += 1) await lock.acquire(`k${index}`, 1000);
    expect(lock.size).toBe(100);
    time.advance(60_000);
    await lock.acquire('fresh', 1000);
    expect(lock.size).toBe(1);
  });

  it('behavior: a ttl of 0 or less still holds the lock for a moment', async () => {
    const lock = createMemoryReplayLock({ now: clock().now });
    await lock.acquire('a', 0);
    expect(await lock.acquire('a', 0)).toBeUndefined();
  });
});

describe('createRedisReplayLock (fake client)', () => {
  it('error: a failing Redis rejects acquire, so the gate never serves unprotected', async () => {
    const broken: RedisLike = {
      set: () => Promise.reject(new Error('ECONNREFUSED')),
      eval: () => Promise.reject(new Error('ECONNREFUSED')),
    };
    await expect(createRedisReplayLock(broken).acquire('a', 1000)).rejects.toThrow('ECONNREFUSED');
  });

  it('behavior: SET NX PX with a whole number of ms and a release script keyed by token', async () => {
    const calls: unknown[][] = [];
    const fake: RedisLike = {
      async set(...args) {
        calls.push(['set', ...args]);
        return 'OK';
      },
      async eval(...args) {
        calls.push(['eval', ...args]);
        return 1;
      },
    };
    const release = await createRedisReplayLock(fake, { prefix: 'p:' }).acquire('k', 1500.2);
    await release!();
    const [set, evaluated] = calls as [unknown[], unknown[]];
    expect(set).toEqual(['set', 'p:k', expect.any(String), 'PX', 1501, 'NX']);
    expect(evaluated.slice(2)).toEqual([1, 'p:k', set[2]]);
  });
});

describe.skipIf(!redisUrl)('createRedisReplayLock (Redis)', () => {
  const prefix = `tollgate:x402:test:${randomUUID()}:`;
  let redis: Redis;
  let other: Redis;

  beforeAll(() => {
    redis = new Redis(redisUrl!, { lazyConnect: false, maxRetriesPerRequest: 1 });
    other = new Redis(redisUrl!, { lazyConnect: false, maxRetriesPerRequest: 1 });
  });

  afterAll(async () => {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    expect(await redis.keys(`${prefix}*`)).toEqual([]);
    await Promise.all([redis.quit(), other.quit()]);
  });

  it('behavior: acquire, refuse a second acquire, release, acquire again', async () => {
    const lock = createRedisReplayLock(redis, { prefix });
    const release = await lock.acquire('a', 60_000);
    expect(release).toBeTypeOf('function');
    expect(await lock.acquire('a', 60_000)).toBeUndefined();
    await release!();
    expect(await redis.exists(`${prefix}a`)).toBe(0);
    const again = await lock.acquire('a', 60_000);
    expect(again).toBeTypeOf('function');
    await again!();
  });

  it('behavior: the key carries the ttl', async () => {
    const lock = createRedisReplayLock(redis, { prefix });
    const release = await lock.acquire('ttl', 30_000);
    const pttl = await redis.pttl(`${prefix}ttl`);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(30_000);
    await release!();
  });

  it('behavior: two gateways on one Redis refuse each other', async () => {
    const first = createRedisReplayLock(redis, { prefix });
    const second = createRedisReplayLock(other, { prefix });
    const release = await first.acquire('shared', 60_000);
    expect(await second.acquire('shared', 60_000)).toBeUndefined();
    await release!();
    const taken = await second.acquire('shared', 60_000);
    expect(taken).toBeTypeOf('function');
    expect(await first.acquire('shared', 60_000)).toBeUndefined();
    await taken!();
  });

  it("behavior: releasing after the lock expired and was taken again leaves the new holder's", async () => {
    const lock = createRedisReplayLock(redis, { prefix });
    const mine = await lock.acquire('expired', 60_000);
    // What expiry does, without waiting for it.
    await redis.del(`${prefix}expired`);
    const theirs = await createRedisReplayLock(other, { prefix }).acquire('expired', 60_000);
    expect(theirs).toBeTypeOf('function');
    await mine!();
    expect(await redis.exists(`${prefix}expired`)).toBe(1);
    expect(await lock.acquire('expired', 60_000)).toBeUndefined();
    await theirs!();
    expect(await redis.exists(`${prefix}expired`)).toBe(0);
  });

  it('behavior: the default prefix namespaces the keys', async () => {
    const key = `test:${randomUUID()}`;
    const release = await createRedisReplayLock(redis).acquire(key, 60_000);
    expect(await redis.exists(`tollgate:x402:${key}`)).toBe(1);
    await release!();
    expect(await redis.exists(`tollgate:x402:${key}`)).toBe(0);
  });
});
