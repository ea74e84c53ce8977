/**
 * The gateway's encryption keys: a key set kept in the data dir (`encryption-keys.json`, mode
 * 0600), made on first start, rotated by `tollgate encryption rotate`; and the routes that
 * publish the public half.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  activeKeys,
  createKeySet,
  type EncryptionKey,
  encodeKeyConfigs,
  importOhttpKey,
  isEciesError,
  type KeySet,
  obolDecrypt,
  obolEncrypt,
  ohttpKeyConfig,
  p256PublicKeyFromHex,
  p256PublicKeyToHex,
  parseKeySet,
  rotateKeySet,
  serializeKeySet,
} from '@tollgate/ecies';
import { TollgateError } from '@tollgate/protocol';
import type { Hono } from 'hono';
import type { GatewayEnv } from './app.js';
import { concatBytes } from './bytes.js';
import { ConfigError } from './config.js';
import { ensureDataDir } from './data-dir.js';

/** The key set file in a data dir. */
export function keySetPath(dataDir: string): string {
  return join(dataDir, 'encryption-keys.json');
}

/** Writes the file whole or not at all (a crash mid-write must not lose the keys). */
function writeKeySet(path: string, set: KeySet): void {
  const temporary = `${path}.${randomUUID()}.tmp`;
  writeFileSync(temporary, serializeKeySet(set), { mode: 0o600 });
  renameSync(temporary, path);
}

/**
 * Reads the key set of a data dir, creating it (one P-256 key) when there is none.
 *
 * @throws {ConfigError} when the file exists but cannot be read as a key set.
 */
export function loadOrCreateKeySet(
  dataDir: string,
  now = Date.now(),
): { set: KeySet; created: boolean } {
  const path = keySetPath(dataDir);
  if (!existsSync(path)) {
    ensureDataDir(dataDir);
    const set = createKeySet({ now });
    writeKeySet(path, set);
    return { set, created: true };
  }
  try {
    return { set: parseKeySet(readFileSync(path, 'utf8')), created: false };
  } catch (error) {
    const reason = isEciesError(error) ? error.message : (error as Error).message;
    throw new ConfigError([
      `${path}: ${reason} Restore it from a backup, or move it away to have new keys made (clients then fetch the new public keys).`,
    ]);
  }
}

/** Rotates the key set of a data dir and saves it; the old current key is kept for `graceMs`. */
export function rotateKeySetFile(
  dataDir: string,
  options: { graceMs: number; kem?: number; now?: number },
): KeySet {
  const now = options.now ?? Date.now();
  const { set } = loadOrCreateKeySet(dataDir, now);
  const rotated = rotateKeySet(set, {
    now,
    graceMs: options.graceMs,
    ...(options.kem !== undefined ? { kem: options.kem } : {}),
  });
  writeKeySet(keySetPath(dataDir), rotated);
  return rotated;
}

/** The P-256 key the Obol format publishes: the newest active one. */
export function obolKey(set: KeySet, now = Date.now()): EncryptionKey | undefined {
  return activeKeys(set, now).find((key) => key.kem === 0x0010);
}

/** Algorithm name of the Obol format, as the Go gateway publishes it. */
export const OBOL_ALGORITHM = 'ECIES-P256-HKDF-SHA256-AES256GCM';

/**
 * The Oblivious HTTP key configurations (RFC 9458 section 3) of the keys still accepted,
 * current first, in the `application/ohttp-keys` encoding.
 */
export function ohttpKeyConfigs(set: KeySet, now = Date.now()): Uint8Array {
  return encodeKeyConfigs(
    activeKeys(set, now).map((key) =>
      ohttpKeyConfig(importOhttpKey({ keyId: key.id, kemId: key.kem, privateKey: key.privateKey })),
    ),
  );
}

/**
 * Adds the routes that publish the public keys (no auth, no payment):
 * `GET /v1/enclave/pubkey` for the Obol format, `GET /.well-known/ohttp-gateway` for Oblivious
 * HTTP (RFC 9540's well-known name).
 */
export function addEncryptionRoutes(
  app: Hono<GatewayEnv>,
  keys: () => KeySet,
  now: () => number = Date.now,
): void {
  app.get('/v1/enclave/pubkey', (c) => {
    const key = obolKey(keys(), now());
    if (!key) {
      throw new TollgateError(
        'not_found',
        'This gateway has no P-256 key for the Obol format (its keys are X25519). Rotate to a P-256 key: tollgate encryption rotate --kem p256.',
      );
    }
    return c.json({
      pubkey: p256PublicKeyToHex(key.publicKey),
      tag: `k${key.id}`,
      persistent: true,
      algorithm: OBOL_ALGORITHM,
    });
  });

  app.get('/.well-known/ohttp-gateway', (c) =>
    c.body(ohttpKeyConfigs(keys(), now()) as Uint8Array<ArrayBuffer>, 200, {
      'content-type': 'application/ohttp-keys',
      // Clients may keep it a while; a rotation keeps the old key accepted for its grace period.
      'cache-control': 'public, max-age=3600',
    }),
  );
}

/** The media type of Obol-encrypted bodies. */
export const OBOL_MEDIA_TYPE = 'application/x-obol-encrypted';

/** Whether a Content-Type names the Obol format (exact media type, any case, parameters ignored). */
export function isObolMediaType(contentType: string | undefined | null): boolean {
  if (!contentType) return false;
  return contentType.split(';')[0]!.trim().toLowerCase() === OBOL_MEDIA_TYPE;
}

/**
 * Opens an Obol-encrypted request body with the accepted P-256 keys (the format names no key:
 * the current one is tried first).
 *
 * @throws {TollgateError} `decryption_failed` (400) saying what was wrong, never how far it got.
 */
export function openObolBody(body: Uint8Array, set: KeySet, now = Date.now()): Uint8Array {
  const keys = activeKeys(set, now).filter((key) => key.kem === 0x0010);
  let failure: unknown;
  for (const key of keys) {
    try {
      return obolDecrypt(key.privateKey, body);
    } catch (error) {
      failure = error;
      // Only a failed tag can mean "another key": a malformed message is malformed for all.
      if (!isEciesError(error) || error.code !== 'decryption_failed') break;
    }
  }
  const code = isEciesError(failure) ? failure.code : 'decryption_failed';
  const reasons: Record<string, string> = {
    ciphertext_too_short: 'it is shorter than the 94 bytes of the smallest Obol message',
    unsupported_version: 'its first byte is not the format version 0x01',
    invalid_public_key: 'its ephemeral public key is not a valid P-256 point',
    decryption_failed:
      "it was not encrypted to this gateway's current key (GET /v1/enclave/pubkey), or it was altered",
  };
  throw new TollgateError(
    'decryption_failed',
    `The ${OBOL_MEDIA_TYPE} body could not be decrypted: ${reasons[code] ?? code}.`,
    { cause: failure },
  );
}

/**
 * Reads `X-Obol-Reply-Pubkey`: the caller's P-256 public key (130 hex characters) to encrypt
 * the answer to; undefined when absent.
 *
 * @throws {TollgateError} `invalid_request` (400, param `x-obol-reply-pubkey`) when malformed.
 */
export function parseReplyKey(header: string | undefined | null): Uint8Array | undefined {
  if (header === undefined || header === null || header.trim() === '') return undefined;
  try {
    return p256PublicKeyFromHex(header.trim());
  } catch (error) {
    throw new TollgateError(
      'invalid_request',
      'X-Obol-Reply-Pubkey must be a P-256 public key: 130 hex characters, uncompressed (04...).',
      { param: 'x-obol-reply-pubkey', cause: error },
    );
  }
}

/** The largest answer encrypted whole for a reply key (streams are buffered in this format). */
export const MAX_OBOL_REPLY_BYTES = 8 * 1024 * 1024;

/**
 * Encrypts a whole answer to the caller's reply key: same status, the body as one Obol
 * message, `Content-Type: application/x-obol-encrypted`. A streamed answer is read to its end
 * first (the format has no chunks); one larger than {@link MAX_OBOL_REPLY_BYTES} is refused.
 */
export async function sealObolReply(response: Response, replyKey: Uint8Array): Promise<Response> {
  const headers = new Headers(response.headers);
  headers.delete('content-length');
  headers.delete('transfer-encoding');
  headers.set('content-type', OBOL_MEDIA_TYPE);
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (response.body) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_OBOL_REPLY_BYTES) {
        await reader.cancel();
        throw new TollgateError(
          'invalid_request',
          `The answer is larger than the ${MAX_OBOL_REPLY_BYTES / 1024 / 1024} MiB an encrypted reply may hold in the Obol format; use Oblivious HTTP for long streams.`,
          { status: 413 },
        );
      }
      chunks.push(value);
    }
  }
  const sealed = obolEncrypt(replyKey, concatBytes(chunks, size));
  return new Response(sealed as Uint8Array<ArrayBuffer>, { status: response.status, headers });
}
