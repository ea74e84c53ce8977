/**
 * What admission adds per request: `admit` then `settle`, one request at a time, for a tenant
 * with limits (requests and tokens per minute, concurrency, a day budget) against the memory
 * limiter and, when TOLLGATE_BENCH_REDIS_URL (or TOLLGATE_TEST_REDIS_URL) is set, the Redis
 * one; compared in the same run with the bare path, an unlimited static key, which still
 * journals its reservation and usage record. Records go to an in-memory PGlite store.
 * Run: `npx tsx packages/tenancy/bench/admission.bench.ts` (REQUESTS, ROUNDS to tune).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Caller,
  createMemoryLimiter,
  createPgliteStore,
  createRedisLimiter,
  createTenancy,
  type Limiter,
  type Tenancy,
} from '../src/index.js';

const requests = Number(process.env.REQUESTS ?? 5000);
const rounds = Number(process.env.ROUNDS ?? 3);
const redisUrl = process.env.TOLLGATE_BENCH_REDIS_URL ?? process.env.TOLLGATE_TEST_REDIS_URL;

const body = {
  model: 'bench-model',
  messages: [{ role: 'user', content: 'Tell me a short sentence about foxes.' }],
  max_tokens: 32,
};

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(tenancy: Tenancy, caller: Caller): Promise<number[]> {
  const samples: number[] = [];
  for (let index = 0; index < requests; index++) {
    const started = performance.now();
    const admission = await tenancy.admit(caller, {
      operation: 'chat.completions',
      model: 'bench-model',
      body,
      requestId: `bench-${index}`,
    });
    await admission.settle({
      status: 'completed',
      httpStatus: 200,
      usage: { prompt_tokens: 12, completion_tokens: 14, total_tokens: 26 },
    });
    samples.push(performance.now() - started);
  }
  return samples;
}

async function main(): Promise<void> {
  const store = await createPgliteStore({});
  const journal = mkdtempSync(join(tmpdir(), 'tollgate-bench-journal-'));
  const limits = {
    requests_per_minute: 10_000_000,
    tokens_per_minute: 1_000_000_000,
    max_concurrent: 100,
    budget: { period: 'day' as const, tokens: 1_000_000_000_000 },
  };
  const setups: Array<{ name: string; limiter: () => Limiter; limited: boolean }> = [
    { name: 'static key (bare path)', limiter: () => createMemoryLimiter(), limited: false },
    { name: 'limits, memory limiter', limiter: () => createMemoryLimiter(), limited: true },
  ];
  if (redisUrl) {
    setups.push({
      name: 'limits, Redis limiter',
      limiter: () =>
        createRedisLimiter({ redis: redisUrl, keyPrefix: `tollgate-bench-${process.pid}:` }),
      limited: true,
    });
  } else {
    console.log('(TOLLGATE_BENCH_REDIS_URL unset: the Redis limiter is not measured)');
  }
  const results = new Map<string, { p50: number[]; p99: number[] }>();
  const prepared = await Promise.all(
    setups.map(async (setup, index) => {
      const tenancy = createTenancy({
        store,
        limiter: setup.limiter(),
        staticKeys: ['sk-bench'],
        journalDir: join(journal, String(index)),
      });
      const caller = setup.limited
        ? await (async () => {
            const tenant = await tenancy.createTenant(
              { name: `bench-${index}-${Date.now()}`, limits },
              { actor: 'bench' },
            );
            const { key } = await tenancy.issueKey(tenant.id, {}, { actor: 'bench' });
            return tenancy.authenticate(key);
          })()
        : await tenancy.authenticate('sk-bench');
      await measure(tenancy, caller); // warm-up
      return { setup, tenancy, caller };
    }),
  );
  for (let round = 0; round < rounds; round++) {
    for (const { setup, tenancy, caller } of prepared) {
      const samples = await measure(tenancy, caller);
      const entry = results.get(setup.name) ?? { p50: [], p99: [] };
      entry.p50.push(percentile(samples, 50));
      entry.p99.push(percentile(samples, 99));
      results.set(setup.name, entry);
    }
  }
  const median = (values: number[]) => percentile(values, 50);
  const base = median(results.get(setups[0]!.name)!.p50);
  console.log(
    `admit + settle, ${requests} sequential requests x ${rounds} rounds (median of rounds)`,
  );
  for (const setup of setups) {
    const { p50, p99 } = results.get(setup.name)!;
    const added = median(p50) - base;
    console.log(
      `${setup.name.padEnd(26)} p50 ${median(p50).toFixed(4)} ms  p99 ${median(p99).toFixed(4)} ms` +
        (setup === setups[0] ? '' : `  added p50 ${added >= 0 ? '+' : ''}${added.toFixed(4)} ms`),
    );
  }
  for (const { tenancy } of prepared) await tenancy.close();
  await store.close();
  rmSync(journal, { recursive: true, force: true });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
