/**
 * Tenant limits on the wire (snake_case, as the admin API and the CLI take them) and in
 * code, the model allow list, and the helpers that turn limits into what the limiter needs.
 */
import { z } from 'zod';
import type { Budget, LimiterLimits, TenantLimits } from './types.js';

const POSITIVE_INTEGER = 'must be a whole number, 1 or more';
const positiveInteger = z
  .number({ error: POSITIVE_INTEGER })
  .int({ error: POSITIVE_INTEGER })
  .positive({ error: POSITIVE_INTEGER });

const budgetSchema = z
  .strictObject({
    period: z.enum(['day', 'month'], { error: 'must be day or month' }),
    tokens: positiveInteger.optional(),
    spend_usd: z
      .number({ error: 'must be an amount in US dollars, more than 0' })
      .positive({ error: 'must be an amount in US dollars, more than 0' })
      .optional(),
  })
  .refine((budget) => budget.tokens !== undefined || budget.spend_usd !== undefined, {
    message: 'a budget needs "tokens", "spend_usd" or both',
  });

/**
 * Limits as the admin API takes them. `null` clears a limit (unlimited), which is how a
 * PATCH removes one; an unknown field is an error, so a typo never silently means "unlimited".
 */
export const tenantLimitsInputSchema = z.strictObject({
  requests_per_minute: positiveInteger.nullable().optional(),
  tokens_per_minute: positiveInteger.nullable().optional(),
  max_concurrent: positiveInteger.nullable().optional(),
  models: z
    .array(z.string().regex(/^\S+$/, 'a model name or glob without spaces').max(200))
    .max(1000)
    .nullable()
    .optional(),
  budget: z
    .union([budgetSchema, z.array(budgetSchema).max(2)])
    .nullable()
    .optional()
    .refine(
      (budget) =>
        !Array.isArray(budget) ||
        new Set(budget.map((entry) => entry.period)).size === budget.length,
      { message: 'at most one budget per period' },
    ),
});

/** Limits in the admin API's shape. */
export type TenantLimitsInput = z.input<typeof tenantLimitsInputSchema>;

/**
 * Applies limits in the API's shape to existing limits: fields given replace those fields,
 * `null` removes one, absent fields stay.
 *
 * @example
 * ```ts
 * applyLimitsInput({ requestsPerMinute: 60 }, { tokens_per_minute: 1000, requests_per_minute: null });
 * // { tokensPerMinute: 1000 }
 * ```
 */
export function applyLimitsInput(
  current: TenantLimits,
  input: z.output<typeof tenantLimitsInputSchema>,
): TenantLimits {
  const next: TenantLimits = { ...current };
  const set = <K extends keyof TenantLimits>(key: K, value: TenantLimits[K] | null | undefined) => {
    if (value === undefined) return;
    if (value === null) delete next[key];
    else next[key] = value;
  };
  set('requestsPerMinute', input.requests_per_minute);
  set('tokensPerMinute', input.tokens_per_minute);
  set('maxConcurrent', input.max_concurrent);
  set('models', input.models);
  if (input.budget !== undefined) {
    set(
      'budgets',
      input.budget === null
        ? null
        : (Array.isArray(input.budget) ? input.budget : [input.budget]).map(
            (budget): Budget => ({
              period: budget.period,
              ...(budget.tokens !== undefined ? { tokens: budget.tokens } : {}),
              ...(budget.spend_usd !== undefined ? { spendUsd: budget.spend_usd } : {}),
            }),
          ),
    );
  }
  return next;
}

/** Limits in the admin API's shape (what GET /admin/tenants returns). */
export function limitsToJson(limits: TenantLimits): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  if (limits.requestsPerMinute !== undefined) json.requests_per_minute = limits.requestsPerMinute;
  if (limits.tokensPerMinute !== undefined) json.tokens_per_minute = limits.tokensPerMinute;
  if (limits.maxConcurrent !== undefined) json.max_concurrent = limits.maxConcurrent;
  if (limits.models !== undefined) json.models = limits.models;
  if (limits.budgets !== undefined && limits.budgets.length > 0) {
    const budgets = limits.budgets.map((budget) => ({
      period: budget.period,
      ...(budget.tokens !== undefined ? { tokens: budget.tokens } : {}),
      ...(budget.spendUsd !== undefined ? { spend_usd: budget.spendUsd } : {}),
    }));
    json.budget = budgets.length === 1 ? budgets[0] : budgets;
  }
  return json;
}

/** The limiter's view of a tenant's limits (spend in micro-dollars). */
export function toLimiterLimits(limits: TenantLimits): LimiterLimits {
  return {
    requestsPerMinute: limits.requestsPerMinute,
    tokensPerMinute: limits.tokensPerMinute,
    maxConcurrent: limits.maxConcurrent,
    budgets: limits.budgets?.map((budget) => ({
      period: budget.period,
      tokens: budget.tokens,
      spendMicroUsd:
        budget.spendUsd === undefined ? undefined : Math.round(budget.spendUsd * 1_000_000),
    })),
  };
}

const globCache = new Map<string, RegExp>();

function globToRegExp(glob: string): RegExp {
  let pattern = globCache.get(glob);
  if (!pattern) {
    const source = glob.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'));
    pattern = new RegExp(`^${source.join('.*')}$`);
    if (globCache.size > 10_000) globCache.clear();
    globCache.set(glob, pattern);
  }
  return pattern;
}

/** Whether a name matches an exact name or a glob where `*` stands for any characters. */
export function globMatches(pattern: string, value: string): boolean {
  if (pattern === value) return true;
  return pattern.includes('*') && globToRegExp(pattern).test(value);
}

/**
 * Whether a model is on an allow list of exact names and `*` globs. No list allows all.
 *
 * @example
 * ```ts
 * modelAllowed(['llama3*', 'qwen2.5:7b'], 'llama3.1:8b'); // true
 * ```
 */
export function modelAllowed(patterns: readonly string[] | undefined, model: string): boolean {
  if (patterns === undefined) return true;
  return patterns.some((pattern) => globMatches(pattern, model));
}
