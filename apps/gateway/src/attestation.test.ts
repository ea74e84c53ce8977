import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createTsmAttestor } from './attestation.js';
import { loadConfig } from './config.js';
import { loadOrCreateKeySet, ohttpKeyConfigs } from './encryption.js';
import { startGateway } from './server.js';
import { captureLogger, tempDataDir, testStore } from './test-helpers.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function directory(): string {
  const dir = tempDataDir();
  cleanups.push(dir.cleanup);
  return dir.path;
}

/**
 * A stand-in for /sys/kernel/config/tsm/report: configfs fills a new report directory with
 * its attribute files and makes outblob from inblob; here the report directory is made ahead
 * (the attestor is told its name; its mkdir is recursive) with a provider, a generation and a
 * fixed quote, and the test reads back what the attestor wrote to inblob.
 */
function fakeConfigfs(reportName: string, files: Record<string, string>): string {
  const root = directory();
  const report = join(root, reportName);
  mkdirSync(report, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(report, name), content);
  return root;
}

const sha256 = (...parts: Uint8Array[]) => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};

describe('the tsm attestor', () => {
  it('behavior: against a prepared report directory, every attribute is read and inblob holds the report data', async () => {
    const name = 'tollgate-fixed';
    const root = fakeConfigfs(name, {
      generation: '3\n',
      outblob: 'QUOTE-BYTES',
      auxblob: 'CERT-CHAIN',
      provider: 'sev_guest\n',
    });
    const attestor = createTsmAttestor({ root, reportName: () => name });
    const reportData = new Uint8Array(64).fill(0xab);
    const evidence = await attestor.attest(reportData);
    expect(evidence.provider).toBe('sev_guest');
    expect(Buffer.from(evidence.evidence).toString()).toBe('QUOTE-BYTES');
    expect(Buffer.from(evidence.auxiliary!).toString()).toBe('CERT-CHAIN');
    expect(new Uint8Array(readFileSync(join(root, name, 'inblob')))).toEqual(reportData);
  });

  it('error: a tree without the report attributes (no TSM on this machine) rejects', async () => {
    const attestor = createTsmAttestor({ root: directory() });
    await expect(attestor.attest(new Uint8Array(64))).rejects.toThrow();
  });
});

describe('GET /v1/attestation', { timeout: 60_000 }, () => {
  async function gatewayWith(attestation: Record<string, unknown>) {
    const dir = directory();
    const gateway = await startGateway(
      loadConfig({
        env: {},
        argv: { port: 0 },
        values: { data_dir: dir, api_keys: ['k'], attestation },
      }),
      { logger: captureLogger().logger, store: await testStore() },
    );
    cleanups.push(() => gateway.close());
    return { gateway, dir };
  }

  it('error: the tsm attestor on a machine without configfs-tsm is a 503 saying why', async () => {
    const { gateway } = await gatewayWith({ attestor: 'tsm', tsm_root: directory() });
    const response = await fetch(`${gateway.url}/v1/attestation?nonce=${'01'.repeat(16)}`);
    expect(response.status).toBe(503);
    const body = (await response.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('service_unavailable');
    expect(body.error.message).toContain('No attestation evidence could be made');
  });

  it('behavior: the stub attestor says it proves nothing, and its report data binds keys, model hash and nonce', async () => {
    const modelHash = 'cd'.repeat(32);
    const { gateway, dir } = await gatewayWith({ attestor: 'stub', model_hash: modelHash });
    const nonce = '02'.repeat(16);
    const response = await fetch(`${gateway.url}/v1/attestation?nonce=${nonce}`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, string>;
    expect(body.attestor).toBe('stub');
    expect(body.warning).toContain('proves nothing');
    const keyConfigs = ohttpKeyConfigs(loadOrCreateKeySet(dir).set);
    const userData = sha256(keyConfigs, Buffer.from(modelHash, 'hex'));
    expect(body.user_data).toBe(userData.toString('hex'));
    expect(body.report_data).toBe(
      Buffer.concat([userData, sha256(Buffer.from(nonce, 'hex'))]).toString('hex'),
    );
    expect(Buffer.from(body.key_configs!, 'base64')).toEqual(Buffer.from(keyConfigs));
    expect(Buffer.from(body.evidence!, 'base64').toString('hex')).toBe(body.report_data);
  });

  it('error: off by default (404), and a missing or short nonce is a 400 naming nonce', async () => {
    const off = await gatewayWith({});
    expect((await fetch(`${off.gateway.url}/v1/attestation?nonce=${'00'.repeat(16)}`)).status).toBe(
      404,
    );
    const on = await gatewayWith({ attestor: 'stub' });
    for (const query of [
      '',
      '?nonce=abc',
      `?nonce=${'00'.repeat(4)}`,
      `?nonce=${'zz'.repeat(16)}`,
    ]) {
      const response = await fetch(`${on.gateway.url}/v1/attestation${query}`);
      expect(response.status, query).toBe(400);
      expect(((await response.json()) as { error: { param: string } }).error.param).toBe('nonce');
    }
  });
});
