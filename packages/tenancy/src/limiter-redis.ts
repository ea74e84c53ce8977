/**
 * The limiter shared by several gateways: counters and concurrency leases in Redis, each
 * admission and each settle one Lua script, so limits hold across processes.
 *
 * Keys (all of one tenant share the hash tag `{tenantId}`, hence one cluster slot):
 * - `<prefix>{<tenant>}:m:<minute start>`: hash `requests`, `tokens` of one UTC minute.
 * - `<prefix>{<tenant>}:b:<day|month>:<start>`: hash `tokens`, `spend` (micro-dollars) and
 *   `seeded` (present once the store's prior usage was added) of one budget period.
 * - `<prefix>{<tenant>}:slots`: sorted set of admission ids scored by lease expiry (ms).
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  type AdmitPlan,
  type AdmitSnapshot,
  type BudgetCheck,
  buildResult,
  DEFAULT_CONCURRENCY_RETRY_MS,
  type Period,
  planAdmit,
  seededUsage,
  settleAdjustments,
  type Verdict,
} from './limiter-common.js';
import type { Limiter, LimiterRequest, LimitReason } from './types.js';

/** Options for {@link createRedisLimiter}. */
export interface RedisLimiterOptions {
  /**
   * An ioredis client, or a Redis URL (`redis://127.0.0.1:6379`) to create one. A client
   * created from a URL fails commands after `commandTimeoutMs` instead of queueing them while
   * Redis is down, and is closed by {@link Limiter.close}; a client handed in is left open and
   * its own options decide how long commands wait.
   */
  redis: Redis | string;
  /**
   * Prefix of every key.
   * @default 'tollgate:'
   */
  keyPrefix?: string;
  /**
   * How long a concurrency slot stays held without a settle or a renewal, in ms: a gateway
   * that dies loses its slots after this long. The tenancy service renews the slots of
   * requests still running well before then (see `slotRenewMs`), so a request may run longer.
   * @default 600000
   */
  slotLeaseMs?: number;
  /**
   * `retryAfterMs` of a refusal for concurrency, in ms.
   * @default 1000
   */
  concurrencyRetryMs?: number;
  /**
   * For a client created from a URL: a command without a reply after this long rejects, so
   * an admission never waits long on an unreachable Redis.
   * @default 2000
   */
  commandTimeoutMs?: number;
}

/** Kept on keys past the end of their window, for clocks of gateways that lag a little. */
const EXPIRY_MARGIN_MS = 60_000;

const REASONS: LimitReason[] = [
  'concurrency',
  'requests_per_minute',
  'tokens_per_minute',
  'budget_tokens',
  'budget_spend',
];

/*
 * KEYS: minute hash, slots zset, then one hash per budget period.
 * ARGV: now, admission id, tokens, cost, rpm, tpm, max concurrent (-1 = unlimited), lease ms,
 *   minute key ttl, can seed (1/0), then per period: ttl, tokens cap, spend cap (-1 = none).
 * Returns {0, requests, minute tokens, slots, p1 tokens, p1 spend, ...} (counters read before
 * the update) when admitted, {1, reason index, budget index, same counters} when refused,
 * {2, period index...} when a period still needs the store's usage and nothing was changed.
 * Mirrors judge() in limiter-common.ts.
 */
const ADMIT_LUA = `
local now = tonumber(ARGV[1])
local tokens = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local rpm = tonumber(ARGV[5])
local tpm = tonumber(ARGV[6])
local maxConcurrent = tonumber(ARGV[7])
local periods = #KEYS - 2

if ARGV[10] == '1' then
  local missing = {}
  for i = 1, periods do
    if redis.call('HEXISTS', KEYS[2 + i], 'seeded') == 0 then missing[#missing + 1] = i end
  end
  if #missing > 0 then
    table.insert(missing, 1, 2)
    return missing
  end
end

local minute = redis.call('HMGET', KEYS[1], 'requests', 'tokens')
local requests = tonumber(minute[1]) or 0
local minuteTokens = tonumber(minute[2]) or 0
local slots = 0
if maxConcurrent >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  slots = redis.call('ZCARD', KEYS[2])
end
local counters = {requests, minuteTokens, slots}
local used = {}
for i = 1, periods do
  local period = redis.call('HMGET', KEYS[2 + i], 'tokens', 'spend')
  used[i] = {tonumber(period[1]) or 0, tonumber(period[2]) or 0}
  counters[#counters + 1] = used[i][1]
  counters[#counters + 1] = used[i][2]
end

local function refuse(reason, index)
  local reply = {1, reason, index}
  for _, value in ipairs(counters) do reply[#reply + 1] = value end
  return reply
end

if maxConcurrent >= 0 and slots >= maxConcurrent then return refuse(0, -1) end
if rpm >= 0 and requests + 1 > rpm then return refuse(1, -1) end
if tpm >= 0 and minuteTokens + tokens > tpm then return refuse(2, -1) end
for i = 1, periods do
  local base = 11 + (i - 1) * 3
  local tokensCap = tonumber(ARGV[base + 1])
  local spendCap = tonumber(ARGV[base + 2])
  if tokensCap >= 0 and used[i][1] + tokens > tokensCap then return refuse(3, i - 1) end
  if spendCap >= 0 and used[i][2] + cost > spendCap then return refuse(4, i - 1) end
end

if rpm >= 0 then redis.call('HINCRBY', KEYS[1], 'requests', 1) end
if tpm >= 0 then redis.call('HINCRBY', KEYS[1], 'tokens', tokens) end
if rpm >= 0 or tpm >= 0 then redis.call('PEXPIRE', KEYS[1], ARGV[9]) end
for i = 1, periods do
  local key = KEYS[2 + i]
  redis.call('HINCRBY', key, 'tokens', tokens)
  redis.call('HINCRBY', key, 'spend', cost)
  redis.call('HSET', key, 'seeded', 1)
  redis.call('PEXPIRE', key, ARGV[11 + (i - 1) * 3])
end
if maxConcurrent >= 0 then
  local lease = tonumber(ARGV[8])
  redis.call('ZADD', KEYS[2], now + lease, ARGV[2])
  if redis.call('PTTL', KEYS[2]) < lease + ${EXPIRY_MARGIN_MS} then
    redis.call('PEXPIRE', KEYS[2], lease + ${EXPIRY_MARGIN_MS})
  end
end
local reply = {0, -1, -1}
for _, value in ipairs(counters) do reply[#reply + 1] = value end
return reply
`;

/*
 * KEYS: the counters to adjust, then the slots zset.
 * ARGV: admission id, release slot (1/0), then per counter: tokens delta, spend delta, ttl.
 * A counter never goes below 0. A budget counter created here lacks `seeded`, so the next
 * admission still adds the store's usage to it.
 */
const SETTLE_LUA = `
local counters = #KEYS - 1
local function adjust(key, field, delta)
  if delta == 0 then return false end
  local current = tonumber(redis.call('HGET', key, field)) or 0
  local target = current + delta
  if target < 0 then target = 0 end
  if target == current then return false end
  redis.call('HINCRBY', key, field, target - current)
  return true
end
for i = 1, counters do
  local base = 3 + (i - 1) * 3
  local changed = adjust(KEYS[i], 'tokens', tonumber(ARGV[base]))
  changed = adjust(KEYS[i], 'spend', tonumber(ARGV[base + 1])) or changed
  if changed then redis.call('PEXPIRE', KEYS[i], ARGV[base + 2]) end
end
if ARGV[2] == '1' then redis.call('ZREM', KEYS[counters + 1], ARGV[1]) end
return 1
`;

/*
 * KEYS: one budget period hash. ARGV: tokens, spend, ttl.
 * Adds the store's usage once: whoever comes second (another process too) finds `seeded`.
 */
const SEED_LUA = `
if redis.call('HEXISTS', KEYS[1], 'seeded') == 1 then return 0 end
redis.call('HINCRBY', KEYS[1], 'tokens', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'spend', ARGV[2])
redis.call('HSET', KEYS[1], 'seeded', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/*
 * KEYS: the tenant's slots set. ARGV: admission id, new lease expiry (ms), key ttl (ms).
 * Extends a slot still held; one already released or expired is not taken again.
 */
const RENEW_LUA = `
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
`;

interface Script {
  source: string;
  sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

const ADMIT = script(ADMIT_LUA);
const SETTLE = script(SETTLE_LUA);
const SEED = script(SEED_LUA);
const RENEW = script(RENEW_LUA);

type UsedInPeriod = NonNullable<LimiterRequest['usedInPeriod']>;

function ttl(end: number, now: number): number {
  return Math.max(1, Math.ceil(end - now)) + EXPIRY_MARGIN_MS;
}

function toNumbers(reply: unknown): number[] {
  if (!Array.isArray(reply)) throw new TypeError('The limiter script answered with no array.');
  return reply.map((value) => Number(value));
}

/**
 * Creates a limiter whose state lives in Redis, shared by every gateway using the same Redis
 * and key prefix. The callers' `now` is the clock (passed to the scripts), so gateways need
 * roughly synchronized clocks. A Redis error rejects `admit` and `settle` with that error.
 *
 * @example
 * ```ts
 * // store: the TenancyStore holding usage events, so budgets survive restarts.
 * const tenantId = 'tn_aaaaaaaaaaaaaaaa';
 * const limiter = createRedisLimiter({ redis: 'redis://127.0.0.1:6379' });
 * const result = await limiter.admit({
 *   tenantId,
 *   limits: { tokensPerMinute: 100_000, budgets: [{ period: 'day', tokens: 1_000_000 }] },
 *   admissionId: 'ad_1',
 *   tokens: 512,
 *   costMicroUsd: 0,
 *   now: Date.now(),
 *   usedInPeriod: async (_period, start) => {
 *     const used = await store.usageSince(tenantId, start);
 *     return { tokens: used.totalTokens, costMicroUsd: used.costMicroUsd };
 *   },
 * });
 * if (result.ok) {
 *   await limiter.settle(result.reservation, { tokens: 300, costMicroUsd: 0, now: Date.now() });
 * }
 * await limiter.close();
 * ```
 */
export function createRedisLimiter(options: RedisLimiterOptions): Limiter {
  const ownsClient = typeof options.redis === 'string';
  const redis =
    typeof options.redis === 'string'
      ? new Redis(options.redis, {
          // Fail fast rather than hold admissions while Redis is away: a queued command
          // rejects after the timeout, and reconnect attempts flush the queue early.
          commandTimeout: options.commandTimeoutMs ?? 2000,
          maxRetriesPerRequest: 1,
        })
      : options.redis;
  if (ownsClient) {
    // Errors reach callers through rejected commands; without a listener ioredis would
    // also print every reconnect failure.
    redis.on('error', () => {});
  }
  const prefix = options.keyPrefix ?? 'tollgate:';
  const slotLeaseMs = options.slotLeaseMs ?? 600_000;
  const concurrencyRetryMs = options.concurrencyRetryMs ?? DEFAULT_CONCURRENCY_RETRY_MS;
  const seeding = new Map<string, Promise<void>>();

  const tenantKey = (tenantId: string) => `${prefix}{${tenantId}}`;
  const minuteKey = (tenantId: string, start: number) => `${tenantKey(tenantId)}:m:${start}`;
  const periodKey = (tenantId: string, period: Period, start: number) =>
    `${tenantKey(tenantId)}:b:${period}:${start}`;
  const slotsKey = (tenantId: string) => `${tenantKey(tenantId)}:slots`;

  async function run(code: Script, keys: string[], args: Array<string | number>): Promise<unknown> {
    try {
      return await redis.evalsha(code.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.includes('NOSCRIPT')) throw error;
      return redis.eval(code.source, keys.length, ...keys, ...args);
    }
  }

  function seed(
    tenantId: string,
    budget: BudgetCheck,
    now: number,
    usedInPeriod: UsedInPeriod,
  ): Promise<void> {
    const key = periodKey(tenantId, budget.period, budget.start);
    let pending = seeding.get(key);
    if (pending) return pending;
    pending = (async () => {
      const used = seededUsage(await usedInPeriod(budget.period, new Date(budget.start)));
      await run(SEED, [key], [used.tokens, used.costMicroUsd, ttl(budget.end, now)]);
    })().finally(() => seeding.delete(key));
    seeding.set(key, pending);
    return pending;
  }

  function admitArgs(plan: AdmitPlan, canSeed: boolean): Array<string | number> {
    const args: Array<string | number> = [
      plan.now,
      plan.admissionId,
      plan.tokens,
      plan.costMicroUsd,
      plan.requestsPerMinute ?? -1,
      plan.tokensPerMinute ?? -1,
      plan.maxConcurrent ?? -1,
      slotLeaseMs,
      ttl(plan.minuteEnd, plan.now),
      canSeed ? 1 : 0,
    ];
    for (const budget of plan.budgets) {
      args.push(ttl(budget.end, plan.now), budget.tokens ?? -1, budget.spendMicroUsd ?? -1);
    }
    return args;
  }

  return {
    kind: 'redis',

    async admit(request) {
      const plan = planAdmit(request);
      const { usedInPeriod } = request;
      const keys = [
        minuteKey(plan.tenantId, plan.minuteStart),
        slotsKey(plan.tenantId),
        ...plan.budgets.map((budget) => periodKey(plan.tenantId, budget.period, budget.start)),
      ];
      // The first round may find periods that lack the store's usage; after seeding them the
      // script runs again. A later round without seeding admits against what is there.
      for (let round = 0; ; round += 1) {
        const canSeed = usedInPeriod !== undefined && round < 3;
        const reply = toNumbers(await run(ADMIT, keys, admitArgs(plan, canSeed)));
        const [code = -1, reason = -1, budgetIndex = -1, requests = 0, minuteTokens = 0] = reply;
        if (code === 2 && usedInPeriod) {
          const missing = reply.slice(1).map((index) => plan.budgets[index - 1]!);
          await Promise.all(
            missing.map((budget) => seed(plan.tenantId, budget, plan.now, usedInPeriod)),
          );
          continue;
        }
        if (code !== 0 && code !== 1) {
          throw new TypeError(`The limiter script answered with code ${code}.`);
        }
        const snapshot: AdmitSnapshot = {
          slotsHeld: reply[5] ?? 0,
          requests,
          minuteTokens,
          periods: plan.budgets.map((_, index) => ({
            tokens: reply[6 + index * 2] ?? 0,
            spendMicroUsd: reply[7 + index * 2] ?? 0,
          })),
        };
        const verdict: Verdict =
          code === 0 ? { ok: true } : { ok: false, reason: REASONS[reason]!, budgetIndex };
        return buildResult(plan, verdict, snapshot, concurrencyRetryMs);
      }
    },

    async settle(reservation, actual) {
      let adjustments: ReturnType<typeof settleAdjustments>;
      try {
        adjustments = settleAdjustments(reservation, actual);
      } catch (error) {
        // The slot is released all the same, or it would stay held until its lease ends.
        if (reservation.slot) {
          await redis.zrem(slotsKey(reservation.tenantId), reservation.admissionId);
        }
        throw error;
      }
      const keys: string[] = [];
      const args: Array<string | number> = [reservation.admissionId, reservation.slot ? 1 : 0];
      for (const adjustment of adjustments) {
        keys.push(
          adjustment.window === 'minute'
            ? minuteKey(reservation.tenantId, adjustment.start)
            : periodKey(reservation.tenantId, adjustment.window, adjustment.start),
        );
        args.push(adjustment.tokens, adjustment.spendMicroUsd, ttl(adjustment.end, actual.now));
      }
      if (keys.length === 0 && !reservation.slot) return;
      keys.push(slotsKey(reservation.tenantId));
      await run(SETTLE, keys, args);
    },

    async inFlight(tenantId, now) {
      return redis.zcount(slotsKey(tenantId), `(${now}`, '+inf');
    },

    async renew(reservations, now) {
      await Promise.all(
        reservations
          .filter((reservation) => reservation.slot)
          .map((reservation) =>
            run(
              RENEW,
              [slotsKey(reservation.tenantId)],
              [reservation.admissionId, now + slotLeaseMs, slotLeaseMs + EXPIRY_MARGIN_MS],
            ),
          ),
      );
    },

    async ping() {
      await redis.ping();
    },

    async close() {
      seeding.clear();
      if (!ownsClient) return;
      try {
        await redis.quit();
      } catch {
        redis.disconnect();
      }
    },
  };
}
