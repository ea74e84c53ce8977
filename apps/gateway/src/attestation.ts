/**
 * `GET /v1/attestation`: evidence that binds the gateway's encryption keys to what it runs.
 *
 * user_data = SHA-256(the `application/ohttp-keys` bytes || the configured model hash); the
 * 64 bytes handed to the attestor are user_data || SHA-256(the caller's nonce), so a fresh
 * nonce proves the evidence was made for this request. Attestors:
 * - `none` (default): the route answers 404;
 * - `tsm`: a Linux configfs-tsm report (the kernel's common interface to TDX and SEV-SNP
 *   quotes): write the 64 bytes to `<report>/inblob`, read `outblob` (and `auxblob` when
 *   present) and `provider`;
 * - `stub`: for tests; it says plainly that it proves nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TollgateError } from '@tollgate/protocol';
import type { Hono } from 'hono';
import type { GatewayEnv } from './app.js';

/** What an attestor returns for 64 bytes of report data. */
export interface Evidence {
  /** e.g. `tdx_guest`, `sev_guest`, or `stub`. */
  provider: string;
  evidence: Uint8Array;
  auxiliary?: Uint8Array;
}

/** Makes evidence over 64 bytes of report data. */
export interface Attestor {
  readonly kind: 'tsm' | 'stub';
  attest(reportData: Uint8Array): Promise<Evidence>;
}

/** The root of configfs-tsm reports on Linux. */
export const TSM_REPORT_ROOT = '/sys/kernel/config/tsm/report';

/**
 * An attestor on Linux configfs-tsm. Each report gets a directory of its own under `root`
 * (removed afterwards); `generation` is read around the read of `outblob`, and a change means
 * another writer raced this one: the report is made again.
 */
export function createTsmAttestor(
  options: {
    /** @default '/sys/kernel/config/tsm/report' */
    root?: string;
    /** Names each report's directory. @default `tollgate-<16 random hex digits>` */
    reportName?: () => string;
  } = {},
): Attestor {
  const root = options.root ?? TSM_REPORT_ROOT;
  const reportName = options.reportName ?? (() => `tollgate-${randomBytes(8).toString('hex')}`);
  return {
    kind: 'tsm',
    async attest(reportData) {
      const dir = join(root, reportName());
      await mkdir(dir, { recursive: true });
      try {
        for (let attempt = 0; attempt < 3; attempt++) {
          await writeFile(join(dir, 'inblob'), reportData);
          const before = (await readFile(join(dir, 'generation'), 'utf8')).trim();
          const evidence = new Uint8Array(await readFile(join(dir, 'outblob')));
          const after = (await readFile(join(dir, 'generation'), 'utf8')).trim();
          if (before !== after) continue;
          const provider = (await readFile(join(dir, 'provider'), 'utf8')).trim();
          const auxiliary = await readFile(join(dir, 'auxblob')).then(
            (bytes) => new Uint8Array(bytes),
            () => undefined,
          );
          return { provider, evidence, ...(auxiliary?.length ? { auxiliary } : {}) };
        }
        throw new Error('the report kept changing while it was read (another writer)');
      } finally {
        await rmdir(dir).catch(() => {});
      }
    },
  };
}

/** An attestor for tests and demos: its "evidence" is the report data itself. */
export function createStubAttestor(): Attestor {
  return {
    kind: 'stub',
    async attest(reportData) {
      return { provider: 'stub', evidence: reportData.slice() };
    },
  };
}

function sha256(...parts: Uint8Array[]): Uint8Array {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return new Uint8Array(hash.digest());
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

/**
 * Adds `GET /v1/attestation?nonce=<hex, 8-64 bytes>` (no key, no payment).
 *
 * @param keyConfigs - the `application/ohttp-keys` bytes the evidence binds
 * @param modelHash - what the operator declares it serves (bytes, possibly empty)
 */
export function addAttestationRoute(
  app: Hono<GatewayEnv>,
  options: { attestor?: Attestor; keyConfigs: () => Uint8Array; modelHash?: Uint8Array },
): void {
  app.get('/v1/attestation', async (c) => {
    const { attestor } = options;
    if (!attestor) {
      throw new TollgateError(
        'route_not_found',
        'Attestation is off on this gateway (attestation.attestor is "none").',
      );
    }
    const nonceText = c.req.query('nonce') ?? '';
    if (!/^(?:[0-9a-fA-F]{2}){8,64}$/.test(nonceText)) {
      throw new TollgateError(
        'invalid_request',
        'nonce must be 8 to 64 random bytes in hex (fresh for each request: it proves the evidence is new).',
        { param: 'nonce' },
      );
    }
    const nonce = new Uint8Array(Buffer.from(nonceText, 'hex'));
    const keyConfigs = options.keyConfigs();
    const modelHash = options.modelHash ?? new Uint8Array(0);
    const userData = sha256(keyConfigs, modelHash);
    const reportData = new Uint8Array(64);
    reportData.set(userData, 0);
    reportData.set(sha256(nonce), 32);
    let evidence: Evidence;
    try {
      evidence = await attestor.attest(reportData);
    } catch (error) {
      throw new TollgateError(
        'service_unavailable',
        `No attestation evidence could be made (${(error as Error).message}).`,
        { cause: error },
      );
    }
    return c.json({
      attestor: attestor.kind,
      ...(attestor.kind === 'stub'
        ? {
            warning:
              'The stub attestor proves nothing: its evidence is the report data itself, signed by no hardware. Use it for tests only.',
          }
        : {}),
      provider: evidence.provider,
      evidence: Buffer.from(evidence.evidence).toString('base64'),
      ...(evidence.auxiliary
        ? { auxiliary: Buffer.from(evidence.auxiliary).toString('base64') }
        : {}),
      report_data: hex(reportData),
      user_data: hex(userData),
      nonce: hex(nonce),
      key_configs: Buffer.from(keyConfigs).toString('base64'),
      model_hash: hex(modelHash),
    });
  });
}
