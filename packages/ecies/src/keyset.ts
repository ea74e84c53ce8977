/**
 * A gateway's encryption keys: one current key (what new requests are encrypted to) and the
 * keys it replaced, still accepted until their grace period ends. Each key has a one-byte id,
 * the `key_id` of an Oblivious HTTP key configuration (RFC 9458 section 3). A P-256 key also
 * serves the Obol format, which has no key id (the current P-256 key is the one published).
 *
 * Pure functions over plain data: where the set is stored (a file, a secret manager) is the
 * caller's business; {@link serializeKeySet} and {@link parseKeySet} give it a JSON form.
 */
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { EciesError } from './errors.js';
import { HPKE_KEM, hpkeSuite } from './hpke.js';

/** One key of a {@link KeySet}. */
export interface EncryptionKey {
  /** 0-255, unique among the keys of the set. */
  id: number;
  /** The HPKE KEM: 0x0010 DHKEM(P-256, HKDF-SHA256) or 0x0020 DHKEM(X25519, HKDF-SHA256). */
  kem: number;
  privateKey: Uint8Array;
  /** Serialized as HPKE does: 65 bytes uncompressed for P-256, 32 for X25519. */
  publicKey: Uint8Array;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** Set on a replaced key: after this instant (ms) it is no longer accepted. */
  retiresAt?: number;
}

/** Keys, the current one first. */
export interface KeySet {
  keys: EncryptionKey[];
}

/** Options for {@link createKeySet} and {@link rotateKeySet}. */
export interface KeySetOptions {
  /** The clock, in ms. @default Date.now() */
  now?: number;
  /** The KEM of the new key. @default 0x0010 (P-256: such keys can live in secure hardware) */
  kem?: number;
  /** Randomness, for tests. */
  randomBytes?: (length: number) => Uint8Array;
}

const KEMS: readonly number[] = [
  HPKE_KEM.DHKEM_P256_HKDF_SHA256,
  HPKE_KEM.DHKEM_X25519_HKDF_SHA256,
];

function newKey(id: number, options: KeySetOptions): EncryptionKey {
  const kem = options.kem ?? HPKE_KEM.DHKEM_P256_HKDF_SHA256;
  if (!KEMS.includes(kem)) {
    throw new EciesError(
      'unsupported_suite',
      `Keys can use KEM 0x0010 (P-256) or 0x0020 (X25519), not 0x${kem.toString(16).padStart(4, '0')}.`,
    );
  }
  const suite = hpkeSuite({
    kem,
    kdf: 0x0001,
    aead: 0x0001,
    ...(options.randomBytes ? { randomBytes: options.randomBytes } : {}),
  });
  const pair = suite.generateKeyPair();
  return {
    id,
    kem,
    privateKey: pair.privateKey,
    publicKey: pair.publicKey,
    createdAt: options.now ?? Date.now(),
  };
}

/**
 * A new set with one key (id 1).
 *
 * @example
 * ```ts
 * const set = createKeySet();
 * set.keys[0].id; // 1
 * ```
 */
export function createKeySet(options: KeySetOptions = {}): KeySet {
  return { keys: [newKey(1, options)] };
}

/** The keys still accepted at `now`: the current one and those within their grace period. */
export function activeKeys(set: KeySet, now = Date.now()): EncryptionKey[] {
  return set.keys.filter((key) => key.retiresAt === undefined || key.retiresAt > now);
}

/**
 * Adds a new current key and gives the previous current key `graceMs` before it retires (keys
 * already retired are dropped). The new key takes the next id after the current one (1-255,
 * wrapping, skipping ids still in use), so a client holding an old key configuration is told
 * by the id that it must fetch the new one.
 *
 * @throws {EciesError} `invalid_key_config` when every id is taken by a key still accepted.
 * @example
 * ```ts
 * const next = rotateKeySet(set, { graceMs: 24 * 3600 * 1000 });
 * ```
 */
export function rotateKeySet(set: KeySet, options: KeySetOptions & { graceMs: number }): KeySet {
  const now = options.now ?? Date.now();
  if (!Number.isFinite(options.graceMs) || options.graceMs < 0) {
    throw new EciesError('invalid_type', 'graceMs must be a number of milliseconds, 0 or more.');
  }
  const kept = activeKeys(set, now).map((key, index) =>
    index === 0 && key.retiresAt === undefined ? { ...key, retiresAt: now + options.graceMs } : key,
  );
  const used = new Set(kept.map((key) => key.id));
  let id = set.keys[0]?.id ?? 0;
  for (let tries = 0; tries < 256; tries++) {
    id = (id % 255) + 1;
    if (!used.has(id)) return { keys: [newKey(id, { ...options, now }), ...kept] };
  }
  throw new EciesError(
    'invalid_key_config',
    'Every key id (1-255) belongs to a key that is still accepted; let some retire first.',
  );
}

function fromHex(value: unknown, what: string): Uint8Array {
  if (typeof value !== 'string' || !/^(?:[0-9a-f]{2})+$/i.test(value)) {
    throw new EciesError('invalid_key_config', `${what} must be a hex string.`);
  }
  return hexToBytes(value.toLowerCase());
}

/** The set as JSON (keys in hex). It holds private keys: store it like a password. */
export function serializeKeySet(set: KeySet): string {
  return `${JSON.stringify(
    {
      version: 1,
      keys: set.keys.map((key) => ({
        id: key.id,
        kem: key.kem,
        private_key: bytesToHex(key.privateKey),
        public_key: bytesToHex(key.publicKey),
        created_at: new Date(key.createdAt).toISOString(),
        ...(key.retiresAt !== undefined
          ? { retires_at: new Date(key.retiresAt).toISOString() }
          : {}),
      })),
    },
    null,
    2,
  )}\n`;
}

/**
 * Reads a set written by {@link serializeKeySet}, checking every key: known KEM, id 0-255 and
 * unique, a public key that belongs to the private key.
 *
 * @throws {EciesError} `invalid_key_config` naming what is wrong.
 */
export function parseKeySet(text: string): KeySet {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new EciesError('invalid_key_config', 'The key set is not valid JSON.', { cause: error });
  }
  const record = data as { version?: unknown; keys?: unknown };
  if (
    typeof data !== 'object' ||
    data === null ||
    record.version !== 1 ||
    !Array.isArray(record.keys) ||
    record.keys.length === 0
  ) {
    throw new EciesError(
      'invalid_key_config',
      'The key set must be {"version": 1, "keys": [...]} with at least one key.',
    );
  }
  const ids = new Set<number>();
  const keys = record.keys.map((entry: unknown, index: number): EncryptionKey => {
    const raw = (entry ?? {}) as Record<string, unknown>;
    const where = `keys[${index}]`;
    const id = raw.id;
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 255 || ids.has(id)) {
      throw new EciesError('invalid_key_config', `${where}.id must be a unique integer 0-255.`);
    }
    ids.add(id);
    const kem = raw.kem;
    if (typeof kem !== 'number' || !KEMS.includes(kem)) {
      throw new EciesError('invalid_key_config', `${where}.kem must be 16 (P-256) or 32 (X25519).`);
    }
    const privateKey = fromHex(raw.private_key, `${where}.private_key`);
    const publicKey = fromHex(raw.public_key, `${where}.public_key`);
    const suite = hpkeSuite({ kem, kdf: 0x0001, aead: 0x0001 });
    let derived: Uint8Array;
    try {
      derived = suite.getPublicKey(suite.deserializePrivateKey(privateKey));
    } catch (error) {
      throw new EciesError('invalid_key_config', `${where}.private_key is not a valid key.`, {
        cause: error,
      });
    }
    if (bytesToHex(derived) !== bytesToHex(publicKey)) {
      throw new EciesError(
        'invalid_key_config',
        `${where}.public_key does not match its private key.`,
      );
    }
    const createdAt = Date.parse(String(raw.created_at));
    if (Number.isNaN(createdAt)) {
      throw new EciesError('invalid_key_config', `${where}.created_at must be an ISO time.`);
    }
    const key: EncryptionKey = { id, kem, privateKey, publicKey, createdAt };
    if (raw.retires_at !== undefined) {
      const retiresAt = Date.parse(String(raw.retires_at));
      if (Number.isNaN(retiresAt)) {
        throw new EciesError('invalid_key_config', `${where}.retires_at must be an ISO time.`);
      }
      key.retiresAt = retiresAt;
    }
    return key;
  });
  return { keys };
}
