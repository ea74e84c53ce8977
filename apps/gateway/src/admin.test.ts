import type { Router } from '@tollgate/backends';
import {
  createPgliteStore,
  createTenancy,
  type Tenancy,
  type TenancyStore,
  type Tenant,
} from '@tollgate/tenancy';
import type { Hono } from 'hono';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createStaticKeyAccess } from './access.js';
import {
  createAdminApp,
  type KeyJson,
  parseTimeBound,
  type TenantJson,
  usageCsv,
} from './admin.js';
import { createApp, type GatewayEnv } from './app.js';
import { captureLogger } from './test-helpers.js';

// Opening the in-memory PGlite store takes seconds on a loaded machine.
const OPEN_TIMEOUT_MS = 60_000;

const ADMIN_KEY = 'admin-key-4f9c2a7e1b3d5f60';
const WRONG_KEY = 'wrong-admin-key-d41d8cd98f00b204';
const BASE_TIME = Date.parse('2026-03-10T12:00:00.000Z');
const PRICED_MODEL = 'usage-m1';

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}
type TenantBody = TenantJson;
type KeyBody = KeyJson;
interface ListBody<T> {
  object: 'list';
  data: T[];
}
interface UsageBody extends ListBody<Record<string, unknown>> {
  totals: Record<string, number>;
}
interface AuditBody {
  id: string;
  at: string;
  actor: string;
  action: string;
  target: string | null;
  result: string;
  status: number | null;
  method: string | null;
  path: string | null;
  remote_address: string | null;
  request_id: string | null;
  detail: Record<string, unknown> | null;
}

let clock = BASE_TIME;
const iso = (ms: number) => new Date(ms).toISOString();

let store: TenancyStore;
let tenancy: Tenancy;
let app: Hono<GatewayEnv>;
let log: ReturnType<typeof captureLogger>;
const createdCallbacks: Tenant[] = [];
/** Every key issued or rotated in this file: none may ever show up where it should not. */
const secrets: string[] = [];

function stubRouter(): Router {
  return {
    async dispatch() {
      throw new Error('the admin tests never dispatch');
    },
    async ensureModel() {
      throw new Error('the admin tests never dispatch');
    },
    async listModels() {
      return [];
    },
    queues() {
      return [];
    },
    cutStreams() {
      return 0;
    },
    status() {
      return [];
    },
    async refresh() {},
    start() {},
    async close() {},
  };
}

function gatewayApp(admin?: Hono<GatewayEnv>) {
  return createApp({
    config: { limits: { maxBodyBytes: 64 * 1024 }, cors: { origins: [] } },
    router: stubRouter(),
    access: createStaticKeyAccess(['inference-key-not-used-here']),
    logger: log.logger,
    ...(admin ? { admin } : {}),
  });
}

beforeAll(async () => {
  store = await createPgliteStore({});
  tenancy = createTenancy({
    store,
    now: () => clock,
    prices: { [PRICED_MODEL]: { input: 1000, output: 2000 } },
  });
  log = captureLogger();
  app = gatewayApp(
    createAdminApp({
      tenancy,
      adminKey: ADMIN_KEY,
      now: () => clock,
      onTenantCreated: (tenant) => createdCallbacks.push(tenant),
    }),
  );
}, OPEN_TIMEOUT_MS);

afterAll(async () => {
  await tenancy?.close();
  await store?.close();
});

beforeEach(() => {
  clock = BASE_TIME;
});

afterEach(() => {
  // A 500 is a bug in the admin API: every answer here is checked below 500 and none may log one.
  expect(log.lines.filter((line) => line.msg === 'unhandled error')).toEqual([]);
});

interface SendOptions {
  /** A value sent as JSON. */
  body?: unknown;
  /** A body sent as it is. */
  raw?: string;
  /** The bearer key; null sends no authorization header. @default ADMIN_KEY */
  key?: string | null;
  requestId?: string;
  target?: Hono<GatewayEnv>;
}

async function send<T = unknown>(method: string, path: string, options: SendOptions = {}) {
  const headers: Record<string, string> = {};
  if (options.key !== null) headers.authorization = `Bearer ${options.key ?? ADMIN_KEY}`;
  if (options.requestId !== undefined) headers['x-request-id'] = options.requestId;
  const body =
    options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await (options.target ?? app).request(`http://gateway.test${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body } : {}),
  });
  expect(response.status, `${method} ${path}`).toBeLessThan(500);
  const text = await response.text();
  const json = (response.headers.get('content-type') ?? '').includes('application/json')
    ? (JSON.parse(text) as T)
    : (undefined as T);
  return { status: response.status, headers: response.headers, text, body: json };
}

/** Asserts the OpenAI error envelope, exactly; `param` undefined accepts any param. */
function expectError(
  result: { status: number; body: unknown },
  status: number,
  code: string,
  param?: string | null,
  label?: string,
): ErrorBody['error'] {
  expect(result.status, label).toBe(status);
  const { error } = result.body as ErrorBody;
  expect(Object.keys(error).sort(), label).toEqual(['code', 'message', 'param', 'type']);
  expect(error, label).toMatchObject({
    message: expect.any(String),
    type: expect.any(String),
    code,
  });
  if (param !== undefined) expect(error.param, label).toBe(param);
  expect(error.message.length).toBeGreaterThan(10);
  return error;
}

let nameCounter = 0;
const uniqueName = (base: string) => `${base}-${++nameCounter}`;

async function createTenant(name = uniqueName('tenant'), limits?: Record<string, unknown>) {
  const result = await send<TenantBody>('POST', '/admin/tenants', {
    body: { name, ...(limits ? { limits } : {}) },
  });
  expect(result.status).toBe(201);
  return result.body;
}

async function issueKey(tenant: string, body: Record<string, unknown> = {}) {
  const result = await send<KeyBody>('POST', `/admin/tenants/${tenant}/keys`, { body });
  expect(result.status).toBe(201);
  secrets.push(result.body.key!);
  return result.body;
}

async function auditEntries(query: string) {
  const result = await send<ListBody<AuditBody>>('GET', `/admin/audit?${query}`);
  expect(result.status).toBe(200);
  expect(result.body.object).toBe('list');
  return result.body.data;
}

const TENANT_ID = /^tn_[a-z2-7]{16}$/;
const KEY_ID = /^[a-z2-7]{16}$/;

describe('admin API: authentication', () => {
  it('error: no admin key is a 401 envelope with a hint, carrying the request id', async () => {
    for (const authorization of [null, '']) {
      const result = await send('GET', '/admin/tenants', {
        key: authorization,
        requestId: 'no-key-request',
      });
      const error = expectError(result, 401, 'missing_api_key', null);
      expect(error.type).toBe('authentication_error');
      expect(error.message).toContain('TOLLGATE_ADMIN_KEY');
      expect(result.headers.get('x-request-id')).toBe('no-key-request');
    }
  });

  it('error: a wrong admin key is a 401 that never echoes the key, and is audited without it', async () => {
    const result = await send('POST', '/admin/tenants', {
      key: WRONG_KEY,
      requestId: 'wrong-admin-key-request',
      body: { name: uniqueName('never-made') },
    });
    expectError(result, 401, 'invalid_api_key', null);
    expect(result.text).not.toContain(WRONG_KEY);
    expect(result.text).not.toContain(ADMIN_KEY);
    expect(result.headers.get('x-request-id')).toBe('wrong-admin-key-request');

    const entries = (await auditEntries('action=admin.auth')).filter(
      (entry) => entry.request_id === 'wrong-admin-key-request',
    );
    expect(entries).toEqual([
      {
        id: expect.stringMatching(/^au_/),
        at: iso(BASE_TIME),
        actor: 'unknown',
        action: 'admin.auth',
        target: null,
        result: 'denied',
        status: 401,
        method: 'POST',
        path: '/admin/tenants',
        remote_address: null,
        request_id: 'wrong-admin-key-request',
        detail: null,
      },
    ]);
    expect(JSON.stringify(entries)).not.toContain(WRONG_KEY);
    // The refused request changed nothing.
    const list = await send<ListBody<TenantBody>>('GET', '/admin/tenants');
    expect(list.text).not.toContain('never-made');
  });

  it('behavior: the admin key is accepted as a bearer token in any letter case of "Bearer"', async () => {
    for (const scheme of ['Bearer', 'bearer', 'BEARER']) {
      const response = await app.request('http://gateway.test/admin/tenants', {
        headers: { authorization: `${scheme} ${ADMIN_KEY}` },
      });
      expect(response.status, scheme).toBe(200);
    }
  });

  it('error: an unknown route under /admin is the gateway 404, not a 500', async () => {
    const result = await send('GET', '/admin/nothing-here', { requestId: 'unknown-route' });
    expectError(result, 404, 'route_not_found', null);
    expect(result.headers.get('x-request-id')).toBe('unknown-route');
  });
});

describe('admin API: tenants', () => {
  it('behavior: POST /admin/tenants creates a tenant with every limit of the spec and answers 201 with its JSON', async () => {
    const name = uniqueName('acme');
    const limits = {
      requests_per_minute: 60,
      tokens_per_minute: 100000,
      max_concurrent: 4,
      models: ['llama3*'],
      budget: { period: 'day', tokens: 1000000, spend_usd: 5 },
    };
    const result = await send<TenantBody>('POST', '/admin/tenants', {
      body: { name, limits },
      requestId: 'create-acme',
    });
    expect(result.status).toBe(201);
    expect(result.headers.get('x-request-id')).toBe('create-acme');
    expect(result.body).toEqual({
      id: expect.stringMatching(TENANT_ID),
      object: 'tenant',
      name,
      limits,
      created_at: iso(BASE_TIME),
      updated_at: iso(BASE_TIME),
    });
    expect(createdCallbacks.map((tenant) => tenant.id)).toContain(result.body.id);
  });

  it('behavior: every limit is optional; without limits a tenant is unlimited ({})', async () => {
    const tenant = await createTenant();
    expect(tenant.limits).toEqual({});
    const nulled = await send<TenantBody>('POST', '/admin/tenants', {
      body: { name: uniqueName('nulled'), limits: { requests_per_minute: null } },
    });
    expect(nulled.status).toBe(201);
    expect(nulled.body.limits).toEqual({});
  });

  it('behavior: GET /admin/tenants lists them; GET one answers the same JSON by id and by name', async () => {
    const first = await createTenant(uniqueName('listed'), { requests_per_minute: 5 });
    const second = await createTenant(uniqueName('listed'));
    const list = await send<ListBody<TenantBody>>('GET', '/admin/tenants');
    expect(list.status).toBe(200);
    expect(list.body.object).toBe('list');
    expect(list.body.data).toEqual(expect.arrayContaining([first, second]));

    const byId = await send<TenantBody>('GET', `/admin/tenants/${first.id}`);
    const byName = await send<TenantBody>('GET', `/admin/tenants/${first.name}`);
    expect(byId.status).toBe(200);
    expect(byId.body).toEqual(first);
    expect(byName.status).toBe(200);
    expect(byName.body).toEqual(first);
  });

  it('behavior: PATCH replaces only the limits given, null clears one, and a new name is kept', async () => {
    const tenant = await createTenant(uniqueName('patched'), {
      requests_per_minute: 60,
      tokens_per_minute: 1000,
      models: ['a*'],
    });
    clock = BASE_TIME + 5000;
    const result = await send<TenantBody>('PATCH', `/admin/tenants/${tenant.id}`, {
      body: { limits: { requests_per_minute: null, tokens_per_minute: 2000, max_concurrent: 2 } },
    });
    expect(result.status).toBe(200);
    expect(result.body).toEqual({
      ...tenant,
      limits: { tokens_per_minute: 2000, max_concurrent: 2, models: ['a*'] },
      updated_at: iso(BASE_TIME + 5000),
    });

    const renamed = uniqueName('renamed');
    const byName = await send<TenantBody>('PATCH', `/admin/tenants/${tenant.name}`, {
      body: { name: renamed, limits: { budget: { period: 'month', spend_usd: 2.5 } } },
    });
    expect(byName.status).toBe(200);
    expect(byName.body.name).toBe(renamed);
    expect(byName.body.limits).toEqual({
      tokens_per_minute: 2000,
      max_concurrent: 2,
      models: ['a*'],
      budget: { period: 'month', spend_usd: 2.5 },
    });
    expect((await send<TenantBody>('GET', `/admin/tenants/${renamed}`)).body.id).toBe(tenant.id);
    expectError(await send('GET', `/admin/tenants/${tenant.name}`), 404, 'not_found', 'tenant');
  });

  it('behavior: DELETE removes the tenant and its keys', async () => {
    const tenant = await createTenant();
    const key = await issueKey(tenant.id);
    const result = await send('DELETE', `/admin/tenants/${tenant.name}`);
    expect(result.status).toBe(200);
    expect(result.body).toEqual({ id: tenant.id, object: 'tenant.deleted', deleted: true });
    expectError(await send('GET', `/admin/tenants/${tenant.id}`), 404, 'not_found', 'tenant');
    expectError(await send('GET', `/admin/tenants/${tenant.id}/keys`), 404, 'not_found', 'tenant');
    expectError(await send('POST', `/admin/keys/${key.id}/revoke`), 404, 'not_found', 'key');
    await expect(tenancy.authenticate(key.key)).rejects.toMatchObject({ code: 'invalid_api_key' });
    expectError(await send('DELETE', `/admin/tenants/${tenant.id}`), 404, 'not_found', 'tenant');
  });

  it('error: a duplicate name is 409 conflict, on create and on rename', async () => {
    const taken = await createTenant();
    const other = await createTenant();
    expectError(
      await send('POST', '/admin/tenants', { body: { name: taken.name } }),
      409,
      'conflict',
      'name',
    );
    expectError(
      await send('PATCH', `/admin/tenants/${other.id}`, { body: { name: taken.name } }),
      409,
      'conflict',
      'name',
    );
  });

  it('error: unknown tenants are 404 not_found on every tenant route', async () => {
    for (const id of ['tn_aaaaaaaaaaaaaaaa', 'nobody-by-that-name']) {
      expectError(await send('GET', `/admin/tenants/${id}`), 404, 'not_found', 'tenant');
      expectError(
        await send('PATCH', `/admin/tenants/${id}`, { body: { limits: {} } }),
        404,
        'not_found',
        'tenant',
      );
      expectError(await send('DELETE', `/admin/tenants/${id}`), 404, 'not_found', 'tenant');
      expectError(
        await send('POST', `/admin/tenants/${id}/keys`, { body: {} }),
        404,
        'not_found',
        'tenant',
      );
      expectError(await send('GET', `/admin/tenants/${id}/keys`), 404, 'not_found', 'tenant');
    }
  });

  it('error: malformed JSON is 400 invalid_json; a body that is not an object is 400', async () => {
    for (const [method, path] of [
      ['POST', '/admin/tenants'],
      ['PATCH', '/admin/tenants/whoever'],
      ['POST', '/admin/tenants/whoever/keys'],
      ['POST', '/admin/keys/whatever/rotate'],
      ['POST', '/admin/keys/whatever/revoke'],
    ] as const) {
      expectError(await send(method, path, { raw: '{"name": ' }), 400, 'invalid_json', null);
      expectError(await send(method, path, { raw: '["a"]' }), 400, 'invalid_request');
    }
  });

  it('error: an unknown body field is 400 naming it in param', async () => {
    const tenant = await createTenant();
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/admin/tenants', { name: uniqueName('typo'), limit: {} }, 'limit'],
      ['PATCH', `/admin/tenants/${tenant.id}`, { limitz: {} }, 'limitz'],
      ['POST', `/admin/tenants/${tenant.id}/keys`, { name: 'ci', expires: null }, 'expires'],
      ['POST', '/admin/keys/whatever/rotate', { grace: 60 }, 'grace'],
      ['POST', '/admin/keys/whatever/revoke', { reason: 'x' }, 'reason'],
    ];
    for (const [method, path, body, param] of cases) {
      const error = expectError(await send(method, path, { body }), 400, 'invalid_request', param);
      expect(error.message).toContain(param);
    }
  });

  it('error: invalid limits are 400 naming the limit, and nothing is created', async () => {
    const tenant = await createTenant();
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ tokens_per_minute: 0 }, 'limits.tokens_per_minute'],
      [{ requests_per_minute: 1.5 }, 'limits.requests_per_minute'],
      [{ max_concurrent: 'four' }, 'limits.max_concurrent'],
      [{ models: ['has space'] }, 'limits.models[0]'],
      [{ budget: { period: 'week', tokens: 5 } }, 'limits.budget'],
      [{ budget: { period: 'day' } }, 'limits.budget'],
      // An unknown limit is refused (a typo must never mean "unlimited"), named in param.
      [{ rpm: 5 }, 'limits.rpm'],
    ];
    for (const [limits, param] of cases) {
      const name = uniqueName('bad-limits');
      const created = await send('POST', '/admin/tenants', { body: { name, limits } });
      const error = expectError(created, 400, 'invalid_request');
      for (const field of Object.keys(limits)) expect(error.message).toContain(field);
      expect(error.param, JSON.stringify(limits)).toMatch(
        new RegExp(`^${param.replace(/[.[\]]/g, '\\$&')}`),
      );
      expectError(await send('GET', `/admin/tenants/${name}`), 404, 'not_found', 'tenant');
      const patched = await send('PATCH', `/admin/tenants/${tenant.id}`, { body: { limits } });
      expect((expectError(patched, 400, 'invalid_request').param ?? '').startsWith(param)).toBe(
        true,
      );
    }
    expect((await send<TenantBody>('GET', `/admin/tenants/${tenant.id}`)).body.limits).toEqual({});
  });

  it('error: a missing or invalid tenant name is 400 naming name', async () => {
    for (const body of [{}, { name: '' }, { name: 'has space' }, { name: 7 }, { name: 'tn_x' }]) {
      expectError(await send('POST', '/admin/tenants', { body }), 400, 'invalid_request', 'name');
    }
  });
});

describe('admin API: keys', () => {
  it('behavior: POST .../keys issues a key whose secret appears only in that answer', async () => {
    const tenant = await createTenant();
    const key = await issueKey(tenant.id, { name: 'ci', expires_at: null });
    expect(key).toEqual({
      id: expect.stringMatching(KEY_ID),
      object: 'api_key',
      key: expect.stringMatching(/^tg_[a-z2-7]{16}_[A-Za-z0-9_-]{43}$/),
      tenant_id: tenant.id,
      name: 'ci',
      state: 'active',
      created_at: iso(BASE_TIME),
      expires_at: null,
      revoked_at: null,
      replaced_by: null,
    });
    expect(key.key!.startsWith(`tg_${key.id}_`)).toBe(true);
    expect(await tenancy.authenticate(key.key)).toMatchObject({
      tenantId: tenant.id,
      keyId: key.id,
    });

    // By tenant name, with the default name and an expiry given with an offset. Later, so
    // that the list's order (by creation time) is known.
    clock = BASE_TIME + 1000;
    const named = await issueKey(tenant.name, { expires_at: '2026-03-11T12:00:00+02:00' });
    expect(named).toMatchObject({ name: 'default', expires_at: '2026-03-11T10:00:00.000Z' });

    const list = await send<ListBody<KeyBody>>('GET', `/admin/tenants/${tenant.name}/keys`);
    expect(list.status).toBe(200);
    expect(list.body.object).toBe('list');
    const { key: _secret, ...withoutSecret } = key;
    expect(list.body.data).toEqual([withoutSecret, expect.objectContaining({ id: named.id })]);
    for (const entry of list.body.data) expect(entry).not.toHaveProperty('key');
    for (const secret of [key.key!, named.key!]) {
      expect(list.text).not.toContain(secret);
      expect(list.text).not.toContain(secret.slice(`tg_${key.id}_`.length));
    }
  });

  it('error: an expiry in the past or not an ISO time is 400 naming expires_at; a bad key name 400 naming name', async () => {
    const tenant = await createTenant();
    for (const expires_at of ['2020-01-01T00:00:00Z', 'tomorrow', '2026-03-11', 12]) {
      expectError(
        await send('POST', `/admin/tenants/${tenant.id}/keys`, { body: { expires_at } }),
        400,
        'invalid_request',
        'expires_at',
      );
    }
    for (const name of ['', 'x'.repeat(65), 'semi;colon', 5]) {
      expectError(
        await send('POST', `/admin/tenants/${tenant.id}/keys`, { body: { name } }),
        400,
        'invalid_request',
        'name',
      );
    }
    expect(
      (await send<ListBody<KeyBody>>('GET', `/admin/tenants/${tenant.id}/keys`)).body.data,
    ).toEqual([]);
  });

  it('behavior: rotate answers 201 with a new key; the old one is rotating until now + grace, then refused', async () => {
    const tenant = await createTenant();
    const old = await issueKey(tenant.id, { name: 'ci' });
    clock = BASE_TIME + 1000;
    const result = await send<KeyBody>('POST', `/admin/keys/${old.id}/rotate`, {
      body: { grace_seconds: 600 },
    });
    expect(result.status).toBe(201);
    secrets.push(result.body.key!);
    const { previous, ...fresh } = result.body;
    expect(fresh).toEqual({
      id: expect.stringMatching(KEY_ID),
      object: 'api_key',
      key: expect.stringMatching(/^tg_[a-z2-7]{16}_[A-Za-z0-9_-]{43}$/),
      tenant_id: tenant.id,
      name: 'ci',
      state: 'active',
      created_at: iso(BASE_TIME + 1000),
      expires_at: null,
      revoked_at: null,
      replaced_by: null,
    });
    expect(fresh.id).not.toBe(old.id);
    expect(previous).toEqual({
      id: old.id,
      object: 'api_key',
      tenant_id: tenant.id,
      name: 'ci',
      state: 'rotating',
      created_at: iso(BASE_TIME),
      expires_at: iso(BASE_TIME + 1000 + 600_000),
      revoked_at: null,
      replaced_by: fresh.id,
    });
    expect(JSON.stringify(previous)).not.toContain(old.key!);

    // Both work during the grace period; after it only the new one does.
    expect(await tenancy.authenticate(old.key)).toMatchObject({ keyId: old.id });
    expect(await tenancy.authenticate(fresh.key)).toMatchObject({ keyId: fresh.id });
    clock = BASE_TIME + 1000 + 600_000;
    await expect(tenancy.authenticate(old.key)).rejects.toMatchObject({ code: 'invalid_api_key' });
    expect(await tenancy.authenticate(fresh.key)).toMatchObject({ keyId: fresh.id });
    const list = await send<ListBody<KeyBody>>('GET', `/admin/tenants/${tenant.id}/keys`);
    expect(list.body.data.map((key) => [key.id, key.state])).toEqual([
      [old.id, 'expired'],
      [fresh.id, 'active'],
    ]);
    expect(list.text).not.toContain(fresh.key!);
  });

  it('behavior: rotate without a body keeps the old key for one hour; a rotated key cannot be rotated again', async () => {
    const tenant = await createTenant();
    const old = await issueKey(tenant.id);
    const result = await send<KeyBody>('POST', `/admin/keys/${old.id}/rotate`);
    expect(result.status).toBe(201);
    secrets.push(result.body.key!);
    expect(result.body.previous?.expires_at).toBe(iso(BASE_TIME + 3_600_000));
    expectError(
      await send('POST', `/admin/keys/${old.id}/rotate`, { body: {} }),
      409,
      'conflict',
      null,
    );
  });

  it('error: rotate with a bad grace is 400 naming grace_seconds; unknown keys are 404 not_found', async () => {
    const tenant = await createTenant();
    const key = await issueKey(tenant.id);
    for (const grace_seconds of [-1, 1.5, 31 * 86_400, '60']) {
      expectError(
        await send('POST', `/admin/keys/${key.id}/rotate`, { body: { grace_seconds } }),
        400,
        'invalid_request',
        'grace_seconds',
      );
    }
    expectError(
      await send('POST', '/admin/keys/aaaaaaaaaaaaaaaa/rotate', { body: { grace_seconds: 5 } }),
      404,
      'not_found',
      'key',
    );
    expectError(await send('POST', '/admin/keys/aaaaaaaaaaaaaaaa/revoke'), 404, 'not_found', 'key');
    // The failed rotations left the key as it was.
    const list = await send<ListBody<KeyBody>>('GET', `/admin/tenants/${tenant.id}/keys`);
    expect(list.body.data).toEqual([expect.objectContaining({ id: key.id, state: 'active' })]);
  });

  it('behavior: revoke answers the revoked key, refuses it from then on, and is idempotent', async () => {
    const tenant = await createTenant();
    const key = await issueKey(tenant.id);
    clock = BASE_TIME + 2000;
    const result = await send<KeyBody>('POST', `/admin/keys/${key.id}/revoke`);
    expect(result.status).toBe(200);
    const { key: _secret, ...view } = key;
    expect(result.body).toEqual({ ...view, state: 'revoked', revoked_at: iso(BASE_TIME + 2000) });
    await expect(tenancy.authenticate(key.key)).rejects.toMatchObject({ code: 'invalid_api_key' });

    clock = BASE_TIME + 9000;
    const again = await send<KeyBody>('POST', `/admin/keys/${key.id}/revoke`, { body: {} });
    expect(again.status).toBe(200);
    expect(again.body.revoked_at).toBe(iso(BASE_TIME + 2000));
    expectError(await send('POST', `/admin/keys/${key.id}/rotate`), 409, 'conflict', null);
  });
});

describe('admin API: usage', () => {
  const DAY1 = Date.parse('2025-01-01T10:00:00.000Z');
  const DAY2 = Date.parse('2025-01-02T10:00:00.000Z');
  const ODD_MODEL = 'odd,"model"';
  const WINDOW = 'since=2025-01-01&until=2025-01-03';
  let a: Tenant;
  let b: Tenant;

  beforeAll(async () => {
    const actor = { actor: 'test' };
    a = await tenancy.createTenant({ name: uniqueName('usage-a') }, actor);
    b = await tenancy.createTenant({ name: uniqueName('usage-b') }, actor);
    const callers = {
      a: await tenancy.authenticate((await tenancy.issueKey(a.id, {}, actor)).key),
      b: await tenancy.authenticate((await tenancy.issueKey(b.id, {}, actor)).key),
    };
    const serve = async (
      who: 'a' | 'b',
      model: string,
      at: number,
      usage?: { prompt_tokens: number; completion_tokens: number },
    ) => {
      clock = at;
      const admission = await tenancy.admit(callers[who], {
        operation: 'chat.completions',
        model,
        body: { model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 16 },
        requestId: `usage-${who}-${model}-${at}`,
      });
      await admission.settle(
        usage
          ? { status: 'completed', httpStatus: 200, usage }
          : { status: 'failed', httpStatus: 502 },
      );
    };
    // Costs with PRICED_MODEL at $1000/$2000 per million tokens: 20000, 60000, 80000 µUSD.
    await serve('a', PRICED_MODEL, DAY1, { prompt_tokens: 10, completion_tokens: 5 });
    await serve('a', 'usage-m2', DAY1, { prompt_tokens: 20, completion_tokens: 10 });
    await serve('a', PRICED_MODEL, DAY2, { prompt_tokens: 30, completion_tokens: 15 });
    await serve('b', PRICED_MODEL, DAY2, { prompt_tokens: 40, completion_tokens: 20 });
    // Failed with no usage from upstream: recorded as estimated, nothing delivered.
    await serve('b', ODD_MODEL, DAY2);
    await tenancy.flush();
  });

  const sums = (
    requests: number,
    prompt: number,
    completion: number,
    cost: number,
    estimated = 0,
  ) => ({
    requests,
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    cost_usd: cost,
    estimated_requests: estimated,
  });

  async function usage(query: string) {
    const result = await send<UsageBody>('GET', `/admin/usage?${query}`);
    expect(result.status, query).toBe(200);
    expect(result.body.object).toBe('list');
    return result.body;
  }

  it('behavior: group_by=tenant gives one row per tenant with the sums, and totals', async () => {
    const body = await usage(`${WINDOW}&group_by=tenant`);
    const expected = [
      { tenant_id: a.id, ...sums(3, 60, 30, 0.08) },
      { tenant_id: b.id, ...sums(2, 40, 20, 0.08, 1) },
    ].sort((left, right) => (left.tenant_id < right.tenant_id ? -1 : 1));
    expect(body.data).toEqual(expected);
    expect(body.totals).toEqual(sums(5, 100, 50, 0.16, 1));
  });

  it('behavior: group_by=model and group_by=day, with tenant by name or by id', async () => {
    expect((await usage(`tenant=${a.name}&group_by=model`)).data).toEqual([
      { model: PRICED_MODEL, ...sums(2, 40, 20, 0.08) },
      { model: 'usage-m2', ...sums(1, 20, 10, 0) },
    ]);
    const byDay = await usage(`tenant=${a.id}&group_by=day`);
    expect(byDay.data).toEqual([
      { day: '2025-01-01', ...sums(2, 30, 15, 0.02) },
      { day: '2025-01-02', ...sums(1, 30, 15, 0.06) },
    ]);
    expect(byDay.totals).toEqual(sums(3, 60, 30, 0.08));
  });

  it('behavior: without group_by one row of sums with no grouping keys; model filters', async () => {
    const body = await usage(`${WINDOW}&model=${PRICED_MODEL}`);
    expect(body.data).toEqual([sums(3, 80, 40, 0.16)]);
    expect(body.totals).toEqual(sums(3, 80, 40, 0.16));
    const none = await usage(`${WINDOW}&model=no-such-model&group_by=model`);
    expect(none.data).toEqual([]);
    expect(none.totals).toEqual(sums(0, 0, 0, 0));
  });

  it('behavior: group_by combines keys in the comma form and the repeated form, in the order given', async () => {
    const comma = await usage(`tenant=${b.name}&group_by=tenant,model`);
    expect(comma.data).toEqual([
      { tenant_id: b.id, model: ODD_MODEL, ...sums(1, 0, 0, 0, 1) },
      { tenant_id: b.id, model: PRICED_MODEL, ...sums(1, 40, 20, 0.08) },
    ]);
    const repeated = await usage(`tenant=${a.name}&group_by=day&group_by=model`);
    expect(repeated.data).toEqual([
      { day: '2025-01-01', model: PRICED_MODEL, ...sums(1, 10, 5, 0.02) },
      { day: '2025-01-01', model: 'usage-m2', ...sums(1, 20, 10, 0) },
      { day: '2025-01-02', model: PRICED_MODEL, ...sums(1, 30, 15, 0.06) },
    ]);
    const all = await usage(`${WINDOW}&group_by=tenant, model ,day`);
    expect(all.data).toHaveLength(5);
    for (const row of all.data) {
      expect(Object.keys(row).slice(0, 3)).toEqual(['tenant_id', 'model', 'day']);
    }
  });

  it('behavior: since is inclusive and until exclusive, as ISO dates, times or durations back from now', async () => {
    expect((await usage('since=2025-01-01&until=2025-01-02T10:00:00Z')).totals).toEqual(
      sums(2, 30, 15, 0.02),
    );
    expect((await usage('since=2025-01-02T10:00:00.000Z&until=2025-01-03')).totals).toEqual(
      sums(3, 70, 35, 0.14, 1),
    );
    clock = Date.parse('2025-01-02T12:00:00.000Z');
    // 1d back from now is 2025-01-01T12:00Z: only the second day's requests.
    expect((await usage('since=1d&until=2025-01-03')).totals.requests).toBe(3);
    expect((await usage('since=30h&until=2025-01-03')).totals.requests).toBe(5);
    expect((await usage('since=2w&until=3h')).totals.requests).toBe(2);
    expect((await usage('since=1440m&until=2025-01-03')).totals.requests).toBe(3);
  });

  it('behavior: format=csv has a header row, the same columns and RFC 4180 quoting', async () => {
    const result = await send('GET', `/admin/usage?tenant=${b.name}&group_by=model&format=csv`);
    expect(result.status).toBe(200);
    expect(result.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(result.text).toBe(
      [
        'model,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd,estimated_requests',
        '"odd,""model""",1,0,0,0,0,1',
        `${PRICED_MODEL},1,40,20,60,0.08,0`,
        '',
      ].join('\r\n'),
    );
    const grouped = await send('GET', `/admin/usage?${WINDOW}&group_by=tenant,day&format=csv`);
    const lines = grouped.text.split('\r\n');
    expect(lines[0]).toBe(
      'tenant_id,day,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd,estimated_requests',
    );
    expect(lines.filter(Boolean)).toHaveLength(4);
    expect(lines).toContain(`${a.id},2025-01-02,1,30,15,45,0.06,0`);
    const json = await usage(`${WINDOW}&format=json&group_by=tenant,day`);
    expect(json.data).toHaveLength(3);
    const ungrouped = await send('GET', `/admin/usage?${WINDOW}&format=csv`);
    expect(ungrouped.text).toBe(
      'requests,prompt_tokens,completion_tokens,total_tokens,cost_usd,estimated_requests\r\n5,100,50,150,0.16,1\r\n',
    );
  });

  it('error: a bad since, until, group_by or format, or an unknown query parameter, is 400 naming it', async () => {
    const cases: Array<[string, string]> = [
      ['since=yesterday', 'since'],
      ['since=2025-02-30', 'since'],
      ['since=7x', 'since'],
      ['until=2025-13-01', 'until'],
      ['group_by=week', 'group_by'],
      ['group_by=tenant,week', 'group_by'],
      ['format=xml', 'format'],
      ['tenant_id=x', 'tenant_id'],
      ['groupBy=tenant', 'groupBy'],
    ];
    for (const [query, param] of cases) {
      const error = expectError(
        await send('GET', `/admin/usage?${query}`),
        400,
        'invalid_request',
        param,
        query,
      );
      expect(error.message, query).toContain(param);
    }
  });
});

describe('admin API: audit', () => {
  it('behavior: every admin action leaves an entry with actor "admin", its target, method, path and request id', async () => {
    const name = uniqueName('audited');
    const created = await send<TenantBody>('POST', '/admin/tenants', {
      body: { name },
      requestId: 'audit-create',
    });
    const tenant = created.body;
    await send('PATCH', `/admin/tenants/${tenant.id}`, {
      body: { limits: { requests_per_minute: 5 } },
      requestId: 'audit-update',
    });
    const issued = await send<KeyBody>('POST', `/admin/tenants/${tenant.id}/keys`, {
      body: { name: 'ci' },
      requestId: 'audit-issue',
    });
    secrets.push(issued.body.key!);
    const rotated = await send<KeyBody>('POST', `/admin/keys/${issued.body.id}/rotate`, {
      body: { grace_seconds: 60 },
      requestId: 'audit-rotate',
    });
    secrets.push(rotated.body.key!);
    await send('POST', `/admin/keys/${rotated.body.id}/revoke`, { requestId: 'audit-revoke' });
    await send('DELETE', `/admin/tenants/${tenant.id}`, { requestId: 'audit-delete' });

    const expected: Array<[string, string, string, string, string]> = [
      ['tenant.create', tenant.id, 'POST', '/admin/tenants', 'audit-create'],
      ['tenant.update', tenant.id, 'PATCH', `/admin/tenants/${tenant.id}`, 'audit-update'],
      ['key.issue', issued.body.id, 'POST', `/admin/tenants/${tenant.id}/keys`, 'audit-issue'],
      [
        'key.rotate',
        issued.body.id,
        'POST',
        `/admin/keys/${issued.body.id}/rotate`,
        'audit-rotate',
      ],
      [
        'key.revoke',
        rotated.body.id,
        'POST',
        `/admin/keys/${rotated.body.id}/revoke`,
        'audit-revoke',
      ],
      ['tenant.delete', tenant.id, 'DELETE', `/admin/tenants/${tenant.id}`, 'audit-delete'],
    ];
    for (const [action, target, method, path, requestId] of expected) {
      const entries = await auditEntries(`action=${action}&target=${target}`);
      expect(entries, action).toEqual([
        {
          id: expect.stringMatching(/^au_[a-z2-7]{16}$/),
          at: iso(BASE_TIME),
          actor: 'admin',
          action,
          target,
          result: 'ok',
          status: null,
          method,
          path,
          remote_address: null,
          request_id: requestId,
          detail: expect.anything(),
        },
      ]);
    }
    const update = await auditEntries(`action=tenant.update&target=${tenant.id}`);
    expect(update[0]!.detail).toEqual({ limits: ['requests_per_minute'] });
  });

  it('behavior: actor, action, target, since, until and limit filter; newest first', async () => {
    const tenant = await createTenant();
    clock = BASE_TIME + 60_000;
    await send('PATCH', `/admin/tenants/${tenant.id}`, { body: { limits: { max_concurrent: 1 } } });
    clock = BASE_TIME + 120_000;
    await send('PATCH', `/admin/tenants/${tenant.id}`, { body: { limits: { max_concurrent: 2 } } });

    const all = await auditEntries(`target=${tenant.id}`);
    expect(all.map((entry) => [entry.action, entry.at])).toEqual([
      ['tenant.update', iso(BASE_TIME + 120_000)],
      ['tenant.update', iso(BASE_TIME + 60_000)],
      ['tenant.create', iso(BASE_TIME)],
    ]);
    expect(await auditEntries(`target=${tenant.id}&action=tenant.create`)).toHaveLength(1);
    expect(await auditEntries(`target=${tenant.id}&actor=admin`)).toHaveLength(3);
    expect(await auditEntries(`target=${tenant.id}&actor=cli`)).toEqual([]);
    expect(await auditEntries('actor=nobody-at-all')).toEqual([]);
    expect(
      (await auditEntries(`target=${tenant.id}&since=${iso(BASE_TIME + 60_000)}`)).map(
        (entry) => entry.at,
      ),
    ).toEqual([iso(BASE_TIME + 120_000), iso(BASE_TIME + 60_000)]);
    expect(
      (await auditEntries(`target=${tenant.id}&until=${iso(BASE_TIME + 60_000)}`)).map(
        (entry) => entry.action,
      ),
    ).toEqual(['tenant.create']);
    // 1m back from the clock (BASE_TIME + 120s) includes the entry at exactly BASE_TIME + 60s.
    expect(await auditEntries(`target=${tenant.id}&since=1m`)).toHaveLength(2);
    expect(await auditEntries(`target=${tenant.id}&limit=1`)).toEqual([all[0]]);
  });

  it('error: a bad limit, since or until, or an unknown query parameter, is 400 naming it', async () => {
    const cases: Array<[string, string]> = [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['limit=2.5', 'limit'],
      ['limit=ten', 'limit'],
      ['since=last-week', 'since'],
      ['until=2025-04-31', 'until'],
      ['tenant=x', 'tenant'],
    ];
    for (const [query, param] of cases) {
      expectError(await send('GET', `/admin/audit?${query}`), 400, 'invalid_request', param, query);
    }
  });

  it('behavior: no secret ever reaches the audit log: not keys, not the admin key, not a wrong key', async () => {
    const tenant = await createTenant();
    const key = await issueKey(tenant.id);
    const rotated = await send<KeyBody>('POST', `/admin/keys/${key.id}/rotate`);
    secrets.push(rotated.body.key!);
    await send('GET', '/admin/tenants', { key: `${WRONG_KEY}-2` });
    await send('GET', '/admin/tenants', { key: key.key! });

    const result = await send('GET', '/admin/audit?limit=1000');
    expect(result.status).toBe(200);
    expect(secrets.length).toBeGreaterThanOrEqual(2);
    for (const secret of secrets) {
      expect(result.text).not.toContain(secret);
      // The secret part alone, too.
      expect(result.text).not.toContain(secret.split('_').slice(2).join('_'));
    }
    expect(result.text).not.toContain(ADMIN_KEY);
    expect(result.text).not.toContain(WRONG_KEY);
    // The two refused requests above are there, without what they presented.
    expect(
      (result.body as ListBody<AuditBody>).data.filter((entry) => entry.action === 'admin.auth')
        .length,
    ).toBeGreaterThanOrEqual(2);
  });
});

describe('admin API: off', () => {
  it('error: without an admin app, /admin answers 404 with a hint about TOLLGATE_ADMIN_KEY', async () => {
    const off = gatewayApp();
    for (const [method, path] of [
      ['GET', '/admin/tenants'],
      ['POST', '/admin/tenants'],
      ['GET', '/admin/usage'],
    ] as const) {
      const result = await send(method, path, {
        target: off,
        requestId: 'admin-off',
        ...(method === 'POST' ? { body: { name: 'x' } } : {}),
      });
      const error = expectError(result, 404, 'route_not_found', null);
      expect(error.message).toContain('TOLLGATE_ADMIN_KEY');
      expect(result.headers.get('x-request-id')).toBe('admin-off');
    }
  });
});

describe('admin helpers', () => {
  it('args: times without an offset are UTC, like bare dates', () => {
    expect(parseTimeBound('2026-11-01T10:00:00', 'since').toISOString()).toBe(
      '2026-11-01T10:00:00.000Z',
    );
    expect(parseTimeBound('2026-11-01', 'since').toISOString()).toBe('2026-11-01T00:00:00.000Z');
    expect(parseTimeBound('2026-11-01T10:00:00+02:00', 'since').toISOString()).toBe(
      '2026-11-01T08:00:00.000Z',
    );
  });

  it('error: a bound before the year 1 (or no date at all) is an invalid_request on its param', () => {
    for (const value of ['99999999999999999999d', '1000000w', '0000-12-31']) {
      expect(() => parseTimeBound(value, 'since')).toThrow(
        expect.objectContaining({ code: 'invalid_request', param: 'since' }),
      );
    }
    expect(parseTimeBound('0001-01-01', 'since').toISOString()).toBe('0001-01-01T00:00:00.000Z');
  });

  it('behavior: CSV cells a spreadsheet would run as formulas are defused', () => {
    const csv = usageCsv(
      [
        {
          model: '=HYPERLINK("http://x")',
          requests: 1,
          promptTokens: 1,
          completionTokens: 1,
          totalTokens: 2,
          costMicroUsd: 0,
          estimatedRequests: 0,
        },
      ],
      ['model'],
    );
    expect(csv.split('\r\n')[1]).toBe(`"'=HYPERLINK(""http://x"")",1,1,1,2,0,0`);
  });
});
