/**
 * The drizzle schema of the durable store. PGlite and PostgreSQL run the same migrations,
 * generated from this file with `pnpm db:generate` (drizzle-kit) into `migrations/`.
 */
import {
  bigint,
  boolean,
  customType,
  index,
  integer,
  jsonb,
  numeric,
  pgTable,
  text,
  timestamp,
} from 'drizzle-orm/pg-core';
import type { AuditEntry, PaymentStatus, TenantLimits, UsageStatus } from './types.js';

/**
 * `bytea` as a plain `Uint8Array`. pg-core has no bytea column; postgres.js reads bytea as a
 * Node `Buffer` and PGlite as a `Uint8Array`, so reads are copied into a plain `Uint8Array`
 * and both drivers hand back the same type.
 *
 * @example
 * const t = pgTable('t', { hash: bytea('hash').notNull() });
 */
export const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({
  dataType() {
    return 'bytea';
  },
  fromDriver(value) {
    return new Uint8Array(value);
  },
});

/** Instants are stored with their zone so the server's TimeZone setting cannot shift them. */
function instant(name: string) {
  return timestamp(name, { withTimezone: true, mode: 'date' });
}

/**
 * Tenants, with their limits as JSON (every limit optional).
 *
 * @example
 * await db.select().from(tenants).where(eq(tenants.name, 'acme'));
 */
export const tenants = pgTable('tenants', {
  id: text('id').primaryKey(),
  name: text('name').notNull().unique('tenants_name_unique'),
  limits: jsonb('limits').$type<TenantLimits>().notNull(),
  createdAt: instant('created_at').notNull(),
  updatedAt: instant('updated_at').notNull(),
});

/**
 * Issued API keys: the public id and the SHA-256 of the secret, never the secret. Deleting a
 * tenant deletes its keys.
 *
 * @example
 * await db.select().from(apiKeys).where(eq(apiKeys.tenantId, 'tn_0123456789abcdef'));
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    tenantId: text('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    secretHash: bytea('secret_hash').notNull(),
    createdAt: instant('created_at').notNull(),
    expiresAt: instant('expires_at'),
    revokedAt: instant('revoked_at'),
    replacedBy: text('replaced_by'),
  },
  // Listing a tenant's keys and the cascade on tenant deletion both look keys up by tenant.
  (table) => [index('api_keys_tenant_id_idx').on(table.tenantId)],
);

/**
 * Admissions not yet settled. No foreign key on the tenant: static-key tenants are not in
 * `tenants`, and a reservation must be kept even if its tenant is deleted meanwhile.
 *
 * @example
 * await db.select().from(reservations).where(eq(reservations.instanceId, 'gw_1'));
 */
export const reservations = pgTable(
  'reservations',
  {
    id: text('id').primaryKey(),
    instanceId: text('instance_id').notNull(),
    at: instant('at').notNull(),
    tenantId: text('tenant_id').notNull(),
    keyId: text('key_id'),
    model: text('model').notNull(),
    promptTokens: integer('prompt_tokens').notNull(),
    completionTokens: integer('completion_tokens').notNull(),
    costMicroUsd: bigint('cost_micro_usd', { mode: 'number' }).notNull(),
    requestId: text('request_id'),
    streamed: boolean('streamed').notNull(),
  },
  (table) => [index('reservations_instance_id_idx').on(table.instanceId)],
);

/**
 * One row per admitted request. No foreign key on the tenant: static-key tenants
 * (`static:...`) are not in `tenants`, and usage outlives deleted tenants.
 *
 * @example
 * await db.select().from(usageEvents).where(eq(usageEvents.tenantId, 'static:1a2b3c4d'));
 */
export const usageEvents = pgTable(
  'usage_events',
  {
    id: text('id').primaryKey(),
    at: instant('at').notNull(),
    tenantId: text('tenant_id').notNull(),
    keyId: text('key_id'),
    model: text('model').notNull(),
    backend: text('backend'),
    promptTokens: integer('prompt_tokens').notNull(),
    completionTokens: integer('completion_tokens').notNull(),
    totalTokens: integer('total_tokens').notNull(),
    estimated: boolean('estimated').notNull(),
    costMicroUsd: bigint('cost_micro_usd', { mode: 'number' }).notNull(),
    status: text('status').$type<UsageStatus>().notNull(),
    httpStatus: integer('http_status').notNull(),
    latencyMs: integer('latency_ms').notNull(),
    firstTokenMs: integer('first_token_ms'),
    requestId: text('request_id'),
    streamed: boolean('streamed').notNull(),
    paymentId: text('payment_id'),
  },
  (table) => [
    // Budget seeding and per-tenant reports filter by tenant, then by time.
    index('usage_events_tenant_id_at_idx').on(table.tenantId, table.at),
    index('usage_events_at_idx').on(table.at),
  ],
);

/**
 * Who did what, when, with which result. Never secrets or request bodies.
 *
 * @example
 * await db.select().from(auditLog).orderBy(desc(auditLog.at)).limit(100);
 */
export const auditLog = pgTable(
  'audit_log',
  {
    id: text('id').primaryKey(),
    at: instant('at').notNull(),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    target: text('target'),
    result: text('result').$type<AuditEntry['result']>().notNull(),
    httpStatus: integer('http_status'),
    method: text('method'),
    path: text('path'),
    remoteAddress: text('remote_address'),
    requestId: text('request_id'),
    detail: jsonb('detail').$type<Record<string, unknown>>(),
  },
  (table) => [
    index('audit_log_at_idx').on(table.at),
    index('audit_log_actor_idx').on(table.actor),
    index('audit_log_action_idx').on(table.action),
  ],
);

/**
 * x402 payments, one row per payment the gateway verified or settled (or saw fail). The
 * amount is in atomic units: `numeric(78, 0)` holds any uint256 exactly, reads back as a
 * string, and sums in SQL. A usage event names its payment in `payment_id`; a payment names
 * its usage event in `usage_id`. No foreign keys: either may be written first.
 *
 * @example
 * await db.select().from(payments).where(eq(payments.payer, payer)).orderBy(desc(payments.at));
 */
export const payments = pgTable(
  'payments',
  {
    id: text('id').primaryKey(),
    at: instant('at').notNull(),
    requestId: text('request_id').notNull(),
    usageId: text('usage_id'),
    payer: text('payer').notNull(),
    network: text('network').notNull(),
    asset: text('asset').notNull(),
    payTo: text('pay_to').notNull(),
    amount: numeric('amount', { precision: 78, scale: 0 }).notNull(),
    scheme: text('scheme').notNull(),
    x402Version: integer('x402_version').notNull(),
    nonce: text('nonce').notNull(),
    status: text('status').$type<PaymentStatus>().notNull(),
    transaction: text('transaction'),
    error: text('error'),
  },
  (table) => [
    index('payments_at_idx').on(table.at),
    // A payer's history, newest first: the admin view and billing per address.
    index('payments_payer_at_idx').on(table.payer, table.at),
  ],
);
