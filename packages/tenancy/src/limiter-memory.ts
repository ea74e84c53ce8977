/**
 * The limiter of a single gateway: counters, reservations and concurrency slots in process
 * memory. Every check and update of one admission runs without an await in between, so in one
 * Node process an admission is atomic.
 */
import {
  type AdmitPlan,
  type AdmitSnapshot,
  type BudgetCheck,
  buildResult,
  type CounterAdjustment,
  DEFAULT_CONCURRENCY_RETRY_MS,
  judge,
  MINUTE_MS,
  type Period,
  planAdmit,
  seededUsage,
  settleAdjustments,
} from './limiter-common.js';
import type { Limiter, LimiterRequest, LimiterResult } from './types.js';

/** Options for {@link createMemoryLimiter}. */
export interface MemoryLimiterOptions {
  /**
   * `retryAfterMs` of a refusal for concurrency, in ms (a slot frees when some request ends,
   * which no window predicts).
   * @default 1000
   */
  concurrencyRetryMs?: number;
}

interface MinuteCounter {
  end: number;
  requests: number;
  tokens: number;
}

interface PeriodCounter {
  end: number;
  tokens: number;
  spendMicroUsd: number;
  /** False while the counter holds only settle excess and not yet the store's prior usage. */
  seeded: boolean;
}

type UsedInPeriod = NonNullable<LimiterRequest['usedInPeriod']>;

/**
 * Creates a limiter that keeps its state in this process. Counters of windows and periods
 * that ended over a minute ago are dropped lazily, at most once per minute of the callers' clock.
 *
 * @example
 * ```ts
 * const limiter = createMemoryLimiter();
 * const result = await limiter.admit({
 *   tenantId: 'tn_aaaaaaaaaaaaaaaa',
 *   limits: { requestsPerMinute: 60, maxConcurrent: 4 },
 *   admissionId: 'ad_1',
 *   tokens: 512,
 *   costMicroUsd: 0,
 *   now: Date.now(),
 * });
 * if (result.ok) {
 *   await limiter.settle(result.reservation, { tokens: 300, costMicroUsd: 0, now: Date.now() });
 * }
 * ```
 */
export function createMemoryLimiter(options: MemoryLimiterOptions = {}): Limiter {
  const concurrencyRetryMs = options.concurrencyRetryMs ?? DEFAULT_CONCURRENCY_RETRY_MS;
  const minutes = new Map<string, MinuteCounter>();
  const periods = new Map<string, PeriodCounter>();
  const slots = new Map<string, Set<string>>();
  const seeding = new Map<string, Promise<void>>();
  let sweptAt = Number.NEGATIVE_INFINITY;

  const minuteKey = (tenantId: string, start: number) => `${tenantId}\n${start}`;
  const periodKey = (tenantId: string, period: Period, start: number) =>
    `${tenantId}\n${period}\n${start}`;

  function sweep(now: number): void {
    if (now - sweptAt < MINUTE_MS) return;
    sweptAt = now;
    // A minute of grace (as Redis keys get): a caller whose clock or await lags a little
    // behind another still finds the window it counts in.
    const ended = now - MINUTE_MS;
    for (const [key, counter] of minutes) if (counter.end <= ended) minutes.delete(key);
    for (const [key, counter] of periods) if (counter.end <= ended) periods.delete(key);
  }

  function seed(tenantId: string, budget: BudgetCheck, usedInPeriod: UsedInPeriod): Promise<void> {
    const key = periodKey(tenantId, budget.period, budget.start);
    let pending = seeding.get(key);
    if (pending) return pending;
    pending = (async () => {
      const used = seededUsage(await usedInPeriod(budget.period, new Date(budget.start)));
      const counter = periods.get(key);
      if (counter === undefined) {
        periods.set(key, {
          end: budget.end,
          tokens: used.tokens,
          spendMicroUsd: used.costMicroUsd,
          seeded: true,
        });
      } else if (!counter.seeded) {
        counter.tokens += used.tokens;
        counter.spendMicroUsd += used.costMicroUsd;
        counter.seeded = true;
      }
    })().finally(() => seeding.delete(key));
    seeding.set(key, pending);
    return pending;
  }

  function unseeded(plan: AdmitPlan): BudgetCheck[] {
    return plan.budgets.filter(
      (budget) => !periods.get(periodKey(plan.tenantId, budget.period, budget.start))?.seeded,
    );
  }

  function admitNow(plan: AdmitPlan): LimiterResult {
    sweep(plan.now);
    const minute = minutes.get(minuteKey(plan.tenantId, plan.minuteStart));
    const held = slots.get(plan.tenantId);
    const budgetCounters = plan.budgets.map((budget) =>
      periods.get(periodKey(plan.tenantId, budget.period, budget.start)),
    );
    const snapshot: AdmitSnapshot = {
      slotsHeld: held?.size ?? 0,
      requests: minute?.requests ?? 0,
      minuteTokens: minute?.tokens ?? 0,
      periods: budgetCounters.map((counter) => ({
        tokens: counter?.tokens ?? 0,
        spendMicroUsd: counter?.spendMicroUsd ?? 0,
      })),
    };
    const verdict = judge(plan, snapshot);
    const result = buildResult(plan, verdict, snapshot, concurrencyRetryMs);
    if (!verdict.ok) return result;

    if (plan.requestsPerMinute !== undefined || plan.tokensPerMinute !== undefined) {
      const counter = minute ?? { end: plan.minuteEnd, requests: 0, tokens: 0 };
      if (plan.requestsPerMinute !== undefined) counter.requests += 1;
      if (plan.tokensPerMinute !== undefined) counter.tokens += plan.tokens;
      minutes.set(minuteKey(plan.tenantId, plan.minuteStart), counter);
    }
    for (const [index, budget] of plan.budgets.entries()) {
      const counter = budgetCounters[index] ?? {
        end: budget.end,
        tokens: 0,
        spendMicroUsd: 0,
        seeded: true,
      };
      counter.tokens += plan.tokens;
      counter.spendMicroUsd += plan.costMicroUsd;
      // Without a seeder the store has nothing to add, so the counter is complete as it is.
      counter.seeded = true;
      periods.set(periodKey(plan.tenantId, budget.period, budget.start), counter);
    }
    if (plan.maxConcurrent !== undefined) {
      if (held) held.add(plan.admissionId);
      else slots.set(plan.tenantId, new Set([plan.admissionId]));
    }
    return result;
  }

  function applySettle(tenantId: string, adjustments: CounterAdjustment[]): void {
    for (const adjustment of adjustments) {
      if (adjustment.window === 'minute') {
        const key = minuteKey(tenantId, adjustment.start);
        const counter = minutes.get(key);
        if (counter) counter.tokens = Math.max(0, counter.tokens + adjustment.tokens);
        else if (adjustment.tokens > 0) {
          minutes.set(key, { end: adjustment.end, requests: 0, tokens: adjustment.tokens });
        }
        continue;
      }
      const key = periodKey(tenantId, adjustment.window, adjustment.start);
      const counter = periods.get(key);
      if (counter) {
        counter.tokens = Math.max(0, counter.tokens + adjustment.tokens);
        counter.spendMicroUsd = Math.max(0, counter.spendMicroUsd + adjustment.spendMicroUsd);
      } else if (adjustment.tokens > 0 || adjustment.spendMicroUsd > 0) {
        // Unseeded: the next admission still adds what the store knows for the period.
        periods.set(key, {
          end: adjustment.end,
          tokens: Math.max(0, adjustment.tokens),
          spendMicroUsd: Math.max(0, adjustment.spendMicroUsd),
          seeded: false,
        });
      }
    }
  }

  return {
    kind: 'memory',

    async admit(request) {
      const plan = planAdmit(request);
      const { usedInPeriod } = request;
      if (usedInPeriod) {
        // A counter can vanish between two awaits only when its period ends; a few rounds
        // settle that, and the last one admits against what is there.
        for (let round = 0; round < 3; round += 1) {
          const missing = unseeded(plan);
          if (missing.length === 0) break;
          await Promise.all(missing.map((budget) => seed(plan.tenantId, budget, usedInPeriod)));
        }
      }
      return admitNow(plan);
    },

    async settle(reservation, actual) {
      try {
        applySettle(reservation.tenantId, settleAdjustments(reservation, actual));
      } finally {
        if (reservation.slot) {
          const held = slots.get(reservation.tenantId);
          held?.delete(reservation.admissionId);
          if (held?.size === 0) slots.delete(reservation.tenantId);
        }
      }
    },

    async inFlight(tenantId) {
      return slots.get(tenantId)?.size ?? 0;
    },

    async close() {
      minutes.clear();
      periods.clear();
      slots.clear();
    },
  };
}
