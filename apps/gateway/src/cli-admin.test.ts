import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createStore, createTenancy } from '@tollgate/tenancy';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { KeyJson, TenantJson } from './admin.js';
import {
  KEYS_HELP,
  keysCommand,
  type Output,
  TENANTS_HELP,
  tenantsCommand,
  USAGE_HELP,
  usageCommand,
} from './cli-admin.js';
import { tempDataDir } from './test-helpers.js';

// Every command opens the embedded database in the data dir: seconds each on a loaded machine.
vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

type Command = (args: string[], io: Output, now?: () => number) => Promise<number>;

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

const KEY = /^tg_([a-z2-7]{16})_[A-Za-z0-9_-]{43}$/;
const DAY1 = Date.parse('2025-01-01T10:00:00.000Z');
const DAY2 = Date.parse('2025-01-02T10:00:00.000Z');

let data: ReturnType<typeof tempDataDir>;
let configFile: string;

beforeAll(() => {
  data = tempDataDir();
  // An empty config file, so that a tollgate.yaml in the runner's cwd is never read.
  configFile = join(data.path, 'empty.yaml');
  writeFileSync(configFile, '');
});

afterAll(async () => {
  await data?.cleanup();
});

/** Points the commands at a data dir, with no other TOLLGATE_* variable of the runner. */
function useDataDir(dataDir: string): void {
  for (const name of Object.keys(process.env)) {
    if (name.startsWith('TOLLGATE_')) vi.stubEnv(name, undefined);
  }
  vi.stubEnv('TOLLGATE_DATA_DIR', dataDir);
  vi.stubEnv('TOLLGATE_CONFIG', configFile);
}

beforeEach(() => useDataDir(join(data.path, 'main')));

afterEach(() => {
  vi.unstubAllEnvs();
});

async function run(command: Command, args: string[], now?: () => number): Promise<Ran> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: Output = {
    out: (text) => stdout.push(text),
    err: (text) => stderr.push(text),
  };
  const code = await command(args, io, now);
  return { code, stdout: stdout.join(''), stderr: stderr.join('') };
}

function parseJson<T>(ran: Ran): T {
  expect(ran.code, ran.stderr).toBe(0);
  return JSON.parse(ran.stdout) as T;
}

describe('tollgate tenants', () => {
  it('behavior: create, list, show, update (with "none"), delete --yes, as tables and as JSON', async () => {
    const created = await run(tenantsCommand, [
      'create',
      'acme',
      '--rpm',
      '60',
      '--tpm',
      '100000',
      '--concurrency',
      '4',
      '--models',
      'llama3*, qwen2.5:7b',
      '--budget-period',
      'day',
      '--budget-tokens',
      '1000000',
      '--budget-usd',
      '5',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const [header, row, ...rest] = created.stdout.split('\n');
    expect(header).toMatch(/^ID\s+NAME\s+LIMITS\s+CREATED$/);
    expect(row).toMatch(
      /^tn_[a-z2-7]{16} {2}acme {2}60 req\/min, 100000 tok\/min, 4 at once, models llama3\*,qwen2\.5:7b, 1000000 tok \+ \$5\/day {2}\d{4}-\d{2}-\d{2}T[\d:.]+Z$/,
    );
    expect(rest).toEqual(['']);
    expect(created.stderr).toBe('tollgate: next: pnpm tollgate keys issue acme\n');
    // The lock is given back when the command ends.
    expect(existsSync(join(data.path, 'main', 'db.pid'))).toBe(false);

    const beta = parseJson<TenantJson>(await run(tenantsCommand, ['create', 'beta', '--json']));
    expect(beta).toEqual({
      id: expect.stringMatching(/^tn_[a-z2-7]{16}$/),
      object: 'tenant',
      name: 'beta',
      limits: {},
      created_at: expect.any(String),
      updated_at: beta.created_at,
    });

    const duplicate = await run(tenantsCommand, ['create', 'beta']);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toBe('tollgate: A tenant named "beta" already exists.\n');

    const list = parseJson<{ object: string; data: TenantJson[] }>(
      await run(tenantsCommand, ['list', '--json']),
    );
    expect(list.object).toBe('list');
    expect(list.data.map((tenant) => tenant.name)).toEqual(['acme', 'beta']);
    const acme = list.data[0]!;
    expect(acme.limits).toEqual({
      requests_per_minute: 60,
      tokens_per_minute: 100000,
      max_concurrent: 4,
      models: ['llama3*', 'qwen2.5:7b'],
      budget: { period: 'day', tokens: 1000000, spend_usd: 5 },
    });

    expect(parseJson<TenantJson>(await run(tenantsCommand, ['show', acme.id, '--json']))).toEqual(
      acme,
    );

    const updated = parseJson<TenantJson>(
      await run(tenantsCommand, [
        'update',
        'acme',
        '--rpm',
        'none',
        '--tpm',
        '5000',
        '--models',
        'none',
        '--json',
      ]),
    );
    expect(updated.id).toBe(acme.id);
    expect(updated.limits).toEqual({
      tokens_per_minute: 5000,
      max_concurrent: 4,
      budget: { period: 'day', tokens: 1000000, spend_usd: 5 },
    });

    // Refused before the database is opened: nothing is deleted without --yes.
    const unconfirmed = await run(tenantsCommand, ['delete', 'beta']);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toContain('--yes');
    expect(unconfirmed.stdout).toBe('');

    const deleted = await run(tenantsCommand, ['delete', 'beta', '--yes']);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toBe(`deleted tenant beta (${beta.id}) and its keys\n`);

    const shown = await run(tenantsCommand, ['show', 'beta']);
    expect(shown.code).toBe(1);
    expect(shown.stderr).toBe('tollgate: There is no tenant "beta".\n');
    expect(shown.stdout).toBe('');

    const table = await run(tenantsCommand, ['list']);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(
      /^tn_[a-z2-7]{16} {2}acme {2}5000 tok\/min, 4 at once, 1000000 tok \+ \$5\/day /,
    );
  });

  it('error: bad flags and arguments exit 2 with a pointer to --help, before opening anything', async () => {
    const cases: Array<[string[], string]> = [
      [['create', 'x', '--rpm', 'lots'], '--rpm must be a whole number or "none"'],
      [['create', 'x', '--budget-tokens', '5'], '--budget-period must be day, month or none'],
      [['create', 'x', '--frobnicate'], 'frobnicate'],
      [['create'], '"tenants create" needs a tenant name'],
      [['show'], '"tenants show" needs a tenant name or id'],
      [['explode', 'x'], 'unknown action "explode"'],
      [['show', 'a', 'b'], 'unexpected argument "b"'],
    ];
    for (const [args, message] of cases) {
      const ran = await run(tenantsCommand, args);
      expect(ran.code, args.join(' ')).toBe(2);
      expect(ran.stderr, args.join(' ')).toContain(message);
      expect(ran.stderr).toContain('Run "tollgate tenants --help" for usage.');
    }
  });

  it('error: a limit the tenancy service refuses exits 1 with its message', async () => {
    const zero = await run(tenantsCommand, ['create', 'zero', '--rpm', '0']);
    expect(zero.code).toBe(1);
    expect(zero.stderr).toMatch(/^tollgate: Invalid limits\.requests_per_minute: .+\n$/);
    expect(zero.stdout).toBe('');
  });
});

describe('tollgate keys', () => {
  it('behavior: issue prints the key alone on stdout; list never prints secrets; rotate --grace 24h; revoke', async () => {
    const tenant = parseJson<TenantJson>(await run(tenantsCommand, ['create', 'keyed', '--json']));

    const issued = await run(keysCommand, [
      'issue',
      'keyed',
      '--name',
      'ci',
      '--expires',
      '2099-12-31T00:00:00Z',
    ]);
    expect(issued.code, issued.stderr).toBe(0);
    expect(issued.stdout).toMatch(/^tg_[a-z2-7]{16}_[A-Za-z0-9_-]{43}\n$/);
    const firstKey = issued.stdout.trim();
    const firstId = KEY.exec(firstKey)![1]!;
    expect(issued.stderr).toBe(
      `tollgate: key ${firstId} for tenant ${tenant.id}, expires 2099-12-31T00:00:00.000Z. This is the only time the key is shown: store it now.\n`,
    );

    const now = Date.now();
    const second = parseJson<KeyJson>(
      await run(keysCommand, ['issue', tenant.id, '--expires', '30d', '--json'], () => now),
    );
    expect(second).toEqual({
      id: expect.stringMatching(/^[a-z2-7]{16}$/),
      object: 'api_key',
      key: expect.stringMatching(KEY),
      tenant_id: tenant.id,
      name: 'default',
      state: 'active',
      created_at: expect.any(String),
      expires_at: new Date(now + 30 * 86_400_000).toISOString(),
      revoked_at: null,
      replaced_by: null,
    });

    const table = await run(keysCommand, ['list', 'keyed']);
    expect(table.code, table.stderr).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+STATE\s+CREATED\s+EXPIRES$/);
    expect(lines[1]).toMatch(
      new RegExp(`^${firstId} {2}ci\\s+active {2}\\S+ {2}2099-12-31T00:00:00\\.000Z$`),
    );
    expect(lines[2]).toMatch(
      new RegExp(`^${second.id} {2}default {2}active {2}\\S+ {2}${second.expires_at}$`),
    );
    const listed = await run(keysCommand, ['list', 'keyed', '--json']);
    const json = parseJson<{ object: string; data: KeyJson[] }>(listed);
    expect(json.data.map((key) => key.id)).toEqual([firstId, second.id]);
    for (const key of json.data) expect(key).not.toHaveProperty('key');
    for (const output of [table.stdout, table.stderr, listed.stdout, listed.stderr]) {
      for (const secret of [firstKey, second.key!]) {
        expect(output).not.toContain(secret);
        expect(output).not.toContain(secret.slice(20));
      }
    }

    const before = Date.now();
    const rotated = await run(keysCommand, ['rotate', firstId, '--grace', '24h']);
    const after = Date.now();
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/^tg_[a-z2-7]{16}_[A-Za-z0-9_-]{43}\n$/);
    const rotatedKey = rotated.stdout.trim();
    expect(rotatedKey).not.toBe(firstKey);
    const rotatedId = KEY.exec(rotatedKey)![1]!;
    const until = /the old key (\S+) keeps working until (\S+)\.\n$/.exec(rotated.stderr);
    expect(until?.[1]).toBe(firstId);
    const graceEnd = Date.parse(until![2]!);
    expect(graceEnd).toBeGreaterThanOrEqual(before + 86_400_000);
    expect(graceEnd).toBeLessThanOrEqual(after + 86_400_000);
    expect(rotated.stderr).toContain(`key ${rotatedId} for tenant ${tenant.id}`);
    expect(rotated.stderr).toContain('only time the key is shown');

    const revoked = await run(keysCommand, ['revoke', second.id]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toBe(`revoked key ${second.id}\n`);

    const states = parseJson<{ data: KeyJson[] }>(
      await run(keysCommand, ['list', 'keyed', '--json']),
    );
    expect(states.data.map((key) => [key.id, key.state, key.replaced_by])).toEqual([
      [firstId, 'rotating', rotatedId],
      [second.id, 'revoked', null],
      [rotatedId, 'active', null],
    ]);
    expect(states.data[0]!.expires_at).toBe(new Date(graceEnd).toISOString());
  });

  it('error: unknown tenants and keys exit 1 with the message; bad flags exit 2', async () => {
    const noTenant = await run(keysCommand, ['issue', 'nobody']);
    expect(noTenant.code).toBe(1);
    expect(noTenant.stderr).toBe('tollgate: There is no tenant "nobody".\n');
    expect(noTenant.stdout).toBe('');
    const noKey = await run(keysCommand, ['revoke', 'aaaaaaaaaaaaaaaa']);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toBe('tollgate: There is no key "aaaaaaaaaaaaaaaa".\n');

    const cases: Array<[string[], string]> = [
      [['rotate', 'k', '--grace', 'soon'], '--grace must be seconds or a duration'],
      [['issue', 'acme', '--expires', 'someday'], '--expires must be an ISO date or time'],
      [['issue', 'acme', '--expires', '2030-02-30'], '--expires must be an ISO date or time'],
      [['issue', 'acme', '--expires', 'March 5, 2030'], '--expires must be an ISO date or time'],
      [['issue'], '"keys issue" needs a tenant name or id'],
      [['rotate'], '"keys rotate" needs a key id'],
      [['mint', 'x'], 'unknown action "mint"'],
      [['list', 'acme', '--secret'], 'secret'],
    ];
    for (const [args, message] of cases) {
      const ran = await run(keysCommand, args);
      expect(ran.code, args.join(' ')).toBe(2);
      expect(ran.stderr, args.join(' ')).toContain(message);
    }
  });
});

describe('tollgate usage', () => {
  let tenantA: TenantJson;
  let tenantB: TenantJson;
  const usageDir = () => join(data.path, 'usage');

  beforeAll(async () => {
    // Usage needs admitted requests: made through tenancy on the data dir's own database (a
    // clock on fixed days), closed before any command opens it.
    let clock = DAY1;
    const store = await createStore({ dataDir: usageDir() });
    const tenancy = createTenancy({
      store,
      now: () => clock,
      prices: { 'priced-model': { input: 1000, output: 2000 } },
    });
    try {
      const actor = { actor: 'test' };
      const a = await tenancy.createTenant({ name: 'usage-a' }, actor);
      const b = await tenancy.createTenant({ name: 'usage-b' }, actor);
      const serve = async (
        tenantName: string,
        model: string,
        at: number,
        usage?: { prompt_tokens: number; completion_tokens: number },
      ) => {
        clock = at;
        const { key } = await tenancy.issueKey(tenantName, {}, actor);
        const admission = await tenancy.admit(await tenancy.authenticate(key), {
          operation: 'chat.completions',
          model,
          body: { model, messages: [{ role: 'user', content: 'hi' }] },
        });
        await admission.settle(
          usage
            ? { status: 'completed', httpStatus: 200, usage }
            : { status: 'failed', httpStatus: 502 },
        );
      };
      await serve('usage-a', 'priced-model', DAY1, { prompt_tokens: 10, completion_tokens: 5 });
      await serve('usage-a', 'free-model', DAY1, { prompt_tokens: 20, completion_tokens: 10 });
      await serve('usage-a', 'priced-model', DAY2, { prompt_tokens: 30, completion_tokens: 15 });
      await serve('usage-b', 'priced-model', DAY2, { prompt_tokens: 40, completion_tokens: 20 });
      await serve('usage-b', 'odd,"model"', DAY2);
      await tenancy.flush();
      tenantA = { id: a.id, name: a.name } as TenantJson;
      tenantB = { id: b.id, name: b.name } as TenantJson;
    } finally {
      await tenancy.close();
      await store.close();
    }
  });

  beforeEach(() => useDataDir(usageDir()));

  it('behavior: a table by tenant (the default) with a TOTAL row; --since and --until bound it', async () => {
    const ran = await run(usageCommand, ['--since', '2025-01-01', '--until', '2025-01-03']);
    expect(ran.code, ran.stderr).toBe(0);
    const lines = ran.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(
      /^TENANT_ID\s+TENANT\s+REQUESTS\s+PROMPT_TOKENS\s+COMPLETION_TOKENS\s+TOTAL_TOKENS\s+COST_USD\s+ESTIMATED_REQUESTS$/,
    );
    const rows = lines.slice(1).map((line) => line.split(/\s{2,}/));
    expect(rows).toHaveLength(3);
    expect(rows).toEqual(
      expect.arrayContaining([
        [tenantA.id, tenantA.name, '3', '60', '30', '90', '0.08', '0'],
        [tenantB.id, tenantB.name, '2', '40', '20', '60', '0.08', '1'],
      ]),
    );
    expect(rows[2]).toEqual(['TOTAL', '5', '100', '50', '150', '0.16', '1']);
  });

  it('behavior: --since as a duration back from now, --group-by model, --json in the admin API shape', async () => {
    const now = () => Date.parse('2025-01-02T12:00:00.000Z');
    const body = parseJson<{ object: string; data: unknown[]; totals: Record<string, number> }>(
      await run(
        usageCommand,
        ['--since', '1d', '--until', '2025-01-03', '--group-by', 'model', '--json'],
        now,
      ),
    );
    expect(body).toEqual({
      object: 'list',
      data: [
        {
          model: 'odd,"model"',
          requests: 1,
          prompt_tokens: 0,
          completion_tokens: 0,
          total_tokens: 0,
          cost_usd: 0,
          estimated_requests: 1,
        },
        {
          model: 'priced-model',
          requests: 2,
          prompt_tokens: 70,
          completion_tokens: 35,
          total_tokens: 105,
          cost_usd: 0.14,
          estimated_requests: 0,
        },
      ],
      totals: {
        requests: 3,
        prompt_tokens: 70,
        completion_tokens: 35,
        total_tokens: 105,
        cost_usd: 0.14,
        estimated_requests: 1,
      },
    });
  });

  it('behavior: --tenant by name with --group-by day,model --csv prints the CSV of the admin API', async () => {
    const ran = await run(usageCommand, [
      '--tenant',
      tenantB.name,
      '--group-by',
      'day,model',
      '--csv',
    ]);
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toBe(
      [
        'day,model,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd,estimated_requests',
        '2025-01-02,"odd,""model""",1,0,0,0,0,1',
        '2025-01-02,priced-model,1,40,20,60,0.08,0',
        '',
      ].join('\r\n'),
    );
  });

  it('error: an unknown flag, a bad --since or --group-by, or --json with --csv exit 2 naming the flag', async () => {
    const cases: Array<[string[], string]> = [
      [['--bogus'], 'bogus'],
      [['--since', 'yesterday'], '--since must be an ISO date or time'],
      [['--since', '2025-02-30'], '--since'],
      [['--until', 'later'], '--until must be'],
      [['--group-by', 'week'], '--group-by must be one or more of tenant, model, day'],
      [['--json', '--csv'], 'choose one of --json and --csv'],
      [['extra'], 'unexpected argument "extra"'],
    ];
    for (const [args, message] of cases) {
      const ran = await run(usageCommand, args);
      expect(ran.code, args.join(' ')).toBe(2);
      expect(ran.stderr, args.join(' ')).toContain(message);
      expect(ran.stderr).toContain('Run "tollgate usage --help" for usage.');
      expect(ran.stdout).toBe('');
    }
  });
});

describe('help', () => {
  it('behavior: --help of each command prints its help and exits 0; no action prints it and exits 2', async () => {
    for (const [command, help] of [
      [tenantsCommand, TENANTS_HELP],
      [keysCommand, KEYS_HELP],
      [usageCommand, USAGE_HELP],
    ] as const) {
      for (const flag of ['--help', '-h']) {
        const ran = await run(command, [flag]);
        expect(ran).toEqual({ code: 0, stdout: help, stderr: '' });
      }
    }
    expect(await run(tenantsCommand, [])).toEqual({ code: 2, stdout: TENANTS_HELP, stderr: '' });
    expect(await run(keysCommand, [])).toEqual({ code: 2, stdout: KEYS_HELP, stderr: '' });
    expect(TENANTS_HELP).toContain('tollgate tenants create NAME');
    expect(KEYS_HELP).toContain('tollgate keys rotate KEY_ID [--grace DURATION]');
    expect(USAGE_HELP).toContain('--group-by LIST');
  });
});

describe('the embedded database lock', () => {
  let holder: ChildProcess | undefined;

  afterEach(() => {
    if (holder && holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL');
    holder = undefined;
  });

  it('error: while another live process holds the data dir, a command exits 1 naming its pid and the ways out', async () => {
    const dataDir = join(data.path, 'locked');
    useDataDir(dataDir);
    holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    const pid = holder.pid!;
    expect(pid).toBeGreaterThan(0);
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(join(dataDir, 'db.pid'), `${pid}\n`);

    for (const [command, args] of [
      [tenantsCommand, ['create', 'blocked']],
      [keysCommand, ['issue', 'blocked']],
      [usageCommand, []],
    ] as const) {
      const ran = await run(command, [...args]);
      expect(ran.code, args.join(' ')).toBe(1);
      expect(ran.stdout).toBe('');
      expect(ran.stderr).toContain(`in use by process ${pid}`);
      expect(ran.stderr).toContain('This command cannot open it.');
      expect(ran.stderr).toContain('admin API');
      expect(ran.stderr).toContain('PostgreSQL (TOLLGATE_DATABASE_URL)');
    }
    // The holder's lock is left alone.
    expect(readFileSync(join(dataDir, 'db.pid'), 'utf8').trim()).toBe(String(pid));

    // Once that process is gone its lock is stale, and the commands work again.
    const exited = new Promise((done) => holder!.once('exit', done));
    holder.kill('SIGKILL');
    await exited;
    const after = await run(tenantsCommand, ['list', '--json']);
    expect(after.code, after.stderr).toBe(0);
    expect(JSON.parse(after.stdout)).toEqual({ object: 'list', data: [] });
  });
});
