import { isTollgateError } from '@tollgate/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPgliteStoreInWorker, type TenancyStore } from './index.js';

// The shared store suite runs on PGlite in this thread; here, what crossing the thread
// boundary could break: dates, bytes, errors, ordering, closing.
describe('PGlite in a worker thread', { timeout: 60_000 }, () => {
  let store: TenancyStore;
  const at = new Date('2026-11-23T10:00:00.000Z');

  beforeAll(async () => {
    store = await createPgliteStoreInWorker({});
  }, 60_000);
  afterAll(async () => {
    await store.close();
  });

  it('behavior: records cross the thread with their dates and bytes intact', async () => {
    const tenant = {
      id: 'tn_aaaaaaaaaaaaaaaa',
      name: 'acme',
      limits: { requestsPerMinute: 5, budgets: [{ period: 'day' as const, tokens: 10 }] },
      createdAt: at,
      updatedAt: at,
    };
    expect(await store.createTenant(tenant)).toEqual(tenant);
    const secretHash = Uint8Array.from({ length: 32 }, (_, index) => index * 7);
    const key = {
      id: 'kaaaaaaaaaaaaaaa',
      tenantId: tenant.id,
      name: 'ci',
      secretHash,
      createdAt: at,
      expiresAt: null,
      revokedAt: null,
      replacedBy: null,
    };
    await store.insertKey(key);
    const read = await store.getKey(key.id);
    expect(read).toEqual(key);
    expect(read?.secretHash).toBeInstanceOf(Uint8Array);
    expect(read?.createdAt).toBeInstanceOf(Date);
  });

  it('behavior: payments cross the thread both ways, dates and query filters intact', async () => {
    const payment = {
      id: 'py_aaaaaaaaaaaaaaaa',
      at,
      requestId: 'req_1',
      usageId: 'ad_1',
      payer: '0x1111111111111111111111111111111111111111',
      network: 'eip155:84532',
      asset: '0x036cbd53842c5426634e7929541ec2318f3dcf7e',
      payTo: '0x2222222222222222222222222222222222222222',
      amount: '123456789012345678901234567890',
      scheme: 'exact',
      x402Version: 2,
      nonce: '0x01',
      status: 'settled' as const,
      transaction: '0xab',
      error: null,
    };
    const earlier = { ...payment, id: 'py_bbbbbbbbbbbbbbbb', at: new Date(at.getTime() - 1000) };
    await store.writeRecords({
      reservations: [],
      usage: [],
      audit: [],
      payments: [payment, earlier],
    });
    const read = await store.queryPayments({ payer: payment.payer, since: at });
    expect(read).toEqual([payment]);
    expect(read[0]?.at).toBeInstanceOf(Date);
    expect((await store.queryPayments({})).map((row) => row.id)).toEqual([payment.id, earlier.id]);
    await expect(store.queryPayments({ limit: -1 })).rejects.toThrow(RangeError);
  });

  it('error: a store error comes back as the same TollgateError', async () => {
    let caught: unknown;
    try {
      await store.createTenant({
        id: 'tn_bbbbbbbbbbbbbbbb',
        name: 'acme',
        limits: {},
        createdAt: at,
        updatedAt: at,
      });
    } catch (error) {
      caught = error;
    }
    expect(isTollgateError(caught)).toBe(true);
    expect(caught).toMatchObject({ code: 'conflict', status: 409, param: 'name' });
  });

  it('behavior: calls are answered in order, writes before the reads that follow them', async () => {
    const writes = Array.from({ length: 50 }, (_, index) =>
      store.writeRecords({
        reservations: [],
        audit: [],
        payments: [],
        usage: [
          {
            id: `ad_${index}`,
            at,
            tenantId: 'tn_aaaaaaaaaaaaaaaa',
            keyId: null,
            model: 'm',
            backend: null,
            promptTokens: 1,
            completionTokens: 2,
            totalTokens: 3,
            estimated: false,
            costMicroUsd: 0,
            status: 'completed',
            httpStatus: 200,
            latencyMs: 1,
            firstTokenMs: null,
            requestId: null,
            streamed: false,
            paymentId: null,
          },
        ],
      }),
    );
    const total = store.usageSince('tn_aaaaaaaaaaaaaaaa', new Date(0));
    await Promise.all(writes);
    expect(await total).toEqual({ totalTokens: 150, costMicroUsd: 0 });
  });

  it('error: after close, calls are refused instead of hanging', async () => {
    const other = await createPgliteStoreInWorker({});
    await other.close();
    await other.close();
    await expect(other.ping()).rejects.toThrow(/stopped/);
  });
});
