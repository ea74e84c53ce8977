import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createKeySet,
  decapsulateRequest,
  decodeKeyConfigs,
  encapsulateRequest,
  generateP256KeyPair,
  importOhttpKey,
  obolDecrypt,
  obolEncrypt,
  p256PublicKeyFromHex,
  p256PublicKeyToHex,
} from '@tollgate/ecies';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Output } from './cli-admin.js';
import { encryptionCommand } from './cli-encryption.js';
import { isConfigError, loadConfig } from './config.js';
import { keySetPath, loadOrCreateKeySet, rotateKeySetFile } from './encryption.js';
import { startGateway } from './server.js';
import { captureLogger, runCli, startTestGateway, tempDataDir, testStore } from './test-helpers.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  vi.unstubAllEnvs();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function dataDir(): string {
  const dir = tempDataDir();
  cleanups.push(dir.cleanup);
  return dir.path;
}

describe('the key set file', () => {
  it('behavior: made on first use with mode 0600, then read back unchanged', () => {
    const dir = dataDir();
    const first = loadOrCreateKeySet(dir);
    expect(first.created).toBe(true);
    expect(statSync(keySetPath(dir)).mode & 0o777).toBe(0o600);
    const second = loadOrCreateKeySet(dir);
    expect(second.created).toBe(false);
    expect(second.set).toEqual(first.set);
  });

  it('behavior: rotation is saved, the previous key kept for the grace period', () => {
    const dir = dataDir();
    const now = Date.parse('2026-11-23T10:00:00Z');
    loadOrCreateKeySet(dir, now);
    const rotated = rotateKeySetFile(dir, { graceMs: 3_600_000, now: now + 1000 });
    expect(rotated.keys.map((key) => key.id)).toEqual([2, 1]);
    expect(loadOrCreateKeySet(dir).set).toEqual(rotated);
  });

  it('error: a damaged file is a configuration error saying what to do, never silently replaced', () => {
    const dir = dataDir();
    writeFileSync(keySetPath(dir), '{"version": 1, "keys": []}');
    let caught: unknown;
    try {
      loadOrCreateKeySet(dir);
    } catch (error) {
      caught = error;
    }
    expect(isConfigError(caught)).toBe(true);
    expect((caught as Error).message).toContain('encryption-keys.json');
    expect((caught as Error).message).toContain('backup');
  });
});

describe('GET /v1/enclave/pubkey', { timeout: 60_000 }, () => {
  it('behavior: a started gateway makes its keys and serves the P-256 public key, without auth', async () => {
    const dir = dataDir();
    const gateway = await startGateway(
      loadConfig({ env: {}, argv: { port: 0 }, values: { data_dir: dir, api_keys: ['k'] } }),
      { logger: captureLogger().logger, store: await testStore() },
    );
    cleanups.push(() => gateway.close());
    const response = await fetch(`${gateway.url}/v1/enclave/pubkey`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toEqual({
      pubkey: expect.stringMatching(/^04[0-9a-f]{128}$/),
      tag: 'k1',
      persistent: true,
      algorithm: 'ECIES-P256-HKDF-SHA256-AES256GCM',
    });
    // What a client encrypts to that key, the key in the data dir opens.
    const { set } = loadOrCreateKeySet(dir);
    const sealed = obolEncrypt(
      p256PublicKeyFromHex(body.pubkey as string),
      new TextEncoder().encode('hello'),
    );
    expect(new TextDecoder().decode(obolDecrypt(set.keys[0]!.privateKey, sealed))).toBe('hello');
    expect((await fetch(`${gateway.url}/v1/enclave/pubkey`, { method: 'POST' })).status).toBe(405);

    // The same key as an Oblivious HTTP key configuration, which a client can encrypt to.
    const configs = await fetch(`${gateway.url}/.well-known/ohttp-gateway`);
    expect(configs.status).toBe(200);
    expect(configs.headers.get('content-type')).toBe('application/ohttp-keys');
    const [config] = decodeKeyConfigs(new Uint8Array(await configs.arrayBuffer()));
    expect(config).toMatchObject({ keyId: 1, kemId: 0x0010 });
    expect(config!.publicKey).toEqual(set.keys[0]!.publicKey);
    const { encapsulatedRequest } = encapsulateRequest(config!, new TextEncoder().encode('x'));
    const opened = decapsulateRequest(
      importOhttpKey({ keyId: 1, kemId: 0x0010, privateKey: set.keys[0]!.privateKey }),
      encapsulatedRequest,
    );
    expect(new TextDecoder().decode(opened.request)).toBe('x');
  });

  it('error: with only X25519 keys there is no Obol key to publish: 404 saying how to get one', async () => {
    const dir = dataDir();
    writeFileSync(
      keySetPath(dir),
      (await import('@tollgate/ecies')).serializeKeySet(createKeySet({ kem: 0x0020 })),
      { mode: 0o600 },
    );
    const gateway = await startGateway(
      loadConfig({ env: {}, argv: { port: 0 }, values: { data_dir: dir, api_keys: ['k'] } }),
      { logger: captureLogger().logger, store: await testStore() },
    );
    cleanups.push(() => gateway.close());
    const response = await fetch(`${gateway.url}/v1/enclave/pubkey`);
    expect(response.status).toBe(404);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('not_found');
    expect(body.error.message).toContain('--kem p256');
  });
});

async function run(args: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const io: Output = { out: (text) => stdout.push(text), err: (text) => stderr.push(text) };
  const code = await encryptionCommand(args, io);
  return { code, stdout: stdout.join(''), stderr: stderr.join('') };
}

describe('tollgate encryption', () => {
  function useDataDir(dir: string) {
    for (const name of Object.keys(process.env)) {
      if (name.startsWith('TOLLGATE_')) vi.stubEnv(name, undefined);
    }
    const config = join(dir, 'empty.yaml');
    writeFileSync(config, '');
    vi.stubEnv('TOLLGATE_DATA_DIR', dir);
    vi.stubEnv('TOLLGATE_CONFIG', config);
  }

  it('behavior: show lists the public keys (never the private ones); rotate adds a current key', async () => {
    const dir = dataDir();
    useDataDir(dir);
    const shown = await run(['show', '--json']);
    expect(shown.code, shown.stderr).toBe(0);
    const { keys } = JSON.parse(shown.stdout) as { keys: Array<Record<string, unknown>> };
    expect(keys).toEqual([
      expect.objectContaining({
        id: 1,
        kem: 'p256',
        state: 'current',
        obol: true,
        retires_at: null,
      }),
    ]);
    const privateHex = Buffer.from(loadOrCreateKeySet(dir).set.keys[0]!.privateKey).toString('hex');
    expect(shown.stdout).not.toContain(privateHex);

    const rotated = await run(['rotate', '--grace', '1h', '--kem', 'x25519']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/^ID\s+KEM\s+STATE/);
    expect(rotated.stderr).toContain('SIGHUP');
    const after = JSON.parse((await run(['show', '--json'])).stdout) as {
      keys: Array<Record<string, unknown>>;
    };
    expect(after.keys.map((key) => [key.id, key.kem, key.state, key.obol])).toEqual([
      [2, 'x25519', 'current', false],
      [1, 'p256', 'retiring', true],
    ]);
  });

  it('error: wrong usage exits 2 with a hint; --help exits 0', async () => {
    useDataDir(dataDir());
    expect((await run(['spin'])).code).toBe(2);
    expect((await run(['rotate', '--grace', 'soon'])).code).toBe(2);
    expect((await run(['rotate', '--kem', 'rsa'])).stderr).toContain(
      '--kem must be p256 or x25519',
    );
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('tollgate encryption rotate');
  });
});

describe('Obol-encrypted requests', { timeout: 60_000 }, () => {
  const PROMPT = [{ role: 'user', content: 'Say hello please' }];

  async function gatewayWith(values: Record<string, unknown> = {}) {
    const { gateway, upstream } = await startTestGateway(
      { values: { api_keys: ['k'], ...values } },
      (cleanup) => cleanups.push(cleanup),
    );
    const { pubkey } = (await (await fetch(`${gateway.url}/v1/enclave/pubkey`)).json()) as {
      pubkey: string;
    };
    return { gateway, upstream, gatewayKey: p256PublicKeyFromHex(pubkey) };
  }

  function post(url: string, body: BodyInit, headers: Record<string, string> = {}) {
    return fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: 'Bearer k',
        'content-type': 'application/x-obol-encrypted',
        ...headers,
      },
      body,
    });
  }

  const seal = (key: Uint8Array, value: unknown) =>
    obolEncrypt(key, new TextEncoder().encode(JSON.stringify(value))) as Uint8Array<ArrayBuffer>;

  it('behavior: an encrypted body is served like JSON; with a reply key the answer comes back encrypted to it', async () => {
    const { gateway, gatewayKey } = await gatewayWith();
    const plain = await post(
      gateway.url,
      seal(gatewayKey, { model: 'fake-model', messages: PROMPT }),
    );
    expect(plain.status).toBe(200);
    expect(((await plain.json()) as { object: string }).object).toBe('chat.completion');

    const client = generateP256KeyPair();
    const sealed = await post(
      gateway.url,
      seal(gatewayKey, { model: 'fake-model', messages: PROMPT }),
      { 'x-obol-reply-pubkey': p256PublicKeyToHex(client.publicKey) },
    );
    expect(sealed.status).toBe(200);
    expect(sealed.headers.get('content-type')).toBe('application/x-obol-encrypted');
    const answer = JSON.parse(
      new TextDecoder().decode(
        obolDecrypt(client.privateKey, new Uint8Array(await sealed.arrayBuffer())),
      ),
    ) as { choices: Array<{ message: { content: string } }> };
    expect(answer.choices[0]!.message.content).toBe('Hello from the fake upstream.');
  });

  it('behavior: a streamed answer to a reply key is the whole event stream, sealed once', async () => {
    const { gateway, gatewayKey } = await gatewayWith();
    const client = generateP256KeyPair();
    const response = await post(
      gateway.url,
      seal(gatewayKey, { model: 'fake-model', messages: PROMPT, stream: true }),
      { 'x-obol-reply-pubkey': p256PublicKeyToHex(client.publicKey) },
    );
    expect(response.status).toBe(200);
    const text = new TextDecoder().decode(
      obolDecrypt(client.privateKey, new Uint8Array(await response.arrayBuffer())),
    );
    expect(text).toContain('data: ');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('error: a tampered, truncated or foreign body is a 400 decryption_failed, never a 500; a bad reply key is a 400 before any upstream call', async () => {
    const { gateway, gatewayKey, upstream } = await gatewayWith();
    const good = seal(gatewayKey, { model: 'fake-model', messages: PROMPT });
    const tampered = good.slice();
    tampered[tampered.length - 1]! ^= 1;
    const foreign = seal(generateP256KeyPair().publicKey, {
      model: 'fake-model',
      messages: PROMPT,
    });
    for (const body of [
      tampered,
      good.slice(0, 50),
      foreign,
      new Uint8Array([2, ...good.slice(1)]),
    ]) {
      const response = await post(gateway.url, body);
      expect(response.status).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
        'decryption_failed',
      );
    }
    const badKey = await post(gateway.url, good, { 'x-obol-reply-pubkey': 'abc' });
    expect(badKey.status).toBe(400);
    expect(((await badKey.json()) as { error: { param: string } }).error.param).toBe(
      'x-obol-reply-pubkey',
    );
    expect(upstream.requests.filter((request) => request.method === 'POST')).toHaveLength(0);
  });

  it('behavior: with encryption.required, plaintext inference is refused with 415 and encrypted requests are served', async () => {
    const { gateway, gatewayKey } = await gatewayWith({ encryption: { required: true } });
    const plaintext = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake-model', messages: PROMPT }),
    });
    expect(plaintext.status).toBe(415);
    expect(((await plaintext.json()) as { error: { message: string } }).error.message).toContain(
      'application/x-obol-encrypted',
    );
    const encrypted = await post(
      gateway.url,
      seal(gatewayKey, { model: 'fake-model', messages: PROMPT }),
    );
    expect(encrypted.status).toBe(200);
  });
});

describe('SIGHUP', () => {
  it('behavior: a running gateway serves rotated keys after SIGHUP; a damaged file is refused and the keys in use stay', async () => {
    const dir = dataDir();
    const run = runCli(
      ['serve', '--port', '0'],
      {
        cwd: dir,
        env: { TOLLGATE_DATA_DIR: dir, TOLLGATE_API_KEYS: 'k', TOLLGATE_LOG_LEVEL: 'info' },
      },
      (cleanup) => cleanups.push(async () => cleanup()),
    );
    const [, url] = await run.waitForStderr(/listening on (http:\/\/\S+) /, 60_000);
    const tag = async () =>
      ((await (await fetch(`${url}/v1/enclave/pubkey`)).json()) as { tag: string }).tag;
    expect(await tag()).toBe('k1');

    rotateKeySetFile(dir, { graceMs: 3_600_000 });
    // Not before the signal: the file is read at start and on SIGHUP only.
    expect(await tag()).toBe('k1');
    run.child.kill('SIGHUP');
    await vi.waitFor(async () => expect(await tag()).toBe('k2'), { timeout: 10_000 });
    expect(run.stdout()).toMatch(/"msg":"encryption keys reloaded"/);

    writeFileSync(keySetPath(dir), '{"not": "a key set"}');
    run.child.kill('SIGHUP');
    await run.waitForStderr(
      /SIGHUP: encryption keys not reloaded: .*encryption-keys\.json/,
      10_000,
    );
    expect(await tag()).toBe('k2');
    run.child.kill('SIGTERM');
    expect(await run.exit).toBe(0);
  }, 90_000);
});
