/**
 * `tollgate tenants ...`, `tollgate keys ...` and `tollgate usage ...`: the admin API's
 * operations from a terminal, against the configured store (the embedded database in the data
 * dir while no gateway holds it, or PostgreSQL at any time). Tables for people, `--json` for
 * scripts (the admin API's shapes).
 */
import { parseArgs } from 'node:util';
import { isTollgateError } from '@tollgate/protocol';
import type { TenantLimitsInput, UsageQuery } from '@tollgate/tenancy';
import {
  keyJson,
  parseGroupBy,
  parseTimeBound,
  resolveTenantId,
  tenantJson,
  USAGE_SUMS,
  usageCsv,
  usageRowJson,
  usageTotals,
} from './admin.js';
import { isConfigError, loadConfig } from './config.js';
import { type OpenedTenancy, openTenancy } from './tenancy-setup.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/** Where a command writes (injectable for tests). */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

const LIMIT_FLAGS = `Limits (each optional; "none" removes one):
      --rpm N             Requests per minute
      --tpm N             Tokens per minute (a request reserves its prompt plus max_tokens)
      --concurrency N     Requests in flight at once
      --models LIST       Allowed models, comma-separated; globs with * (e.g. "llama3*,qwen2.5:7b")
      --budget-period P   day or month (UTC); with --budget-tokens and/or --budget-usd
      --budget-tokens N   Tokens per budget period
      --budget-usd X      Spend per budget period, in US dollars (prices: tenancy.prices in the config)`;

const COMMON_FLAGS = `  -c, --config FILE   YAML config file (default: ./tollgate.yaml when it exists)
      --json          Print JSON (the admin API's shapes) instead of a table
  -h, --help          Show this help`;

export const TENANTS_HELP = `tollgate tenants — create, list, change and delete tenants

Usage:
  tollgate tenants create NAME [limits]
  tollgate tenants list
  tollgate tenants show NAME|ID
  tollgate tenants update NAME|ID [--name NEW] [limits]
  tollgate tenants delete NAME|ID --yes       (deletes its keys too; usage is kept)

${LIMIT_FLAGS}

Options:
${COMMON_FLAGS}

Works on the database the gateway uses (TOLLGATE_DATABASE_URL, else the embedded one in
TOLLGATE_DATA_DIR, which only one process may open: stop the gateway first, or use the admin API).

Examples:
  pnpm tollgate tenants create acme --rpm 60 --tpm 100000 --concurrency 4
  pnpm tollgate tenants update acme --budget-period day --budget-tokens 1000000 --budget-usd 5
  pnpm tollgate tenants update acme --models "llama3*" --rpm none
`;

export const KEYS_HELP = `tollgate keys — issue, list, rotate and revoke API keys

Usage:
  tollgate keys issue TENANT [--name NAME] [--expires WHEN]
  tollgate keys list TENANT
  tollgate keys rotate KEY_ID [--grace DURATION]
  tollgate keys revoke KEY_ID

  A key is shown once, when issued or rotated: store it then. KEY_ID is the public part
  (tg_<KEY_ID>_<secret>) that lists and logs show.

Options:
      --name NAME         A label, e.g. ci (default: default)
      --expires WHEN      An ISO date or time, or a duration from now (30d, 12h, 2w)
      --grace DURATION    How long the old key keeps working after a rotation: seconds or
                          30m, 1h, 7d (default 1h; 0 stops it at once)
${COMMON_FLAGS}

Examples:
  pnpm tollgate keys issue acme --name ci
  pnpm tollgate keys rotate k3j5mq2x7a4b6c8d --grace 24h
`;

export const USAGE_HELP = `tollgate usage — what was used, by tenant, model or day

Usage:
  tollgate usage [--tenant NAME|ID] [--model MODEL] [--since WHEN] [--until WHEN]
                 [--group-by tenant,model,day] [--json | --csv]

Options:
      --tenant T       One tenant (name or id; also static:<8 hex> or anonymous)
      --model M        One model, as callers named it
      --since WHEN     From (inclusive): ISO date or time, or a duration back (7d, 24h, 30m)
      --until WHEN     To (exclusive), same forms
      --group-by LIST  Rows per tenant, model and/or day (default: tenant)
      --csv            Print CSV (columns as in GET /admin/usage?format=csv)
${COMMON_FLAGS}

Examples:
  pnpm tollgate usage --since 7d
  pnpm tollgate usage --tenant acme --group-by day,model --csv > acme.csv
`;

const DURATION = /^(\d+)\s*(s|m|h|d|w)?$/;
const DURATION_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/** Seconds from `3600`, `30m`, `1h`, `7d`; undefined when it is not a duration. */
export function parseDurationSeconds(value: string): number | undefined {
  const match = DURATION.exec(value.trim());
  if (!match) return undefined;
  return (Number(match[1]) * DURATION_MS[(match[2] ?? 's') as keyof typeof DURATION_MS]) / 1000;
}

class UsageProblem extends Error {}

function limitsFromFlags(values: Record<string, string | boolean | undefined>): TenantLimitsInput {
  const limits: Record<string, unknown> = {};
  const number = (flag: string, name: string, integer = true) => {
    const raw = values[flag];
    if (typeof raw !== 'string') return;
    if (raw === 'none') {
      limits[name] = null;
      return;
    }
    const value = Number(raw);
    if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
      throw new UsageProblem(`--${flag} must be a ${integer ? 'whole ' : ''}number or "none"`);
    }
    limits[name] = value;
  };
  number('rpm', 'requests_per_minute');
  number('tpm', 'tokens_per_minute');
  number('concurrency', 'max_concurrent');
  if (typeof values.models === 'string') {
    limits.models =
      values.models === 'none'
        ? null
        : values.models
            .split(',')
            .map((model) => model.trim())
            .filter(Boolean);
  }
  const period = values['budget-period'];
  const budgetTokens = values['budget-tokens'];
  const budgetUsd = values['budget-usd'];
  if (period === 'none') limits.budget = null;
  else if (period !== undefined || budgetTokens !== undefined || budgetUsd !== undefined) {
    if (period !== 'day' && period !== 'month') {
      throw new UsageProblem(
        '--budget-period must be day, month or none (with --budget-tokens and/or --budget-usd)',
      );
    }
    const budget: Record<string, unknown> = { period };
    if (typeof budgetTokens === 'string') budget.tokens = Number(budgetTokens);
    if (typeof budgetUsd === 'string') budget.spend_usd = Number(budgetUsd);
    limits.budget = budget;
  }
  return limits as TenantLimitsInput;
}

/** Renders rows as an aligned text table. */
export function table(
  columns: string[],
  rows: Array<Array<string | number | null | undefined>>,
): string {
  const cells = rows.map((row) =>
    row.map((cell) => (cell === null || cell === undefined ? '-' : String(cell))),
  );
  const widths = columns.map((column, index) =>
    Math.max(column.length, ...cells.map((row) => row[index]!.length)),
  );
  const line = (row: string[]) =>
    row
      .map((cell, index) => cell.padEnd(widths[index]!))
      .join('  ')
      .trimEnd();
  return `${[line(columns.map((column) => column.toUpperCase())), ...cells.map(line)].join('\n')}\n`;
}

function describeLimits(limits: Record<string, unknown>): string {
  const parts: string[] = [];
  if (limits.requests_per_minute !== undefined) parts.push(`${limits.requests_per_minute} req/min`);
  if (limits.tokens_per_minute !== undefined) parts.push(`${limits.tokens_per_minute} tok/min`);
  if (limits.max_concurrent !== undefined) parts.push(`${limits.max_concurrent} at once`);
  if (Array.isArray(limits.models)) parts.push(`models ${limits.models.join(',')}`);
  const budgets =
    limits.budget === undefined ? [] : ([limits.budget].flat() as Array<Record<string, unknown>>);
  for (const budget of budgets) {
    const caps = [
      budget.tokens !== undefined ? `${budget.tokens} tok` : undefined,
      budget.spend_usd !== undefined ? `$${budget.spend_usd}` : undefined,
    ].filter(Boolean);
    parts.push(`${caps.join(' + ')}/${budget.period}`);
  }
  return parts.length > 0 ? parts.join(', ') : 'unlimited';
}

interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

function parse(
  args: string[],
  options: Record<string, { type: 'string' | 'boolean'; short?: string }>,
): Parsed {
  const { values, positionals } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      ...options,
    },
    allowPositionals: true,
    strict: true,
  });
  return { values: values as Parsed['values'], positionals };
}

const LIMIT_OPTIONS = {
  rpm: { type: 'string' },
  tpm: { type: 'string' },
  concurrency: { type: 'string' },
  models: { type: 'string' },
  'budget-period': { type: 'string' },
  'budget-tokens': { type: 'string' },
  'budget-usd': { type: 'string' },
} as const;

/** Runs one admin command with tenancy opened on the configured store. */
async function withTenancy(
  io: Output,
  config: string | undefined,
  run: (opened: OpenedTenancy) => Promise<number>,
): Promise<number> {
  let opened: OpenedTenancy;
  try {
    const loaded = loadConfig({ argv: config !== undefined ? { config } : {} });
    opened = await openTenancy(loaded, { role: 'admin' });
  } catch (error) {
    if (!isConfigError(error)) throw error;
    io.err(`tollgate: ${error.message}\n`);
    return EXIT_FAILURE;
  }
  try {
    return await run(opened);
  } catch (error) {
    if (isTollgateError(error) && error.status < 500) {
      io.err(`tollgate: ${error.message}\n`);
      return EXIT_FAILURE;
    }
    throw error;
  } finally {
    await opened.close();
  }
}

function usageError(io: Output, command: string, message: string): number {
  io.err(`tollgate: ${message}\nRun "tollgate ${command} --help" for usage.\n`);
  return EXIT_USAGE;
}

function json(io: Output, value: unknown): void {
  io.out(`${JSON.stringify(value, null, 2)}\n`);
}

/** `tollgate tenants ...` */
export async function tenantsCommand(args: string[], io: Output): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parse(args, { ...LIMIT_OPTIONS, name: { type: 'string' }, yes: { type: 'boolean' } });
  } catch (error) {
    return usageError(io, 'tenants', (error as Error).message);
  }
  const { values, positionals } = parsed;
  const [action, target, ...extra] = positionals;
  if (values.help || action === undefined) {
    io.out(TENANTS_HELP);
    return values.help ? EXIT_OK : EXIT_USAGE;
  }
  if (extra.length > 0) return usageError(io, 'tenants', `unexpected argument "${extra[0]}"`);
  const needsTarget = ['create', 'show', 'update', 'delete'];
  if (!['list', ...needsTarget].includes(action)) {
    return usageError(
      io,
      'tenants',
      `unknown action "${action}" (create, list, show, update, delete)`,
    );
  }
  if (needsTarget.includes(action) && target === undefined) {
    return usageError(
      io,
      'tenants',
      `"tenants ${action}" needs a tenant name${action === 'create' ? '' : ' or id'}`,
    );
  }
  if (action === 'delete' && !values.yes) {
    return usageError(
      io,
      'tenants',
      `deleting "${target}" also deletes its keys: add --yes to confirm`,
    );
  }
  let limits: TenantLimitsInput;
  try {
    limits = limitsFromFlags(values);
  } catch (error) {
    if (error instanceof UsageProblem) return usageError(io, 'tenants', error.message);
    throw error;
  }
  const actor = { actor: 'cli' };
  const print = (tenants: ReturnType<typeof tenantJson>[], single = false) => {
    if (values.json) return json(io, single ? tenants[0] : { object: 'list', data: tenants });
    io.out(
      table(
        ['id', 'name', 'limits', 'created'],
        tenants.map((tenant) => [
          tenant.id,
          tenant.name,
          describeLimits(tenant.limits),
          tenant.created_at,
        ]),
      ),
    );
  };
  return withTenancy(io, values.config as string | undefined, async ({ tenancy }) => {
    switch (action) {
      case 'create':
        print([tenantJson(await tenancy.createTenant({ name: target!, limits }, actor))], true);
        if (!values.json) io.err(`tollgate: next: pnpm tollgate keys issue ${target}\n`);
        return EXIT_OK;
      case 'list':
        print((await tenancy.listTenants()).map(tenantJson));
        return EXIT_OK;
      case 'show':
        print([tenantJson(await tenancy.getTenant(target!))], true);
        return EXIT_OK;
      case 'update': {
        const name = values.name as string | undefined;
        if (name === undefined && Object.keys(limits).length === 0) {
          io.err('tollgate: nothing to change: give --name or a limit flag (see --help)\n');
          return EXIT_USAGE;
        }
        const tenant = await tenancy.updateTenant(
          target!,
          {
            ...(name !== undefined ? { name } : {}),
            ...(Object.keys(limits).length > 0 ? { limits } : {}),
          },
          actor,
        );
        print([tenantJson(tenant)], true);
        return EXIT_OK;
      }
      default: {
        const tenant = await tenancy.getTenant(target!);
        await tenancy.deleteTenant(tenant.id, actor);
        if (values.json) json(io, { id: tenant.id, object: 'tenant.deleted', deleted: true });
        else io.out(`deleted tenant ${tenant.name} (${tenant.id}) and its keys\n`);
        return EXIT_OK;
      }
    }
  });
}

/** `tollgate keys ...` */
export async function keysCommand(args: string[], io: Output, now = Date.now): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parse(args, {
      name: { type: 'string' },
      expires: { type: 'string' },
      grace: { type: 'string' },
    });
  } catch (error) {
    return usageError(io, 'keys', (error as Error).message);
  }
  const { values, positionals } = parsed;
  const [action, target, ...extra] = positionals;
  if (values.help || action === undefined) {
    io.out(KEYS_HELP);
    return values.help ? EXIT_OK : EXIT_USAGE;
  }
  if (extra.length > 0) return usageError(io, 'keys', `unexpected argument "${extra[0]}"`);
  if (!['issue', 'list', 'rotate', 'revoke'].includes(action)) {
    return usageError(io, 'keys', `unknown action "${action}" (issue, list, rotate, revoke)`);
  }
  if (target === undefined) {
    return usageError(
      io,
      'keys',
      `"keys ${action}" needs a ${action === 'issue' || action === 'list' ? 'tenant name or id' : 'key id'}`,
    );
  }
  let expiresAt: Date | null = null;
  if (typeof values.expires === 'string') {
    const seconds = parseDurationSeconds(values.expires);
    let time = Number.NaN;
    if (seconds !== undefined) time = now() + seconds * 1000;
    else {
      // The admin API's reading of a time: ISO only, and no impossible day (Date.parse alone
      // takes "March 5" and rolls 2026-02-30 over to March 2).
      try {
        time = parseTimeBound(values.expires, '--expires', now()).getTime();
      } catch {
        // Refused below.
      }
    }
    if (Number.isNaN(time))
      return usageError(
        io,
        'keys',
        '--expires must be an ISO date or time, or a duration like 30d',
      );
    expiresAt = new Date(time);
  }
  let graceSeconds = 3600;
  if (typeof values.grace === 'string') {
    const seconds = parseDurationSeconds(values.grace);
    if (seconds === undefined)
      return usageError(io, 'keys', '--grace must be seconds or a duration like 30m, 1h, 7d');
    graceSeconds = seconds;
  }
  const actor = { actor: 'cli' };
  const keyRows = (keys: ReturnType<typeof keyJson>[]) =>
    table(
      ['id', 'name', 'state', 'created', 'expires'],
      keys.map((key) => [key.id, key.name, key.state, key.created_at, key.expires_at]),
    );
  return withTenancy(io, values.config as string | undefined, async ({ tenancy }) => {
    if (action === 'list') {
      const keys = (await tenancy.listKeys(target)).map(keyJson);
      if (values.json) json(io, { object: 'list', data: keys });
      else io.out(keyRows(keys));
      return EXIT_OK;
    }
    if (action === 'revoke') {
      const key = keyJson(await tenancy.revokeKey(target, actor));
      if (values.json) json(io, key);
      else io.out(`revoked key ${key.id}\n`);
      return EXIT_OK;
    }
    const issued =
      action === 'issue'
        ? {
            key: keyJson(
              await tenancy.issueKey(
                target,
                { ...(typeof values.name === 'string' ? { name: values.name } : {}), expiresAt },
                actor,
              ),
            ),
            previous: undefined,
          }
        : await tenancy.rotateKey(target, { graceSeconds }, actor).then((result) => ({
            key: keyJson(result.key),
            previous: keyJson(result.previous),
          }));
    if (values.json) {
      json(io, issued.previous ? { ...issued.key, previous: issued.previous } : issued.key);
      return EXIT_OK;
    }
    io.out(`${issued.key.key}\n`);
    io.err(
      `tollgate: key ${issued.key.id} for tenant ${issued.key.tenant_id}${issued.key.expires_at ? `, expires ${issued.key.expires_at}` : ''}. ` +
        'This is the only time the key is shown: store it now.\n',
    );
    if (issued.previous) {
      io.err(
        `tollgate: the old key ${issued.previous.id} keeps working until ${issued.previous.expires_at}.\n`,
      );
    }
    return EXIT_OK;
  });
}

/** `tollgate usage ...` */
export async function usageCommand(args: string[], io: Output, now = Date.now): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = parse(args, {
      tenant: { type: 'string' },
      model: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      'group-by': { type: 'string' },
      csv: { type: 'boolean' },
    });
  } catch (error) {
    return usageError(io, 'usage', (error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.out(USAGE_HELP);
    return EXIT_OK;
  }
  if (positionals.length > 0)
    return usageError(io, 'usage', `unexpected argument "${positionals[0]}"`);
  if (values.csv && values.json) return usageError(io, 'usage', 'choose one of --json and --csv');
  const query: UsageQuery = {};
  try {
    query.groupBy = parseGroupBy([
      typeof values['group-by'] === 'string' ? values['group-by'] : 'tenant',
    ]);
    if (typeof values.since === 'string')
      query.since = parseTimeBound(values.since, '--since', now());
    if (typeof values.until === 'string')
      query.until = parseTimeBound(values.until, '--until', now());
  } catch (error) {
    return usageError(io, 'usage', (error as Error).message.replace(/^group_by/, '--group-by'));
  }
  if (typeof values.model === 'string') query.model = values.model;
  return withTenancy(io, values.config as string | undefined, async ({ tenancy }) => {
    if (typeof values.tenant === 'string')
      query.tenantId = await resolveTenantId(tenancy, values.tenant);
    const rows = await tenancy.usage(query);
    if (values.csv) {
      io.out(usageCsv(rows, query.groupBy));
      return EXIT_OK;
    }
    if (values.json) {
      json(io, { object: 'list', data: rows.map(usageRowJson), totals: usageTotals(rows) });
      return EXIT_OK;
    }
    const keys = (query.groupBy ?? []).map((key) => (key === 'tenant' ? 'tenant_id' : key));
    // People read names: the tenant's name beside its id (static keys and anonymous have none).
    const names = keys.includes('tenant_id')
      ? new Map((await tenancy.listTenants()).map((tenant) => [tenant.id, tenant.name]))
      : undefined;
    const columns = [...keys, ...(names ? ['tenant'] : []), ...USAGE_SUMS];
    const lines = rows.map((row) => {
      const shown = usageRowJson(row) as Record<string, unknown>;
      if (names) shown.tenant = names.get(row.tenantId ?? '') ?? '-';
      return columns.map((column) => shown[column] as string | number);
    });
    const totals = usageTotals(rows) as Record<string, unknown>;
    lines.push(
      columns.map((column, index) =>
        index === 0
          ? 'TOTAL'
          : (USAGE_SUMS as readonly string[]).includes(column)
            ? (totals[column] as number)
            : '',
      ),
    );
    io.out(table(columns, lines));
    return EXIT_OK;
  });
}
