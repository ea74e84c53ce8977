import { describe, expect, it } from 'vitest';
import {
  applyLimitsInput,
  limitsToJson,
  modelAllowed,
  tenantLimitsInputSchema,
  toLimiterLimits,
} from './index.js';

describe('limits', () => {
  it("behavior: the spec's example round-trips between the API shape and the code shape", () => {
    const input = {
      requests_per_minute: 60,
      tokens_per_minute: 100000,
      max_concurrent: 4,
      models: ['llama3*'],
      budget: { period: 'day' as const, tokens: 1000000, spend_usd: 5 },
    };
    const limits = applyLimitsInput({}, tenantLimitsInputSchema.parse(input));
    expect(limits).toEqual({
      requestsPerMinute: 60,
      tokensPerMinute: 100000,
      maxConcurrent: 4,
      models: ['llama3*'],
      budgets: [{ period: 'day', tokens: 1000000, spendUsd: 5 }],
    });
    expect(limitsToJson(limits)).toEqual(input);
  });

  it('behavior: a patch replaces the fields it names, null removes one, the rest stays', () => {
    const current = { requestsPerMinute: 60, tokensPerMinute: 1000, models: ['a'] };
    const next = applyLimitsInput(
      current,
      tenantLimitsInputSchema.parse({ tokens_per_minute: 2000, models: null }),
    );
    expect(next).toEqual({ requestsPerMinute: 60, tokensPerMinute: 2000 });
    expect(current.models).toEqual(['a']);
  });

  it('behavior: day and month budgets together, as a list', () => {
    const limits = applyLimitsInput(
      {},
      tenantLimitsInputSchema.parse({
        budget: [
          { period: 'day', tokens: 10 },
          { period: 'month', spend_usd: 1.5 },
        ],
      }),
    );
    expect(toLimiterLimits(limits).budgets).toEqual([
      { period: 'day', tokens: 10, spendMicroUsd: undefined },
      { period: 'month', tokens: undefined, spendMicroUsd: 1_500_000 },
    ]);
    expect(limitsToJson(limits).budget).toHaveLength(2);
  });

  it('error: unknown fields, wrong types, non-positive numbers and empty budgets are refused', () => {
    for (const bad of [
      { requests_per_minit: 60 },
      { requests_per_minute: 0 },
      { tokens_per_minute: 1.5 },
      { max_concurrent: '4' },
      { models: 'llama3' },
      { models: ['has space'] },
      { budget: { period: 'week', tokens: 1 } },
      { budget: { period: 'day' } },
      {
        budget: [
          { period: 'day', tokens: 1 },
          { period: 'day', tokens: 2 },
        ],
      },
    ]) {
      expect(tenantLimitsInputSchema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
  });

  it('behavior: the allow list takes exact names and globs; no list allows every model', () => {
    expect(modelAllowed(undefined, 'anything')).toBe(true);
    expect(modelAllowed(['llama3*', 'qwen2.5:7b'], 'llama3.1:8b')).toBe(true);
    expect(modelAllowed(['llama3*', 'qwen2.5:7b'], 'qwen2.5:7b')).toBe(true);
    expect(modelAllowed(['llama3*', 'qwen2.5:7b'], 'qwen2.5:14b')).toBe(false);
    expect(modelAllowed(['*/mistral-*'], 'mlx-community/mistral-7b')).toBe(true);
    expect(modelAllowed(['llama3.1'], 'llama3x1')).toBe(false);
    expect(modelAllowed([], 'llama3')).toBe(false);
  });
});
