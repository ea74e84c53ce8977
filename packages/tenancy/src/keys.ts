/**
 * API keys and ids. An issued key reads `tg_<public id>_<secret>`: the public id names the key
 * in logs, usage and the admin API; the secret (32 random bytes, base64url) is shown once and
 * only its SHA-256 is stored.
 */
import { hash, randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto';

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';
const KEY_PATTERN = /^tg_([a-z2-7]{16})_([A-Za-z0-9_-]{43})$/;

/** Bytes of randomness in a key's secret. */
export const SECRET_BYTES = 32;

/** 10 bytes as 16 lowercase base32 characters (RFC 4648 alphabet, no padding). */
function base32(bytes: Uint8Array): string {
  let out = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return out;
}

/**
 * A random id with a type prefix: `<prefix>_` and 16 base32 characters (80 bits).
 *
 * @example
 * ```ts
 * createId('tn'); // 'tn_k3j5mq2x7a4b6c8d'
 * ```
 */
export function createId(prefix: string): string {
  return `${prefix}_${base32(randomId())}`;
}

// Ids are made per request: 10 bytes cut from a pool refilled 410 ids at a time cost far less
// than a call into the system's random source each.
const ID_POOL = Buffer.alloc(4100);
let idOffset = ID_POOL.length;

function randomId(): Uint8Array {
  if (idOffset + 10 > ID_POOL.length) {
    randomFillSync(ID_POOL);
    idOffset = 0;
  }
  const bytes = ID_POOL.subarray(idOffset, idOffset + 10);
  idOffset += 10;
  return bytes;
}

/** SHA-256 of a secret, 32 bytes. */
export function hashSecret(secret: string): Uint8Array {
  return hash('sha256', secret, 'buffer');
}

/** A freshly generated key. `key` is the only place the secret appears. */
export interface GeneratedKey {
  /** The public id (16 base32 characters). */
  id: string;
  /** `tg_<id>_<secret>`: what the caller sends as its bearer token. */
  key: string;
  /** SHA-256 of the secret, what the store keeps. */
  secretHash: Uint8Array;
}

/**
 * Generates a key: a public id, a secret of {@link SECRET_BYTES} random bytes, and its hash.
 *
 * @example
 * ```ts
 * const { id, key, secretHash } = generateKey();
 * // key: 'tg_<id>_<43 base64url characters>'
 * ```
 */
export function generateKey(): GeneratedKey {
  const id = base32(randomBytes(10));
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { id, key: `tg_${id}_${secret}`, secretHash: hashSecret(secret) };
}

/**
 * Splits a presented key into its public id and secret; undefined when it does not have the
 * shape of an issued key (a static key, a typo).
 */
export function parseKey(value: string): { id: string; secret: string } | undefined {
  const match = KEY_PATTERN.exec(value);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

/** Compares a presented secret with a stored hash in constant time. */
export function secretMatches(secret: string, secretHash: Uint8Array): boolean {
  const presented = hashSecret(secret);
  return presented.byteLength === secretHash.byteLength && timingSafeEqual(presented, secretHash);
}
