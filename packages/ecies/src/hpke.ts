/**
 * HPKE base mode (RFC 9180, mode_base = 0x00) on @noble: DHKEM(P-256, HKDF-SHA256) and
 * DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 and the
 * export-only AEAD. Keys and every other value are serialized bytes (`Uint8Array`), as the RFC
 * writes them: P-256 public keys are 65-byte uncompressed points, X25519 keys are 32 bytes.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { expand, extract } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, isBytes, randomBytes as nobleRandomBytes } from '@noble/hashes/utils.js';
import { EciesError } from './errors.js';

/**
 * KEM identifiers (RFC 9180 section 7.1) implemented here.
 *
 * @example
 * ```ts
 * const suite = hpkeSuite({
 *   kem: HPKE_KEM.DHKEM_X25519_HKDF_SHA256,
 *   kdf: HPKE_KDF.HKDF_SHA256,
 *   aead: HPKE_AEAD.CHACHA20_POLY1305,
 * });
 * ```
 */
export const HPKE_KEM = {
  /** DHKEM(P-256, HKDF-SHA256): Nenc = Npk = 65, Nsk = 32. */
  DHKEM_P256_HKDF_SHA256: 0x0010,
  /** DHKEM(X25519, HKDF-SHA256): Nenc = Npk = Nsk = 32. */
  DHKEM_X25519_HKDF_SHA256: 0x0020,
} as const;

/** KDF identifiers (RFC 9180 section 7.2) implemented here; see {@link HPKE_KEM} for an example. */
export const HPKE_KDF = {
  /** HKDF-SHA256: Nh = 32. */
  HKDF_SHA256: 0x0001,
} as const;

/** AEAD identifiers (RFC 9180 section 7.3) implemented here; see {@link HPKE_KEM} for an example. */
export const HPKE_AEAD = {
  /** AES-128-GCM: Nk = 16, Nn = 12, Nt = 16. */
  AES_128_GCM: 0x0001,
  /** AES-256-GCM: Nk = 32, Nn = 12, Nt = 16. */
  AES_256_GCM: 0x0002,
  /** ChaCha20-Poly1305: Nk = 32, Nn = 12, Nt = 16. */
  CHACHA20_POLY1305: 0x0003,
  /** Export-only: the context can `export` but not `seal` or `open`. Nk = Nn = Nt = 0. */
  EXPORT_ONLY: 0xffff,
} as const;

/** A KEM identifier from {@link HPKE_KEM}. */
export type HpkeKemId = (typeof HPKE_KEM)[keyof typeof HPKE_KEM];
/** A KDF identifier from {@link HPKE_KDF}. */
export type HpkeKdfId = (typeof HPKE_KDF)[keyof typeof HPKE_KDF];
/** An AEAD identifier from {@link HPKE_AEAD}. */
export type HpkeAeadId = (typeof HPKE_AEAD)[keyof typeof HPKE_AEAD];

/** Options of {@link hpkeSuite}. */
export interface HpkeSuiteParameters {
  /** KEM identifier, 0x0010 (P-256) or 0x0020 (X25519). */
  kem: number;
  /** KDF identifier, 0x0001 (HKDF-SHA256). */
  kdf: number;
  /** AEAD identifier, 0x0001 (AES-128-GCM), 0x0002 (AES-256-GCM), 0x0003 (ChaCha20-Poly1305) or 0xFFFF (export-only). */
  aead: number;
  /**
   * Source of randomness for key generation and ephemeral keys: returns `length` random bytes.
   * @default crypto.getRandomValues, through @noble/hashes
   */
  randomBytes?: (length: number) => Uint8Array;
  /**
   * Computes the KEM's Diffie-Hellman value in place of @noble/curves: the X coordinate of the
   * shared point for P-256, the X25519 output for X25519 (32 bytes either way), from a private
   * key and a public key already checked here. For platforms with native elliptic curves, e.g.
   * Node's `crypto.createECDH('prime256v1')`, about twenty times faster than pure JavaScript
   * for P-256. The result is checked (32 bytes, not all zero).
   * @default @noble/curves
   */
  dh?: (privateKey: Uint8Array, publicKey: Uint8Array) => Uint8Array;
}

/** A key pair, both halves serialized (SerializePrivateKey / SerializePublicKey). */
export interface HpkeKeyPair {
  /** Nsk bytes. */
  privateKey: Uint8Array;
  /** Npk bytes. */
  publicKey: Uint8Array;
}

/** The outputs of the key schedule (RFC 9180 section 5.1) that a context holds. */
export interface HpkeContextSecrets {
  /** The AEAD key, Nk bytes. */
  key: Uint8Array;
  /** The base nonce, Nn bytes. */
  baseNonce: Uint8Array;
  /** The exporter secret, Nh bytes. */
  exporterSecret: Uint8Array;
}

/** Options of {@link HpkeSuite.setupBaseS} and of the single-shot sender helpers. */
export interface HpkeSenderOptions {
  /**
   * Input keying material for the ephemeral key pair (DeriveKeyPair(ikmE)), at least Nsk bytes.
   * Only for deterministic tests: a fixed `ikmE` reuses the ephemeral key and breaks secrecy.
   * @default fresh random bytes
   */
  ikmE?: Uint8Array;
}

/** Options of {@link HpkeSuite.senderContext} and {@link HpkeSuite.recipientContext}. */
export interface HpkeContextOptions {
  /**
   * The sequence number of the next message, to resume a context.
   * @default 0n
   */
  sequenceNumber?: bigint;
}

/** Methods both context roles share. */
export interface HpkeContextBase {
  /** The suite this context belongs to. */
  readonly suite: HpkeSuite;
  /** The sequence number the next `seal` or `open` uses (starts at 0n). */
  readonly sequenceNumber: bigint;
  /**
   * Secret export (RFC 9180 section 5.3): LabeledExpand(exporter_secret, "sec",
   * exporterContext, length).
   *
   * @param exporterContext - any bytes (the RFC's exporter_context; OHTTP passes its label here)
   * @param length - output length in bytes, 0 to 255 * Nh
   * @throws {EciesError} `invalid_type`, `invalid_length`
   */
  export(exporterContext: Uint8Array, length: number): Uint8Array;
}

/**
 * The sender's context (RFC 9180 ContextS): seals messages in order. A sender context cannot
 * open: sender and recipient share one key and nonce sequence, so a reply sealed with it would
 * reuse nonces; use {@link HpkeContextBase.export} to derive keys for replies.
 */
export interface HpkeSenderContext extends HpkeContextBase {
  /**
   * Encrypts the next message with nonce = base_nonce XOR sequence number.
   *
   * @param plaintext - any bytes
   * @param aad - associated data, authenticated but not encrypted (default empty)
   * @returns ciphertext || tag (plaintext length + Nt bytes)
   * @throws {EciesError} `invalid_type`; `message_limit_reached` once 2^(8 Nn) - 1 messages were sealed;
   *   `unsupported_suite` for the export-only AEAD
   */
  seal(plaintext: Uint8Array, aad?: Uint8Array): Uint8Array;
}

/** The recipient's context (RFC 9180 ContextR): opens messages in the order they were sealed. */
export interface HpkeRecipientContext extends HpkeContextBase {
  /**
   * Decrypts the next message. A failure does not advance the sequence number.
   *
   * @param ciphertext - ciphertext || tag, at least Nt bytes
   * @param aad - the associated data given to `seal` (default empty)
   * @throws {EciesError} `invalid_type`; `ciphertext_too_short`; `decryption_failed`;
   *   `message_limit_reached`; `unsupported_suite` for the export-only AEAD
   */
  open(ciphertext: Uint8Array, aad?: Uint8Array): Uint8Array;
}

/** An HPKE cipher suite: its constants, its KEM, its KDF and AEAD, and base-mode setup. */
export interface HpkeSuite {
  /** KEM identifier. */
  readonly kemId: HpkeKemId;
  /** KDF identifier. */
  readonly kdfId: HpkeKdfId;
  /** AEAD identifier. */
  readonly aeadId: HpkeAeadId;
  /** suite_id of the key schedule: "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2). */
  readonly suiteId: Uint8Array;
  /** Length in bytes of the KEM shared secret. */
  readonly Nsecret: number;
  /** Length in bytes of an encapsulated key. */
  readonly Nenc: number;
  /** Length in bytes of a serialized public key. */
  readonly Npk: number;
  /** Length in bytes of a serialized private key. */
  readonly Nsk: number;
  /** Output length in bytes of the KDF's Extract. */
  readonly Nh: number;
  /** Length in bytes of an AEAD key (0 for export-only). */
  readonly Nk: number;
  /** Length in bytes of an AEAD nonce (0 for export-only). */
  readonly Nn: number;
  /** Length in bytes of an AEAD tag (0 for export-only). */
  readonly Nt: number;

  /**
   * A fresh key pair: DeriveKeyPair of Nsk random bytes.
   * @example
   * ```ts
   * const { privateKey, publicKey } = hpkeSuite({ kem: 0x0010, kdf: 0x0001, aead: 0x0001 }).generateKeyPair();
   * ```
   */
  generateKeyPair(): HpkeKeyPair;
  /**
   * DeriveKeyPair (RFC 9180 section 7.1.3): a deterministic key pair from input keying material.
   * X25519 private keys are returned as derived (unclamped, as Appendix A lists them); they are
   * clamped when used.
   *
   * @param ikm - at least Nsk bytes of high-entropy secret
   * @throws {EciesError} `invalid_type`, `invalid_length`
   */
  deriveKeyPair(ikm: Uint8Array): HpkeKeyPair;
  /**
   * The public key of a private key.
   * @param privateKey - Nsk bytes
   * @returns Npk bytes
   * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_private_key`
   */
  getPublicKey(privateKey: Uint8Array): Uint8Array;
  /**
   * SerializePublicKey: a validated copy of a public key (keys are bytes already).
   * @throws {EciesError} like {@link HpkeSuite.deserializePublicKey}
   */
  serializePublicKey(publicKey: Uint8Array): Uint8Array;
  /**
   * DeserializePublicKey with validation: P-256 keys must be 65 bytes, 0x04 || X || Y, on the
   * curve; X25519 keys 32 bytes, not of small order.
   * @returns a copy of the key
   * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_public_key`
   */
  deserializePublicKey(bytes: Uint8Array): Uint8Array;
  /**
   * SerializePrivateKey: a validated copy (X25519 keys clamped, as RFC 9180 section 7.1.2 asks).
   * @throws {EciesError} like {@link HpkeSuite.deserializePrivateKey}
   */
  serializePrivateKey(privateKey: Uint8Array): Uint8Array;
  /**
   * DeserializePrivateKey with validation: Nsk bytes; P-256 keys in [1, order - 1]; X25519 keys
   * clamped.
   * @returns a copy of the key
   * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_private_key`
   */
  deserializePrivateKey(bytes: Uint8Array): Uint8Array;

  /**
   * Encap (RFC 9180 section 4.1): a shared secret and its encapsulation to `publicKey`.
   * @param recipientPublicKey - Npk bytes
   * @returns `sharedSecret` (Nsecret bytes) and `enc` (Nenc bytes)
   * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_public_key`
   */
  encap(
    recipientPublicKey: Uint8Array,
    options?: HpkeSenderOptions,
  ): { sharedSecret: Uint8Array; enc: Uint8Array };
  /**
   * Decap (RFC 9180 section 4.1): the shared secret of an encapsulated key.
   * @param enc - Nenc bytes
   * @param recipientPrivateKey - Nsk bytes
   * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_public_key`, `invalid_private_key`
   */
  decap(enc: Uint8Array, recipientPrivateKey: Uint8Array): Uint8Array;
  /**
   * The base-mode key schedule (RFC 9180 section 5.1, mode 0, no PSK).
   * @param sharedSecret - Nsecret bytes from {@link HpkeSuite.encap} / {@link HpkeSuite.decap}
   * @param info - application information (may be empty)
   * @throws {EciesError} `invalid_type`, `invalid_length`
   */
  keySchedule(sharedSecret: Uint8Array, info: Uint8Array): HpkeContextSecrets;
  /**
   * A sender context from key-schedule outputs (for protocols that resume a context).
   * @throws {EciesError} `invalid_type`, `invalid_length`
   */
  senderContext(secrets: HpkeContextSecrets, options?: HpkeContextOptions): HpkeSenderContext;
  /**
   * A recipient context from key-schedule outputs (for protocols that resume a context).
   * @throws {EciesError} `invalid_type`, `invalid_length`
   */
  recipientContext(secrets: HpkeContextSecrets, options?: HpkeContextOptions): HpkeRecipientContext;

  /**
   * SetupBaseS: encapsulates to the recipient and returns `enc` (send it) and the sender context.
   *
   * @param recipientPublicKey - Npk bytes
   * @param info - application information bound to the context (may be empty)
   * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_public_key`
   * @example
   * ```ts
   * const suite = hpkeSuite({ kem: 0x0020, kdf: 0x0001, aead: 0x0003 });
   * const recipient = suite.generateKeyPair();
   * const info = new TextEncoder().encode('my protocol v1');
   * const { enc, context } = suite.setupBaseS(recipient.publicKey, info);
   * const ciphertext = context.seal(new TextEncoder().encode('hello'));
   * const opened = suite.setupBaseR(enc, recipient.privateKey, info).open(ciphertext);
   * ```
   */
  setupBaseS(
    recipientPublicKey: Uint8Array,
    info: Uint8Array,
    options?: HpkeSenderOptions,
  ): { enc: Uint8Array; context: HpkeSenderContext };
  /**
   * SetupBaseR: the recipient context for an encapsulated key.
   *
   * @param enc - Nenc bytes, as the sender sent them
   * @param recipientPrivateKey - Nsk bytes
   * @param info - the sender's `info`
   * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_public_key`, `invalid_private_key`
   */
  setupBaseR(
    enc: Uint8Array,
    recipientPrivateKey: Uint8Array,
    info: Uint8Array,
  ): HpkeRecipientContext;

  /**
   * Single-shot encryption (RFC 9180 section 6.1): setupBaseS then one `seal`.
   * @example
   * ```ts
   * const suite = hpkeSuite({ kem: 0x0010, kdf: 0x0001, aead: 0x0001 });
   * const { privateKey, publicKey } = suite.generateKeyPair();
   * const { enc, ciphertext } = suite.seal(publicKey, new TextEncoder().encode('hi'));
   * const plaintext = suite.open(enc, privateKey, ciphertext);
   * ```
   * @throws {EciesError} as setupBaseS and seal
   */
  seal(
    recipientPublicKey: Uint8Array,
    plaintext: Uint8Array,
    options?: HpkeSenderOptions & { info?: Uint8Array; aad?: Uint8Array },
  ): { enc: Uint8Array; ciphertext: Uint8Array };
  /**
   * Single-shot decryption: setupBaseR then one `open`.
   * @throws {EciesError} as setupBaseR and open
   */
  open(
    enc: Uint8Array,
    recipientPrivateKey: Uint8Array,
    ciphertext: Uint8Array,
    options?: { info?: Uint8Array; aad?: Uint8Array },
  ): Uint8Array;
  /**
   * Single-shot export, sender side (RFC 9180 section 6.2).
   * @throws {EciesError} as setupBaseS and export
   */
  sendExport(
    recipientPublicKey: Uint8Array,
    exporterContext: Uint8Array,
    length: number,
    options?: HpkeSenderOptions & { info?: Uint8Array },
  ): { enc: Uint8Array; exportedValue: Uint8Array };
  /**
   * Single-shot export, recipient side.
   * @throws {EciesError} as setupBaseR and export
   */
  receiveExport(
    enc: Uint8Array,
    recipientPrivateKey: Uint8Array,
    exporterContext: Uint8Array,
    length: number,
    options?: { info?: Uint8Array },
  ): Uint8Array;

  /**
   * The KDF's Extract (HKDF-Extract), unlabeled: for protocols built on HPKE (OHTTP responses).
   * @param salt - any bytes (empty means Nh zero bytes)
   * @param ikm - any bytes
   * @returns Nh bytes
   */
  extract(salt: Uint8Array, ikm: Uint8Array): Uint8Array;
  /**
   * The KDF's Expand (HKDF-Expand), unlabeled.
   * @param prk - at least Nh bytes
   * @param length - 0 to 255 * Nh
   * @throws {EciesError} `invalid_type`, `invalid_length`
   */
  expand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  /** LabeledExtract with this suite's suite_id ("HPKE-v1" || suite_id || label || ikm). */
  labeledExtract(salt: Uint8Array, label: Uint8Array, ikm: Uint8Array): Uint8Array;
  /** LabeledExpand with this suite's suite_id. */
  labeledExpand(prk: Uint8Array, label: Uint8Array, info: Uint8Array, length: number): Uint8Array;
  /**
   * The suite's AEAD Seal with an explicit key and nonce (OHTTP responses use it).
   * @param key - Nk bytes
   * @param nonce - Nn bytes
   * @returns ciphertext || tag
   * @throws {EciesError} `invalid_type`, `invalid_length`, `unsupported_suite` (export-only)
   */
  aeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array;
  /**
   * The suite's AEAD Open with an explicit key and nonce.
   * @throws {EciesError} `invalid_type`, `invalid_length`, `ciphertext_too_short`,
   *   `decryption_failed`, `unsupported_suite` (export-only)
   */
  aeadOpen(
    key: Uint8Array,
    nonce: Uint8Array,
    ciphertext: Uint8Array,
    aad?: Uint8Array,
  ): Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Byte helpers

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const HPKE_V1 = encoder.encode('HPKE-v1');

function bytes(value: unknown, name: string, length?: number): Uint8Array {
  if (!isBytes(value)) {
    throw new EciesError('invalid_type', `${name} must be a Uint8Array, not ${describe(value)}.`);
  }
  if (length !== undefined && value.length !== length) {
    throw new EciesError('invalid_length', `${name} must be ${length} bytes, not ${value.length}.`);
  }
  return value;
}

function optionalBytes(value: unknown, name: string): Uint8Array {
  return value === undefined ? EMPTY : bytes(value, name);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return `a ${value.constructor?.name ?? 'object'}`;
  return `a ${typeof value}`;
}

function outputLength(value: unknown, name: string, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new EciesError('invalid_type', `${name} must be an integer number of bytes.`);
  }
  if (value < 0 || value > max) {
    throw new EciesError('invalid_length', `${name} must be 0 to ${max} bytes, not ${value}.`);
  }
  return value;
}

function i2osp(value: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let rest = value;
  for (let index = length - 1; index >= 0; index--) {
    out[index] = rest & 0xff;
    rest = Math.floor(rest / 256);
  }
  return out;
}

function os2ip(input: Uint8Array): bigint {
  let value = 0n;
  for (const byte of input) value = (value << 8n) | BigInt(byte);
  return value;
}

function hex(id: number): string {
  return '0x' + id.toString(16).toUpperCase().padStart(4, '0');
}

// ---------------------------------------------------------------------------------------------
// KDF

interface Kdf {
  id: HpkeKdfId;
  Nh: number;
  extract(salt: Uint8Array, ikm: Uint8Array): Uint8Array;
  expand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array;
}

const HKDF_SHA256: Kdf = {
  id: HPKE_KDF.HKDF_SHA256,
  Nh: 32,
  extract: (salt, ikm) => extract(sha256, ikm, salt),
  expand: (prk, info, length) => expand(sha256, prk, info, length),
};

/** LabeledExtract / LabeledExpand (RFC 9180 section 4) bound to one suite_id. */
interface Labeled {
  extract(salt: Uint8Array, label: string | Uint8Array, ikm: Uint8Array): Uint8Array;
  expand(prk: Uint8Array, label: string | Uint8Array, info: Uint8Array, length: number): Uint8Array;
}

function labeled(kdf: Kdf, suiteId: Uint8Array): Labeled {
  const asBytes = (label: string | Uint8Array) =>
    typeof label === 'string' ? encoder.encode(label) : label;
  return {
    extract: (salt, label, ikm) =>
      kdf.extract(salt, concatBytes(HPKE_V1, suiteId, asBytes(label), ikm)),
    expand: (prk, label, info, length) =>
      kdf.expand(
        prk,
        concatBytes(i2osp(length, 2), HPKE_V1, suiteId, asBytes(label), info),
        length,
      ),
  };
}

// ---------------------------------------------------------------------------------------------
// DHKEMs

interface DhGroup {
  id: HpkeKemId;
  name: string;
  Npk: number;
  Nsk: number;
  /** DeriveKeyPair's private key from dkp_prk. */
  derivePrivateKey(kemLabeled: Labeled, dkpPrk: Uint8Array): Uint8Array;
  /** Throws unless `publicKey` is a valid serialized point; returns it as is. */
  checkPublicKey(publicKey: Uint8Array): void;
  /** Throws unless `privateKey` is usable; returns the canonical (clamped) form. */
  checkPrivateKey(privateKey: Uint8Array): Uint8Array;
  publicKeyOf(privateKey: Uint8Array): Uint8Array;
  dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array;
}

const P256_ORDER = p256.Point.Fn.ORDER;

const P256: DhGroup = {
  id: HPKE_KEM.DHKEM_P256_HKDF_SHA256,
  name: 'P-256',
  Npk: 65,
  Nsk: 32,
  derivePrivateKey(kemLabeled, dkpPrk) {
    // Rejection sampling with bitmask 0xFF (RFC 9180 section 7.1.3).
    for (let counter = 0; counter <= 255; counter++) {
      const candidate = kemLabeled.expand(dkpPrk, 'candidate', i2osp(counter, 1), 32);
      candidate[0] = candidate[0]! & 0xff;
      const value = os2ip(candidate);
      if (value !== 0n && value < P256_ORDER) return candidate;
    }
    // Probability about 2^-8192; reported rather than looping forever.
    throw new EciesError(
      'invalid_private_key',
      'DeriveKeyPair found no P-256 scalar in 256 tries.',
    );
  },
  checkPublicKey(publicKey) {
    if (publicKey[0] !== 0x04) {
      throw new EciesError(
        'invalid_public_key',
        `A P-256 public key must be uncompressed (first byte 0x04), not 0x${(publicKey[0] ?? 0).toString(16).padStart(2, '0')}.`,
      );
    }
    try {
      // fromBytes checks the coordinates are in range and the point is on the curve.
      p256.Point.fromBytes(publicKey).assertValidity();
    } catch (error) {
      throw new EciesError(
        'invalid_public_key',
        'The P-256 public key is not a point on the curve.',
        {
          cause: error,
        },
      );
    }
  },
  checkPrivateKey(privateKey) {
    const value = os2ip(privateKey);
    if (value === 0n || value >= P256_ORDER) {
      throw new EciesError(
        'invalid_private_key',
        'A P-256 private key must be an integer from 1 to the group order minus 1.',
      );
    }
    return privateKey.slice();
  },
  publicKeyOf: (privateKey) => p256.getPublicKey(privateKey, false),
  dh(privateKey, publicKey) {
    try {
      // The compressed encoding is 0x02/0x03 || X; the DH secret is X (Ndh = 32).
      return p256.getSharedSecret(privateKey, publicKey, true).slice(1);
    } catch (error) {
      throw new EciesError('invalid_public_key', 'P-256 Diffie-Hellman failed.', { cause: error });
    }
  },
};

const CURVE25519_P = 2n ** 255n - 19n;
// u-coordinates of small order (0, 1, -1 and the two points of order 8): DH with any of them
// yields the all-zero output RFC 9180 section 7.1.4 requires rejecting.
const X25519_SMALL_ORDER = new Set<bigint>([
  0n,
  1n,
  CURVE25519_P - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
]);

function clamp25519(privateKey: Uint8Array): Uint8Array {
  const out = privateKey.slice();
  out[0] = out[0]! & 248;
  out[31] = (out[31]! & 127) | 64;
  return out;
}

const X25519: DhGroup = {
  id: HPKE_KEM.DHKEM_X25519_HKDF_SHA256,
  name: 'X25519',
  Npk: 32,
  Nsk: 32,
  derivePrivateKey: (kemLabeled, dkpPrk) => kemLabeled.expand(dkpPrk, 'sk', EMPTY, 32),
  checkPublicKey(publicKey) {
    // RFC 7748: the top bit is ignored and non-canonical values are reduced.
    const masked = publicKey.slice().reverse();
    masked[0] = masked[0]! & 0x7f;
    if (X25519_SMALL_ORDER.has(os2ip(masked) % CURVE25519_P)) {
      throw new EciesError(
        'invalid_public_key',
        'The X25519 public key is a point of small order; Diffie-Hellman with it gives zero.',
      );
    }
  },
  checkPrivateKey: clamp25519,
  publicKeyOf: (privateKey) => x25519.getPublicKey(privateKey),
  dh(privateKey, publicKey) {
    let secret: Uint8Array;
    try {
      secret = x25519.getSharedSecret(privateKey, publicKey);
    } catch (error) {
      throw new EciesError('invalid_public_key', 'X25519 Diffie-Hellman failed.', { cause: error });
    }
    if (secret.every((byte) => byte === 0)) {
      throw new EciesError('invalid_public_key', 'X25519 Diffie-Hellman gave the all-zero value.');
    }
    return secret;
  },
};

// ---------------------------------------------------------------------------------------------
// AEADs

interface Aead {
  id: HpkeAeadId;
  name: string;
  Nk: number;
  Nn: number;
  Nt: number;
  seal?(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Uint8Array;
  open?(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Uint8Array;
}

function nobleAead(
  id: HpkeAeadId,
  name: string,
  Nk: number,
  cipher: (
    key: Uint8Array,
    nonce: Uint8Array,
    aad: Uint8Array,
  ) => {
    encrypt(plaintext: Uint8Array): Uint8Array;
    decrypt(ciphertext: Uint8Array): Uint8Array;
  },
): Aead {
  return {
    id,
    name,
    Nk,
    Nn: 12,
    Nt: 16,
    seal: (key, nonce, aad, plaintext) => cipher(key, nonce, aad).encrypt(plaintext),
    open: (key, nonce, aad, ciphertext) => cipher(key, nonce, aad).decrypt(ciphertext),
  };
}

const AEADS: Record<number, Aead> = {
  [HPKE_AEAD.AES_128_GCM]: nobleAead(HPKE_AEAD.AES_128_GCM, 'AES-128-GCM', 16, gcm),
  [HPKE_AEAD.AES_256_GCM]: nobleAead(HPKE_AEAD.AES_256_GCM, 'AES-256-GCM', 32, gcm),
  [HPKE_AEAD.CHACHA20_POLY1305]: nobleAead(
    HPKE_AEAD.CHACHA20_POLY1305,
    'ChaCha20-Poly1305',
    32,
    chacha20poly1305,
  ),
  [HPKE_AEAD.EXPORT_ONLY]: { id: HPKE_AEAD.EXPORT_ONLY, name: 'Export-only', Nk: 0, Nn: 0, Nt: 0 },
};
const KEMS: Record<number, DhGroup> = { [P256.id]: P256, [X25519.id]: X25519 };
const KDFS: Record<number, Kdf> = { [HKDF_SHA256.id]: HKDF_SHA256 };

function suiteIdentifier(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new EciesError('invalid_type', `The ${name} identifier must be an integer, like 0x0001.`);
  }
  return value;
}

function lookupSuite(
  kemId: number,
  kdfId: number,
  aeadId: number,
): { group: DhGroup; kdf: Kdf; aead: Aead } {
  const group = KEMS[kemId];
  const kdf = KDFS[kdfId];
  const aead = AEADS[aeadId];
  if (group === undefined) {
    throw new EciesError(
      'unsupported_suite',
      `HPKE KEM ${hex(kemId)} is not implemented; use 0x0010 (P-256) or 0x0020 (X25519).`,
    );
  }
  if (kdf === undefined) {
    throw new EciesError(
      'unsupported_suite',
      `HPKE KDF ${hex(kdfId)} is not implemented; use 0x0001 (HKDF-SHA256).`,
    );
  }
  if (aead === undefined) {
    throw new EciesError(
      'unsupported_suite',
      `HPKE AEAD ${hex(aeadId)} is not implemented; use 0x0001, 0x0002, 0x0003 or 0xFFFF.`,
    );
  }
  return { group, kdf, aead };
}

// ---------------------------------------------------------------------------------------------
// The suite

/**
 * An HPKE cipher suite (RFC 9180) for base mode, from its three identifiers.
 *
 * @param parameters - `kem` 0x0010 (DHKEM(P-256, HKDF-SHA256)) or 0x0020 (DHKEM(X25519,
 *   HKDF-SHA256)); `kdf` 0x0001 (HKDF-SHA256); `aead` 0x0001 (AES-128-GCM), 0x0002
 *   (AES-256-GCM), 0x0003 (ChaCha20-Poly1305) or 0xFFFF (export-only)
 * @throws {EciesError} `invalid_type` for a non-integer identifier, `unsupported_suite` for an
 *   identifier this library does not implement
 * @example
 * ```ts
 * import { hpkeSuite, HPKE_AEAD, HPKE_KDF, HPKE_KEM } from '@tollgate/ecies';
 *
 * const suite = hpkeSuite({
 *   kem: HPKE_KEM.DHKEM_P256_HKDF_SHA256,
 *   kdf: HPKE_KDF.HKDF_SHA256,
 *   aead: HPKE_AEAD.AES_128_GCM,
 * });
 * const recipient = suite.generateKeyPair();
 * const info = new TextEncoder().encode('example');
 * const { enc, context } = suite.setupBaseS(recipient.publicKey, info);
 * const ciphertext = context.seal(new TextEncoder().encode('hello'), new Uint8Array(0));
 * const receiver = suite.setupBaseR(enc, recipient.privateKey, info);
 * new TextDecoder().decode(receiver.open(ciphertext, new Uint8Array(0))); // 'hello'
 * ```
 */
export function hpkeSuite(parameters: HpkeSuiteParameters): HpkeSuite {
  if (typeof parameters !== 'object' || parameters === null) {
    throw new EciesError('invalid_type', 'hpkeSuite takes { kem, kdf, aead }.');
  }
  const kemId = suiteIdentifier(parameters.kem, 'KEM');
  const kdfId = suiteIdentifier(parameters.kdf, 'KDF');
  const aeadId = suiteIdentifier(parameters.aead, 'AEAD');
  const { group, kdf, aead } = lookupSuite(kemId, kdfId, aeadId);
  const random = parameters.randomBytes ?? nobleRandomBytes;
  if (typeof random !== 'function') {
    throw new EciesError('invalid_type', 'randomBytes must be a function (length) => Uint8Array.');
  }
  const customDh = parameters.dh;
  if (customDh !== undefined && typeof customDh !== 'function') {
    throw new EciesError(
      'invalid_type',
      'dh must be a function (privateKey, publicKey) => Uint8Array.',
    );
  }
  const dhOf = (privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array => {
    if (customDh === undefined) return group.dh(privateKey, publicKey);
    let value: Uint8Array;
    try {
      value = customDh(privateKey, publicKey);
    } catch (error) {
      throw new EciesError('invalid_public_key', `${group.name} Diffie-Hellman failed.`, {
        cause: error,
      });
    }
    if (!isBytes(value) || value.length !== 32 || value.every((byte) => byte === 0)) {
      throw new EciesError(
        'invalid_public_key',
        `${group.name} Diffie-Hellman gave no usable value.`,
      );
    }
    return value;
  };

  // Both DHKEMs here use HKDF-SHA256 as their own KDF, whatever the suite's KDF.
  const kemKdf = HKDF_SHA256;
  const kemLabeled = labeled(kemKdf, concatBytes(encoder.encode('KEM'), i2osp(group.id, 2)));
  const suiteId = concatBytes(
    encoder.encode('HPKE'),
    i2osp(group.id, 2),
    i2osp(kdf.id, 2),
    i2osp(aead.id, 2),
  );
  const hpkeLabeled = labeled(kdf, suiteId);
  const Nsecret = kemKdf.Nh;
  const { Npk, Nsk } = group;
  const { Nk, Nn, Nt } = aead;
  const Nh = kdf.Nh;
  const maxExpand = Math.min(255 * Nh, 0xffff);
  // RFC 9180 section 5.2: the sequence number may not reach 2^(8 Nn) - 1.
  const messageLimit = (1n << BigInt(8 * Nn)) - 1n;

  function publicKey(value: unknown, name: string): Uint8Array {
    const key = bytes(value, name, Npk);
    group.checkPublicKey(key);
    return key;
  }

  function privateKey(value: unknown, name: string): Uint8Array {
    return group.checkPrivateKey(bytes(value, name, Nsk));
  }

  function deriveKeyPair(ikm: Uint8Array): HpkeKeyPair {
    bytes(ikm, 'ikm');
    if (ikm.length < Nsk) {
      throw new EciesError(
        'invalid_length',
        `DeriveKeyPair needs at least Nsk = ${Nsk} bytes of input keying material, not ${ikm.length}.`,
      );
    }
    const dkpPrk = kemLabeled.extract(EMPTY, 'dkp_prk', ikm);
    const sk = group.derivePrivateKey(kemLabeled, dkpPrk);
    return { privateKey: sk, publicKey: group.publicKeyOf(sk) };
  }

  function extractAndExpand(dh: Uint8Array, kemContext: Uint8Array): Uint8Array {
    const eaePrk = kemLabeled.extract(EMPTY, 'eae_prk', dh);
    return kemLabeled.expand(eaePrk, 'shared_secret', kemContext, Nsecret);
  }

  function encap(recipientPublicKey: Uint8Array, options: HpkeSenderOptions = {}) {
    const pkR = publicKey(recipientPublicKey, 'The recipient public key');
    const ikmE = options.ikmE === undefined ? random(Nsk) : options.ikmE;
    const ephemeral = deriveKeyPair(bytes(ikmE, 'ikmE'));
    const dh = dhOf(ephemeral.privateKey, pkR);
    const enc = ephemeral.publicKey;
    return { sharedSecret: extractAndExpand(dh, concatBytes(enc, pkR)), enc };
  }

  function decap(encValue: Uint8Array, recipientPrivateKey: Uint8Array): Uint8Array {
    const enc = publicKey(encValue, 'enc');
    const skR = privateKey(recipientPrivateKey, 'The recipient private key');
    const dh = dhOf(skR, enc);
    return extractAndExpand(dh, concatBytes(enc, group.publicKeyOf(skR)));
  }

  function keySchedule(sharedSecret: Uint8Array, info: Uint8Array): HpkeContextSecrets {
    bytes(sharedSecret, 'sharedSecret', Nsecret);
    bytes(info, 'info');
    const pskIdHash = hpkeLabeled.extract(EMPTY, 'psk_id_hash', EMPTY);
    const infoHash = hpkeLabeled.extract(EMPTY, 'info_hash', info);
    const context = concatBytes(Uint8Array.of(0x00), pskIdHash, infoHash);
    const secret = hpkeLabeled.extract(sharedSecret, 'secret', EMPTY);
    return {
      // Export-only suites have no key or nonce (Nk = Nn = 0).
      key: Nk === 0 ? EMPTY : hpkeLabeled.expand(secret, 'key', context, Nk),
      baseNonce: Nn === 0 ? EMPTY : hpkeLabeled.expand(secret, 'base_nonce', context, Nn),
      exporterSecret: hpkeLabeled.expand(secret, 'exp', context, Nh),
    };
  }

  function requireAead(): Required<Pick<Aead, 'seal' | 'open'>> {
    const { seal, open } = aead;
    if (seal === undefined || open === undefined) {
      throw new EciesError(
        'unsupported_suite',
        'This suite uses the export-only AEAD (0xFFFF): it can export secrets but not seal or open.',
      );
    }
    return { seal, open };
  }

  function aeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array) {
    const { seal } = requireAead();
    return seal(
      bytes(key, 'key', Nk),
      bytes(nonce, 'nonce', Nn),
      optionalBytes(aad, 'aad'),
      bytes(plaintext, 'plaintext'),
    );
  }

  function aeadOpen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad?: Uint8Array) {
    const { open } = requireAead();
    bytes(key, 'key', Nk);
    bytes(nonce, 'nonce', Nn);
    const associated = optionalBytes(aad, 'aad');
    bytes(ciphertext, 'ciphertext');
    if (ciphertext.length < Nt) {
      throw new EciesError(
        'ciphertext_too_short',
        `An ${aead.name} ciphertext is at least its ${Nt}-byte tag; this one is ${ciphertext.length} bytes.`,
      );
    }
    try {
      return open(key, nonce, associated, ciphertext);
    } catch (error) {
      throw new EciesError(
        'decryption_failed',
        'HPKE open failed: the ciphertext, its associated data or enc was altered, or the key or info is wrong.',
        { cause: error },
      );
    }
  }

  function createContext(secrets: HpkeContextSecrets, options: HpkeContextOptions = {}) {
    if (typeof secrets !== 'object' || secrets === null) {
      throw new EciesError(
        'invalid_type',
        'The context secrets must be { key, baseNonce, exporterSecret }.',
      );
    }
    const key = bytes(secrets.key, 'key', Nk).slice();
    const baseNonce = bytes(secrets.baseNonce, 'baseNonce', Nn).slice();
    const exporterSecret = bytes(secrets.exporterSecret, 'exporterSecret', Nh).slice();
    let sequence = options.sequenceNumber ?? 0n;
    if (typeof sequence !== 'bigint' || sequence < 0n) {
      throw new EciesError('invalid_type', 'sequenceNumber must be a non-negative bigint.');
    }

    function nextNonce(): Uint8Array {
      if (sequence >= messageLimit) {
        throw new EciesError(
          'message_limit_reached',
          'This HPKE context has used every nonce; set up a new context.',
        );
      }
      const nonce = baseNonce.slice();
      let rest = sequence;
      for (let index = Nn - 1; index >= 0 && rest > 0n; index--) {
        nonce[index] = nonce[index]! ^ Number(rest & 0xffn);
        rest >>= 8n;
      }
      return nonce;
    }

    function exportSecret(exporterContext: Uint8Array, length: number): Uint8Array {
      bytes(exporterContext, 'exporterContext');
      outputLength(length, 'The export length', maxExpand);
      return hpkeLabeled.expand(exporterSecret, 'sec', exporterContext, length);
    }

    return {
      sender: (): HpkeSenderContext => ({
        suite,
        get sequenceNumber() {
          return sequence;
        },
        export: exportSecret,
        seal(plaintext: Uint8Array, aad?: Uint8Array): Uint8Array {
          requireAead();
          bytes(plaintext, 'plaintext');
          const associated = optionalBytes(aad, 'aad');
          const ciphertext = aeadSeal(key, nextNonce(), plaintext, associated);
          sequence += 1n;
          return ciphertext;
        },
      }),
      recipient: (): HpkeRecipientContext => ({
        suite,
        get sequenceNumber() {
          return sequence;
        },
        export: exportSecret,
        open(ciphertext: Uint8Array, aad?: Uint8Array): Uint8Array {
          requireAead();
          bytes(ciphertext, 'ciphertext');
          const associated = optionalBytes(aad, 'aad');
          // A failed open throws before the increment, so the recipient can still read the
          // genuine message for this sequence number (RFC 9180 section 5.2).
          const plaintext = aeadOpen(key, nextNonce(), ciphertext, associated);
          sequence += 1n;
          return plaintext;
        },
      }),
    };
  }

  const suite: HpkeSuite = {
    kemId: group.id,
    kdfId: kdf.id,
    aeadId: aead.id,
    suiteId,
    Nsecret,
    Nenc: Npk,
    Npk,
    Nsk,
    Nh,
    Nk,
    Nn,
    Nt,
    generateKeyPair: () => deriveKeyPair(random(Nsk)),
    deriveKeyPair,
    getPublicKey: (sk) => group.publicKeyOf(privateKey(sk, 'The private key')),
    serializePublicKey: (pk) => publicKey(pk, 'The public key').slice(),
    deserializePublicKey: (pk) => publicKey(pk, 'The public key').slice(),
    serializePrivateKey: (sk) => privateKey(sk, 'The private key'),
    deserializePrivateKey: (sk) => privateKey(sk, 'The private key'),
    encap,
    decap,
    keySchedule,
    senderContext: (secrets, options) => createContext(secrets, options).sender(),
    recipientContext: (secrets, options) => createContext(secrets, options).recipient(),
    setupBaseS(recipientPublicKey, info, options) {
      bytes(info, 'info');
      const { sharedSecret, enc } = encap(recipientPublicKey, options);
      return { enc, context: createContext(keySchedule(sharedSecret, info)).sender() };
    },
    setupBaseR(enc, recipientPrivateKey, info) {
      bytes(info, 'info');
      const sharedSecret = decap(enc, recipientPrivateKey);
      return createContext(keySchedule(sharedSecret, info)).recipient();
    },
    seal(recipientPublicKey, plaintext, options = {}) {
      requireAead();
      const { enc, context } = suite.setupBaseS(
        recipientPublicKey,
        optionalBytes(options.info, 'info'),
        options,
      );
      return { enc, ciphertext: context.seal(plaintext, options.aad) };
    },
    open(enc, recipientPrivateKey, ciphertext, options = {}) {
      requireAead();
      const context = suite.setupBaseR(
        enc,
        recipientPrivateKey,
        optionalBytes(options.info, 'info'),
      );
      return context.open(ciphertext, options.aad);
    },
    sendExport(recipientPublicKey, exporterContext, length, options = {}) {
      const { enc, context } = suite.setupBaseS(
        recipientPublicKey,
        optionalBytes(options.info, 'info'),
        options,
      );
      return { enc, exportedValue: context.export(exporterContext, length) };
    },
    receiveExport(enc, recipientPrivateKey, exporterContext, length, options = {}) {
      const context = suite.setupBaseR(
        enc,
        recipientPrivateKey,
        optionalBytes(options.info, 'info'),
      );
      return context.export(exporterContext, length);
    },
    extract: (salt, ikm) => kdf.extract(bytes(salt, 'salt'), bytes(ikm, 'ikm')),
    expand(prk, info, length) {
      bytes(prk, 'prk');
      if (prk.length < Nh) {
        throw new EciesError('invalid_length', `prk must be at least Nh = ${Nh} bytes.`);
      }
      return kdf.expand(prk, bytes(info, 'info'), outputLength(length, 'length', 255 * Nh));
    },
    labeledExtract: (salt, label, ikm) =>
      hpkeLabeled.extract(bytes(salt, 'salt'), bytes(label, 'label'), bytes(ikm, 'ikm')),
    labeledExpand(prk, label, info, length) {
      bytes(prk, 'prk');
      if (prk.length < Nh) {
        throw new EciesError('invalid_length', `prk must be at least Nh = ${Nh} bytes.`);
      }
      return hpkeLabeled.expand(
        prk,
        bytes(label, 'label'),
        bytes(info, 'info'),
        outputLength(length, 'length', maxExpand),
      );
    },
    aeadSeal,
    aeadOpen,
  };
  return Object.freeze(suite);
}
