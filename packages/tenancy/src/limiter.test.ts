import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryLimiter } from './limiter-memory.js';
import { createRedisLimiter } from './limiter-redis.js';
import type {
  Limiter,
  LimiterLimits,
  LimiterRequest,
  LimiterReservation,
  LimiterResult,
} from './types.js';

const redisUrl = process.env.TOLLGATE_TEST_REDIS_URL;

/** 10 s into a UTC minute, mid-day, mid-month. */
const T0 = Date.UTC(2030, 4, 15, 12, 0, 10);
const MINUTE = 60_000;
const MINUTE_START = Date.UTC(2030, 4, 15, 12, 0, 0);
const DAY_START = Date.UTC(2030, 4, 15);
const DAY_END = Date.UTC(2030, 4, 16);
const MONTH_START = Date.UTC(2030, 4, 1);
const MONTH_END = Date.UTC(2030, 5, 1);

type LimiterOptions = { concurrencyRetryMs?: number };

interface LimiterHarness {
  /** A new limiter; for Redis each has its own client and all share the suite's keys. */
  create(options?: LimiterOptions): Limiter;
  /** Whether limiters from `create` share their state (two gateways on one Redis). */
  shared: boolean;
}

function tenantId(): string {
  return `tn_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

let admissions = 0;
function request(
  tenant: string,
  limits: LimiterLimits,
  overrides: Partial<LimiterRequest> = {},
): LimiterRequest {
  admissions += 1;
  return {
    tenantId: tenant,
    limits,
    admissionId: `ad_${admissions}`,
    tokens: 10,
    costMicroUsd: 0,
    now: T0,
    ...overrides,
  };
}

function accepted(result: LimiterResult): LimiterReservation {
  if (!result.ok) throw new Error(`expected an admission, got a refusal for ${result.reason}`);
  return result.reservation;
}

function pause(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function describeLimiter(
  name: string,
  setup: () => Promise<LimiterHarness>,
  cleanup = async () => {},
) {
  describe(name, () => {
    let harness: LimiterHarness;
    const open: Limiter[] = [];
    const make = (options?: LimiterOptions): Limiter => {
      const limiter = harness.create(options);
      open.push(limiter);
      return limiter;
    };

    beforeAll(async () => {
      harness = await setup();
    });
    afterEach(async () => {
      await Promise.all(open.splice(0).map((limiter) => limiter.close()));
    });
    afterAll(cleanup);

    it('behavior: no limits admits with an empty state and reserves no slot or period', async () => {
      const limiter = make();
      const result = await limiter.admit(request(tenantId(), {}));
      expect(result).toEqual({
        ok: true,
        state: {},
        reservation: expect.objectContaining({
          minuteStart: MINUTE_START,
          periods: [],
          slot: false,
        }),
      });
    });

    it('behavior: requests per minute refuses the next request until the minute ends', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits = { requestsPerMinute: 2 };
      accepted(await limiter.admit(request(tenant, limits)));
      const second = await limiter.admit(request(tenant, limits));
      expect(second.ok && second.state.requests).toEqual({
        limit: 2,
        remaining: 0,
        resetMs: 50_000,
      });
      expect(await limiter.admit(request(tenant, limits, { now: T0 + 5000 }))).toEqual({
        ok: false,
        reason: 'requests_per_minute',
        retryAfterMs: 45_000,
        limit: 2,
        state: { requests: { limit: 2, remaining: 0, resetMs: 45_000 } },
      });
      const next = await limiter.admit(request(tenant, limits, { now: MINUTE_START + MINUTE }));
      expect(next.ok && next.state.requests).toEqual({ limit: 2, remaining: 1, resetMs: MINUTE });
    });

    it('behavior: tokens per minute refuses what would exceed the limit', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits = { tokensPerMinute: 100 };
      const first = await limiter.admit(request(tenant, limits, { tokens: 60 }));
      expect(first.ok && first.state.tokens).toEqual({
        limit: 100,
        remaining: 40,
        resetMs: 50_000,
      });
      expect(await limiter.admit(request(tenant, limits, { tokens: 41 }))).toEqual({
        ok: false,
        reason: 'tokens_per_minute',
        retryAfterMs: 50_000,
        limit: 100,
        state: { tokens: { limit: 100, remaining: 40, resetMs: 50_000 } },
      });
      const last = await limiter.admit(request(tenant, limits, { tokens: 40 }));
      expect(last.ok && last.state.tokens).toEqual({ limit: 100, remaining: 0, resetMs: 50_000 });
    });

    it('behavior: concurrency refuses past maxConcurrent with the configured retry', async () => {
      const limiter = make({ concurrencyRetryMs: 250 });
      const tenant = tenantId();
      const limits = { maxConcurrent: 2 };
      expect(accepted(await limiter.admit(request(tenant, limits))).slot).toBe(true);
      accepted(await limiter.admit(request(tenant, limits)));
      expect(await limiter.admit(request(tenant, limits))).toEqual({
        ok: false,
        reason: 'concurrency',
        retryAfterMs: 250,
        limit: 2,
        state: {},
      });
      expect(await limiter.inFlight(tenant, T0)).toBe(2);
      const byDefault = await make().admit(request(tenantId(), { maxConcurrent: 0 }));
      expect(byDefault).toMatchObject({ ok: false, reason: 'concurrency', retryAfterMs: 1000 });
    });

    it('behavior: a day token budget refuses until the day ends', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits: LimiterLimits = { budgets: [{ period: 'day', tokens: 100 }] };
      const first = accepted(await limiter.admit(request(tenant, limits, { tokens: 70 })));
      expect(first.periods).toEqual([{ period: 'day', start: DAY_START }]);
      expect(await limiter.admit(request(tenant, limits, { tokens: 31 }))).toEqual({
        ok: false,
        reason: 'budget_tokens',
        retryAfterMs: DAY_END - T0,
        limit: 100,
        state: {},
      });
      accepted(await limiter.admit(request(tenant, limits, { tokens: 30 })));
      accepted(await limiter.admit(request(tenant, limits, { tokens: 100, now: DAY_END })));
    });

    it('behavior: a month spend budget refuses until the month ends', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits: LimiterLimits = { budgets: [{ period: 'month', spendMicroUsd: 5000 }] };
      const first = accepted(await limiter.admit(request(tenant, limits, { costMicroUsd: 3000 })));
      expect(first.periods).toEqual([{ period: 'month', start: MONTH_START }]);
      expect(await limiter.admit(request(tenant, limits, { costMicroUsd: 2001 }))).toMatchObject({
        ok: false,
        reason: 'budget_spend',
        retryAfterMs: MONTH_END - T0,
        limit: 5000,
      });
      accepted(await limiter.admit(request(tenant, limits, { costMicroUsd: 2000 })));
    });

    it('behavior: checks run in order concurrency, requests, tokens, budget tokens, budget spend', async () => {
      const limiter = make();
      const tenant = tenantId();
      const full: LimiterLimits = {
        maxConcurrent: 1,
        requestsPerMinute: 1,
        tokensPerMinute: 10,
        budgets: [{ period: 'day', tokens: 10, spendMicroUsd: 10 }],
      };
      accepted(await limiter.admit(request(tenant, full, { tokens: 10, costMicroUsd: 10 })));
      // Limits travel with each request, so dropping one at a time exposes the next check.
      const budget = { period: 'day' as const, tokens: 10, spendMicroUsd: 10 };
      const reasons: string[] = [];
      for (const limits of [
        full,
        { requestsPerMinute: 1, tokensPerMinute: 10, budgets: [budget] },
        { tokensPerMinute: 10, budgets: [budget] },
        { budgets: [budget] },
        { budgets: [{ period: 'day' as const, spendMicroUsd: 10 }] },
      ]) {
        const result = await limiter.admit(request(tenant, limits, { tokens: 1, costMicroUsd: 1 }));
        reasons.push(result.ok ? 'ok' : result.reason);
      }
      expect(reasons).toEqual([
        'concurrency',
        'requests_per_minute',
        'tokens_per_minute',
        'budget_tokens',
        'budget_spend',
      ]);
    });

    it('behavior: a refusal reserves nothing', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits: LimiterLimits = {
        requestsPerMinute: 3,
        tokensPerMinute: 100,
        maxConcurrent: 3,
        budgets: [{ period: 'day', tokens: 130 }],
      };
      accepted(await limiter.admit(request(tenant, limits, { tokens: 80 })));
      expect(await limiter.admit(request(tenant, limits, { tokens: 30 }))).toMatchObject({
        reason: 'tokens_per_minute',
      });
      // Refused by the budget in the next minute; the last admission shows it counted nothing.
      expect(
        await limiter.admit(request(tenant, limits, { tokens: 60, now: T0 + MINUTE })),
      ).toMatchObject({ reason: 'budget_tokens' });
      expect(await limiter.inFlight(tenant, T0)).toBe(1);
      const second = await limiter.admit(request(tenant, limits, { tokens: 20 }));
      expect(second.ok && second.state).toEqual({
        requests: { limit: 3, remaining: 1, resetMs: 50_000 },
        tokens: { limit: 100, remaining: 0, resetMs: 50_000 },
      });
      const late = await limiter.admit(request(tenant, limits, { tokens: 30, now: T0 + MINUTE }));
      expect(late.ok && late.state.tokens?.remaining).toBe(70);
      expect(await limiter.inFlight(tenant, T0 + MINUTE)).toBe(3);
    });

    it('behavior: settle refunds the unused part in the same window and period', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits: LimiterLimits = {
        tokensPerMinute: 100,
        budgets: [{ period: 'day', tokens: 100, spendMicroUsd: 1000 }],
      };
      const reservation = accepted(
        await limiter.admit(request(tenant, limits, { tokens: 80, costMicroUsd: 800 })),
      );
      await limiter.settle(reservation, { tokens: 30, costMicroUsd: 300, now: T0 + 1000 });
      const next = await limiter.admit(request(tenant, limits, { tokens: 70, costMicroUsd: 700 }));
      expect(next.ok && next.state.tokens?.remaining).toBe(0);
      expect(
        await limiter.admit(request(tenant, limits, { tokens: 1, now: T0 + MINUTE })),
      ).toMatchObject({ reason: 'budget_tokens' });
      expect(
        await limiter.admit(
          request(tenant, limits, { tokens: 0, costMicroUsd: 1, now: T0 + MINUTE }),
        ),
      ).toMatchObject({ reason: 'budget_spend' });
    });

    it('behavior: settle adds an excess in the same window', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits = { tokensPerMinute: 100 };
      const reservation = accepted(await limiter.admit(request(tenant, limits, { tokens: 20 })));
      await limiter.settle(reservation, { tokens: 90, costMicroUsd: 0, now: T0 });
      expect(await limiter.admit(request(tenant, limits, { tokens: 11 }))).toMatchObject({
        reason: 'tokens_per_minute',
      });
      accepted(await limiter.admit(request(tenant, limits, { tokens: 10 })));
    });

    it('behavior: after the window ends, settle gives no refund to the new one', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits = { tokensPerMinute: 100 };
      const old = accepted(await limiter.admit(request(tenant, limits, { tokens: 80 })));
      accepted(await limiter.admit(request(tenant, limits, { tokens: 50, now: T0 + MINUTE })));
      await limiter.settle(old, { tokens: 10, costMicroUsd: 0, now: T0 + MINUTE });
      expect(
        await limiter.admit(request(tenant, limits, { tokens: 51, now: T0 + MINUTE })),
      ).toMatchObject({ reason: 'tokens_per_minute' });
    });

    it('behavior: after the window ends, settle adds the excess to the current one', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits = { tokensPerMinute: 100 };
      const old = accepted(await limiter.admit(request(tenant, limits, { tokens: 10 })));
      await limiter.settle(old, { tokens: 70, costMicroUsd: 0, now: T0 + MINUTE });
      const now = T0 + MINUTE + 1000;
      expect(await limiter.admit(request(tenant, limits, { tokens: 41, now }))).toMatchObject({
        reason: 'tokens_per_minute',
      });
      const last = await limiter.admit(request(tenant, limits, { tokens: 40, now }));
      expect(last.ok && last.state.tokens?.remaining).toBe(0);
    });

    it('behavior: across midnight settle refunds nothing to the new day and adds the excess', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits: LimiterLimits = { budgets: [{ period: 'day', tokens: 100 }] };
      const beforeMidnight = DAY_END - 30_000;
      const afterMidnight = DAY_END + 30_000;
      const refunded = accepted(
        await limiter.admit(request(tenant, limits, { tokens: 80, now: beforeMidnight })),
      );
      const over = accepted(
        await limiter.admit(request(tenant, limits, { tokens: 10, now: beforeMidnight })),
      );
      accepted(await limiter.admit(request(tenant, limits, { tokens: 20, now: afterMidnight })));
      await limiter.settle(refunded, { tokens: 0, costMicroUsd: 0, now: afterMidnight });
      await limiter.settle(over, { tokens: 50, costMicroUsd: 0, now: afterMidnight });
      // The new day holds 20 admitted + 40 excess; the old day's refund of 80 went nowhere.
      expect(
        await limiter.admit(request(tenant, limits, { tokens: 41, now: afterMidnight })),
      ).toMatchObject({
        reason: 'budget_tokens',
        retryAfterMs: DAY_END + 86_400_000 - afterMidnight,
      });
      accepted(await limiter.admit(request(tenant, limits, { tokens: 40, now: afterMidnight })));
    });

    it('behavior: counters never go below zero', async () => {
      const limiter = make();
      const tenant = tenantId();
      // Admitted while the tenant had no tokens-per-minute limit: nothing was counted there,
      // so the refund must not drive the minute's counter negative.
      const uncounted = accepted(await limiter.admit(request(tenant, {}, { tokens: 50 })));
      await limiter.settle(uncounted, { tokens: 0, costMicroUsd: 0, now: T0 });
      const counted = await limiter.admit(
        request(tenant, { tokensPerMinute: 100 }, { tokens: 100 }),
      );
      expect(counted.ok && counted.state.tokens?.remaining).toBe(0);

      // A caller that settles twice cannot mint budget either.
      const budget: LimiterLimits = { budgets: [{ period: 'day', tokens: 100 }] };
      const once = accepted(await limiter.admit(request(tenant, budget, { tokens: 40 })));
      await limiter.settle(once, { tokens: 0, costMicroUsd: 0, now: T0 });
      await limiter.settle(once, { tokens: 0, costMicroUsd: 0, now: T0 });
      expect(await limiter.admit(request(tenant, budget, { tokens: 101 }))).toMatchObject({
        reason: 'budget_tokens',
      });
      accepted(await limiter.admit(request(tenant, budget, { tokens: 100 })));
    });

    it('behavior: settle releases the slot and never refunds the request', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits = { maxConcurrent: 1, requestsPerMinute: 2 };
      const first = accepted(await limiter.admit(request(tenant, limits)));
      expect(await limiter.admit(request(tenant, limits))).toMatchObject({ reason: 'concurrency' });
      await limiter.settle(first, { tokens: 0, costMicroUsd: 0, now: T0 });
      expect(await limiter.inFlight(tenant, T0)).toBe(0);
      const second = accepted(await limiter.admit(request(tenant, limits)));
      await limiter.settle(second, { tokens: 0, costMicroUsd: 0, now: T0 });
      expect(await limiter.admit(request(tenant, limits))).toMatchObject({
        reason: 'requests_per_minute',
      });
    });

    it('behavior: settle with odd figures still releases the slot', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits: LimiterLimits = { maxConcurrent: 1, tokensPerMinute: 100 };
      const reservation = accepted(await limiter.admit(request(tenant, limits, { tokens: 50 })));
      await limiter.settle(reservation, { tokens: Number.NaN, costMicroUsd: -3, now: T0 });
      expect(await limiter.inFlight(tenant, T0)).toBe(0);
      // NaN leaves the reservation standing: 50 of 100 are still taken.
      const next = await limiter.admit(request(tenant, limits, { tokens: 50 }));
      expect(next.ok && next.state.tokens?.remaining).toBe(0);
    });

    it('error: invalid figures reject the admission and change nothing', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits = { requestsPerMinute: 1, maxConcurrent: 1 };
      await expect(limiter.admit(request(tenant, limits, { tokens: -1 }))).rejects.toThrow(
        RangeError,
      );
      await expect(limiter.admit(request(tenant, limits, { costMicroUsd: 0.5 }))).rejects.toThrow(
        RangeError,
      );
      await expect(limiter.admit(request(tenant, limits, { now: Number.NaN }))).rejects.toThrow(
        TypeError,
      );
      accepted(await limiter.admit(request(tenant, limits)));
    });

    it('behavior: budgets are seeded from usedInPeriod once per period under concurrent admits', async () => {
      const limiter = make();
      const tenant = tenantId();
      const calls: Array<[string, number]> = [];
      const usedInPeriod = async (period: 'day' | 'month', start: Date) => {
        calls.push([period, start.getTime()]);
        await new Promise((resolve) => setTimeout(resolve, 5));
        return period === 'day'
          ? { tokens: 900, costMicroUsd: 0 }
          : { tokens: 0, costMicroUsd: 7000 };
      };
      const limits: LimiterLimits = {
        budgets: [
          { period: 'day', tokens: 1000 },
          { period: 'month', spendMicroUsd: 10_000 },
        ],
      };
      const results = await Promise.all(
        Array.from({ length: 30 }, () =>
          limiter.admit(request(tenant, limits, { tokens: 10, costMicroUsd: 100, usedInPeriod })),
        ),
      );
      expect(calls.sort()).toEqual([
        ['day', DAY_START],
        ['month', MONTH_START],
      ]);
      expect(results.filter((result) => result.ok)).toHaveLength(10);
      expect(
        results.filter((result) => !result.ok).map((result) => !result.ok && result.reason),
      ).toEqual(Array(20).fill('budget_tokens'));
      // Month spend: 7000 seeded + 10 x 100 reserved, so 2001 more is refused.
      expect(
        await limiter.admit(
          request(tenant, limits, { tokens: 0, costMicroUsd: 2001, usedInPeriod }),
        ),
      ).toMatchObject({ reason: 'budget_spend', limit: 10_000 });
      expect(calls).toHaveLength(2);
    });

    it('error: a failing usedInPeriod rejects the admission and is asked again next time', async () => {
      const limiter = make();
      const tenant = tenantId();
      const limits: LimiterLimits = { budgets: [{ period: 'day', tokens: 100 }] };
      let fail = true;
      const usedInPeriod = async () => {
        if (fail) throw new Error('store down');
        return { tokens: 95, costMicroUsd: 0 };
      };
      await expect(limiter.admit(request(tenant, limits, { usedInPeriod }))).rejects.toThrow(
        'store down',
      );
      fail = false;
      expect(await limiter.admit(request(tenant, limits, { usedInPeriod }))).toMatchObject({
        reason: 'budget_tokens',
      });
    });

    it('behavior: budgets survive a restart', async () => {
      const tenant = tenantId();
      const limits: LimiterLimits = { budgets: [{ period: 'month', tokens: 1000 }] };
      // What the store holds once the first process has recorded its usage.
      let recorded = 0;
      const usedInPeriod = async () => ({ tokens: recorded, costMicroUsd: 0 });
      const before = make();
      const reservation = accepted(
        await before.admit(request(tenant, limits, { tokens: 700, usedInPeriod })),
      );
      await before.settle(reservation, { tokens: 600, costMicroUsd: 0, now: T0 });
      recorded = 600;
      await before.close();

      const after = make();
      expect(
        await after.admit(request(tenant, limits, { tokens: 401, now: T0 + 1, usedInPeriod })),
      ).toMatchObject({ reason: 'budget_tokens' });
      accepted(
        await after.admit(request(tenant, limits, { tokens: 400, now: T0 + 1, usedInPeriod })),
      );
    });

    it('behavior: 300 concurrent admissions never hold more than 5 slots nor exceed the budget', async () => {
      // Two limiters with one Redis stand for two gateways; in memory state is per limiter.
      const limiters = harness.shared ? [make(), make()] : [make()];
      const tenant = tenantId();
      const limits: LimiterLimits = {
        maxConcurrent: 5,
        budgets: [{ period: 'day', tokens: 100 }],
      };
      let held = 0;
      let mostHeld = 0;
      let admitted = 0;
      const budgetRefusals: number[] = [];
      await Promise.all(
        Array.from({ length: 300 }, async (_, index) => {
          const limiter = limiters[index % limiters.length]!;
          for (let attempt = 0; attempt < 200; attempt += 1) {
            const result = await limiter.admit(
              request(tenant, limits, { tokens: 3, admissionId: `ad_p${index}_${attempt}` }),
            );
            if (result.ok) {
              held += 1;
              admitted += 1;
              mostHeld = Math.max(mostHeld, held);
              await pause();
              held -= 1;
              await limiter.settle(result.reservation, { tokens: 3, costMicroUsd: 0, now: T0 });
              return;
            }
            if (result.reason === 'budget_tokens') {
              budgetRefusals.push(index);
              return;
            }
            await pause();
          }
        }),
      );
      expect(mostHeld).toBeLessThanOrEqual(5);
      expect(admitted * 3).toBeLessThanOrEqual(100);
      expect(admitted).toBe(33);
      expect(budgetRefusals).toHaveLength(300 - 33);
      expect(await limiters[0]!.inFlight(tenant, T0)).toBe(0);
    });
  });
}

describeLimiter('memory limiter (shared suite)', async () => ({
  create: (options) => createMemoryLimiter(options),
  shared: false,
}));

{
  const prefix = `tollgate-test:${randomUUID()}:`;
  let admin: Redis;
  describe.skipIf(redisUrl === undefined)('Redis (TOLLGATE_TEST_REDIS_URL unset: skipped)', () => {
    describeLimiter(
      'redis limiter (shared suite)',
      async () => {
        admin = new Redis(redisUrl!);
        return {
          create: (options) =>
            createRedisLimiter({ redis: redisUrl!, keyPrefix: prefix, ...options }),
          shared: true,
        };
      },
      async () => {
        const keys = await admin.keys(`${prefix}*`);
        if (keys.length > 0) await admin.del(...keys);
        await admin.quit();
      },
    );

    describe('redis limiter', () => {
      const own = `tollgate-test:${randomUUID()}:`;
      let client: Redis;
      const open: Limiter[] = [];
      const make = (options: Partial<Parameters<typeof createRedisLimiter>[0]> = {}) => {
        const limiter = createRedisLimiter({ redis: client, keyPrefix: own, ...options });
        open.push(limiter);
        return limiter;
      };
      beforeAll(() => {
        client = new Redis(redisUrl!);
      });
      afterEach(async () => {
        await Promise.all(open.splice(0).map((limiter) => limiter.close()));
      });
      afterAll(async () => {
        const keys = await client.keys(`${own}*`);
        if (keys.length > 0) await client.del(...keys);
        await client.quit();
      });

      it('behavior: a lease ends the slot of a gateway that died', async () => {
        const tenant = tenantId();
        const limits = { maxConcurrent: 1 };
        const dead = make({ slotLeaseMs: 1000 });
        accepted(await dead.admit(request(tenant, limits)));
        await dead.close();
        const alive = make({ slotLeaseMs: 1000 });
        expect(await alive.admit(request(tenant, limits, { now: T0 + 999 }))).toMatchObject({
          reason: 'concurrency',
        });
        expect(await alive.inFlight(tenant, T0 + 999)).toBe(1);
        expect(await alive.inFlight(tenant, T0 + 1000)).toBe(0);
        accepted(await alive.admit(request(tenant, limits, { now: T0 + 1000 })));
      });

      it('behavior: renew extends a held slot past its lease, and never takes back a released one', async () => {
        const tenant = tenantId();
        const limits = { maxConcurrent: 2 };
        const limiter = make({ slotLeaseMs: 1000 });
        const running = accepted(await limiter.admit(request(tenant, limits)));
        const ended = accepted(await limiter.admit(request(tenant, limits)));
        await limiter.settle(ended, { tokens: 10, costMicroUsd: 0, now: T0 + 100 });
        await limiter.renew!([running, ended], T0 + 800);
        // The running one holds on to T0 + 1800; the released one stays released.
        expect(await limiter.inFlight(tenant, T0 + 1500)).toBe(1);
        expect(await limiter.inFlight(tenant, T0 + 1800)).toBe(0);
        const key = `${own}{${tenant}}:slots`;
        expect(await client.zrange(key, '0', '-1')).toEqual([running.admissionId]);
        expect(await client.pttl(key)).toBeGreaterThan(1000);
      });

      it('behavior: every key of a tenant carries its hash tag and expires', async () => {
        const tenant = tenantId();
        const limiter = make();
        const reservation = accepted(
          await limiter.admit(
            request(tenant, {
              requestsPerMinute: 5,
              maxConcurrent: 2,
              budgets: [
                { period: 'day', tokens: 100 },
                { period: 'month', tokens: 1000 },
              ],
            }),
          ),
        );
        await limiter.admit(request(tenant, { maxConcurrent: 2 }));
        const keys = (await client.keys(`${own}*`)).filter((key) => key.includes(tenant));
        expect(keys.sort()).toEqual(
          [
            `${own}{${tenant}}:b:day:${DAY_START}`,
            `${own}{${tenant}}:b:month:${MONTH_START}`,
            `${own}{${tenant}}:m:${MINUTE_START}`,
            `${own}{${tenant}}:slots`,
          ].sort(),
        );
        for (const key of keys) expect(await client.pttl(key)).toBeGreaterThan(0);
        await limiter.settle(reservation, { tokens: 50, costMicroUsd: 0, now: T0 + MINUTE });
        const excess = `${own}{${tenant}}:m:${MINUTE_START + MINUTE}`;
        expect(await client.hget(excess, 'tokens')).toBe('40');
        expect(await client.pttl(excess)).toBeGreaterThan(0);
      });

      it('behavior: two gateways seeding one period at once add the store usage once', async () => {
        const tenant = tenantId();
        const limits: LimiterLimits = { budgets: [{ period: 'day', tokens: 1000 }] };
        let calls = 0;
        const usedInPeriod = async () => {
          calls += 1;
          await new Promise((resolve) => setTimeout(resolve, 5));
          return { tokens: 900, costMicroUsd: 0 };
        };
        const gateways = [make(), make()];
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, index) =>
            gateways[index % 2]!.admit(request(tenant, limits, { tokens: 10, usedInPeriod })),
          ),
        );
        expect(calls).toBeLessThanOrEqual(2);
        expect(results.filter((result) => result.ok)).toHaveLength(10);
      });

      it('behavior: a period counter Redis lost is seeded again', async () => {
        const tenant = tenantId();
        const limits: LimiterLimits = { budgets: [{ period: 'day', tokens: 1000 }] };
        const limiter = make();
        let calls = 0;
        const usedInPeriod = async () => {
          calls += 1;
          return { tokens: 990, costMicroUsd: 0 };
        };
        accepted(await limiter.admit(request(tenant, limits, { usedInPeriod })));
        await client.del(`${own}{${tenant}}:b:day:${DAY_START}`);
        expect(
          await limiter.admit(request(tenant, limits, { tokens: 11, usedInPeriod })),
        ).toMatchObject({
          reason: 'budget_tokens',
        });
        expect(calls).toBe(2);
      });

      it('behavior: the scripts are loaded again after SCRIPT FLUSH', async () => {
        const limiter = make();
        accepted(await limiter.admit(request(tenantId(), { requestsPerMinute: 1 })));
        await client.script('FLUSH');
        const tenant = tenantId();
        const reservation = accepted(await limiter.admit(request(tenant, { maxConcurrent: 1 })));
        await client.script('FLUSH');
        await limiter.settle(reservation, { tokens: 0, costMicroUsd: 0, now: T0 });
        expect(await limiter.inFlight(tenant, T0)).toBe(0);
      });

      it('behavior: close leaves a client it was handed open', async () => {
        const limiter = createRedisLimiter({ redis: client, keyPrefix: own });
        await limiter.close();
        expect(await client.ping()).toBe('PONG');
      });

      it('error: a limiter that made its client from a URL closes it', async () => {
        const limiter = createRedisLimiter({ redis: redisUrl!, keyPrefix: own });
        accepted(await limiter.admit(request(tenantId(), { maxConcurrent: 1 })));
        await limiter.close();
        await expect(limiter.admit(request(tenantId(), { maxConcurrent: 1 }))).rejects.toThrow(
          /closed/i,
        );
      });

      it('error: an unreachable Redis rejects admit instead of waiting', async () => {
        // Port 1 on loopback: nothing listens, so every connection attempt is refused.
        const limiter = createRedisLimiter({
          redis: 'redis://127.0.0.1:1',
          keyPrefix: own,
          commandTimeoutMs: 300,
        });
        try {
          await expect(limiter.admit(request(tenantId(), { maxConcurrent: 1 }))).rejects.toThrow();
          const reservation: LimiterReservation = {
            tenantId: tenantId(),
            admissionId: 'ad_x',
            tokens: 1,
            costMicroUsd: 0,
            minuteStart: MINUTE_START,
            periods: [],
            slot: true,
          };
          await expect(
            limiter.settle(reservation, { tokens: 1, costMicroUsd: 0, now: T0 }),
          ).rejects.toThrow();
        } finally {
          await limiter.close();
        }
      });
    });
  });
}

describe('memory limiter against a reference model', () => {
  type Operation =
    | { kind: 'admit'; tokens: number; cost: number; advance: number }
    | { kind: 'settle'; pick: number; tokens: number; cost: number; advance: number };

  const limits: LimiterLimits = {
    requestsPerMinute: 4,
    tokensPerMinute: 60,
    maxConcurrent: 3,
    budgets: [{ period: 'day', tokens: 150, spendMicroUsd: 400 }],
  };
  const operation: fc.Arbitrary<Operation> = fc.oneof(
    fc.record({
      kind: fc.constant('admit' as const),
      tokens: fc.integer({ min: 0, max: 40 }),
      cost: fc.integer({ min: 0, max: 120 }),
      advance: fc.integer({ min: 0, max: 40_000 }),
    }),
    fc.record({
      kind: fc.constant('settle' as const),
      pick: fc.nat(),
      tokens: fc.integer({ min: 0, max: 80 }),
      cost: fc.integer({ min: 0, max: 200 }),
      advance: fc.integer({ min: 0, max: 40_000 }),
    }),
  );

  it('behavior: any interleaving of admits and settles keeps every decision and counter as the model says', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { maxLength: 60 }), async (operations) => {
        const limiter = createMemoryLimiter();
        const tenant = 'tn_model';
        // Fifteen minutes before midnight, so runs cross into a new day.
        let now = DAY_END - 15 * MINUTE;
        const minutes = new Map<number, { requests: number; tokens: number }>();
        const days = new Map<number, { tokens: number; spend: number }>();
        const open: LimiterReservation[] = [];
        const minuteOf = (at: number) => Math.floor(at / MINUTE) * MINUTE;
        const dayOf = (at: number) => Math.floor(at / 86_400_000) * 86_400_000;
        const minute = (start: number) =>
          minutes.get(start) ?? minutes.set(start, { requests: 0, tokens: 0 }).get(start)!;
        const day = (start: number) =>
          days.get(start) ?? days.set(start, { tokens: 0, spend: 0 }).get(start)!;

        for (const step of operations) {
          now += step.advance;
          if (step.kind === 'admit') {
            const m = minute(minuteOf(now));
            const d = day(dayOf(now));
            let expected: string = 'ok';
            if (open.length >= 3) expected = 'concurrency';
            else if (m.requests + 1 > 4) expected = 'requests_per_minute';
            else if (m.tokens + step.tokens > 60) expected = 'tokens_per_minute';
            else if (d.tokens + step.tokens > 150) expected = 'budget_tokens';
            else if (d.spend + step.cost > 400) expected = 'budget_spend';
            const result = await limiter.admit(
              request(tenant, limits, { tokens: step.tokens, costMicroUsd: step.cost, now }),
            );
            expect(result.ok ? 'ok' : result.reason).toBe(expected);
            if (result.ok) {
              m.requests += 1;
              m.tokens += step.tokens;
              d.tokens += step.tokens;
              d.spend += step.cost;
              open.push(result.reservation);
            }
            // Remaining above the limit would mean a counter below zero.
            expect(result.state.requests?.remaining).toBe(Math.max(0, 4 - m.requests));
            expect(result.state.tokens?.remaining).toBe(Math.max(0, 60 - m.tokens));
            expect(result.state.tokens!.remaining).toBeLessThanOrEqual(60);
          } else if (open.length > 0) {
            const [reservation] = open.splice(step.pick % open.length, 1);
            await limiter.settle(reservation!, {
              tokens: step.tokens,
              costMicroUsd: step.cost,
              now,
            });
            const tokenDelta = step.tokens - reservation!.tokens;
            const spendDelta = step.cost - reservation!.costMicroUsd;
            const m = minute(minuteOf(now));
            m.tokens = Math.max(
              0,
              m.tokens +
                (reservation!.minuteStart === minuteOf(now) ? tokenDelta : Math.max(0, tokenDelta)),
            );
            const d = day(dayOf(now));
            const sameDay = reservation!.periods[0]!.start === dayOf(now);
            d.tokens = Math.max(0, d.tokens + (sameDay ? tokenDelta : Math.max(0, tokenDelta)));
            d.spend = Math.max(0, d.spend + (sameDay ? spendDelta : Math.max(0, spendDelta)));
          }
          expect(await limiter.inFlight(tenant, now)).toBe(open.length);
        }
        await limiter.close();
      }),
      { numRuns: 300 },
    );
  });
});
