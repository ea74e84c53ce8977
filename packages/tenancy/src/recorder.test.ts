import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createRecorder,
  type PaymentRecord,
  type RecordBatch,
  type ReservationRecord,
  type TenancyStore,
  type UsageEvent,
} from './index.js';

/**
 * A store double holding records in maps with the real store's write semantics (idempotent
 * by id, a usage event closes its reservation). The real stores run their own shared suite
 * against PGlite and PostgreSQL; here the point is the recorder's batching and recovery.
 */
function memoryRecords() {
  const reservations = new Map<string, ReservationRecord>();
  const usage = new Map<string, UsageEvent>();
  const audit = new Map<string, unknown>();
  const payments = new Map<string, PaymentRecord>();
  const state = { failing: false, writes: 0 };
  const store = {
    kind: 'pglite',
    async writeRecords(batch: RecordBatch) {
      if (state.failing) throw new Error('connection refused');
      state.writes++;
      for (const record of batch.reservations)
        if (!reservations.has(record.id)) reservations.set(record.id, record);
      for (const event of batch.usage) {
        if (!usage.has(event.id)) usage.set(event.id, event);
        reservations.delete(event.id);
      }
      for (const entry of batch.audit) if (!audit.has(entry.id)) audit.set(entry.id, entry);
      for (const record of batch.payments)
        if (!payments.has(record.id)) payments.set(record.id, record);
    },
    async openReservations(instanceId: string) {
      return [...reservations.values()].filter((record) => record.instanceId === instanceId);
    },
    async ping() {
      if (state.failing) throw new Error('connection refused');
    },
  } as unknown as TenancyStore;
  return { store, reservations, usage, audit, payments, state };
}

function reservation(id: string, instanceId = 'gw'): ReservationRecord {
  return {
    id,
    instanceId,
    at: new Date('2026-11-23T10:00:00Z'),
    tenantId: 'tn_a',
    keyId: 'k1',
    model: 'm',
    promptTokens: 10,
    completionTokens: 100,
    costMicroUsd: 7,
    requestId: `req-${id}`,
    streamed: true,
  };
}

function usage(id: string): UsageEvent {
  return {
    id,
    at: new Date('2026-11-23T10:00:00Z'),
    tenantId: 'tn_a',
    keyId: 'k1',
    model: 'm',
    backend: 'b',
    promptTokens: 10,
    completionTokens: 20,
    totalTokens: 30,
    estimated: false,
    costMicroUsd: 3,
    status: 'completed',
    httpStatus: 200,
    latencyMs: 5,
    firstTokenMs: 1,
    requestId: `req-${id}`,
    streamed: true,
    paymentId: null,
  };
}

function payment(id: string): PaymentRecord {
  return {
    id,
    at: new Date('2026-11-23T10:00:01Z'),
    requestId: `req-${id}`,
    usageId: 'ad_1',
    payer: '0x1111111111111111111111111111111111111111',
    network: 'eip155:84532',
    asset: '0x036cbd53842c5426634e7929541ec2318f3dcf7e',
    payTo: '0x2222222222222222222222222222222222222222',
    amount: '1000',
    scheme: 'exact',
    x402Version: 2,
    nonce: '0x01',
    status: 'settled',
    transaction: '0xab',
    error: null,
  };
}

const dirs: string[] = [];
function journalDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-journal-'));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const slow = { flushIntervalMs: 3_600_000 };

const nextTurn = () => new Promise((done) => setImmediate(done));

describe('recorder', () => {
  it('behavior: queued records reach the store on flush and the journal is emptied', async () => {
    const records = memoryRecords();
    const dir = journalDir();
    const recorder = createRecorder({
      store: records.store,
      instanceId: 'gw',
      journalDir: dir,
      ...slow,
    });
    recorder.reserve(reservation('ad_1'));
    recorder.usage(usage('ad_1'));
    recorder.reserve(reservation('ad_2'));
    expect(recorder.pending).toBe(3);
    // Journaled within this turn of the event loop.
    await nextTurn();
    expect(readdirSync(dir)).toHaveLength(1);
    await recorder.flush();
    expect(recorder.pending).toBe(0);
    expect([...records.usage.keys()]).toEqual(['ad_1']);
    expect([...records.reservations.keys()]).toEqual(['ad_2']);
    expect(readdirSync(dir)).toHaveLength(0);
    await recorder.close();
  });

  it('behavior: a reservation settled within the same batch is not written, only its usage', async () => {
    const records = memoryRecords();
    const batches: RecordBatch[] = [];
    const write = records.store.writeRecords.bind(records.store);
    records.store.writeRecords = async (batch) => {
      batches.push(batch);
      return write(batch);
    };
    const recorder = createRecorder({ store: records.store, instanceId: 'gw', ...slow });
    recorder.reserve(reservation('ad_short'));
    recorder.usage(usage('ad_short'));
    recorder.reserve(reservation('ad_long'));
    await recorder.flush();
    expect(batches[0]!.reservations.map((record) => record.id)).toEqual(['ad_long']);
    expect(batches[0]!.usage.map((event) => event.id)).toEqual(['ad_short']);
    await recorder.close();
  });

  it('behavior: the timer writes without being asked', async () => {
    const records = memoryRecords();
    const recorder = createRecorder({ store: records.store, instanceId: 'gw', flushIntervalMs: 5 });
    recorder.usage(usage('ad_1'));
    await expect.poll(() => records.usage.size).toBe(1);
    await recorder.close();
  });

  it('behavior: a failing store keeps every record, reports unhealthy, and catches up when back', async () => {
    const records = memoryRecords();
    const dir = journalDir();
    const changes: boolean[] = [];
    const recorder = createRecorder({
      store: records.store,
      instanceId: 'gw',
      journalDir: dir,
      onHealthChange: (healthy) => changes.push(healthy),
      ...slow,
    });
    records.state.failing = true;
    recorder.usage(usage('ad_1'));
    recorder.payment(payment('py_1'));
    await expect(recorder.flush()).rejects.toThrow('connection refused');
    expect(recorder.healthy).toBe(false);
    recorder.usage(usage('ad_2'));
    recorder.payment(payment('py_2'));
    await expect(recorder.flush()).rejects.toThrow();
    expect(recorder.pending).toBe(4);
    expect(readdirSync(dir).length).toBeGreaterThanOrEqual(1);
    records.state.failing = false;
    await recorder.flush();
    expect(recorder.healthy).toBe(true);
    expect([...records.usage.keys()].sort()).toEqual(['ad_1', 'ad_2']);
    expect([...records.payments.keys()]).toEqual(['py_1', 'py_2']);
    expect(readdirSync(dir)).toHaveLength(0);
    expect(changes).toEqual([false, true]);
    await recorder.close();
  });

  it('behavior: large batches are split into transactions of maxBatch records', async () => {
    const records = memoryRecords();
    const recorder = createRecorder({
      store: records.store,
      instanceId: 'gw',
      maxBatch: 10,
      ...slow,
    });
    for (let index = 0; index < 25; index++) recorder.usage(usage(`ad_${index}`));
    await recorder.flush();
    expect(records.state.writes).toBe(3);
    expect(records.usage.size).toBe(25);
    await recorder.close();
  });

  it('behavior: what a dead process journaled is recorded by the next one, open reservations as interrupted', async () => {
    const records = memoryRecords();
    const dir = journalDir();
    // The first process writes nothing to the database before it "dies" (it is abandoned).
    records.state.failing = true;
    const dead = createRecorder({
      store: records.store,
      instanceId: 'gw',
      journalDir: dir,
      ...slow,
    });
    dead.reserve(reservation('ad_served'));
    dead.usage(usage('ad_served'));
    dead.payment(payment('py_served'));
    dead.reserve(reservation('ad_in_flight'));
    dead.audit({
      id: 'au_1',
      at: new Date(),
      actor: 'system',
      action: 'auth.failures',
      target: null,
      result: 'denied',
      httpStatus: 401,
      method: null,
      path: null,
      remoteAddress: '127.0.0.1',
      requestId: null,
      detail: { count: 3 },
    });
    await nextTurn();
    // A torn last line, as a kill in the middle of a write would leave.
    const [segment] = readdirSync(dir);
    appendFileSync(join(dir, segment!), '{"t":"u","id":"ad_torn"');

    records.state.failing = false;
    const next = createRecorder({
      store: records.store,
      instanceId: 'gw',
      journalDir: dir,
      ...slow,
    });
    expect(await next.recover()).toMatchObject({
      replayed: 5,
      interrupted: 1,
      open: [{ id: 'ad_in_flight' }],
    });
    expect(records.usage.get('ad_served')?.status).toBe('completed');
    // Whole, its time a Date again.
    expect(records.payments.get('py_served')).toEqual(payment('py_served'));
    const interrupted = records.usage.get('ad_in_flight');
    expect(interrupted).toMatchObject({
      status: 'interrupted',
      estimated: true,
      promptTokens: 10,
      completionTokens: 100,
      totalTokens: 110,
      costMicroUsd: 7,
      requestId: 'req-ad_in_flight',
    });
    expect(interrupted?.at).toBeInstanceOf(Date);
    expect(records.reservations.size).toBe(0);
    expect(records.audit.size).toBe(1);
    expect(readdirSync(dir)).toHaveLength(0);
    // Recovering again changes nothing: every write is idempotent.
    expect(await next.recover()).toEqual({ replayed: 0, interrupted: 0, open: [] });
    expect(records.usage.size).toBe(2);
    expect(records.payments.size).toBe(1);
    await Promise.all([dead.close().catch(() => {}), next.close()]);
  });

  it('behavior: a payment after close is still journaled, and recorded at the next start', async () => {
    const records = memoryRecords();
    const dir = journalDir();
    const recorder = createRecorder({
      store: records.store,
      instanceId: 'gw',
      journalDir: dir,
      ...slow,
    });
    await recorder.close();
    // Settled while the gateway shut down: the money moved, so the record must not be lost.
    recorder.payment(payment('py_late'));
    expect(() => recorder.audit({} as never)).toThrow('closed');
    await nextTurn();
    expect(readdirSync(dir)).toHaveLength(1);
    expect(records.payments.size).toBe(0);
    const next = createRecorder({
      store: records.store,
      instanceId: 'gw',
      journalDir: dir,
      ...slow,
    });
    expect(await next.recover()).toEqual({ replayed: 1, interrupted: 0, open: [] });
    expect(records.payments.get('py_late')).toEqual(payment('py_late'));
    await next.close();
  });

  it("behavior: another instance's open reservations are left to it", async () => {
    const records = memoryRecords();
    records.reservations.set('ad_other', reservation('ad_other', 'gw-2'));
    const recorder = createRecorder({ store: records.store, instanceId: 'gw-1', ...slow });
    expect(await recorder.recover()).toEqual({ replayed: 0, interrupted: 0, open: [] });
    expect(records.reservations.has('ad_other')).toBe(true);
    await recorder.close();
  });

  it('behavior: a ping failure while idle marks the recorder unhealthy', async () => {
    const records = memoryRecords();
    records.state.failing = true;
    const recorder = createRecorder({
      store: records.store,
      instanceId: 'gw',
      flushIntervalMs: 5,
      pingIntervalMs: 0,
    });
    await expect.poll(() => recorder.healthy).toBe(false);
    records.state.failing = false;
    await expect.poll(() => recorder.healthy).toBe(true);
    await recorder.close();
  });
});
