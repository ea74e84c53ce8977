/**
 * The Obol-compatible P-256 ECIES format (the Go gateway's `application/x-obol-encrypted` bodies)
 * and the P-256 key helpers it and Apple's variant share.
 *
 * Wire format: `0x01 || ephemeralPublicKey (65) || nonce (12) || ciphertext || tag (16)`, the
 * AES-256-GCM key being HKDF-SHA256(ikm = X coordinate of ECDH, salt = empty,
 * info = ephemeralPublicKey || recipientPublicKey, 32 bytes), with no associated data.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { p256 } from '@noble/curves/nist.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import {
  bytesToHex,
  randomBytes as defaultRandomBytes,
  hexToBytes,
  isBytes,
} from '@noble/hashes/utils.js';
import { EciesError } from './errors.js';

/** The version byte that opens every Obol message. */
export const OBOL_VERSION = 0x01;

/** Length in bytes of an uncompressed SEC1 P-256 public key (`0x04 || X || Y`). */
export const P256_PUBLIC_KEY_LENGTH = 65;

/** Length in bytes of a P-256 private key (a big-endian scalar). */
export const P256_PRIVATE_KEY_LENGTH = 32;

/** Length in bytes of the AES-GCM nonce carried in an Obol message. */
export const OBOL_NONCE_LENGTH = 12;

/** Length in bytes of the AES-GCM tag that ends an Obol message. */
export const OBOL_TAG_LENGTH = 16;

/** Shortest valid Obol message (empty plaintext): 1 + 65 + 12 + 16 = 94 bytes. */
export const OBOL_MIN_MESSAGE_LENGTH =
  1 + P256_PUBLIC_KEY_LENGTH + OBOL_NONCE_LENGTH + OBOL_TAG_LENGTH;

/** A source of random bytes: returns `length` fresh random bytes. */
export type RandomBytes = (length: number) => Uint8Array;

/** A P-256 key pair as bytes. */
export interface P256KeyPair {
  /** 32-byte big-endian scalar in [1, n - 1]. */
  privateKey: Uint8Array;
  /** 65-byte uncompressed SEC1 point (`0x04 || X || Y`). */
  publicKey: Uint8Array;
}

/** Options of {@link generateP256KeyPair}. */
export interface GenerateP256KeyPairOptions {
  /**
   * Source of randomness (48 bytes are drawn and reduced to a scalar, so the bias is negligible).
   * @default crypto.getRandomValues through @noble/hashes
   */
  randomBytes?: RandomBytes;
}

/** Options of {@link obolEncrypt}. Meant for tests and known-answer vectors; leave unset in production. */
export interface ObolEncryptOptions {
  /**
   * The ephemeral private key (32 bytes) instead of a fresh one. Reusing one across messages to
   * the same recipient reuses the AES key: only for fixed test vectors.
   */
  ephemeralPrivateKey?: Uint8Array;
  /** The 12-byte AES-GCM nonce instead of a random one. Only for fixed test vectors. */
  nonce?: Uint8Array;
  /**
   * Source of randomness for whatever of the ephemeral key and nonce is not given.
   * @default crypto.getRandomValues through @noble/hashes
   */
  randomBytes?: RandomBytes;
}

/**
 * Throws `invalid_type` unless `value` is a Uint8Array (a Node Buffer counts).
 * @internal shared by the modules of this package
 */
export function assertBytes(value: unknown, name: string): asserts value is Uint8Array {
  if (!isBytes(value)) {
    throw new EciesError('invalid_type', `${name} must be a Uint8Array, not ${describe(value)}.`);
  }
}

/**
 * Checks a 65-byte uncompressed P-256 public key: type, length, prefix, on the curve, not the
 * identity. Returns the key unchanged.
 * @internal shared by the modules of this package
 */
export function assertP256PublicKey(value: unknown, name: string): Uint8Array {
  assertBytes(value, name);
  if (value.length !== P256_PUBLIC_KEY_LENGTH) {
    throw new EciesError(
      'invalid_length',
      `${name} must be ${P256_PUBLIC_KEY_LENGTH} bytes (0x04 || X || Y, uncompressed SEC1), not ${value.length}.`,
    );
  }
  if (value[0] !== 0x04) {
    throw new EciesError(
      'invalid_public_key',
      `${name} must start with 0x04 (uncompressed SEC1), not 0x${hexByte(value[0]!)}.`,
    );
  }
  let isIdentity: boolean;
  try {
    isIdentity = p256.Point.fromBytes(value).is0();
  } catch (cause) {
    throw new EciesError('invalid_public_key', `${name} is not a point on P-256.`, { cause });
  }
  // fromBytes cannot decode the identity from 65 bytes today; kept so a future decoder cannot let it through.
  if (isIdentity) {
    throw new EciesError('invalid_public_key', `${name} is the point at infinity.`);
  }
  return value;
}

/**
 * Checks a 32-byte P-256 private key: type, length, and 1 <= d < n. Returns the key unchanged.
 * @internal shared by the modules of this package
 */
export function assertP256PrivateKey(value: unknown, name: string): Uint8Array {
  assertBytes(value, name);
  if (value.length !== P256_PRIVATE_KEY_LENGTH) {
    throw new EciesError(
      'invalid_length',
      `${name} must be ${P256_PRIVATE_KEY_LENGTH} bytes, not ${value.length}.`,
    );
  }
  if (!p256.utils.isValidSecretKey(value)) {
    throw new EciesError(
      'invalid_private_key',
      `${name} must be a scalar in [1, n - 1] of P-256 (it is zero or at least the group order).`,
    );
  }
  return value;
}

/**
 * Draws `length` bytes and checks what the source returned.
 * @internal shared by the modules of this package
 */
export function drawRandomBytes(source: RandomBytes | undefined, length: number): Uint8Array {
  const bytes = (source ?? defaultRandomBytes)(length);
  assertBytes(bytes, 'options.randomBytes() result');
  if (bytes.length !== length) {
    throw new EciesError(
      'invalid_length',
      `options.randomBytes(${length}) returned ${bytes.length} bytes.`,
    );
  }
  return bytes;
}

/**
 * The ephemeral key pair of one message: the given private key (checked) or a fresh one.
 * @internal shared by the modules of this package
 */
export function ephemeralKeyPair(
  ephemeralPrivateKey: Uint8Array | undefined,
  randomBytes: RandomBytes | undefined,
): P256KeyPair {
  if (ephemeralPrivateKey !== undefined) {
    assertP256PrivateKey(ephemeralPrivateKey, 'options.ephemeralPrivateKey');
    return {
      privateKey: ephemeralPrivateKey,
      publicKey: p256.getPublicKey(ephemeralPrivateKey, false),
    };
  }
  return generateP256KeyPair({ randomBytes });
}

/**
 * The 32-byte X coordinate of ECDH(privateKey, publicKey); both must already be checked.
 * @internal shared by the modules of this package
 */
export function ecdhX(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  const compressed = p256.getSharedSecret(privateKey, publicKey, true);
  const x = compressed.slice(1);
  compressed.fill(0);
  return x;
}

/**
 * Generates a P-256 key pair.
 *
 * @param options - optional source of randomness (tests)
 * @returns a 32-byte private key and its 65-byte uncompressed public key
 * @throws {EciesError} `invalid_type` / `invalid_length` when `options.randomBytes` returns something unusable
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateP256KeyPair();
 * // publicKey.length === 65, publicKey[0] === 0x04
 * ```
 */
export function generateP256KeyPair(options: GenerateP256KeyPairOptions = {}): P256KeyPair {
  const seed = drawRandomBytes(options.randomBytes, p256.lengths.seed!);
  // randomSecretKey reduces the 48-byte seed modulo n - 1 and adds 1: never zero, never >= n.
  const privateKey = p256.utils.randomSecretKey(seed);
  seed.fill(0);
  return { privateKey, publicKey: p256.getPublicKey(privateKey, false) };
}

/**
 * The uncompressed public key of a P-256 private key.
 *
 * @param privateKey - 32-byte big-endian scalar in [1, n - 1]
 * @returns the 65-byte uncompressed SEC1 public key (`0x04 || X || Y`)
 * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_private_key`
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateP256KeyPair();
 * p256PublicKeyFromPrivateKey(privateKey); // equals publicKey
 * ```
 */
export function p256PublicKeyFromPrivateKey(privateKey: Uint8Array): Uint8Array {
  assertP256PrivateKey(privateKey, 'privateKey');
  return p256.getPublicKey(privateKey, false);
}

/**
 * A P-256 public key as the 130 lowercase hex characters of `GET /v1/enclave/pubkey` and
 * `X-Obol-Reply-Pubkey`.
 *
 * @param publicKey - 65-byte uncompressed SEC1 public key
 * @returns 130 lowercase hex characters, starting `04`
 * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_public_key`
 * @example
 * ```ts
 * const { publicKey } = generateP256KeyPair();
 * const hex = p256PublicKeyToHex(publicKey); // '04…', 130 characters
 * ```
 */
export function p256PublicKeyToHex(publicKey: Uint8Array): string {
  return bytesToHex(assertP256PublicKey(publicKey, 'publicKey'));
}

/**
 * Parses and checks the 130-hex-character form of a P-256 public key (either case).
 *
 * @param hex - 130 hex characters, `04 || X || Y`
 * @returns the 65-byte uncompressed public key
 * @throws {EciesError} `invalid_type` (not a string), `invalid_length` (not 130 characters),
 *   `invalid_public_key` (not hex, wrong prefix, not on the curve)
 * @example
 * ```ts
 * const { publicKey } = generateP256KeyPair();
 * p256PublicKeyFromHex(p256PublicKeyToHex(publicKey)); // equals publicKey
 * ```
 */
export function p256PublicKeyFromHex(hex: string): Uint8Array {
  if (typeof hex !== 'string') {
    throw new EciesError(
      'invalid_type',
      `The public key hex must be a string, not ${describe(hex)}.`,
    );
  }
  if (hex.length !== P256_PUBLIC_KEY_LENGTH * 2) {
    throw new EciesError(
      'invalid_length',
      `The public key hex must be ${P256_PUBLIC_KEY_LENGTH * 2} characters (65 bytes), not ${hex.length}.`,
    );
  }
  if (!/^[0-9a-fA-F]*$/.test(hex)) {
    throw new EciesError(
      'invalid_public_key',
      'The public key hex has characters other than 0-9, a-f.',
    );
  }
  return assertP256PublicKey(hexToBytes(hex), 'publicKey');
}

function obolKey(
  sharedX: Uint8Array,
  ephemeralPublicKey: Uint8Array,
  recipientPublicKey: Uint8Array,
) {
  const info = new Uint8Array(P256_PUBLIC_KEY_LENGTH * 2);
  info.set(ephemeralPublicKey, 0);
  info.set(recipientPublicKey, P256_PUBLIC_KEY_LENGTH);
  // An empty salt: HKDF then uses HashLen zero bytes, as the Go gateway's nil salt does.
  return hkdf(sha256, sharedX, undefined, info, 32);
}

/**
 * Encrypts to a P-256 public key in the Obol format (`application/x-obol-encrypted`).
 *
 * @param recipientPublicKey - 65-byte uncompressed SEC1 public key (`0x04 || X || Y`)
 * @param plaintext - bytes to encrypt, any length
 * @param options - fixed ephemeral key, nonce or randomness, for tests only
 * @returns `0x01 || ephemeralPublicKey (65) || nonce (12) || ciphertext || tag (16)`, 94 bytes
 *   longer than the plaintext
 * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_public_key`,
 *   `invalid_private_key` (a bad `options.ephemeralPrivateKey`)
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateP256KeyPair();
 * const message = obolEncrypt(publicKey, new TextEncoder().encode('{"model":"m"}'));
 * new TextDecoder().decode(obolDecrypt(privateKey, message)); // '{"model":"m"}'
 * ```
 */
export function obolEncrypt(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  options: ObolEncryptOptions = {},
): Uint8Array {
  assertP256PublicKey(recipientPublicKey, 'recipientPublicKey');
  assertBytes(plaintext, 'plaintext');
  let nonce: Uint8Array;
  if (options.nonce !== undefined) {
    assertBytes(options.nonce, 'options.nonce');
    if (options.nonce.length !== OBOL_NONCE_LENGTH) {
      throw new EciesError(
        'invalid_length',
        `options.nonce must be ${OBOL_NONCE_LENGTH} bytes, not ${options.nonce.length}.`,
      );
    }
    nonce = options.nonce;
  } else {
    nonce = drawRandomBytes(options.randomBytes, OBOL_NONCE_LENGTH);
  }
  const ephemeral = ephemeralKeyPair(options.ephemeralPrivateKey, options.randomBytes);
  const sharedX = ecdhX(ephemeral.privateKey, recipientPublicKey);
  const key = obolKey(sharedX, ephemeral.publicKey, recipientPublicKey);
  const sealed = gcm(key, nonce).encrypt(plaintext);
  sharedX.fill(0);
  key.fill(0);
  if (options.ephemeralPrivateKey === undefined) ephemeral.privateKey.fill(0);

  const out = new Uint8Array(1 + P256_PUBLIC_KEY_LENGTH + OBOL_NONCE_LENGTH + sealed.length);
  out[0] = OBOL_VERSION;
  out.set(ephemeral.publicKey, 1);
  out.set(nonce, 1 + P256_PUBLIC_KEY_LENGTH);
  out.set(sealed, 1 + P256_PUBLIC_KEY_LENGTH + OBOL_NONCE_LENGTH);
  return out;
}

/**
 * Decrypts an Obol-format message with the recipient's P-256 private key.
 *
 * @param recipientPrivateKey - 32-byte big-endian scalar in [1, n - 1]
 * @param message - `0x01 || ephemeralPublicKey (65) || nonce (12) || ciphertext || tag (16)`
 * @returns the plaintext
 * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_private_key` (bad key);
 *   `ciphertext_too_short` (under 94 bytes), `unsupported_version` (first byte not 0x01),
 *   `invalid_public_key` (the ephemeral key is not a P-256 point), `decryption_failed`
 *   (tag mismatch: altered message or wrong key)
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateP256KeyPair();
 * const message = obolEncrypt(publicKey, new Uint8Array([1, 2, 3]));
 * obolDecrypt(privateKey, message); // Uint8Array [1, 2, 3]
 * ```
 */
export function obolDecrypt(recipientPrivateKey: Uint8Array, message: Uint8Array): Uint8Array {
  assertP256PrivateKey(recipientPrivateKey, 'recipientPrivateKey');
  assertBytes(message, 'message');
  if (message.length < OBOL_MIN_MESSAGE_LENGTH) {
    throw new EciesError(
      'ciphertext_too_short',
      `An Obol message is at least ${OBOL_MIN_MESSAGE_LENGTH} bytes, this one is ${message.length}.`,
    );
  }
  if (message[0] !== OBOL_VERSION) {
    throw new EciesError(
      'unsupported_version',
      `Obol message version 0x${hexByte(message[0]!)} is not supported (only 0x01).`,
    );
  }
  const ephemeralPublicKey = assertP256PublicKey(
    message.subarray(1, 1 + P256_PUBLIC_KEY_LENGTH),
    'the ephemeral public key',
  );
  const nonce = message.subarray(
    1 + P256_PUBLIC_KEY_LENGTH,
    1 + P256_PUBLIC_KEY_LENGTH + OBOL_NONCE_LENGTH,
  );
  const sealed = message.subarray(1 + P256_PUBLIC_KEY_LENGTH + OBOL_NONCE_LENGTH);
  const recipientPublicKey = p256.getPublicKey(recipientPrivateKey, false);
  const sharedX = ecdhX(recipientPrivateKey, ephemeralPublicKey);
  const key = obolKey(sharedX, ephemeralPublicKey, recipientPublicKey);
  sharedX.fill(0);
  try {
    return gcm(key, nonce).decrypt(sealed);
  } catch (cause) {
    throw new EciesError(
      'decryption_failed',
      'The Obol message failed authentication: it was altered, or it is not for this key.',
      { cause },
    );
  } finally {
    key.fill(0);
  }
}

/** @internal */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (value instanceof ArrayBuffer) return 'an ArrayBuffer';
  return `a ${typeof value}`;
}

function hexByte(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}
