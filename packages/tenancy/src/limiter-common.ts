/**
 * Window arithmetic, checks and result building shared by the memory and the Redis limiter,
 * so both decide and answer alike (the Redis Lua script mirrors {@link judge}).
 */
import type {
  LimiterLimits,
  LimiterRequest,
  LimiterReservation,
  LimiterResult,
  LimitReason,
  RateState,
} from './types.js';

export const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

/** `retryAfterMs` of a concurrency refusal unless the limiter is told otherwise. */
export const DEFAULT_CONCURRENCY_RETRY_MS = 1000;

export type Period = 'day' | 'month';

/** Start (ms) of the UTC minute holding `now`. */
export function minuteStartOf(now: number): number {
  return Math.floor(now / MINUTE_MS) * MINUTE_MS;
}

/** Start (ms) of the UTC day or month holding `now`. */
export function periodStartOf(period: Period, now: number): number {
  if (period === 'day') return Math.floor(now / DAY_MS) * DAY_MS;
  const date = new Date(now);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
}

/** End (ms, exclusive) of the UTC day or month starting at `start`. */
export function periodEndOf(period: Period, start: number): number {
  if (period === 'day') return start + DAY_MS;
  const date = new Date(start);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1);
}

/** One budget period to check, with its caps merged when a period is given twice. */
export interface BudgetCheck {
  period: Period;
  start: number;
  end: number;
  tokens: number | undefined;
  spendMicroUsd: number | undefined;
}

/** Everything an admission needs, derived once from the request. */
export interface AdmitPlan {
  tenantId: string;
  admissionId: string;
  tokens: number;
  costMicroUsd: number;
  now: number;
  minuteStart: number;
  minuteEnd: number;
  requestsPerMinute: number | undefined;
  tokensPerMinute: number | undefined;
  maxConcurrent: number | undefined;
  budgets: BudgetCheck[];
}

/** What the counters held before the admission, as one limiter read them. */
export interface AdmitSnapshot {
  slotsHeld: number;
  requests: number;
  minuteTokens: number;
  /** Same order as {@link AdmitPlan.budgets}. */
  periods: Array<{ tokens: number; spendMicroUsd: number }>;
}

export type Verdict = { ok: true } | { ok: false; reason: LimitReason; budgetIndex: number };

function minCap(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

function assertCount(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number') {
    throw new TypeError(`${name} must be a number, got ${typeof value}.`);
  }
  // Redis counts in integers (HINCRBY), so both limiters insist on whole units.
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${value}.`);
  }
}

/**
 * Prior usage from the store as whole non-negative counts (sums may arrive as fractions).
 *
 * @throws {TypeError} when a figure is not a finite number.
 */
export function seededUsage(used: { tokens: number; costMicroUsd: number }): {
  tokens: number;
  costMicroUsd: number;
} {
  for (const [name, value] of Object.entries(used)) {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new TypeError(`usedInPeriod must give finite numbers, got ${name}: ${String(value)}.`);
    }
  }
  return {
    tokens: Math.max(0, Math.ceil(used.tokens)),
    costMicroUsd: Math.max(0, Math.ceil(used.costMicroUsd)),
  };
}

function assertNow(now: unknown): asserts now is number {
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    throw new TypeError(`now must be a finite number of ms since the epoch, got ${String(now)}.`);
  }
}

function budgetChecks(limits: LimiterLimits, now: number): BudgetCheck[] {
  const checks: BudgetCheck[] = [];
  for (const budget of limits.budgets ?? []) {
    const known = checks.find((check) => check.period === budget.period);
    if (known) {
      known.tokens = minCap(known.tokens, budget.tokens);
      known.spendMicroUsd = minCap(known.spendMicroUsd, budget.spendMicroUsd);
      continue;
    }
    const start = periodStartOf(budget.period, now);
    checks.push({
      period: budget.period,
      start,
      end: periodEndOf(budget.period, start),
      tokens: budget.tokens,
      spendMicroUsd: budget.spendMicroUsd,
    });
  }
  return checks;
}

/**
 * Validates a request and derives its windows.
 *
 * @throws {TypeError} when `now`, `tokens` or `costMicroUsd` is not a number.
 * @throws {RangeError} when `tokens` or `costMicroUsd` is negative or not an integer.
 */
export function planAdmit(request: LimiterRequest): AdmitPlan {
  assertNow(request.now);
  assertCount(request.tokens, 'tokens');
  assertCount(request.costMicroUsd, 'costMicroUsd');
  const minuteStart = minuteStartOf(request.now);
  return {
    tenantId: request.tenantId,
    admissionId: request.admissionId,
    tokens: request.tokens,
    costMicroUsd: request.costMicroUsd,
    now: request.now,
    minuteStart,
    minuteEnd: minuteStart + MINUTE_MS,
    requestsPerMinute: request.limits.requestsPerMinute,
    tokensPerMinute: request.limits.tokensPerMinute,
    maxConcurrent: request.limits.maxConcurrent,
    budgets: budgetChecks(request.limits, request.now),
  };
}

/** The checks in contract order: concurrency, requests, tokens, then each budget. */
export function judge(plan: AdmitPlan, snapshot: AdmitSnapshot): Verdict {
  if (plan.maxConcurrent !== undefined && snapshot.slotsHeld >= plan.maxConcurrent) {
    return { ok: false, reason: 'concurrency', budgetIndex: -1 };
  }
  if (plan.requestsPerMinute !== undefined && snapshot.requests + 1 > plan.requestsPerMinute) {
    return { ok: false, reason: 'requests_per_minute', budgetIndex: -1 };
  }
  if (
    plan.tokensPerMinute !== undefined &&
    snapshot.minuteTokens + plan.tokens > plan.tokensPerMinute
  ) {
    return { ok: false, reason: 'tokens_per_minute', budgetIndex: -1 };
  }
  for (const [index, budget] of plan.budgets.entries()) {
    const used = snapshot.periods[index] ?? { tokens: 0, spendMicroUsd: 0 };
    if (budget.tokens !== undefined && used.tokens + plan.tokens > budget.tokens) {
      return { ok: false, reason: 'budget_tokens', budgetIndex: index };
    }
    if (
      budget.spendMicroUsd !== undefined &&
      used.spendMicroUsd + plan.costMicroUsd > budget.spendMicroUsd
    ) {
      return { ok: false, reason: 'budget_spend', budgetIndex: index };
    }
  }
  return { ok: true };
}

function rateState(plan: AdmitPlan, requests: number, minuteTokens: number): RateState {
  const state: RateState = {};
  const resetMs = plan.minuteEnd - plan.now;
  if (plan.requestsPerMinute !== undefined) {
    const limit = plan.requestsPerMinute;
    state.requests = { limit, remaining: Math.max(0, limit - requests), resetMs };
  }
  if (plan.tokensPerMinute !== undefined) {
    const limit = plan.tokensPerMinute;
    state.tokens = { limit, remaining: Math.max(0, limit - minuteTokens), resetMs };
  }
  return state;
}

/** Turns a verdict on a snapshot (counters before the admission) into the contract's answer. */
export function buildResult(
  plan: AdmitPlan,
  verdict: Verdict,
  snapshot: AdmitSnapshot,
  concurrencyRetryMs: number,
): LimiterResult {
  if (verdict.ok) {
    const reservation: LimiterReservation = {
      tenantId: plan.tenantId,
      admissionId: plan.admissionId,
      tokens: plan.tokens,
      costMicroUsd: plan.costMicroUsd,
      minuteStart: plan.minuteStart,
      periods: plan.budgets.map((budget) => ({ period: budget.period, start: budget.start })),
      slot: plan.maxConcurrent !== undefined,
    };
    const state = rateState(plan, snapshot.requests + 1, snapshot.minuteTokens + plan.tokens);
    return { ok: true, reservation, state };
  }
  const state = rateState(plan, snapshot.requests, snapshot.minuteTokens);
  const toMinuteEnd = plan.minuteEnd - plan.now;
  switch (verdict.reason) {
    case 'concurrency':
      return refusal(verdict.reason, concurrencyRetryMs, plan.maxConcurrent!, state);
    case 'requests_per_minute':
      return refusal(verdict.reason, toMinuteEnd, plan.requestsPerMinute!, state);
    case 'tokens_per_minute':
      return refusal(verdict.reason, toMinuteEnd, plan.tokensPerMinute!, state);
    case 'budget_tokens':
    case 'budget_spend': {
      const budget = plan.budgets[verdict.budgetIndex]!;
      const limit = verdict.reason === 'budget_tokens' ? budget.tokens! : budget.spendMicroUsd!;
      return refusal(verdict.reason, budget.end - plan.now, limit, state);
    }
  }
}

function refusal(
  reason: LimitReason,
  retryAfterMs: number,
  limit: number,
  state: RateState,
): LimiterResult {
  return { ok: false, reason, retryAfterMs, limit, state };
}

/** One change to a counter on settle: add `tokens` and `spendMicroUsd`, never going below 0. */
export interface CounterAdjustment {
  /** `minute` adjusts the tokens-per-minute counter; a period adjusts a budget counter. */
  window: 'minute' | Period;
  start: number;
  end: number;
  tokens: number;
  spendMicroUsd: number;
}

/**
 * A settled figure as a whole non-negative count. Settling must not throw on odd upstream
 * figures, or the slot would never be released: fractions round up, negatives count as 0,
 * and a figure that is no number at all leaves the reservation as it was.
 */
function settledCount(value: unknown, reserved: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) return reserved;
  return Math.max(0, Math.ceil(value));
}

/**
 * What settling changes: in a window still current, actual minus reserved (the caller clamps
 * at 0, so a refund never exceeds what is there); in one that has ended, only the excess, added
 * to the current window, because the ended window's refund could no longer be used and giving
 * it to the new one would mint budget.
 *
 * @throws {TypeError} when `now` is not a finite number.
 */
export function settleAdjustments(
  reservation: LimiterReservation,
  actual: { tokens: number; costMicroUsd: number; now: number },
): CounterAdjustment[] {
  assertNow(actual.now);
  const adjustments: CounterAdjustment[] = [];
  const tokenDelta = settledCount(actual.tokens, reservation.tokens) - reservation.tokens;
  const spendDelta =
    settledCount(actual.costMicroUsd, reservation.costMicroUsd) - reservation.costMicroUsd;
  const minuteStart = minuteStartOf(actual.now);
  const minuteTokens =
    reservation.minuteStart === minuteStart ? tokenDelta : Math.max(0, tokenDelta);
  if (minuteTokens !== 0) {
    adjustments.push({
      window: 'minute',
      start: minuteStart,
      end: minuteStart + MINUTE_MS,
      tokens: minuteTokens,
      spendMicroUsd: 0,
    });
  }
  for (const { period, start } of reservation.periods) {
    const current = periodStartOf(period, actual.now);
    const same = start === current;
    const tokens = same ? tokenDelta : Math.max(0, tokenDelta);
    const spendMicroUsd = same ? spendDelta : Math.max(0, spendDelta);
    if (tokens === 0 && spendMicroUsd === 0) continue;
    adjustments.push({
      window: period,
      start: current,
      end: periodEndOf(period, current),
      tokens,
      spendMicroUsd,
    });
  }
  return adjustments;
}
