/**
 * The durable store: one implementation of {@link TenancyStore} over drizzle's pg query
 * builder, shared by PGlite (embedded, in memory or in a directory) and PostgreSQL
 * (postgres.js). Each factory applies the committed migrations before it resolves.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { TollgateError } from '@tollgate/protocol';
import {
  type AnyColumn,
  and,
  asc,
  DrizzleQueryError,
  desc,
  eq,
  getTableColumns,
  gte,
  lt,
  type SQL,
  sql,
} from 'drizzle-orm';
import type { MigrationConfig } from 'drizzle-orm/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgresJs } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { apiKeys, auditLog, payments, reservations, tenants, usageEvents } from './schema.js';
import { createPgliteStoreInWorker } from './store-thread.js';
import type {
  ApiKeyRecord,
  AuditEntry,
  AuditQuery,
  PaymentQuery,
  PaymentRecord,
  RecordBatch,
  ReservationRecord,
  TenancyStore,
  Tenant,
  TenantLimits,
  UsageQuery,
  UsageRow,
} from './types.js';

/** Options for {@link createPgliteStore}. */
export interface CreatePgliteStoreOptions {
  /**
   * Directory holding the database files, created if missing. Only one process may open a
   * directory at a time.
   * @default undefined (in memory, gone at close)
   */
  dataDir?: string;
}

/** Options for {@link createPostgresStore}. */
export interface CreatePostgresStoreOptions {
  /** A `postgres://` or `postgresql://` connection URL. */
  url: string;
  /** Size of the connection pool. @default 10 */
  maxConnections?: number;
}

/** Options for {@link createStore}. */
export interface CreateStoreOptions {
  /**
   * A `postgres://` or `postgresql://` URL selects PostgreSQL; unset (or empty) selects PGlite.
   * @default undefined
   */
  databaseUrl?: string;
  /**
   * The gateway's data directory; PGlite keeps its files in `${dataDir}/db`.
   * @default undefined (PGlite in memory)
   */
  dataDir?: string;
  /**
   * Run PGlite in a worker thread ({@link createPgliteStoreInWorker}), so its work never stalls
   * the calling thread (the gateway sets it). No effect on PostgreSQL.
   * @default false
   */
  worker?: boolean;
}

/** Where the migrator records applied migrations; the same names as in drizzle.config.ts. */
const migrationConfig: MigrationConfig = {
  // Resolved from the module, so it finds the shipped folder from src/ and from dist/ alike.
  migrationsFolder: fileURLToPath(new URL('../migrations', import.meta.url)),
  migrationsTable: '__tollgate_tenancy_migrations',
  migrationsSchema: 'drizzle',
};

/**
 * Session-level advisory lock held while migrating PostgreSQL (the bytes of "tollgate"). The
 * migrator's own transaction does not cover its CREATE SCHEMA / CREATE TABLE IF NOT EXISTS
 * preamble, and two gateways reading "nothing applied yet" at once would both run the
 * migration: the second then fails on tables that already exist.
 */
const MIGRATION_LOCK_KEY = '8390043843661231205';

/**
 * Records as the JSON text of rows of `table` (column names, instants as ISO strings, text
 * the database refuses replaced), for `json_populate_recordset`: the database does the per-row
 * work, instead of the query builder binding every column of every row (which cost more than
 * the insert itself on the embedded database, where both run on the gateway's thread).
 */
function rowsJson(
  table: typeof reservations | typeof usageEvents | typeof auditLog | typeof payments,
  records: readonly object[],
): string {
  const columns = Object.entries(getTableColumns(table)).map(
    ([key, column]) => [key, column.name] as const,
  );
  const rows = (records as Array<Record<string, unknown>>).map((record) => {
    const row: Record<string, unknown> = {};
    for (const [key, name] of columns) {
      const value = record[key];
      row[name] = value instanceof Date ? value.toISOString() : value;
    }
    return row;
  });
  return JSON.stringify(rows, storableText);
}

const UNSTORABLE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what must be replaced.
  /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * PostgreSQL's text and json refuse U+0000 and lone surrogates. Records carry text that came
 * from callers (an audit entry's path, a detail): one such record would fail its whole batch
 * again on every flush, and the batches after it, so it is written with U+FFFD in their place.
 */
function storableText(_key: string, value: unknown): unknown {
  return typeof value === 'string' ? value.replace(UNSTORABLE, '\ufffd') : value;
}

/** Rows an audit or payment query returns when it names no limit, and at most. */
const QUERY_LIMIT_DEFAULT = 100;
const QUERY_LIMIT_MAX = 1000;

type Database = PgDatabase<PgQueryResultHKT>;

/**
 * Opens a store on PGlite, the embedded PostgreSQL: persisted in `dataDir` (created if
 * missing), or in memory when `dataDir` is undefined. Applies the migrations before resolving.
 *
 * @param options Where to keep the files.
 * @returns The open store; `close()` releases it and flushes it to disk.
 * @throws The driver's error when the directory cannot be opened or a migration fails.
 *
 * @example
 * ```ts
 * const store = await createPgliteStore({ dataDir: '.tollgate/db' });
 * console.log(await store.listTenants());
 * await store.close();
 * ```
 */
export async function createPgliteStore(
  options: CreatePgliteStoreOptions = {},
): Promise<TenancyStore> {
  const { dataDir } = options;
  if (dataDir !== undefined) await mkdir(dataDir, { recursive: true });
  const client = await PGlite.create(dataDir);
  try {
    const db = drizzlePglite({ client });
    await migratePglite(db, migrationConfig);
    return createDrizzleStore('pglite', db, () => client.close());
  } catch (error) {
    await client.close();
    throw error;
  }
}

/**
 * Opens a store on PostgreSQL through a postgres.js pool. Applies the migrations first, under
 * an advisory lock, so gateways starting together against one database do not collide.
 *
 * @param options The connection URL and pool size.
 * @returns The open store; `close()` ends the pool.
 * @throws The driver's error when the database cannot be reached or a migration fails.
 *
 * @example
 * ```ts
 * const store = await createPostgresStore({ url: 'postgres://tollgate@127.0.0.1:5432/tollgate' });
 * await store.ping();
 * await store.close();
 * ```
 */
export async function createPostgresStore(
  options: CreatePostgresStoreOptions,
): Promise<TenancyStore> {
  await migratePostgres(options.url);
  const client = postgres(options.url, { max: options.maxConnections ?? 10 });
  const db = drizzlePostgres({ client });
  return createDrizzleStore('postgres', db, () => client.end({ timeout: 5 }));
}

/**
 * Opens the store the configuration names: PostgreSQL for a `postgres://` or `postgresql://`
 * URL, otherwise PGlite in `${dataDir}/db` (in memory without a data dir).
 *
 * @param options The database URL and the data directory.
 * @returns The open, migrated store.
 * @throws {TypeError} When `databaseUrl` has another scheme.
 *
 * @example
 * ```ts
 * const store = await createStore({ databaseUrl: process.env.TOLLGATE_DATABASE_URL, dataDir: '.tollgate' });
 * console.log(store.kind);
 * await store.close();
 * ```
 */
export async function createStore(options: CreateStoreOptions = {}): Promise<TenancyStore> {
  const { databaseUrl, dataDir } = options;
  if (databaseUrl !== undefined && databaseUrl !== '') {
    if (/^postgres(ql)?:\/\//i.test(databaseUrl)) {
      return createPostgresStore({ url: databaseUrl });
    }
    // Only the scheme: the rest of a URL may hold a password.
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(databaseUrl)?.[1];
    throw new TypeError(
      `The database URL must start with postgres:// or postgresql://, got ${
        scheme === undefined ? 'no scheme' : `"${scheme}:"`
      }. Leave it unset to use the embedded PGlite database in the data directory.`,
    );
  }
  const pglite = { dataDir: dataDir === undefined ? undefined : join(dataDir, 'db') };
  return options.worker ? createPgliteStoreInWorker(pglite) : createPgliteStore(pglite);
}

async function migratePostgres(url: string): Promise<void> {
  // One connection, so the lock, the migrator's queries and the unlock share a session.
  const client = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await client.unsafe(`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`);
    try {
      await migratePostgresJs(drizzlePostgres({ client }), migrationConfig);
    } finally {
      // Ending the session below releases the lock anyway; a failed unlock must not hide why
      // the migration failed.
      await client.unsafe(`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`).catch(() => {});
    }
  } finally {
    await client.end({ timeout: 5 });
  }
}

function createDrizzleStore(
  kind: TenancyStore['kind'],
  db: Database,
  closeClient: () => Promise<void>,
): TenancyStore {
  let closing: Promise<void> | undefined;

  async function getKey(id: string): Promise<ApiKeyRecord | undefined> {
    const [row] = await run(db.select().from(apiKeys).where(eq(apiKeys.id, id)));
    return row;
  }

  const dayOf = sql<string>`to_char(${usageEvents.at} at time zone 'UTC', 'YYYY-MM-DD')`;

  return {
    kind,

    async createTenant(tenant: Tenant): Promise<Tenant> {
      try {
        const [row] = await db.insert(tenants).values(tenant).returning();
        return row!;
      } catch (error) {
        throw translateError(error, { tenantName: tenant.name, tenantId: tenant.id });
      }
    },

    async getTenant(id: string): Promise<Tenant | undefined> {
      const [row] = await run(db.select().from(tenants).where(eq(tenants.id, id)));
      return row;
    },

    async getTenantByName(name: string): Promise<Tenant | undefined> {
      const [row] = await run(db.select().from(tenants).where(eq(tenants.name, name)));
      return row;
    },

    async listTenants(): Promise<Tenant[]> {
      return run(db.select().from(tenants).orderBy(asc(tenants.createdAt), asc(tenants.id)));
    },

    async updateTenant(
      id: string,
      patch: { name?: string; limits?: TenantLimits; updatedAt: Date },
    ): Promise<Tenant | undefined> {
      try {
        // Undefined fields are left out of the SET by drizzle: only the given ones change.
        const [row] = await db
          .update(tenants)
          .set({ name: patch.name, limits: patch.limits, updatedAt: patch.updatedAt })
          .where(eq(tenants.id, id))
          .returning();
        return row;
      } catch (error) {
        throw translateError(error, { tenantName: patch.name });
      }
    },

    async deleteTenant(id: string): Promise<boolean> {
      const rows = await run(
        db.delete(tenants).where(eq(tenants.id, id)).returning({ id: tenants.id }),
      );
      return rows.length > 0;
    },

    async insertKey(key: ApiKeyRecord): Promise<void> {
      try {
        await db.insert(apiKeys).values(key);
      } catch (error) {
        throw translateError(error, { tenantId: key.tenantId, keyId: key.id });
      }
    },

    getKey,

    async listKeys(tenantId: string): Promise<ApiKeyRecord[]> {
      return run(
        db
          .select()
          .from(apiKeys)
          .where(eq(apiKeys.tenantId, tenantId))
          .orderBy(asc(apiKeys.createdAt), asc(apiKeys.id)),
      );
    },

    async updateKey(
      id: string,
      patch: { expiresAt?: Date | null; revokedAt?: Date | null; replacedBy?: string | null },
    ): Promise<ApiKeyRecord | undefined> {
      const set = {
        expiresAt: patch.expiresAt,
        revokedAt: patch.revokedAt,
        replacedBy: patch.replacedBy,
      };
      // An UPDATE with nothing to set is a syntax error; an empty patch is a read.
      if (Object.values(set).every((value) => value === undefined)) return getKey(id);
      const [row] = await run(db.update(apiKeys).set(set).where(eq(apiKeys.id, id)).returning());
      return row;
    },

    async writeRecords(batch: RecordBatch): Promise<void> {
      const size =
        batch.reservations.length + batch.usage.length + batch.audit.length + batch.payments.length;
      if (size === 0) return;
      const usage = rowsJson(usageEvents, batch.usage);
      const ids = JSON.stringify([
        ...new Set([...batch.reservations, ...batch.usage].map((record) => record.id)),
      ]);
      // One statement, so a batch is written whole or not at all without a transaction block:
      // postgres.js (3.4.9) crashes the process when a connection drops inside one (the
      // ROLLBACK it then sends is written to the closed socket from a setImmediate, an uncaught
      // TypeError: porsager/postgres#1208), which a PostgreSQL restart during traffic does.
      // Existing ids are skipped. A reservation is settled once a usage event carries its id,
      // whichever batch wrote that event: one settled already, or in this batch, is not
      // written (a replayed older batch must not resurrect it), and those written before are
      // deleted. The statement's parts all see the tables as they were before it.
      await run(
        db.execute(sql`with
          usage_in as (insert into ${usageEvents} select * from json_populate_recordset(null::${usageEvents}, ${usage}::json) on conflict (id) do nothing),
          audit_in as (insert into ${auditLog} select * from json_populate_recordset(null::${auditLog}, ${rowsJson(auditLog, batch.audit)}::json) on conflict (id) do nothing),
          payments_in as (insert into ${payments} select * from json_populate_recordset(null::${payments}, ${rowsJson(payments, batch.payments)}::json) on conflict (id) do nothing),
          settled as (
            select id from json_populate_recordset(null::${usageEvents}, ${usage}::json)
            union select ${usageEvents.id} from ${usageEvents} where ${usageEvents.id} in (select json_array_elements_text(${ids}::json))
          ),
          reservations_in as (insert into ${reservations} select * from json_populate_recordset(null::${reservations}, ${rowsJson(reservations, batch.reservations)}::json) as incoming where incoming.id not in (select id from settled) on conflict (id) do nothing)
        delete from ${reservations} where ${reservations.id} in (select id from settled)`),
      );
    },

    async openReservations(instanceId: string): Promise<ReservationRecord[]> {
      return run(
        db
          .select()
          .from(reservations)
          .where(eq(reservations.instanceId, instanceId))
          .orderBy(asc(reservations.at), asc(reservations.id)),
      );
    },

    async usageSince(
      tenantId: string,
      since: Date,
    ): Promise<{ totalTokens: number; costMicroUsd: number }> {
      const [row] = await run(
        db
          .select({
            totalTokens: sumOf(usageEvents.totalTokens),
            costMicroUsd: sumOf(usageEvents.costMicroUsd),
          })
          .from(usageEvents)
          .where(and(eq(usageEvents.tenantId, tenantId), gte(usageEvents.at, since))),
      );
      return row ?? { totalTokens: 0, costMicroUsd: 0 };
    },

    async queryUsage(query: UsageQuery): Promise<UsageRow[]> {
      const groupBy = [...new Set(query.groupBy ?? [])];
      const keys = {
        tenant: { field: 'tenantId', expression: sql`${usageEvents.tenantId}` },
        model: { field: 'model', expression: sql`${usageEvents.model}` },
        day: { field: 'day', expression: dayOf },
      } as const;
      const selection: Record<string, SQL> = {};
      for (const key of groupBy) selection[keys[key].field] = keys[key].expression;
      Object.assign(selection, {
        requests: sql`count(*)`.mapWith(Number),
        promptTokens: sumOf(usageEvents.promptTokens),
        completionTokens: sumOf(usageEvents.completionTokens),
        totalTokens: sumOf(usageEvents.totalTokens),
        costMicroUsd: sumOf(usageEvents.costMicroUsd),
        estimatedRequests: sql`count(*) filter (where ${usageEvents.estimated})`.mapWith(Number),
      });
      const filters = [
        query.tenantId === undefined ? undefined : eq(usageEvents.tenantId, query.tenantId),
        query.model === undefined ? undefined : eq(usageEvents.model, query.model),
        query.since === undefined ? undefined : gte(usageEvents.at, query.since),
        query.until === undefined ? undefined : lt(usageEvents.at, query.until),
      ];
      const grouping = groupBy.map((key) => keys[key].expression);
      // Byte order, so PGlite and a PostgreSQL with any default collation sort alike.
      const ordering = groupBy.map((key) => sql`${keys[key].expression} collate "C"`);
      const rows = await run(
        db
          .select(selection)
          .from(usageEvents)
          .where(and(...filters))
          .groupBy(...grouping)
          .orderBy(...ordering),
      );
      return rows as unknown as UsageRow[];
    },

    async queryAudit(query: AuditQuery): Promise<AuditEntry[]> {
      const limit = queryLimit('audit', query.limit);
      const filters = [
        query.actor === undefined ? undefined : eq(auditLog.actor, query.actor),
        query.action === undefined ? undefined : eq(auditLog.action, query.action),
        query.target === undefined ? undefined : eq(auditLog.target, query.target),
        query.since === undefined ? undefined : gte(auditLog.at, query.since),
        query.until === undefined ? undefined : lt(auditLog.at, query.until),
      ];
      return run(
        db
          .select()
          .from(auditLog)
          .where(and(...filters))
          .orderBy(desc(auditLog.at), desc(auditLog.id))
          .limit(limit),
      );
    },

    async queryPayments(query: PaymentQuery): Promise<PaymentRecord[]> {
      const limit = queryLimit('payment', query.limit);
      const filters = [
        query.payer === undefined ? undefined : eq(payments.payer, query.payer.toLowerCase()),
        query.status === undefined ? undefined : eq(payments.status, query.status),
        query.since === undefined ? undefined : gte(payments.at, query.since),
        query.until === undefined ? undefined : lt(payments.at, query.until),
      ];
      return run(
        db
          .select()
          .from(payments)
          .where(and(...filters))
          .orderBy(desc(payments.at), desc(payments.id))
          .limit(limit),
      );
    },

    async ping(): Promise<void> {
      await run(db.execute(sql`select 1`));
    },

    close(): Promise<void> {
      closing ??= closeClient();
      return closing;
    },
  };
}

/** A sum that is 0 over no rows and a number even where the driver returns bigint as text. */
function sumOf(column: AnyColumn) {
  return sql<number>`coalesce(sum(${column}), 0)`.mapWith(Number);
}

function queryLimit(what: 'audit' | 'payment', limit: number | undefined): number {
  if (limit === undefined) return QUERY_LIMIT_DEFAULT;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`The ${what} limit must be a positive integer, got ${limit}.`);
  }
  return Math.min(limit, QUERY_LIMIT_MAX);
}

/** Awaits a query, rethrowing the driver's error rather than drizzle's wrapper. */
async function run<T>(query: PromiseLike<T>): Promise<T> {
  try {
    return await query;
  } catch (error) {
    throw translateError(error, {});
  }
}

interface DriverError {
  code?: string;
  /** PGlite's name for the violated constraint. */
  constraint?: string;
  /** postgres.js's name for the violated constraint. */
  constraint_name?: string;
}

/**
 * Drizzle wraps driver errors in a DrizzleQueryError (message: the SQL and its parameters).
 * Callers get the driver's error, with SQLSTATE `code` on both drivers, or a TollgateError for
 * the violations a caller can act on.
 */
function translateError(
  error: unknown,
  context: { tenantName?: string; tenantId?: string; keyId?: string },
): unknown {
  const driverError = unwrap(error);
  if (typeof driverError !== 'object' || driverError === null) return driverError;
  const { code, constraint, constraint_name } = driverError as DriverError;
  const violated = constraint ?? constraint_name;
  if (code === '23505') {
    if (violated === 'tenants_name_unique') {
      return new TollgateError(
        'conflict',
        `A tenant named "${context.tenantName}" already exists.`,
        { param: 'name', cause: driverError },
      );
    }
    if (violated === 'tenants_pkey') {
      return new TollgateError(
        'conflict',
        `A tenant with id "${context.tenantId}" already exists.`,
        {
          param: 'id',
          cause: driverError,
        },
      );
    }
    if (violated === 'api_keys_pkey') {
      return new TollgateError('conflict', `A key with id "${context.keyId}" already exists.`, {
        param: 'id',
        cause: driverError,
      });
    }
  }
  if (code === '23503' && violated === 'api_keys_tenant_id_tenants_id_fk') {
    return new TollgateError('not_found', `No tenant with id "${context.tenantId}".`, {
      param: 'tenant_id',
      cause: driverError,
    });
  }
  return driverError;
}

function unwrap(error: unknown): unknown {
  let current = error;
  while (current instanceof DrizzleQueryError && current.cause !== undefined) {
    current = current.cause;
  }
  return current;
}
