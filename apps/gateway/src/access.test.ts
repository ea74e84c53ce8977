import { createHash } from 'node:crypto';
import { isTollgateError } from '@tollgate/protocol';
import { describe, expect, it } from 'vitest';
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
    expect(principal).toEqual({ id: `key:${keyId}`, kind: 'static-key', keyId });
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
  it('behavior: keys configured means keys required, on any host', async () => {
    const resolved = resolveAccess({ host: '0.0.0.0', apiKeys: ['k'] });
    expect(resolved.mode).toBe('keys');
    expect(resolved.warning).toBeUndefined();
    expect((await refusal(resolved.access.authenticate(request({})))).code).toBe('missing_api_key');
  });

  it('behavior: no keys on loopback runs open, with a loud warning', async () => {
    const resolved = resolveAccess({ host: '127.0.0.1', apiKeys: [] });
    expect(resolved.mode).toBe('open');
    expect(resolved.warning).toContain('TOLLGATE_API_KEYS');
    expect(await resolved.access.authenticate(request({}))).toMatchObject({ kind: 'anonymous' });
  });

  it('error: no keys on a non-loopback host refuses to start, saying what to set', () => {
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'gateway.example.com']) {
      let caught: unknown;
      try {
        resolveAccess({ host, apiKeys: [] });
      } catch (error) {
        caught = error;
      }
      expect(isConfigError(caught), host).toBe(true);
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
