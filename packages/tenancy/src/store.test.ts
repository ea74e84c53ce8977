import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { isTollgateError, TollgateError } from '@tollgate/protocol';
import type { MigrationConfig } from 'drizzle-orm/migrator';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createPgliteStore, createPostgresStore, createStore } from './index.js';
import { createTestDatabase, type TestDatabase } from './testing.js';
import type {
  ApiKeyRecord,
  AuditEntry,
  PaymentRecord,
  RecordBatch,
  ReservationRecord,
  TenancyStore,
  Tenant,
  UsageEvent,
} from './types.js';

const databaseUrl = process.env.TOLLGATE_TEST_DATABASE_URL;

// Opening PGlite compiles its WebAssembly and runs initdb; a directory store does it on disk.
const SUITE_TIMEOUT = 60_000;

const T0 = new Date('2025-03-01T10:00:00.000Z');

function at(offsetMs: number): Date {
  return new Date(T0.getTime() + offsetMs);
}

function tenant(overrides: Partial<Tenant> = {}): Tenant {
  return {
    id: 'tn_aaaaaaaaaaaaaaaa',
    name: 'acme',
    limits: {},
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

function key(overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return {
    id: 'kaaaaaaaaaaaaaaa',
    tenantId: 'tn_aaaaaaaaaaaaaaaa',
    name: 'ci',
    secretHash: new Uint8Array(32).fill(7),
    createdAt: T0,
    expiresAt: null,
    revokedAt: null,
    replacedBy: null,
    ...overrides,
  };
}

function usage(overrides: Partial<UsageEvent> = {}): UsageEvent {
  return {
    id: 'ad_1',
    at: T0,
    tenantId: 'tn_aaaaaaaaaaaaaaaa',
    keyId: 'kaaaaaaaaaaaaaaa',
    model: 'llama3',
    backend: 'ollama',
    promptTokens: 10,
    completionTokens: 5,
    totalTokens: 15,
    estimated: false,
    costMicroUsd: 100,
    status: 'completed',
    httpStatus: 200,
    latencyMs: 250,
    firstTokenMs: 40,
    requestId: 'req_1',
    streamed: true,
    paymentId: null,
    ...overrides,
  };
}

function reservation(overrides: Partial<ReservationRecord> = {}): ReservationRecord {
  return {
    id: 'ad_1',
    instanceId: 'gw_a',
    at: T0,
    tenantId: 'tn_aaaaaaaaaaaaaaaa',
    keyId: 'kaaaaaaaaaaaaaaa',
    model: 'llama3',
    promptTokens: 10,
    completionTokens: 512,
    costMicroUsd: 900,
    requestId: 'req_1',
    streamed: false,
    ...overrides,
  };
}

function audit(overrides: Partial<AuditEntry> = {}): AuditEntry {
  return {
    id: 'au_1',
    at: T0,
    actor: 'admin',
    action: 'tenant.create',
    target: 'tn_aaaaaaaaaaaaaaaa',
    result: 'ok',
    httpStatus: 201,
    method: 'POST',
    path: '/admin/tenants',
    remoteAddress: '127.0.0.1',
    requestId: 'req_1',
    detail: { limits: ['requests_per_minute'] },
    ...overrides,
  };
}

const PAYER = '0x1111111111111111111111111111111111111111';

function payment(overrides: Partial<PaymentRecord> = {}): PaymentRecord {
  return {
    id: 'py_aaaaaaaaaaaaaaaa',
    at: T0,
    requestId: 'req_1',
    usageId: 'ad_1',
    payer: PAYER,
    network: 'eip155:84532',
    asset: '0x036cbd53842c5426634e7929541ec2318f3dcf7e',
    payTo: '0x2222222222222222222222222222222222222222',
    amount: '1000',
    scheme: 'exact',
    x402Version: 2,
    nonce: '0x0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000',
    status: 'settled',
    transaction: '0xabababababababababababababababababababababababababababababababab',
    error: null,
    ...overrides,
  };
}

function batch(parts: Partial<RecordBatch>): RecordBatch {
  return { reservations: [], usage: [], audit: [], payments: [], ...parts };
}

const zeroRow = {
  requests: 0,
  promptTokens: 0,
  completionTokens: 0,
  totalTokens: 0,
  costMicroUsd: 0,
  estimatedRequests: 0,
};

const MIGRATIONS = fileURLToPath(new URL('../migrations', import.meta.url));

/**
 * The migrations folder as the first release shipped it (0000_init only), in `dir`, with the
 * store's migration table: a database migrated with it is one made by that release.
 */
async function firstReleaseMigrations(dir: string): Promise<MigrationConfig> {
  await mkdir(join(dir, 'meta'), { recursive: true });
  await cp(join(MIGRATIONS, '0000_init.sql'), join(dir, '0000_init.sql'));
  const journal = JSON.parse(await readFile(join(MIGRATIONS, 'meta', '_journal.json'), 'utf8'));
  journal.entries = journal.entries.slice(0, 1);
  await writeFile(join(dir, 'meta', '_journal.json'), JSON.stringify(journal));
  return {
    migrationsFolder: dir,
    migrationsTable: '__tollgate_tenancy_migrations',
    migrationsSchema: 'drizzle',
  };
}

/** What the upgrade tests check on a store opened over a first-release database. */
async function expectUpgraded(store: TenancyStore): Promise<void> {
  expect(await store.getTenant('tn_aaaaaaaaaaaaaaaa')).toEqual(tenant());
  expect(await store.usageSince('tn_aaaaaaaaaaaaaaaa', T0)).toEqual({
    totalTokens: 15,
    costMicroUsd: 100,
  });
  await store.writeRecords(batch({ payments: [payment()] }));
  expect(await store.queryPayments({ payer: PAYER })).toEqual([payment()]);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** How the shared suite gets stores from one driver. */
interface StoreHarness {
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  /** A store on an empty database. */
  open(): Promise<TenancyStore>;
  /** The database of the last `open()` again, after that store was closed (persisted drivers). */
  reopen?(): Promise<TenancyStore>;
}

/** The conformance suite every driver passes. */
function describeStore(name: string, harness: StoreHarness): void {
  describe(name, { timeout: SUITE_TIMEOUT }, () => {
    let store: TenancyStore;

    beforeAll(async () => harness.setup?.(), SUITE_TIMEOUT);
    afterAll(async () => harness.teardown?.(), SUITE_TIMEOUT);
    beforeEach(async () => {
      store = await harness.open();
    }, SUITE_TIMEOUT);
    afterEach(async () => store.close());

    describe('tenants', () => {
      it('behavior: a created tenant reads back by id and by name, limits included', async () => {
        const created = tenant({
          limits: {
            requestsPerMinute: 60,
            tokensPerMinute: 100_000,
            maxConcurrent: 4,
            models: ['llama3*', 'qwen2.5:7b'],
            budgets: [
              { period: 'day', tokens: 1_000_000, spendUsd: 5 },
              { period: 'month', spendUsd: 100.25 },
            ],
          },
          createdAt: at(1),
          updatedAt: at(2),
        });
        expect(await store.createTenant(created)).toEqual(created);
        expect(await store.getTenant(created.id)).toEqual(created);
        expect(await store.getTenantByName('acme')).toEqual(created);
      });

      it('behavior: unknown ids and names read as undefined', async () => {
        await store.createTenant(tenant());
        expect(await store.getTenant('tn_zzzzzzzzzzzzzzzz')).toBeUndefined();
        expect(await store.getTenantByName('ACME')).toBeUndefined();
      });

      it('error: a second tenant with a taken name is a conflict on name', async () => {
        await store.createTenant(tenant());
        const error = await rejection(store.createTenant(tenant({ id: 'tn_bbbbbbbbbbbbbbbb' })));
        expect(error).toBeInstanceOf(TollgateError);
        expect(error).toMatchObject({
          code: 'conflict',
          status: 409,
          param: 'name',
          message: 'A tenant named "acme" already exists.',
        });
        expect(await store.listTenants()).toHaveLength(1);
      });

      it('error: renaming a tenant to a taken name is a conflict on name', async () => {
        await store.createTenant(tenant());
        await store.createTenant(tenant({ id: 'tn_bbbbbbbbbbbbbbbb', name: 'globex' }));
        const error = await rejection(
          store.updateTenant('tn_bbbbbbbbbbbbbbbb', { name: 'acme', updatedAt: at(5) }),
        );
        expect(isTollgateError(error)).toBe(true);
        expect(error).toMatchObject({ code: 'conflict', param: 'name' });
        expect((await store.getTenant('tn_bbbbbbbbbbbbbbbb'))?.name).toBe('globex');
      });

      it('behavior: tenants list in creation order', async () => {
        await store.createTenant(tenant({ id: 'tn_c', name: 'c', createdAt: at(3000) }));
        await store.createTenant(tenant({ id: 'tn_a', name: 'a', createdAt: at(1000) }));
        await store.createTenant(tenant({ id: 'tn_b', name: 'b', createdAt: at(2000) }));
        expect((await store.listTenants()).map((row) => row.name)).toEqual(['a', 'b', 'c']);
      });

      it('behavior: an update replaces only the given fields', async () => {
        await store.createTenant(tenant({ limits: { requestsPerMinute: 5 } }));
        const limits = { tokensPerMinute: 10, models: ['gpt-*'] };
        const updated = await store.updateTenant('tn_aaaaaaaaaaaaaaaa', {
          limits,
          updatedAt: at(60_000),
        });
        expect(updated).toEqual(tenant({ limits, updatedAt: at(60_000) }));
        const renamed = await store.updateTenant('tn_aaaaaaaaaaaaaaaa', {
          name: 'acme-2',
          updatedAt: at(120_000),
        });
        expect(renamed).toEqual(tenant({ name: 'acme-2', limits, updatedAt: at(120_000) }));
        expect(await store.getTenantByName('acme-2')).toEqual(renamed);
      });

      it('behavior: updating an unknown tenant returns undefined', async () => {
        expect(await store.updateTenant('tn_missing', { limits: {}, updatedAt: T0 })).toBe(
          undefined,
        );
      });

      it('behavior: deleting a tenant deletes its keys and keeps its usage and audit', async () => {
        await store.createTenant(tenant());
        await store.createTenant(tenant({ id: 'tn_bbbbbbbbbbbbbbbb', name: 'globex' }));
        await store.insertKey(key({ id: 'k1' }));
        await store.insertKey(key({ id: 'k2' }));
        await store.insertKey(key({ id: 'k3', tenantId: 'tn_bbbbbbbbbbbbbbbb' }));
        await store.writeRecords(batch({ usage: [usage()], audit: [audit()] }));

        expect(await store.deleteTenant('tn_aaaaaaaaaaaaaaaa')).toBe(true);

        expect(await store.getTenant('tn_aaaaaaaaaaaaaaaa')).toBeUndefined();
        expect(await store.getKey('k1')).toBeUndefined();
        expect(await store.getKey('k2')).toBeUndefined();
        expect(await store.listKeys('tn_aaaaaaaaaaaaaaaa')).toEqual([]);
        expect((await store.getKey('k3'))?.tenantId).toBe('tn_bbbbbbbbbbbbbbbb');
        expect(await store.usageSince('tn_aaaaaaaaaaaaaaaa', T0)).toEqual({
          totalTokens: 15,
          costMicroUsd: 100,
        });
        expect(await store.queryAudit({ target: 'tn_aaaaaaaaaaaaaaaa' })).toHaveLength(1);
      });

      it('behavior: deleting an unknown tenant returns false', async () => {
        expect(await store.deleteTenant('tn_missing')).toBe(false);
      });
    });

    describe('keys', () => {
      beforeEach(async () => {
        await store.createTenant(tenant());
      });

      it('behavior: a key reads back with its hash as the same bytes in a plain Uint8Array', async () => {
        // Every byte value, so an encoding that mangles NUL, high bytes or escapes would show.
        const secretHash = Uint8Array.from({ length: 256 }, (_, index) => index);
        const record = key({ secretHash, expiresAt: at(3_600_000) });
        await store.insertKey(record);
        const read = await store.getKey(record.id);
        expect(read).toBeDefined();
        expect(Object.getPrototypeOf(read!.secretHash)).toBe(Uint8Array.prototype);
        expect(Array.from(read!.secretHash)).toEqual(Array.from(secretHash));
        expect(read).toEqual(record);
      });

      it('behavior: an unknown key reads as undefined', async () => {
        expect(await store.getKey('nope')).toBeUndefined();
      });

      it("behavior: a tenant's keys list in creation order, without other tenants' keys", async () => {
        await store.createTenant(tenant({ id: 'tn_bbbbbbbbbbbbbbbb', name: 'globex' }));
        await store.insertKey(key({ id: 'k2', createdAt: at(2000) }));
        await store.insertKey(key({ id: 'k1', createdAt: at(1000) }));
        await store.insertKey(key({ id: 'kx', tenantId: 'tn_bbbbbbbbbbbbbbbb' }));
        expect((await store.listKeys('tn_aaaaaaaaaaaaaaaa')).map((row) => row.id)).toEqual([
          'k1',
          'k2',
        ]);
      });

      it('behavior: a key update sets the given fields, null clears, absent keeps', async () => {
        await store.insertKey(key({ expiresAt: at(1000) }));
        const rotated = await store.updateKey('kaaaaaaaaaaaaaaa', {
          expiresAt: at(3_600_000),
          replacedBy: 'kbbbbbbbbbbbbbbb',
        });
        expect(rotated).toEqual(key({ expiresAt: at(3_600_000), replacedBy: 'kbbbbbbbbbbbbbbb' }));
        const revoked = await store.updateKey('kaaaaaaaaaaaaaaa', {
          revokedAt: at(5000),
          expiresAt: null,
        });
        expect(revoked).toEqual(
          key({ revokedAt: at(5000), expiresAt: null, replacedBy: 'kbbbbbbbbbbbbbbb' }),
        );
        expect(await store.getKey('kaaaaaaaaaaaaaaa')).toEqual(revoked);
      });

      it('behavior: an empty key update returns the key unchanged', async () => {
        await store.insertKey(key());
        expect(await store.updateKey('kaaaaaaaaaaaaaaa', {})).toEqual(key());
      });

      it('behavior: updating an unknown key returns undefined', async () => {
        expect(await store.updateKey('nope', { revokedAt: T0 })).toBeUndefined();
        expect(await store.updateKey('nope', {})).toBeUndefined();
      });

      it('error: a key for an unknown tenant is not_found on tenant_id', async () => {
        const error = await rejection(store.insertKey(key({ tenantId: 'tn_missing' })));
        expect(error).toBeInstanceOf(TollgateError);
        expect(error).toMatchObject({ code: 'not_found', status: 404, param: 'tenant_id' });
        expect(await store.getKey('kaaaaaaaaaaaaaaa')).toBeUndefined();
      });
    });

    describe('records', () => {
      it('behavior: a batch writes reservations, usage and audit; reservations list per instance', async () => {
        await store.writeRecords(
          batch({
            reservations: [
              reservation({ id: 'ad_2', at: at(2000) }),
              reservation({ id: 'ad_1', at: at(1000), keyId: null, requestId: null }),
              reservation({ id: 'ad_3', instanceId: 'gw_b' }),
            ],
            usage: [usage({ id: 'ad_9' })],
            audit: [audit()],
          }),
        );
        expect(await store.openReservations('gw_a')).toEqual([
          reservation({ id: 'ad_1', at: at(1000), keyId: null, requestId: null }),
          reservation({ id: 'ad_2', at: at(2000) }),
        ]);
        expect(await store.openReservations('gw_b')).toEqual([
          reservation({ id: 'ad_3', instanceId: 'gw_b' }),
        ]);
        expect(await store.openReservations('gw_c')).toEqual([]);
        expect(await store.queryAudit({})).toEqual([audit()]);
        expect((await store.queryUsage({}))[0]?.requests).toBe(1);
      });

      it('behavior: a usage event deletes the reservation with its id, in a later batch', async () => {
        await store.writeRecords(
          batch({ reservations: [reservation({ id: 'ad_1' }), reservation({ id: 'ad_2' })] }),
        );
        await store.writeRecords(batch({ usage: [usage({ id: 'ad_1' })] }));
        expect((await store.openReservations('gw_a')).map((row) => row.id)).toEqual(['ad_2']);
      });

      it('behavior: a usage event deletes the reservation with its id, in the same batch', async () => {
        await store.writeRecords(
          batch({ reservations: [reservation({ id: 'ad_1' })], usage: [usage({ id: 'ad_1' })] }),
        );
        expect(await store.openReservations('gw_a')).toEqual([]);
      });

      it('behavior: replaying batches writes nothing twice and revives no settled reservation', async () => {
        const first = batch({
          reservations: [reservation({ id: 'ad_1' }), reservation({ id: 'ad_2' })],
          audit: [audit({ id: 'au_1' })],
        });
        const second = batch({
          usage: [usage({ id: 'ad_1', totalTokens: 20, costMicroUsd: 7 })],
          audit: [audit({ id: 'au_2' })],
        });
        await store.writeRecords(first);
        await store.writeRecords(second);
        // A crash before the acknowledgements: both batches come again, oldest first.
        await store.writeRecords(first);
        await store.writeRecords(second);
        await store.writeRecords(second);

        expect((await store.openReservations('gw_a')).map((row) => row.id)).toEqual(['ad_2']);
        expect(await store.queryUsage({})).toEqual([
          {
            requests: 1,
            promptTokens: 10,
            completionTokens: 5,
            totalTokens: 20,
            costMicroUsd: 7,
            estimatedRequests: 0,
          },
        ]);
        expect((await store.queryAudit({})).map((entry) => entry.id)).toEqual(['au_2', 'au_1']);
      });

      it('behavior: a replayed event keeps the first write', async () => {
        await store.writeRecords(batch({ usage: [usage({ totalTokens: 15 })] }));
        await store.writeRecords(batch({ usage: [usage({ totalTokens: 999 })] }));
        expect((await store.queryUsage({}))[0]?.totalTokens).toBe(15);
      });

      it('error: a batch with one bad record writes nothing', async () => {
        const bad = { ...usage({ id: 'ad_2' }), model: null } as unknown as UsageEvent;
        const error = await rejection(
          store.writeRecords(
            batch({
              reservations: [reservation({ id: 'ad_3' })],
              usage: [usage({ id: 'ad_1' }), bad],
              audit: [audit()],
            }),
          ),
        );
        // The driver's error, SQLSTATE not_null_violation, not drizzle's wrapper.
        expect(error).toMatchObject({ code: '23502' });
        expect(await store.openReservations('gw_a')).toEqual([]);
        expect(await store.queryUsage({})).toEqual([zeroRow]);
        expect(await store.queryAudit({})).toEqual([]);
      });

      it('behavior: text PostgreSQL refuses (U+0000, lone surrogates) is written as U+FFFD', async () => {
        const entry = audit({
          path: '/admin/x\u0000y',
          detail: { name: 'a\ud800', ok: '\u{1F600}' },
        });
        await store.writeRecords(batch({ audit: [entry] }));
        expect(await store.queryAudit({})).toEqual([
          { ...entry, path: '/admin/x\ufffdy', detail: { name: 'a\ufffd', ok: '\u{1F600}' } },
        ]);
      });

      it('behavior: a batch larger than one INSERT is written whole', async () => {
        const entries = Array.from({ length: 1234 }, (_, index) =>
          audit({ id: `au_${String(index).padStart(5, '0')}`, at: at(index) }),
        );
        await store.writeRecords(batch({ audit: entries }));
        await store.writeRecords(batch({ audit: entries }));
        const newest = await store.queryAudit({ limit: 1000 });
        expect(newest).toHaveLength(1000);
        expect(newest[0]?.id).toBe('au_01233');
        expect(newest[999]?.id).toBe('au_00234');
      });

      it('behavior: an empty batch sends no query', async () => {
        await store.close();
        // A closed store rejects any query, so resolving proves none was sent.
        await expect(store.writeRecords(batch({}))).resolves.toBeUndefined();
        await expect(store.writeRecords(batch({ audit: [audit()] }))).rejects.toThrow();
      });
    });

    describe('usage queries', () => {
      const events = [
        usage({
          id: 'e1',
          at: new Date('2025-03-01T00:00:00.000Z'),
          tenantId: 'tn_b',
          model: 'm2',
        }),
        usage({
          id: 'e2',
          at: new Date('2025-03-01T23:59:59.999Z'),
          tenantId: 'tn_a',
          model: 'm2',
          promptTokens: 1,
          completionTokens: 2,
          totalTokens: 3,
          costMicroUsd: 4,
          estimated: true,
        }),
        usage({
          id: 'e3',
          at: new Date('2025-03-02T00:00:00.000Z'),
          tenantId: 'tn_a',
          model: 'm1',
        }),
        usage({
          id: 'e4',
          at: new Date('2025-03-02T12:00:00.000Z'),
          tenantId: 'static:1a2b3c4d',
          model: 'm1',
          promptTokens: 100,
          completionTokens: 50,
          totalTokens: 150,
          costMicroUsd: 1000,
          estimated: true,
        }),
        usage({
          id: 'e5',
          at: new Date('2025-03-03T08:00:00.000Z'),
          tenantId: 'tn_a',
          model: 'm1',
        }),
      ];

      beforeEach(async () => {
        await store.writeRecords(batch({ usage: events }));
      });

      function sums(ids: string[]) {
        const rows = events.filter((event) => ids.includes(event.id));
        return {
          requests: rows.length,
          promptTokens: rows.reduce((sum, row) => sum + row.promptTokens, 0),
          completionTokens: rows.reduce((sum, row) => sum + row.completionTokens, 0),
          totalTokens: rows.reduce((sum, row) => sum + row.totalTokens, 0),
          costMicroUsd: rows.reduce((sum, row) => sum + row.costMicroUsd, 0),
          estimatedRequests: rows.filter((row) => row.estimated).length,
        };
      }

      it('behavior: without grouping, one row of totals', async () => {
        expect(await store.queryUsage({})).toEqual([sums(['e1', 'e2', 'e3', 'e4', 'e5'])]);
      });

      it('behavior: without grouping and without a match, one row of zeros', async () => {
        expect(await store.queryUsage({ tenantId: 'tn_nobody' })).toEqual([zeroRow]);
        expect(await store.queryUsage({ tenantId: 'tn_nobody', groupBy: ['tenant'] })).toEqual([]);
      });

      it('behavior: grouped by tenant, one row per tenant in byte order', async () => {
        expect(await store.queryUsage({ groupBy: ['tenant'] })).toEqual([
          { tenantId: 'static:1a2b3c4d', ...sums(['e4']) },
          { tenantId: 'tn_a', ...sums(['e2', 'e3', 'e5']) },
          { tenantId: 'tn_b', ...sums(['e1']) },
        ]);
      });

      it('behavior: grouped by model', async () => {
        expect(await store.queryUsage({ groupBy: ['model'] })).toEqual([
          { model: 'm1', ...sums(['e3', 'e4', 'e5']) },
          { model: 'm2', ...sums(['e1', 'e2']) },
        ]);
      });

      it('behavior: grouped by day, days are UTC dates', async () => {
        expect(await store.queryUsage({ groupBy: ['day'] })).toEqual([
          { day: '2025-03-01', ...sums(['e1', 'e2']) },
          { day: '2025-03-02', ...sums(['e3', 'e4']) },
          { day: '2025-03-03', ...sums(['e5']) },
        ]);
      });

      it('behavior: grouped by several keys, ordered by them in the order given', async () => {
        expect(await store.queryUsage({ groupBy: ['tenant', 'model'] })).toEqual([
          { tenantId: 'static:1a2b3c4d', model: 'm1', ...sums(['e4']) },
          { tenantId: 'tn_a', model: 'm1', ...sums(['e3', 'e5']) },
          { tenantId: 'tn_a', model: 'm2', ...sums(['e2']) },
          { tenantId: 'tn_b', model: 'm2', ...sums(['e1']) },
        ]);
        expect(await store.queryUsage({ groupBy: ['day', 'tenant'], model: 'm1' })).toEqual([
          { day: '2025-03-02', tenantId: 'static:1a2b3c4d', ...sums(['e4']) },
          { day: '2025-03-02', tenantId: 'tn_a', ...sums(['e3']) },
          { day: '2025-03-03', tenantId: 'tn_a', ...sums(['e5']) },
        ]);
        const all = await store.queryUsage({ groupBy: ['model', 'day', 'tenant'] });
        expect(all.map((row) => [row.model, row.day, row.tenantId])).toEqual([
          ['m1', '2025-03-02', 'static:1a2b3c4d'],
          ['m1', '2025-03-02', 'tn_a'],
          ['m1', '2025-03-03', 'tn_a'],
          ['m2', '2025-03-01', 'tn_a'],
          ['m2', '2025-03-01', 'tn_b'],
        ]);
        expect(Object.keys(all[0]!)).toEqual([
          'model',
          'day',
          'tenantId',
          'requests',
          'promptTokens',
          'completionTokens',
          'totalTokens',
          'costMicroUsd',
          'estimatedRequests',
        ]);
      });

      it('behavior: payers group as tenants of their own, after the others in byte order', async () => {
        const payer = `x402:${PAYER}`;
        // e6 has e1's figures.
        await store.writeRecords(
          batch({ usage: [usage({ id: 'e6', tenantId: payer, keyId: null, paymentId: 'py_1' })] }),
        );
        expect(await store.queryUsage({ groupBy: ['tenant'] })).toEqual([
          { tenantId: 'static:1a2b3c4d', ...sums(['e4']) },
          { tenantId: 'tn_a', ...sums(['e2', 'e3', 'e5']) },
          { tenantId: 'tn_b', ...sums(['e1']) },
          { tenantId: payer, ...sums(['e1']) },
        ]);
        expect(await store.queryUsage({ tenantId: payer })).toEqual([sums(['e1'])]);
        expect(await store.usageSince(payer, T0)).toEqual({ totalTokens: 15, costMicroUsd: 100 });
      });

      it('behavior: tenant and model filters', async () => {
        expect(await store.queryUsage({ tenantId: 'tn_a' })).toEqual([sums(['e2', 'e3', 'e5'])]);
        expect(await store.queryUsage({ tenantId: 'tn_a', model: 'm1' })).toEqual([
          sums(['e3', 'e5']),
        ]);
      });

      it('behavior: since is inclusive and until exclusive', async () => {
        expect(
          await store.queryUsage({
            since: new Date('2025-03-01T23:59:59.999Z'),
            until: new Date('2025-03-02T12:00:00.000Z'),
          }),
        ).toEqual([sums(['e2', 'e3'])]);
        expect(
          await store.queryUsage({ since: new Date('2025-03-02T12:00:00.000Z'), groupBy: ['day'] }),
        ).toEqual([
          { day: '2025-03-02', ...sums(['e4']) },
          { day: '2025-03-03', ...sums(['e5']) },
        ]);
        expect(await store.queryUsage({ until: new Date('2025-03-01T00:00:00.000Z') })).toEqual([
          zeroRow,
        ]);
      });

      it('behavior: sums past 2^53 / 1000 stay exact numbers', async () => {
        // bigint sums arrive as text from postgres.js and as numeric from sum(); both become numbers.
        const big = 2 ** 40;
        await store.writeRecords(
          batch({
            usage: [1, 2, 3].map((index) =>
              usage({ id: `big_${index}`, tenantId: 'tn_big', costMicroUsd: big + index }),
            ),
          }),
        );
        const [row] = await store.queryUsage({ tenantId: 'tn_big' });
        expect(typeof row?.costMicroUsd).toBe('number');
        expect(typeof row?.requests).toBe('number');
        expect(row?.costMicroUsd).toBe(3 * big + 6);
        expect(await store.usageSince('tn_big', T0)).toEqual({
          totalTokens: 45,
          costMicroUsd: 3 * big + 6,
        });
      });

      it("behavior: usageSince sums one tenant's usage from an instant on", async () => {
        expect(await store.usageSince('tn_a', new Date('2025-03-02T00:00:00.000Z'))).toEqual({
          totalTokens: 30,
          costMicroUsd: 200,
        });
        expect(await store.usageSince('tn_a', new Date('2025-01-01T00:00:00.000Z'))).toEqual({
          totalTokens: 33,
          costMicroUsd: 204,
        });
        expect(await store.usageSince('tn_a', new Date('2025-04-01T00:00:00.000Z'))).toEqual({
          totalTokens: 0,
          costMicroUsd: 0,
        });
      });
    });

    describe('payments', () => {
      const entries = [
        payment({ id: 'py_1', at: at(1000) }),
        payment({
          id: 'py_2',
          at: at(2000),
          payer: '0x3333333333333333333333333333333333333333',
          usageId: null,
          status: 'failed',
          transaction: null,
          error: 'insufficient_funds',
        }),
        payment({ id: 'py_3', at: at(3000), status: 'verified', transaction: null }),
        payment({ id: 'py_4', at: at(4000), x402Version: 1, network: 'base-sepolia' }),
      ];

      function ids(rows: PaymentRecord[]): string[] {
        return rows.map((row) => row.id);
      }

      it('behavior: payments read back whole, newest first, amounts as exact decimal strings', async () => {
        // 2^256 - 1: the largest amount a uint256 transfer can carry, far past 2^53.
        const huge = payment({ id: 'py_huge', at: at(5000), amount: (2n ** 256n - 1n).toString() });
        await store.writeRecords(batch({ payments: [...entries, huge] }));
        expect(await store.queryPayments({})).toEqual([huge, ...[...entries].reverse()]);
        const [read] = await store.queryPayments({ limit: 1 });
        expect(read?.amount).toBe(
          '115792089237316195423570985008687907853269984665640564039457584007913129639935',
        );
        expect(read?.at).toBeInstanceOf(Date);
      });

      it('behavior: payments are written with the other records, in one transaction', async () => {
        await store.writeRecords(
          batch({
            reservations: [reservation({ id: 'ad_2' })],
            usage: [usage({ id: 'ad_1', paymentId: 'py_1' })],
            audit: [audit()],
            payments: [payment({ id: 'py_1', usageId: 'ad_1' })],
          }),
        );
        expect(ids(await store.queryPayments({}))).toEqual(['py_1']);
        expect((await store.queryUsage({}))[0]?.requests).toBe(1);
        const bad = { ...payment({ id: 'py_bad' }), nonce: null } as unknown as PaymentRecord;
        const error = await rejection(
          store.writeRecords(
            batch({ usage: [usage({ id: 'ad_3' })], payments: [payment({ id: 'py_2' }), bad] }),
          ),
        );
        expect(error).toMatchObject({ code: '23502' });
        expect(ids(await store.queryPayments({}))).toEqual(['py_1']);
        expect((await store.queryUsage({}))[0]?.requests).toBe(1);
      });

      it('behavior: a replayed payment keeps the first write', async () => {
        const first = batch({ payments: [payment({ status: 'verified', transaction: null })] });
        await store.writeRecords(first);
        await store.writeRecords(batch({ payments: [payment({ status: 'settled' })] }));
        await store.writeRecords(first);
        expect(await store.queryPayments({})).toEqual([
          payment({ status: 'verified', transaction: null }),
        ]);
      });

      it('behavior: payer, status, since and until filters; the payer in any case', async () => {
        await store.writeRecords(batch({ payments: entries }));
        expect(ids(await store.queryPayments({ payer: PAYER }))).toEqual(['py_4', 'py_3', 'py_1']);
        expect(
          ids(await store.queryPayments({ payer: PAYER.toUpperCase().replace('X', 'x') })),
        ).toEqual(['py_4', 'py_3', 'py_1']);
        expect(ids(await store.queryPayments({ status: 'failed' }))).toEqual(['py_2']);
        expect(ids(await store.queryPayments({ payer: PAYER, status: 'verified' }))).toEqual([
          'py_3',
        ]);
        expect(ids(await store.queryPayments({ since: at(2000), until: at(4000) }))).toEqual([
          'py_3',
          'py_2',
        ]);
        expect(
          await store.queryPayments({ payer: '0x9999999999999999999999999999999999999999' }),
        ).toEqual([]);
      });

      it('behavior: limit keeps the newest; 100 by default, at most 1000', async () => {
        await store.writeRecords(batch({ payments: entries }));
        expect(ids(await store.queryPayments({ limit: 2 }))).toEqual(['py_4', 'py_3']);
        const more = Array.from({ length: 1100 }, (_, index) =>
          payment({ id: `py_x${String(index).padStart(4, '0')}`, at: at(10_000 + index) }),
        );
        await store.writeRecords(batch({ payments: more }));
        expect(await store.queryPayments({})).toHaveLength(100);
        expect(await store.queryPayments({ limit: 5000 })).toHaveLength(1000);
      });

      it('error: a limit below 1 or not an integer is a RangeError', async () => {
        await expect(store.queryPayments({ limit: 0 })).rejects.toThrow(RangeError);
        await expect(store.queryPayments({ limit: 1.5 })).rejects.toThrow(/payment limit/);
      });
    });

    describe('audit queries', () => {
      const entries = [
        audit({ id: 'au_1', at: at(1000), actor: 'admin', action: 'tenant.create' }),
        audit({
          id: 'au_2',
          at: at(2000),
          actor: 'cli',
          action: 'key.issue',
          target: 'kaaaaaaaaaaaaaaa',
          detail: null,
        }),
        audit({
          id: 'au_3',
          at: at(3000),
          actor: 'system',
          action: 'auth.failures',
          target: null,
          result: 'denied',
          httpStatus: null,
          method: null,
          path: null,
          remoteAddress: '::1',
          requestId: null,
          detail: { count: 12, window: { seconds: 60 } },
        }),
        audit({ id: 'au_4', at: at(4000), actor: 'admin', action: 'key.revoke' }),
      ];

      beforeEach(async () => {
        await store.writeRecords(batch({ audit: entries }));
      });

      function ids(rows: AuditEntry[]): string[] {
        return rows.map((row) => row.id);
      }

      it('behavior: entries read back whole, newest first', async () => {
        expect(await store.queryAudit({})).toEqual([...entries].reverse());
      });

      it('behavior: actor, action and target filters', async () => {
        expect(ids(await store.queryAudit({ actor: 'admin' }))).toEqual(['au_4', 'au_1']);
        expect(ids(await store.queryAudit({ action: 'key.issue' }))).toEqual(['au_2']);
        expect(ids(await store.queryAudit({ target: 'tn_aaaaaaaaaaaaaaaa' }))).toEqual([
          'au_4',
          'au_1',
        ]);
        expect(ids(await store.queryAudit({ actor: 'admin', action: 'key.revoke' }))).toEqual([
          'au_4',
        ]);
      });

      it('behavior: since is inclusive and until exclusive', async () => {
        expect(ids(await store.queryAudit({ since: at(2000), until: at(4000) }))).toEqual([
          'au_3',
          'au_2',
        ]);
      });

      it('behavior: limit keeps the newest; 100 by default, at most 1000', async () => {
        expect(ids(await store.queryAudit({ limit: 2 }))).toEqual(['au_4', 'au_3']);
        const more = Array.from({ length: 1100 }, (_, index) =>
          audit({ id: `au_x${String(index).padStart(4, '0')}`, at: at(10_000 + index) }),
        );
        await store.writeRecords(batch({ audit: more }));
        expect(await store.queryAudit({})).toHaveLength(100);
        expect(await store.queryAudit({ limit: 5000 })).toHaveLength(1000);
      });

      it('error: a limit below 1 or not an integer is a RangeError', async () => {
        await expect(store.queryAudit({ limit: 0 })).rejects.toThrow(RangeError);
        await expect(store.queryAudit({ limit: 2.5 })).rejects.toThrow(RangeError);
      });
    });

    describe('lifecycle', () => {
      it('behavior: ping resolves on an open store and rejects on a closed one', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
        await store.close();
        await expect(store.ping()).rejects.toThrow();
      });

      it('behavior: close may be called again, also while closing', async () => {
        await Promise.all([store.close(), store.close()]);
        await expect(store.close()).resolves.toBeUndefined();
      });

      it.skipIf(harness.reopen === undefined)(
        'behavior: records survive close and reopen',
        async () => {
          const secretHash = Uint8Array.from({ length: 32 }, (_, index) => 255 - index);
          await store.createTenant(tenant({ limits: { maxConcurrent: 2 } }));
          await store.insertKey(key({ secretHash }));
          await store.writeRecords(
            batch({
              reservations: [reservation({ id: 'ad_open' })],
              usage: [usage()],
              audit: [audit()],
              payments: [payment()],
            }),
          );
          await store.close();

          store = await harness.reopen!();
          expect(await store.getTenant('tn_aaaaaaaaaaaaaaaa')).toEqual(
            tenant({ limits: { maxConcurrent: 2 } }),
          );
          expect(await store.getKey('kaaaaaaaaaaaaaaa')).toEqual(key({ secretHash }));
          expect(await store.openReservations('gw_a')).toEqual([reservation({ id: 'ad_open' })]);
          expect(await store.usageSince('tn_aaaaaaaaaaaaaaaa', T0)).toEqual({
            totalTokens: 15,
            costMicroUsd: 100,
          });
          expect(await store.queryAudit({})).toEqual([audit()]);
          expect(await store.queryPayments({})).toEqual([payment()]);
        },
      );
    });
  });
}

// In memory, PGlite runs initdb for every new database (seconds each), so the shared suite
// runs on the directory driver below, which copies one prepared database per test; both are
// the same store code over the same engine. This checks what differs: no directory at all.
describe('PGlite in memory', { timeout: SUITE_TIMEOUT }, () => {
  it('behavior: a store without a directory migrates, reads and writes, and forgets on close', async () => {
    const store = await createPgliteStore({});
    await store.createTenant(tenant());
    await store.writeRecords(batch({ usage: [usage()] }));
    expect(await store.getTenant('tn_aaaaaaaaaaaaaaaa')).toEqual(tenant());
    expect(await store.usageSince('tn_aaaaaaaaaaaaaaaa', T0)).toEqual({
      totalTokens: 15,
      costMicroUsd: 100,
    });
    await store.close();
    const fresh = await createPgliteStore({});
    expect(await fresh.listTenants()).toEqual([]);
    await fresh.close();
  });
});

{
  let root: string;
  let template: string;
  let current: string;
  let count = 0;
  describeStore('PGlite in a directory', {
    async setup() {
      root = await mkdtemp(join(tmpdir(), 'tollgate-store-'));
      // initdb dominates PGlite's start: run it (and the migrations) once, in a directory that
      // does not exist yet, then give each test a copy.
      template = join(root, 'template', 'db');
      await (await createPgliteStore({ dataDir: template })).close();
    },
    async teardown() {
      await rm(root, { recursive: true, force: true });
    },
    async open() {
      count += 1;
      current = join(root, `run-${count}`);
      await cp(template, current, { recursive: true });
      return createPgliteStore({ dataDir: current });
    },
    reopen: () => createPgliteStore({ dataDir: current }),
  });
}

describe('PGlite migrations', { timeout: SUITE_TIMEOUT }, () => {
  it('behavior: a database of the first release gains the payments table at open, its records kept', async () => {
    const root = await mkdtemp(join(tmpdir(), 'tollgate-upgrade-'));
    try {
      const dataDir = join(root, 'db');
      const client = await PGlite.create(dataDir);
      await migratePglite(
        drizzlePglite({ client }),
        await firstReleaseMigrations(join(root, 'migrations')),
      );
      await client.query(
        `insert into tenants values ('tn_aaaaaaaaaaaaaaaa', 'acme', '{}', $1, $1)`,
        [T0.toISOString()],
      );
      await client.query(
        `insert into usage_events (id, at, tenant_id, model, prompt_tokens, completion_tokens,
           total_tokens, estimated, cost_micro_usd, status, http_status, latency_ms, streamed)
         values ('ad_1', $1, 'tn_aaaaaaaaaaaaaaaa', 'm', 10, 5, 15, false, 100, 'completed',
           200, 1, false)`,
        [T0.toISOString()],
      );
      const tables = await client.query(`select to_regclass('public.payments') as payments`);
      expect(tables.rows).toEqual([{ payments: null }]);
      await client.close();

      const store = await createPgliteStore({ dataDir });
      try {
        await expectUpgraded(store);
      } finally {
        await store.close();
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe.skipIf(databaseUrl === undefined)(
  'PostgreSQL (TOLLGATE_TEST_DATABASE_URL unset: skipped)',
  { timeout: SUITE_TIMEOUT },
  () => {
    let database: TestDatabase;
    let admin: postgres.Sql;

    beforeAll(async () => {
      database = await createTestDatabase(databaseUrl!);
      admin = postgres(database.url, { max: 1, onnotice: () => {} });
    }, SUITE_TIMEOUT);
    afterAll(async () => {
      await admin?.end();
      await database?.drop();
    }, SUITE_TIMEOUT);

    describeStore('shared suite', {
      async setup() {
        // Migrates once; each test then starts from emptied tables.
        await (await createPostgresStore({ url: database.url })).close();
      },
      async open() {
        await admin.unsafe(
          'truncate table api_keys, tenants, reservations, usage_events, audit_log, payments',
        );
        return createPostgresStore({ url: database.url, maxConnections: 2 });
      },
      reopen: () => createPostgresStore({ url: database.url }),
    });

    it('behavior: stores opening one empty database at once all migrate it, once', async () => {
      const fresh = await createTestDatabase(databaseUrl!);
      try {
        const stores = await Promise.all(
          Array.from({ length: 6 }, () => createPostgresStore({ url: fresh.url })),
        );
        await stores[0]!.createTenant(tenant());
        for (const store of stores) {
          expect((await store.getTenant('tn_aaaaaaaaaaaaaaaa'))?.name).toBe('acme');
        }
        await Promise.all(stores.map((store) => store.close()));

        const journal = JSON.parse(
          await readFile(new URL('../migrations/meta/_journal.json', import.meta.url), 'utf8'),
        ) as { entries: unknown[] };
        const check = postgres(fresh.url, { max: 1 });
        const [applied] = await check`
          select count(*)::int as count from drizzle.__tollgate_tenancy_migrations`;
        await check.end();
        expect(applied?.count).toBe(journal.entries.length);
      } finally {
        await fresh.drop();
      }
    });

    it('behavior: a database of the first release gains the payments table at open, its records kept', async () => {
      const old = await createTestDatabase(databaseUrl!);
      const root = await mkdtemp(join(tmpdir(), 'tollgate-upgrade-'));
      try {
        const client = postgres(old.url, { max: 1, onnotice: () => {} });
        try {
          await migratePostgres(drizzlePostgres({ client }), await firstReleaseMigrations(root));
          const t0 = T0.toISOString();
          await client`
            insert into tenants values ('tn_aaaaaaaaaaaaaaaa', 'acme', '{}', ${t0}, ${t0})`;
          await client`
            insert into usage_events (id, at, tenant_id, model, prompt_tokens, completion_tokens,
              total_tokens, estimated, cost_micro_usd, status, http_status, latency_ms, streamed)
            values ('ad_1', ${t0}, 'tn_aaaaaaaaaaaaaaaa', 'm', 10, 5, 15, false, 100, 'completed',
              200, 1, false)`;
          const [row] = await client`select to_regclass('public.payments') as payments`;
          expect(row?.payments).toBeNull();
        } finally {
          await client.end();
        }
        const store = await createPostgresStore({ url: old.url });
        try {
          await expectUpgraded(store);
        } finally {
          await store.close();
        }
      } finally {
        await rm(root, { recursive: true, force: true });
        await old.drop();
      }
    });

    it('behavior: createStore opens PostgreSQL for a postgresql:// URL', async () => {
      const url = database.url.replace(/^postgres:/, 'postgresql:');
      const store = await createStore({ databaseUrl: url, dataDir: '/nonexistent' });
      try {
        expect(store.kind).toBe('postgres');
        await store.ping();
      } finally {
        await store.close();
      }
    });
  },
);

describe('createStore', { timeout: SUITE_TIMEOUT }, () => {
  it('behavior: without a URL, PGlite keeps its files in <dataDir>/db', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'tollgate-data-'));
    try {
      const store = await createStore({ dataDir });
      expect(store.kind).toBe('pglite');
      await store.close();
      expect(existsSync(join(dataDir, 'db', 'PG_VERSION'))).toBe(true);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('behavior: without a URL or a data dir, PGlite in memory', async () => {
    const store = await createStore({ databaseUrl: '' });
    expect(store.kind).toBe('pglite');
    await store.close();
  });

  it('error: another URL scheme is a TypeError that names the scheme, not the password', async () => {
    const error = await rejection(createStore({ databaseUrl: 'mysql://root:hunter2@db/app' }));
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toContain('"mysql:"');
    expect((error as Error).message).not.toContain('hunter2');
    await expect(createStore({ databaseUrl: 'localhost:5432/app' })).rejects.toThrow(TypeError);
  });
});
