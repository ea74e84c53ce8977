/**
 * The admin API under /admin: tenants, their keys, usage and the audit log, behind a bearer
 * admin key. JSON in snake_case (users script against these shapes: keep them stable).
 */
import { hash, timingSafeEqual } from 'node:crypto';
import type { SupervisedModelStatus, Supervisor } from '@tollgate/backends';
import { formatIssuePath, TollgateError } from '@tollgate/protocol';
import {
  type ActorContext,
  type AuditEntry,
  type KeyView,
  limitsToJson,
  type PaymentRecord,
  type PaymentStatus,
  type Tenancy,
  type Tenant,
  type UsageQuery,
  type UsageRow,
} from '@tollgate/tenancy';
import { type Context, Hono } from 'hono';
import { z } from 'zod';
import { type GatewayEnv, remoteAddress } from './app.js';
import { parseJsonText } from './json-depth.js';

/** Options for {@link createAdminApp}. */
export interface AdminOptions {
  tenancy: Tenancy;
  /** The bearer key callers of /admin must send. */
  adminKey: string;
  /** Called after a tenant was created (the gateway stops running open). */
  onTenantCreated?: (tenant: Tenant) => void;
  /** The model servers started on demand, for /admin/models (absent: none are configured). */
  supervisor?: Supervisor;
  /** @default Date.now */
  now?: () => number;
}

/** A tenant as the admin API shows it. */
export function tenantJson(tenant: Tenant) {
  return {
    id: tenant.id,
    object: 'tenant' as const,
    name: tenant.name,
    limits: limitsToJson(tenant.limits),
    created_at: tenant.createdAt.toISOString(),
    updated_at: tenant.updatedAt.toISOString(),
  };
}

/** A key as the admin API shows it; `key` (the secret) only right after issue or rotate. */
export function keyJson(key: KeyView & { key?: string }) {
  return {
    id: key.id,
    object: 'api_key' as const,
    ...(key.key !== undefined ? { key: key.key } : {}),
    tenant_id: key.tenantId,
    name: key.name,
    state: key.state,
    created_at: key.createdAt.toISOString(),
    expires_at: key.expiresAt?.toISOString() ?? null,
    revoked_at: key.revokedAt?.toISOString() ?? null,
    replaced_by: key.replacedBy,
  };
}

/** A tenant in the admin API's JSON. */
export type TenantJson = ReturnType<typeof tenantJson>;

/** A key in the admin API's JSON; rotation answers carry the old key as `previous`. */
export type KeyJson = ReturnType<typeof keyJson> & { previous?: KeyJson };

/** An audit entry as the admin API shows it. */
export function auditJson(entry: AuditEntry) {
  return {
    id: entry.id,
    at: entry.at.toISOString(),
    actor: entry.actor,
    action: entry.action,
    target: entry.target,
    result: entry.result,
    status: entry.httpStatus,
    method: entry.method,
    path: entry.path,
    remote_address: entry.remoteAddress,
    request_id: entry.requestId,
    detail: entry.detail,
  };
}

const PAYMENT_STATUSES: PaymentStatus[] = ['settled', 'verified', 'failed'];

/** A payment as the admin API shows it; `amount` in the asset's atomic units (USDC: 6 decimals). */
export function paymentJson(payment: PaymentRecord) {
  return {
    id: payment.id,
    at: payment.at.toISOString(),
    request_id: payment.requestId,
    usage_id: payment.usageId,
    payer: payment.payer,
    network: payment.network,
    asset: payment.asset,
    pay_to: payment.payTo,
    amount: payment.amount,
    scheme: payment.scheme,
    x402_version: payment.x402Version,
    nonce: payment.nonce,
    status: payment.status,
    transaction: payment.transaction,
    error: payment.error,
  };
}

/** `limit` of a listing: a whole number from 1 to 1000, or absent. */
function parseLimit(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const limit = Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
    throw new TollgateError('invalid_request', 'limit must be a whole number from 1 to 1000.', {
      param: 'limit',
    });
  }
  return limit;
}

/** The columns of a usage row, in CSV order after the grouping keys. */
export const USAGE_SUMS = [
  'requests',
  'prompt_tokens',
  'completion_tokens',
  'total_tokens',
  'cost_usd',
  'estimated_requests',
] as const;

/** A usage row as the admin API shows it (grouping keys only when grouped by them). */
export function usageRowJson(row: UsageRow) {
  return {
    ...(row.tenantId !== undefined ? { tenant_id: row.tenantId } : {}),
    ...(row.model !== undefined ? { model: row.model } : {}),
    ...(row.day !== undefined ? { day: row.day } : {}),
    requests: row.requests,
    prompt_tokens: row.promptTokens,
    completion_tokens: row.completionTokens,
    total_tokens: row.totalTokens,
    cost_usd: row.costMicroUsd / 1_000_000,
    estimated_requests: row.estimatedRequests,
  };
}

/** Sums of usage rows. */
export function usageTotals(rows: UsageRow[]) {
  const totals = {
    requests: 0,
    prompt_tokens: 0,
    completion_tokens: 0,
    total_tokens: 0,
    cost_usd: 0,
    estimated_requests: 0,
  };
  let cost = 0;
  for (const row of rows) {
    totals.requests += row.requests;
    totals.prompt_tokens += row.promptTokens;
    totals.completion_tokens += row.completionTokens;
    totals.total_tokens += row.totalTokens;
    totals.estimated_requests += row.estimatedRequests;
    cost += row.costMicroUsd;
  }
  totals.cost_usd = cost / 1_000_000;
  return totals;
}

/** Usage rows as CSV (RFC 4180), with the grouping columns first. */
export function usageCsv(rows: UsageRow[], groupBy: UsageQuery['groupBy'] = []): string {
  const keys = groupBy.map((key) => (key === 'tenant' ? 'tenant_id' : key));
  const columns = [...keys, ...USAGE_SUMS];
  const csvField = (value: unknown) => {
    let text = value === undefined || value === null ? '' : String(value);
    // Model names come from callers: a cell a spreadsheet would run as a formula is defused.
    if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  const lines = [columns.join(',')];
  for (const row of rows) {
    const json = usageRowJson(row) as Record<string, unknown>;
    lines.push(columns.map((column) => csvField(json[column])).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}

const RELATIVE = /^(\d+)\s*(m|h|d|w)$/;
/** 0001-01-01T00:00:00Z: no time bound reaches back further. */
const EARLIEST_TIME = -62_135_596_800_000;
const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/**
 * Reads a time bound: an ISO 8601 date or date-time (`2026-11-01`, `2026-11-01T10:00:00Z`), or
 * a duration back from now (`30m`, `24h`, `7d`, `2w`).
 *
 * @throws {TollgateError} `invalid_request` naming `param`.
 */
export function parseTimeBound(value: string, param: string, now = Date.now()): Date {
  const relative = RELATIVE.exec(value.trim());
  let time: number;
  if (relative) {
    time = now - Number(relative[1]) * UNIT_MS[relative[2] as keyof typeof UNIT_MS];
  } else {
    const date = /^(\d{4})-(\d{2})-(\d{2})/.exec(value);
    // A time without an offset is UTC, like a bare date (Date.parse would read it as local time).
    const utc = /T[\d:.]+$/.test(value) ? `${value}Z` : value;
    // Date.parse rolls an impossible day over (2025-02-30 becomes March 2): refuse it instead.
    time =
      date &&
      Number(date[3]) <= new Date(Date.UTC(Number(date[1]), Number(date[2]), 0)).getUTCDate()
        ? Date.parse(utc)
        : Number.NaN;
    if (Number.isNaN(time)) {
      throw new TollgateError(
        'invalid_request',
        `${param} must be an ISO date or time (2026-11-01, 2026-11-01T10:00:00Z) or a duration back from now (30m, 24h, 7d, 2w); got "${value}".`,
        { param },
      );
    }
  }
  // `99999999999999999999d` is no date at all, and PostgreSQL keeps none before the year 1.
  if (!(time >= EARLIEST_TIME)) {
    throw new TollgateError(
      'invalid_request',
      `${param} reaches back before the year 1; got "${value}".`,
      { param },
    );
  }
  return new Date(time);
}

const GROUPS = ['tenant', 'model', 'day'] as const;

/** Reads `group_by` (comma-separated, or repeated). */
export function parseGroupBy(values: string[]): UsageQuery['groupBy'] {
  const groups = values
    .flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter(Boolean);
  for (const group of groups) {
    if (!(GROUPS as readonly string[]).includes(group)) {
      throw new TollgateError(
        'invalid_request',
        `group_by must be one or more of ${GROUPS.join(', ')}; got "${group}".`,
        { param: 'group_by' },
      );
    }
  }
  return [...new Set(groups)] as UsageQuery['groupBy'];
}

const createTenantBody = z.strictObject({ name: z.unknown(), limits: z.unknown().optional() });
const updateTenantBody = z.strictObject({
  name: z.unknown().optional(),
  limits: z.unknown().optional(),
});
const issueKeyBody = z.strictObject({
  name: z.string().optional(),
  expires_at: z.union([z.iso.datetime({ offset: true }), z.null()]).optional(),
});
const rotateKeyBody = z.strictObject({ grace_seconds: z.number().optional() });
const loadModelBody = z.strictObject({ flags: z.array(z.string()).optional() });
const unloadModelBody = z.strictObject({ force: z.boolean().optional() });

/** A supervised model as the admin API shows it. */
export function modelJson(status: SupervisedModelStatus) {
  return {
    id: status.id,
    object: 'model.server' as const,
    type: status.type,
    state: status.state,
    port: status.port ?? null,
    pid: status.pid ?? null,
    memory_estimate_bytes: status.memoryEstimateBytes ?? null,
    context_size: status.contextSize ?? null,
    idle_ms: status.idleMs ?? null,
    in_flight: status.inFlight,
    flags: status.flags,
    last_error: status.lastError ?? null,
  };
}

async function readBody<T>(c: Context<GatewayEnv>, schema: z.ZodType<T>): Promise<T> {
  let text: string;
  try {
    text = await c.req.text();
  } catch (error) {
    // The caller left mid-upload, or the body broke: bad input, not a gateway bug.
    throw new TollgateError('invalid_request', 'The request body could not be read.', {
      cause: error,
    });
  }
  // An empty body is an empty object here: the admin calls without fields take none.
  const value: unknown = text.trim() === '' ? {} : parseJsonText(text);
  if (holdsUnstorableText(value)) {
    throw new TollgateError(
      'invalid_request',
      'Text in the request body must not contain U+0000 (NUL) or unpaired surrogates.',
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TollgateError('invalid_request', 'The request body must be a JSON object.');
  }
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const param =
      issue.code === 'unrecognized_keys' ? issue.keys[0]! : formatIssuePath(issue.path) || null;
    const message =
      issue.code === 'unrecognized_keys'
        ? `Unknown field "${issue.keys[0]}".`
        : `Invalid ${param}: ${issue.message}.`;
    throw new TollgateError('invalid_request', message, { param });
  }
  return result.data;
}

const UNSTORABLE_TEXT =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what must be refused.
  /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Whether a string in a parsed JSON value is text PostgreSQL cannot store (NUL, lone surrogates). */
function holdsUnstorableText(value: unknown): boolean {
  const pending = [value];
  while (pending.length > 0) {
    const item = pending.pop();
    if (typeof item === 'string') {
      if (UNSTORABLE_TEXT.test(item)) return true;
    } else if (typeof item === 'object' && item !== null) {
      for (const child of Array.isArray(item) ? item : Object.values(item)) pending.push(child);
    }
  }
  return false;
}

/** The query parameters of a request, refusing any not in `known` (a typo is not ignored). */
function knownQuery(c: Context<GatewayEnv>, known: readonly string[]): Record<string, string> {
  const query = c.req.query();
  for (const name of Object.keys(query)) {
    if (!known.includes(name)) {
      throw new TollgateError('invalid_request', `Unknown query parameter "${name}".`, {
        param: name,
      });
    }
  }
  return query;
}

function sha256(value: string): Buffer {
  return hash('sha256', value, 'buffer');
}

/**
 * Builds the admin API as a Hono app, to be mounted at /admin.
 *
 * @example
 * ```ts
 * const admin = createAdminApp({ tenancy, adminKey: process.env.TOLLGATE_ADMIN_KEY! });
 * createApp({ config, router, access, logger, admin });
 * ```
 */
export function createAdminApp(options: AdminOptions): Hono<GatewayEnv> {
  const { tenancy } = options;
  const now = options.now ?? Date.now;
  const adminKeyHash = sha256(options.adminKey);
  const admin = new Hono<GatewayEnv>();

  admin.use('*', async function adminAuth(c, next) {
    const authorization = c.req.header('authorization')?.trim() ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(authorization);
    if (!match) {
      throw new TollgateError(
        'missing_api_key',
        'The admin API needs the admin key: send "Authorization: Bearer <TOLLGATE_ADMIN_KEY>".',
      );
    }
    if (!timingSafeEqual(sha256(match[1]!.trim()), adminKeyHash)) {
      tenancy.recordAudit({
        actor: 'unknown',
        action: 'admin.auth',
        result: 'denied',
        httpStatus: 401,
        method: c.req.method,
        path: c.req.path,
        remoteAddress: remoteAddress(c),
        requestId: c.get('requestId') ?? null,
      });
      throw new TollgateError('invalid_api_key', 'The admin key is not valid.');
    }
    await next();
  });

  admin.use('*', async function storableUrl(c, next) {
    // Ids, names and filters in the path and query are looked up in PostgreSQL, which refuses
    // U+0000 in text (an error, not a miss).
    if (/%00/i.test(c.req.url)) {
      throw new TollgateError('invalid_request', 'The path and query must not contain %00 (NUL).');
    }
    await next();
  });

  const actor = (c: Context<GatewayEnv>): ActorContext => ({
    actor: 'admin',
    method: c.req.method,
    path: c.req.path,
    remoteAddress: remoteAddress(c),
    requestId: c.get('requestId') ?? null,
  });

  admin.post('/tenants', async (c) => {
    const body = await readBody(c, createTenantBody);
    const tenant = await tenancy.createTenant(
      { name: body.name as string, limits: body.limits as never },
      actor(c),
    );
    options.onTenantCreated?.(tenant);
    return c.json(tenantJson(tenant), 201);
  });

  admin.get('/tenants', async (c) => {
    const tenants = await tenancy.listTenants();
    return c.json({ object: 'list', data: tenants.map(tenantJson) });
  });

  admin.get('/tenants/:id', async (c) =>
    c.json(tenantJson(await tenancy.getTenant(c.req.param('id')))),
  );

  admin.patch('/tenants/:id', async (c) => {
    const body = await readBody(c, updateTenantBody);
    const tenant = await tenancy.updateTenant(
      c.req.param('id'),
      {
        ...(body.name !== undefined ? { name: body.name as string } : {}),
        ...(body.limits !== undefined ? { limits: body.limits as never } : {}),
      },
      actor(c),
    );
    return c.json(tenantJson(tenant));
  });

  admin.delete('/tenants/:id', async (c) => {
    const tenant = await tenancy.getTenant(c.req.param('id'));
    await tenancy.deleteTenant(tenant.id, actor(c));
    return c.json({ id: tenant.id, object: 'tenant.deleted', deleted: true });
  });

  admin.post('/tenants/:id/keys', async (c) => {
    const body = await readBody(c, issueKeyBody);
    const key = await tenancy.issueKey(
      c.req.param('id'),
      {
        ...(body.name !== undefined ? { name: body.name } : {}),
        expiresAt: body.expires_at ? new Date(body.expires_at) : null,
      },
      actor(c),
    );
    return c.json(keyJson(key), 201);
  });

  admin.get('/tenants/:id/keys', async (c) => {
    const keys = await tenancy.listKeys(c.req.param('id'));
    return c.json({ object: 'list', data: keys.map(keyJson) });
  });

  admin.post('/keys/:id/rotate', async (c) => {
    const body = await readBody(c, rotateKeyBody);
    const { key, previous } = await tenancy.rotateKey(
      c.req.param('id'),
      { graceSeconds: body.grace_seconds ?? 3600 },
      actor(c),
    );
    return c.json({ ...keyJson(key), previous: keyJson(previous) }, 201);
  });

  admin.post('/keys/:id/revoke', async (c) => {
    await readBody(c, z.strictObject({}));
    return c.json(keyJson(await tenancy.revokeKey(c.req.param('id'), actor(c))));
  });

  admin.get('/usage', async (c) => {
    const query = knownQuery(c, ['tenant', 'model', 'since', 'until', 'group_by', 'format']);
    const format = query.format ?? 'json';
    if (format !== 'json' && format !== 'csv') {
      throw new TollgateError('invalid_request', 'format must be json or csv.', {
        param: 'format',
      });
    }
    const usageQuery: UsageQuery = { groupBy: parseGroupBy(c.req.queries('group_by') ?? []) };
    // A tenant by id or name; ids of callers outside the tenants table (`static:...`,
    // `anonymous`) are taken as they are.
    if (query.tenant) usageQuery.tenantId = await resolveTenantId(tenancy, query.tenant);
    if (query.model) usageQuery.model = query.model;
    if (query.since) usageQuery.since = parseTimeBound(query.since, 'since', now());
    if (query.until) usageQuery.until = parseTimeBound(query.until, 'until', now());
    const rows = await tenancy.usage(usageQuery);
    if (format === 'csv') {
      return c.body(usageCsv(rows, usageQuery.groupBy), 200, {
        'content-type': 'text/csv; charset=utf-8',
      });
    }
    return c.json({ object: 'list', data: rows.map(usageRowJson), totals: usageTotals(rows) });
  });

  admin.get('/audit', async (c) => {
    const query = knownQuery(c, ['actor', 'action', 'target', 'since', 'until', 'limit']);
    const limit = parseLimit(query.limit);
    await tenancy.flush().catch(() => {});
    const entries = await tenancy.audit({
      ...(query.actor ? { actor: query.actor } : {}),
      ...(query.action ? { action: query.action } : {}),
      ...(query.target ? { target: query.target } : {}),
      ...(query.since ? { since: parseTimeBound(query.since, 'since', now()) } : {}),
      ...(query.until ? { until: parseTimeBound(query.until, 'until', now()) } : {}),
      ...(limit !== undefined ? { limit } : {}),
    });
    return c.json({ object: 'list', data: entries.map(auditJson) });
  });

  // Model servers started on demand: their state, and loading or unloading one by hand.
  const supervisorOf = (): Supervisor => {
    if (!options.supervisor) {
      throw new TollgateError(
        'not_found',
        'No model server is started on demand here: give a model a "command" under models: in tollgate.yaml (see docs/backends.md).',
      );
    }
    return options.supervisor;
  };
  admin.get('/models', (c) => {
    const supervisor = options.supervisor;
    const memory = supervisor?.memory();
    return c.json({
      object: 'list',
      data: supervisor ? supervisor.status().map(modelJson) : [],
      memory: memory
        ? { budget_bytes: memory.budgetBytes ?? null, used_bytes: memory.usedBytes }
        : null,
    });
  });
  admin.post('/models/:id{.+}/load', async (c) => {
    const body = await readBody(c, loadModelBody);
    const status = await supervisorOf().load(c.req.param('id'), {
      ...(body.flags ? { flags: body.flags } : {}),
      signal: c.get('signal'),
    });
    return c.json(modelJson(status));
  });
  admin.post('/models/:id{.+}/unload', async (c) => {
    const body = await readBody(c, unloadModelBody);
    const status = await supervisorOf().unload(c.req.param('id'), {
      ...(body.force !== undefined ? { force: body.force } : {}),
    });
    return c.json(modelJson(status));
  });

  admin.get('/payments', async (c) => {
    const query = knownQuery(c, ['payer', 'status', 'since', 'until', 'limit']);
    const limit = parseLimit(query.limit);
    if (query.status !== undefined && !PAYMENT_STATUSES.includes(query.status as PaymentStatus)) {
      throw new TollgateError(
        'invalid_request',
        `status must be one of ${PAYMENT_STATUSES.join(', ')}.`,
        { param: 'status' },
      );
    }
    await tenancy.flush().catch(() => {});
    const payments = await tenancy.listPayments({
      ...(query.payer ? { payer: query.payer } : {}),
      ...(query.status ? { status: query.status as PaymentStatus } : {}),
      ...(query.since ? { since: parseTimeBound(query.since, 'since', now()) } : {}),
      ...(query.until ? { until: parseTimeBound(query.until, 'until', now()) } : {}),
      ...(limit !== undefined ? { limit } : {}),
    });
    return c.json({ object: 'list', data: payments.map(paymentJson) });
  });

  return admin;
}

/** A tenant's id from its id or name; other caller ids (`static:...`, `anonymous`) as given. */
export async function resolveTenantId(tenancy: Tenancy, value: string): Promise<string> {
  try {
    return (await tenancy.getTenant(value)).id;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'not_found') return value;
    throw error;
  }
}
