import { isTollgateError, type TollgateError } from '@tollgate/protocol';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type Caller,
  createMemoryLimiter,
  createPgliteStore,
  createTenancy,
  formatResetDuration,
  type Limiter,
  type PaymentInput,
  payerCaller,
  type RecordBatch,
  type Tenancy,
  type TenancyOptions,
  type TenancyStore,
} from './index.js';

let store: TenancyStore;
const opened: Tenancy[] = [];
const cli = { actor: 'cli' };
let names = 0;

beforeAll(async () => {
  store = await createPgliteStore({});
}, 60_000);

afterAll(async () => {
  // One of them lost its store on purpose: its last write fails, which close() reports.
  for (const tenancy of opened) await tenancy.close().catch(() => {});
  await store.close();
});

/** A tenancy on the shared store with a clock the test moves. */
function setup(options: Partial<TenancyOptions> = {}) {
  const clock = { now: Date.parse('2026-11-23T10:00:30Z') };
  const sleeps: number[] = [];
  const tenancy = createTenancy({
    store,
    now: () => clock.now,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...options,
  });
  opened.push(tenancy);
  return { tenancy, clock, sleeps };
}

function uniqueName(): string {
  return `t${++names}-${Math.random().toString(36).slice(2, 8)}`;
}

async function refusal(promise: Promise<unknown>): Promise<TollgateError> {
  try {
    await promise;
  } catch (error) {
    if (isTollgateError(error)) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({
  operation: 'chat.completions',
  model: 'llama3.1:8b',
  body: { model: 'llama3.1:8b', messages: [{ role: 'user', content }], ...extra },
});

describe('keys and authentication', () => {
  it('behavior: an issued key authenticates to its tenant; the secret is never stored', async () => {
    const { tenancy } = setup();
    const tenant = await tenancy.createTenant({ name: uniqueName() }, cli);
    const issued = await tenancy.issueKey(tenant.name, { name: 'ci' }, cli);
    expect(issued.key).toMatch(new RegExp(`^tg_${issued.id}_`));
    const caller = await tenancy.authenticate(issued.key);
    expect(caller).toEqual({
      kind: 'tenant',
      tenantId: tenant.id,
      tenantName: tenant.name,
      keyId: issued.id,
      limits: {},
    });
    const stored = await store.getKey(issued.id);
    expect(Buffer.from(stored!.secretHash).toString('latin1')).not.toContain(
      issued.key.split('_').slice(2).join('_'),
    );
    const listed = await tenancy.listKeys(tenant.id);
    expect(listed).toHaveLength(1);
    expect(listed[0]).not.toHaveProperty('key');
  });

  it('error: missing, malformed, unknown and wrong keys are 401s that never echo the key', async () => {
    const { tenancy } = setup();
    const tenant = await tenancy.createTenant({ name: uniqueName() }, cli);
    const issued = await tenancy.issueKey(tenant.id, {}, cli);
    expect((await refusal(tenancy.authenticate(undefined))).code).toBe('missing_api_key');
    const wrongSecret = `${issued.key.slice(0, -2)}${issued.key.endsWith('AA') ? 'BB' : 'AA'}`;
    const unknownId = issued.key.replace(issued.id, 'a'.repeat(16));
    for (const key of ['nope', wrongSecret, unknownId]) {
      const error = await refusal(tenancy.authenticate(key));
      expect(error.code, key).toBe('invalid_api_key');
      expect(error.status).toBe(401);
      expect(error.message).not.toContain(key);
    }
  });

  it('behavior: static keys are unlimited tenants named by their hash', async () => {
    const { tenancy } = setup({ staticKeys: ['sk-old-1'] });
    const caller = await tenancy.authenticate('sk-old-1');
    expect(caller).toMatchObject({ kind: 'static-key', keyId: null, limits: {} });
    expect(caller.tenantId).toMatch(/^static:[0-9a-f]{8}$/);
  });

  it('behavior: revoked and expired keys are refused with the reason', async () => {
    const { tenancy, clock } = setup({ keyCacheMs: 0 });
    const tenant = await tenancy.createTenant({ name: uniqueName() }, cli);
    const revoked = await tenancy.issueKey(tenant.id, {}, cli);
    await tenancy.revokeKey(revoked.id, cli);
    expect((await refusal(tenancy.authenticate(revoked.key))).message).toContain('revoked');
    const expiring = await tenancy.issueKey(
      tenant.id,
      { expiresAt: new Date(clock.now + 60_000) },
      cli,
    );
    await tenancy.authenticate(expiring.key);
    clock.now += 60_000;
    expect((await refusal(tenancy.authenticate(expiring.key))).message).toContain('expired');
    expect((await tenancy.listKeys(tenant.id)).map((key) => key.state).sort()).toEqual([
      'expired',
      'revoked',
    ]);
  });

  it('behavior: a rotated key keeps working through its grace period, then stops; the new one works', async () => {
    const { tenancy, clock } = setup({ keyCacheMs: 0 });
    const tenant = await tenancy.createTenant({ name: uniqueName() }, cli);
    const old = await tenancy.issueKey(tenant.id, { name: 'ci' }, cli);
    const { key, previous } = await tenancy.rotateKey(old.id, { graceSeconds: 3600 }, cli);
    expect(key.name).toBe('ci');
    expect(previous).toMatchObject({ state: 'rotating', replacedBy: key.id });
    await tenancy.authenticate(old.key);
    await tenancy.authenticate(key.key);
    clock.now += 3600 * 1000;
    const error = await refusal(tenancy.authenticate(old.key));
    expect(error.message).toContain('rotated');
    await tenancy.authenticate(key.key);
    expect((await refusal(tenancy.rotateKey(old.id, { graceSeconds: 0 }, cli))).code).toBe(
      'conflict',
    );
  });

  it('behavior: a revocation applies at once in the process that made it, despite the cache', async () => {
    const { tenancy } = setup({ keyCacheMs: 60_000 });
    const tenant = await tenancy.createTenant({ name: uniqueName() }, cli);
    const issued = await tenancy.issueKey(tenant.id, {}, cli);
    await tenancy.authenticate(issued.key);
    await tenancy.revokeKey(issued.id, cli);
    expect((await refusal(tenancy.authenticate(issued.key))).code).toBe('invalid_api_key');
  });

  it('behavior: repeated failures from one address are slowed down and audited in aggregate, without the keys', async () => {
    const { tenancy, sleeps } = setup({ authFailuresBeforeDelay: 3 });
    const from = { remoteAddress: '203.0.113.7' };
    for (let attempt = 0; attempt < 6; attempt++) {
      await refusal(tenancy.authenticate(`sk-guess-${attempt}`, from));
    }
    expect(sleeps).toEqual([100, 200, 400]);
    await refusal(tenancy.authenticate('sk-guess-other', { remoteAddress: '203.0.113.8' }));
    expect(sleeps).toHaveLength(3);
    await tenancy.close();
    const entries = await tenancy.audit({ action: 'auth.failures' });
    const mine = entries.find((entry) => entry.remoteAddress === '203.0.113.7');
    expect(mine).toMatchObject({ actor: 'system', result: 'denied', detail: { count: 6 } });
    expect(JSON.stringify(entries)).not.toContain('sk-guess');
  });
});

describe('admin operations', () => {
  it('error: invalid names and limits are 400s naming the field; unknown ids 404; duplicates 409', async () => {
    const { tenancy } = setup();
    for (const name of ['', 'has space', 'tn_reserved', 'x'.repeat(65), 42]) {
      const error = await refusal(tenancy.createTenant({ name: name as string }, cli));
      expect(error.code, String(name)).toBe('invalid_request');
      expect(error.param).toBe('name');
    }
    const badLimits = await refusal(
      tenancy.createTenant(
        { name: uniqueName(), limits: { requests_per_minute: -1 } as never },
        cli,
      ),
    );
    expect(badLimits.param).toBe('limits.requests_per_minute');
    const typo = await refusal(
      tenancy.createTenant({ name: uniqueName(), limits: { rpm: 5 } as never }, cli),
    );
    expect(typo.param).toBe('limits.rpm');
    expect(typo.message).toContain('rpm');
    expect((await refusal(tenancy.getTenant('nobody'))).status).toBe(404);
    expect((await refusal(tenancy.revokeKey('a'.repeat(16), cli))).status).toBe(404);
    const name = uniqueName();
    await tenancy.createTenant({ name }, cli);
    expect((await refusal(tenancy.createTenant({ name }, cli))).status).toBe(409);
  });

  it('behavior: limits are replaced field by field, and changes are audited', async () => {
    const { tenancy, clock } = setup();
    const tenant = await tenancy.createTenant(
      { name: uniqueName(), limits: { requests_per_minute: 60, models: ['a*'] } },
      cli,
    );
    clock.now += 1000;
    const updated = await tenancy.updateTenant(
      tenant.name,
      { limits: { requests_per_minute: null, tokens_per_minute: 500 } },
      { actor: 'admin', requestId: 'req-1' },
    );
    expect(updated.limits).toEqual({ tokensPerMinute: 500, models: ['a*'] });
    const audit = await tenancy.audit({ target: tenant.id });
    expect(audit.map((entry) => entry.action)).toEqual(['tenant.update', 'tenant.create']);
    expect(audit[0]).toMatchObject({ actor: 'admin', requestId: 'req-1', result: 'ok' });
  });

  it('behavior: deleting a tenant removes its keys, which stop working', async () => {
    const { tenancy } = setup();
    const tenant = await tenancy.createTenant({ name: uniqueName() }, cli);
    const issued = await tenancy.issueKey(tenant.id, {}, cli);
    await tenancy.authenticate(issued.key);
    await tenancy.deleteTenant(tenant.name, cli);
    expect((await refusal(tenancy.authenticate(issued.key))).code).toBe('invalid_api_key');
    expect(await store.getKey(issued.id)).toBeUndefined();
  });
});

async function tenantCaller(tenancy: Tenancy, limits: Record<string, unknown>): Promise<Caller> {
  const tenant = await tenancy.createTenant({ name: uniqueName(), limits }, cli);
  const { key } = await tenancy.issueKey(tenant.id, {}, cli);
  return tenancy.authenticate(key);
}

describe('admission', () => {
  it('error: a model outside the allow list is a 403 before anything is reserved', async () => {
    const { tenancy } = setup();
    const caller = await tenantCaller(tenancy, { models: ['qwen*'], requests_per_minute: 1 });
    const error = await refusal(tenancy.admit(caller, chat('hi')));
    expect(error).toMatchObject({ code: 'model_not_allowed', status: 403, param: 'model' });
    // The one request per minute is still there.
    await tenancy.admit(caller, { ...chat('hi'), model: 'qwen2.5:7b' });
  });

  it('behavior: admitted responses carry the rate-limit headers; a refusal says when to retry', async () => {
    const { tenancy, clock } = setup();
    const caller = await tenantCaller(tenancy, {
      requests_per_minute: 2,
      tokens_per_minute: 10_000,
    });
    const first = await tenancy.admit(caller, chat('hello', { max_tokens: 100 }));
    expect(first.headers).toEqual({
      'x-ratelimit-limit-requests': '2',
      'x-ratelimit-remaining-requests': '1',
      'x-ratelimit-reset-requests': '30s',
      'x-ratelimit-limit-tokens': '10000',
      'x-ratelimit-remaining-tokens': String(10_000 - 100 - 6),
      'x-ratelimit-reset-tokens': '30s',
    });
    await tenancy.admit(caller, chat('hello', { max_tokens: 100 }));
    const error = await refusal(tenancy.admit(caller, chat('hello', { max_tokens: 100 })));
    expect(error).toMatchObject({ code: 'rate_limit_exceeded', status: 429 });
    expect(error.headers).toMatchObject({
      'retry-after': '30',
      'retry-after-ms': '30000',
      'x-ratelimit-remaining-requests': '0',
    });
    expect(error.message).toContain('2 requests per minute');
    clock.now += 30_000;
    await tenancy.admit(caller, chat('hello', { max_tokens: 100 }));
  });

  it('behavior: unlimited callers get no headers and still have their usage recorded', async () => {
    const { tenancy } = setup({ staticKeys: ['sk-unlimited'] });
    const caller = await tenancy.authenticate('sk-unlimited');
    const admission = await tenancy.admit(caller, { ...chat('x'), requestId: 'req-unlimited' });
    expect(admission.headers).toEqual({});
    await admission.settle({
      status: 'completed',
      httpStatus: 200,
      usage: { prompt_tokens: 4, completion_tokens: 6, total_tokens: 10 },
      backend: 'b1',
      firstTokenMs: 12.4,
    });
    await tenancy.flush();
    const [row] = await tenancy.usage({ tenantId: caller.tenantId });
    expect(row).toMatchObject({
      requests: 1,
      promptTokens: 4,
      completionTokens: 6,
      totalTokens: 10,
    });
  });

  it('behavior: settlement records real usage, or an estimate marked as such, priced per model', async () => {
    const { tenancy } = setup({ prices: { 'llama3*': { input: 1, output: 2 } } });
    const caller = await tenantCaller(tenancy, {});
    const real = await tenancy.admit(caller, chat('abcdefgh', { max_tokens: 50 }));
    await real.settle({
      status: 'completed',
      httpStatus: 200,
      usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
      streamed: true,
    });
    const silent = await tenancy.admit(caller, chat('abcdefgh', { max_tokens: 50 }));
    await silent.settle({ status: 'completed', httpStatus: 200 });
    const failed = await tenancy.admit(caller, chat('abcdefgh', { max_tokens: 50 }));
    await failed.settle({ status: 'failed', httpStatus: 502 });
    await failed.settle({ status: 'completed', httpStatus: 200 });
    await tenancy.flush();
    const [row] = await tenancy.usage({ tenantId: caller.tenantId });
    // Real: 7 + 3. Estimated: 6 prompt (8 chars + message overhead) + 50 allowed. Failed: 0.
    expect(row).toMatchObject({
      requests: 3,
      promptTokens: 7 + 6,
      completionTokens: 3 + 50,
      estimatedRequests: 2,
      costMicroUsd: 7 * 1 + 3 * 2 + (6 * 1 + 50 * 2),
    });
  });

  it("behavior: the completion tokens reserved are capped by the model's context window", async () => {
    const { tenancy } = setup();
    const caller = await tenantCaller(tenancy, { tokens_per_minute: 100_000 });
    // No max_tokens: the default (1024) would be reserved, but only 200 - 6 tokens fit.
    const admission = await tenancy.admit(caller, { ...chat('abcdefgh'), contextLength: 200 });
    expect(admission.headers['x-ratelimit-remaining-tokens']).toBe(String(100_000 - 200));
    const wide = await tenancy.admit(caller, { ...chat('abcdefgh'), contextLength: 100_000 });
    expect(wide.headers['x-ratelimit-remaining-tokens']).toBe(String(100_000 - 200 - 6 - 1024));
  });

  it('behavior: budgets hold across a restart (a new limiter is seeded from the records)', async () => {
    const first = setup();
    const caller = await tenantCaller(first.tenancy, {
      budget: { period: 'day', tokens: 100 },
    });
    const admission = await first.tenancy.admit(caller, chat('x', { max_tokens: 10 }));
    await admission.settle({
      status: 'completed',
      httpStatus: 200,
      usage: { prompt_tokens: 40, completion_tokens: 50 },
    });
    await first.tenancy.flush();
    const second = setup({ limiter: createMemoryLimiter() });
    await second.tenancy.admit(caller, chat('x', { max_tokens: 1 }));
    const error = await refusal(second.tenancy.admit(caller, chat('x', { max_tokens: 20 })));
    expect(error).toMatchObject({ code: 'insufficient_quota', status: 429 });
    expect(error.message).toContain('renews in');
  });

  it('behavior: hundreds of simultaneous requests never overshoot the budget or the concurrency limit', async () => {
    const { tenancy } = setup();
    const budget = 2000;
    const caller = await tenantCaller(tenancy, {
      max_concurrent: 5,
      budget: { period: 'day', tokens: budget },
    });
    let inFlight = 0;
    let peak = 0;
    let admittedTokens = 0;
    const outcomes = await Promise.all(
      Array.from({ length: 300 }, async (_, index) => {
        try {
          const admission = await tenancy.admit(caller, chat('abcd', { max_tokens: 95 }));
          inFlight++;
          peak = Math.max(peak, inFlight);
          await new Promise((done) => setTimeout(done, index % 7));
          // Real usage is often below the reservation and sometimes above it.
          const completion = index % 3 === 0 ? 120 : 40;
          admittedTokens += 5 + completion;
          inFlight--;
          await admission.settle({
            status: 'completed',
            httpStatus: 200,
            usage: { prompt_tokens: 5, completion_tokens: completion },
          });
          return 'ok';
        } catch (error) {
          if (isTollgateError(error) && error.status === 429) return error.code;
          throw error;
        }
      }),
    );
    expect(peak).toBeLessThanOrEqual(5);
    expect(outcomes.filter((outcome) => outcome === 'ok').length).toBeGreaterThan(0);
    expect(outcomes).toContain('concurrency_limit');
    // Each reservation is 100 tokens; an admitted request can exceed its own by 25 at most,
    // and only the 5 in flight at the last admission can have been admitted against figures
    // that did not include their excess.
    expect(admittedTokens).toBeLessThanOrEqual(budget + 5 * 125);
    await tenancy.flush();
    const [row] = await tenancy.usage({ tenantId: caller.tenantId });
    expect(row?.totalTokens).toBe(admittedTokens);
  });

  it('error: while records cannot be written, metered requests are refused with 503', async () => {
    const failing = await createPgliteStore({});
    const tenancy = createTenancy({ store: failing, staticKeys: ['k'] });
    opened.push(tenancy);
    const caller = await tenancy.authenticate('k');
    const admission = await tenancy.admit(caller, chat('x'));
    await failing.close();
    await admission.settle({ status: 'completed', httpStatus: 200 });
    await expect(tenancy.flush()).rejects.toThrow();
    const error = await refusal(tenancy.admit(caller, chat('x')));
    expect(error).toMatchObject({ code: 'service_unavailable', status: 503 });
    // Opening PGlite in memory runs initdb: seconds on a busy machine.
  }, 60_000);

  it('error: while the limiter is unreachable, limited tenants get 503; a slot freed meanwhile is released once it is back', async () => {
    const memory = createMemoryLimiter();
    let down = false;
    const settled: Array<{ tokens: number; reserved: number }> = [];
    const limiter: Limiter = {
      ...memory,
      admit: (request) =>
        down ? Promise.reject(new Error('connect ECONNREFUSED')) : memory.admit(request),
      settle: (reservation, actual) => {
        if (down) return Promise.reject(new Error('connect ECONNREFUSED'));
        settled.push({ tokens: actual.tokens, reserved: reservation.tokens });
        return memory.settle(reservation, actual);
      },
    };
    const changes: boolean[] = [];
    const { tenancy } = setup({
      limiter,
      onLimiterHealthChange: (healthy) => changes.push(healthy),
    });
    const tenant = await tenancy.createTenant(
      { name: uniqueName(), limits: { max_concurrent: 1 } },
      cli,
    );
    const caller = await tenancy.authenticate((await tenancy.issueKey(tenant.id, {}, cli)).key);
    const admission = await tenancy.admit(caller, chat('x', { max_tokens: 10 }));
    down = true;
    // Settling never rejects; the usage is recorded all the same.
    await admission.settle({
      status: 'completed',
      httpStatus: 200,
      usage: { prompt_tokens: 1, completion_tokens: 2 },
    });
    expect(changes).toEqual([false]);
    const error = await refusal(tenancy.admit(caller, chat('x')));
    expect(error).toMatchObject({ code: 'service_unavailable', status: 503 });
    expect(error.message).toContain('Rate limits cannot be checked');
    down = false;
    // The slot is given back first (at the reserved figures: no counter moves twice), so the
    // tenant's one slot is free for this admission.
    const next = await tenancy.admit(caller, chat('x'));
    expect(changes).toEqual([false, true]);
    expect(settled).toHaveLength(1);
    expect(settled[0]!.tokens).toBe(settled[0]!.reserved);
    await next.settle({ status: 'completed', httpStatus: 200 });
    await tenancy.flush();
    expect((await tenancy.usage({ tenantId: tenant.id }))[0]?.requests).toBe(2);
  });

  it('behavior: with limiterUnreachable serve, limited tenants are served and metered while the limiter is away, without rate headers; the allow list still holds', async () => {
    const memory = createMemoryLimiter();
    let down = false;
    const limiter: Limiter = {
      ...memory,
      admit: (request) =>
        down ? Promise.reject(new Error('connect ECONNREFUSED')) : memory.admit(request),
    };
    const changes: boolean[] = [];
    const { tenancy } = setup({
      limiter,
      limiterUnreachable: 'serve',
      onLimiterHealthChange: (healthy) => changes.push(healthy),
    });
    const tenant = await tenancy.createTenant(
      {
        name: uniqueName(),
        limits: { models: ['llama3*'], max_concurrent: 1, requests_per_minute: 1 },
      },
      cli,
    );
    const caller = await tenancy.authenticate((await tenancy.issueKey(tenant.id, {}, cli)).key);
    const first = await tenancy.admit(caller, chat('x'));
    expect(first.headers['x-ratelimit-limit-requests']).toBe('1');
    down = true;
    // Over both limits (one slot, held; one request a minute, used): served all the same.
    const during = await tenancy.admit(caller, chat('x'));
    expect(during.headers).toEqual({});
    expect(changes).toEqual([false]);
    const other = { ...chat('x'), model: 'qwen2.5' };
    await expect(tenancy.admit(caller, other)).rejects.toMatchObject({
      code: 'model_not_allowed',
    });
    for (const admission of [first, during]) {
      await admission.settle({
        status: 'completed',
        httpStatus: 200,
        usage: { prompt_tokens: 1, completion_tokens: 2 },
      });
    }
    await tenancy.flush();
    expect((await tenancy.usage({ tenantId: tenant.id }))[0]).toMatchObject({
      requests: 2,
      completionTokens: 4,
    });
    down = false;
    // Back: the limits hold again (the minute's one request is used).
    await expect(tenancy.admit(caller, chat('x'))).rejects.toMatchObject({
      code: 'rate_limit_exceeded',
    });
    expect(changes).toEqual([false, true]);
  });

  it('behavior: the slots of running requests are renewed on a timer until they settle', async () => {
    const memory = createMemoryLimiter();
    const renewed: string[][] = [];
    const limiter: Limiter = {
      ...memory,
      renew: async (reservations) => {
        renewed.push(reservations.map((reservation) => reservation.admissionId));
      },
    };
    const { tenancy } = setup({ limiter, slotRenewMs: 10 });
    const caller = await tenantCaller(tenancy, { max_concurrent: 2 });
    const running = await tenancy.admit(caller, chat('x'));
    const unlimited = await tenancy.admit(await tenantCaller(tenancy, {}), chat('x'));
    await vi.waitFor(() => expect(renewed.length).toBeGreaterThan(1));
    expect(renewed.at(-1)).toEqual([running.id]);
    await running.settle({ status: 'completed', httpStatus: 200 });
    await unlimited.settle({ status: 'completed', httpStatus: 200 });
    const count = renewed.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Nothing held: no more renewals.
    expect(renewed).toHaveLength(count);
  });

  it('behavior: checkLimiter pings the limiter (concurrent checks share one ping), reports and remembers its health; a limiter without ping is not asked', async () => {
    const memory = createMemoryLimiter();
    let down = true;
    let pings = 0;
    const limiter: Limiter = {
      ...memory,
      ping: async () => {
        pings++;
        await new Promise((resolve) => setTimeout(resolve, 5));
        if (down) throw new Error('connect ECONNREFUSED');
      },
    };
    const changes: boolean[] = [];
    const { tenancy } = setup({
      limiter,
      onLimiterHealthChange: (healthy) => changes.push(healthy),
    });
    expect(tenancy.limiterHealthy).toBe(true);
    expect(await Promise.all([tenancy.checkLimiter(), tenancy.checkLimiter()])).toEqual([
      false,
      false,
    ]);
    expect(pings).toBe(1);
    expect(tenancy.limiterHealthy).toBe(false);
    down = false;
    expect(await tenancy.checkLimiter()).toBe(true);
    expect(tenancy.limiterHealthy).toBe(true);
    expect(changes).toEqual([false, true]);

    const { tenancy: plain } = setup({ limiter: createMemoryLimiter() });
    expect(await plain.checkLimiter()).toBe(true);
  });
});

/** A fresh payer address, mixed case (as checksummed addresses are), so tests do not share one. */
function payerAddress(): string {
  const hex = Array.from(
    { length: 40 },
    () => '0123456789abcdefABCDEF'[Math.floor(Math.random() * 22)],
  );
  return `0x${hex.join('')}`;
}

function settledPayment(payer: string, overrides: Partial<PaymentInput> = {}): PaymentInput {
  return {
    requestId: 'req-pay',
    payer,
    network: 'eip155:84532',
    asset: '0x036CbD53842c5426634e7929541eC2318f3dCF7e',
    payTo: '0x2222222222222222222222222222222222222222',
    amount: '1000',
    scheme: 'exact',
    x402Version: 2,
    nonce: '0x0102030405060708091011121314151617181920212223242526272829303132',
    status: 'settled',
    transaction: '0xabab',
    ...overrides,
  };
}

describe('x402 payers and payments', () => {
  it('behavior: a payer is metered under x402:<lowercased address>, its usage linked to its payment, and is never a tenant', async () => {
    const batches: RecordBatch[] = [];
    const spy: TenancyStore = {
      ...store,
      writeRecords: (batch) => {
        batches.push(batch);
        return store.writeRecords(batch);
      },
    };
    const { tenancy, clock } = setup({ store: spy });
    const address = payerAddress();
    const tenantId = `x402:${address.toLowerCase()}`;
    const tenantsBefore = (await tenancy.listTenants()).length;

    const caller = tenancy.payer(address);
    expect(caller).toEqual({ kind: 'payer', tenantId, tenantName: null, keyId: null, limits: {} });
    const admission = await tenancy.admit(caller, { ...chat('hello'), requestId: 'req-pay' });
    expect(admission.headers).toEqual({});
    const payment = tenancy.recordPayment(settledPayment(address, { usageId: admission.id }));
    expect(payment).toEqual({
      ...settledPayment(address.toLowerCase()),
      id: expect.stringMatching(/^py_[a-z2-7]{16}$/),
      at: new Date(clock.now),
      usageId: admission.id,
      error: null,
    });
    await admission.settle({
      status: 'completed',
      httpStatus: 200,
      usage: { prompt_tokens: 3, completion_tokens: 4 },
      paymentId: payment.id,
    });
    await tenancy.flush();

    const events = batches.flatMap((batch) => batch.usage);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      id: admission.id,
      tenantId,
      keyId: null,
      paymentId: payment.id,
      requestId: 'req-pay',
    });
    expect(await tenancy.usage({ tenantId })).toEqual([
      expect.objectContaining({ requests: 1, totalTokens: 7 }),
    ]);
    const grouped = await tenancy.usage({ groupBy: ['tenant'] });
    expect(grouped.find((row) => row.tenantId === tenantId)).toMatchObject({ requests: 1 });
    expect(await tenancy.listPayments({ payer: address })).toEqual([payment]);
    expect(await tenancy.listPayments({ payer: address, status: 'failed' })).toEqual([]);

    expect((await tenancy.listTenants()).length).toBe(tenantsBefore);
    expect((await refusal(tenancy.getTenant(tenantId))).status).toBe(404);
  });

  it('behavior: payerLimits apply to each payer on its own', async () => {
    const { tenancy } = setup({ payerLimits: { requestsPerMinute: 1, models: ['llama3*'] } });
    const first = tenancy.payer(payerAddress());
    const admission = await tenancy.admit(first, chat('x'));
    expect(admission.headers['x-ratelimit-limit-requests']).toBe('1');
    const limited = await refusal(tenancy.admit(first, chat('x')));
    expect(limited).toMatchObject({ code: 'rate_limit_exceeded', status: 429 });
    expect(limited.message).toContain(first.tenantId);
    await tenancy.admit(tenancy.payer(payerAddress()), chat('x'));
    const model = await refusal(tenancy.admit(first, { ...chat('x'), model: 'qwen2.5:7b' }));
    expect(model).toMatchObject({ code: 'model_not_allowed', status: 403 });
    expect(model.message).toMatch(/^This payer may not use the model "qwen2.5:7b"/);
    // Without payerLimits, unlimited.
    expect(payerCaller(payerAddress()).limits).toEqual({});
  });

  it('behavior: a verify-only payment and a failed one are recorded with what happened', async () => {
    const { tenancy } = setup();
    const address = payerAddress();
    const verified = tenancy.recordPayment(
      settledPayment(address, { status: 'verified', transaction: null, amount: '0001000' }),
    );
    expect(verified.amount).toBe('1000');
    const failed = tenancy.recordPayment(
      settledPayment(address, {
        status: 'failed',
        transaction: undefined,
        error: 'invalid_exact_evm_payload_signature',
      }),
    );
    expect(failed).toMatchObject({ transaction: null, usageId: null });
    await tenancy.flush();
    expect(await tenancy.listPayments({ payer: address })).toEqual(
      expect.arrayContaining([verified, failed]),
    );
    expect(await tenancy.listPayments({ payer: address, status: 'failed' })).toEqual([failed]);
  });

  it('error: a malformed address is a 400 on payer; a malformed payment a TypeError, and nothing is queued', async () => {
    const { tenancy } = setup();
    for (const address of ['0x123', 'abc', `${payerAddress()}0`, '', 7]) {
      const error = await refusal(Promise.resolve().then(() => tenancy.payer(address as string)));
      expect(error, String(address)).toMatchObject({
        code: 'invalid_request',
        status: 400,
        param: 'payer',
      });
    }
    const address = payerAddress();
    const bad: Array<[Partial<PaymentInput>, RegExp]> = [
      [{ payer: 'alice' }, /payer/],
      [{ amount: '1.5' }, /amount/],
      [{ amount: 1000 as unknown as string }, /amount/],
      [{ amount: '1'.repeat(79) }, /amount/],
      [{ status: 'pending' as never }, /status/],
      [{ x402Version: 0 }, /x402Version/],
      [{ requestId: '' }, /requestId/],
      [{ nonce: undefined as unknown as string }, /nonce/],
      [{ id: 'py_1' }, /id/],
      [{ at: new Date(Number.NaN) }, /at/],
      [{ error: 42 as unknown as string }, /error/],
    ];
    for (const [overrides, field] of bad) {
      expect(() => tenancy.recordPayment(settledPayment(address, overrides))).toThrow(TypeError);
      expect(() => tenancy.recordPayment(settledPayment(address, overrides))).toThrow(field);
    }
    await tenancy.flush();
    expect(await tenancy.listPayments({ payer: address })).toEqual([]);
  });
});

describe('formatResetDuration', () => {
  it('args: Go-style durations as OpenAI sends them', () => {
    expect(formatResetDuration(250)).toBe('250ms');
    expect(formatResetDuration(12_000)).toBe('12s');
    expect(formatResetDuration(360_000)).toBe('6m0s');
    expect(formatResetDuration(3_723_000)).toBe('1h2m3s');
  });
});
