import { createHash } from 'node:crypto';
import { isTollgateError } from '@tollgate/protocol';
import {
  createPgliteStore,
  createTenancy,
  type Tenancy,
  type TenancyStore,
} from '@tollgate/tenancy';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStaticKeyAccess, isLoopbackHost, resolveAccess } from './access.js';
import { isConfigError } from './config.js';

function request(headers: Record<string, string>): Request {
  return new Request('http://gateway.test/v1/models', { headers });
}

async function refusal(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    if (isTollgateError(error)) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('createStaticKeyAccess', () => {
  const access = createStaticKeyAccess(['key-one', 'key-two']);

  it('behavior: accepts each configured key; keyId is the first 8 hex digits of its SHA-256', async () => {
    const principal = await access.authenticate(request({ authorization: 'Bearer key-two' }));
    const keyId = createHash('sha256').update('key-two').digest('hex').slice(0, 8);
    expect(principal).toEqual({ id: `static:${keyId}`, kind: 'static-key', keyId });
    const viaHeader = await access.authenticate(request({ 'x-api-key': 'key-one' }));
    expect(viaHeader.kind).toBe('static-key');
    expect(viaHeader.keyId).not.toBe(keyId);
  });

  it('behavior: the Bearer scheme is case-insensitive', async () => {
    await expect(
      access.authenticate(request({ authorization: 'bearer key-one' })),
    ).resolves.toMatchObject({ kind: 'static-key' });
  });

  it('error: missing and wrong keys are 401 with distinct codes', async () => {
    expect((await refusal(access.authenticate(request({})))).code).toBe('missing_api_key');
    const wrong = await refusal(
      access.authenticate(request({ authorization: 'Bearer key-three' })),
    );
    expect(wrong.code).toBe('invalid_api_key');
    expect(wrong.status).toBe(401);
    expect(wrong.message).not.toContain('key-three');
    // A prefix of a real key is not a key.
    expect((await refusal(access.authenticate(request({ 'x-api-key': 'key-on' })))).code).toBe(
      'invalid_api_key',
    );
  });

  it('behavior: admit lets everything through with no headers', async () => {
    const principal = await access.authenticate(request({ authorization: 'Bearer key-one' }));
    const admission = await access.admit(principal, {
      operation: 'embeddings',
      model: 'm',
      body: { model: 'm', input: 'x' },
    });
    expect(admission.headers).toEqual({});
    await expect(
      admission.settle({ status: 'failed', httpStatus: 502, error: null }),
    ).resolves.toBeUndefined();
  });
});

describe('resolveAccess', () => {
  let store: TenancyStore;
  let tenancy: Tenancy;
  beforeAll(async () => {
    store = await createPgliteStore({});
    tenancy = createTenancy({ store, staticKeys: ['k'] });
  });
  afterAll(async () => {
    await tenancy.close();
    await store.close();
  });

  it('behavior: static keys or tenants mean keys required, on any host', async () => {
    for (const [apiKeys, tenantCount] of [
      [['k'], 0],
      [[], 3],
    ] as const) {
      const resolved = resolveAccess(
        { host: '0.0.0.0', apiKeys: [...apiKeys] },
        tenancy,
        tenantCount,
      );
      expect(resolved.mode).toBe('keys');
      expect(resolved.warning).toBeUndefined();
      expect((await refusal(resolved.access.authenticate(request({})))).code).toBe(
        'missing_api_key',
      );
    }
    const resolved = resolveAccess({ host: '0.0.0.0', apiKeys: ['k'] }, tenancy, 0);
    expect(
      await resolved.access.authenticate(request({ authorization: 'Bearer k' })),
    ).toMatchObject({ kind: 'static-key', id: expect.stringMatching(/^static:[0-9a-f]{8}$/) });
  });

  it('behavior: nothing to authenticate with on loopback runs open until the first tenant, with a warning saying how to make a key', async () => {
    const resolved = resolveAccess({ host: '127.0.0.1', apiKeys: [] }, tenancy, 0);
    expect(resolved.mode).toBe('open');
    expect(resolved.warning).toContain('tollgate keys issue');
    expect(await resolved.access.authenticate(request({}))).toMatchObject({ kind: 'anonymous' });
    // A presented key is still checked while open.
    expect(
      (await refusal(resolved.access.authenticate(request({ authorization: 'Bearer nope' })))).code,
    ).toBe('invalid_api_key');
    resolved.access.closeAnonymous();
    expect((await refusal(resolved.access.authenticate(request({})))).code).toBe('missing_api_key');
  });

  it('error: nothing to authenticate with on a non-loopback host refuses to start, saying what to do', () => {
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'gateway.example.com']) {
      let caught: unknown;
      try {
        resolveAccess({ host, apiKeys: [] }, tenancy, 0);
      } catch (error) {
        caught = error;
      }
      expect(isConfigError(caught), host).toBe(true);
      expect((caught as Error).message).toContain('tollgate tenants create');
      expect((caught as Error).message).toContain('TOLLGATE_API_KEYS');
    }
  });
});

describe('isLoopbackHost', () => {
  it('args: loopback forms', () => {
    for (const host of [
      '127.0.0.1',
      '127.1.2.3',
      'localhost',
      '::1',
      '[::1]',
      '::ffff:127.0.0.1',
    ]) {
      expect(isLoopbackHost(host), host).toBe(true);
    }
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1', '']) {
      expect(isLoopbackHost(host), host).toBe(false);
    }
  });
});
