/**
 * Apple's ECIES as `SecKeyCreateEncryptedData` does it with
 * `kSecKeyAlgorithmECIESEncryptionStandardVariableIVX963SHA256AESGCM` on a P-256 key (the
 * Secure Enclave's only curve; the `Cofactor` spelling of the same algorithm is identical on
 * P-256, whose cofactor is 1).
 *
 * Wire format: `ephemeralPublicKey (65) || ciphertext || tag (16)`, no version byte.
 * Z = X coordinate of ECDH; ANSI X9.63 KDF with SHA-256 and sharedInfo = ephemeralPublicKey
 * derives 32 bytes: the first 16 are the AES-128 key, the next 16 the GCM IV ("VariableIV": a
 * 16-byte IV, so GCM derives its counter block through GHASH). No associated data.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { EciesError } from './errors.js';
import {
  assertBytes,
  assertP256PrivateKey,
  assertP256PublicKey,
  ecdhX,
  ephemeralKeyPair,
  P256_PUBLIC_KEY_LENGTH,
  type RandomBytes,
} from './obol.js';

/** AES key length for P-256 keys in Apple's ECIES: 128 bits for curves of at most 256 bits. */
export const APPLE_AES_KEY_LENGTH = 16;

/** Length of the GCM IV Apple's VariableIV algorithms take from the KDF output. */
export const APPLE_IV_LENGTH = 16;

/** Length in bytes of the AES-GCM tag that ends an Apple ECIES message. */
export const APPLE_TAG_LENGTH = 16;

/** Shortest valid Apple ECIES message on P-256 (empty plaintext): 65 + 16 = 81 bytes. */
export const APPLE_MIN_MESSAGE_LENGTH = P256_PUBLIC_KEY_LENGTH + APPLE_TAG_LENGTH;

/** Options of {@link appleEncrypt}. Meant for tests and known-answer vectors; leave unset in production. */
export interface AppleEncryptOptions {
  /**
   * The ephemeral private key (32 bytes) instead of a fresh one. With this scheme the key and IV
   * follow from it, so reusing it reuses the GCM key and IV: only for fixed test vectors.
   */
  ephemeralPrivateKey?: Uint8Array;
  /**
   * Source of randomness for the ephemeral key.
   * @default crypto.getRandomValues through @noble/hashes
   */
  randomBytes?: RandomBytes;
}

// ANSI X9.63 KDF: Hash(Z || counter32be || sharedInfo) for counter = 1, 2, ... concatenated.
function x963KdfSha256(sharedX: Uint8Array, sharedInfo: Uint8Array, length: number): Uint8Array {
  const out = new Uint8Array(length);
  const input = new Uint8Array(sharedX.length + 4 + sharedInfo.length);
  input.set(sharedX, 0);
  input.set(sharedInfo, sharedX.length + 4);
  const view = new DataView(input.buffer);
  for (let counter = 1, offset = 0; offset < length; counter++, offset += 32) {
    view.setUint32(sharedX.length, counter, false);
    const block = sha256(input);
    out.set(block.subarray(0, Math.min(32, length - offset)), offset);
    block.fill(0);
  }
  input.fill(0);
  return out;
}

function appleKeyAndIv(sharedX: Uint8Array, ephemeralPublicKey: Uint8Array) {
  const material = x963KdfSha256(
    sharedX,
    ephemeralPublicKey,
    APPLE_AES_KEY_LENGTH + APPLE_IV_LENGTH,
  );
  return {
    material,
    key: material.subarray(0, APPLE_AES_KEY_LENGTH),
    iv: material.subarray(APPLE_AES_KEY_LENGTH),
  };
}

/**
 * Encrypts to a P-256 public key as Apple's `SecKeyCreateEncryptedData` with
 * `kSecKeyAlgorithmECIESEncryptionStandardVariableIVX963SHA256AESGCM` does, so that
 * `SecKeyCreateDecryptedData` with that algorithm (a Secure Enclave key, for instance) opens it.
 *
 * @param recipientPublicKey - 65-byte uncompressed SEC1 public key (`0x04 || X || Y`)
 * @param plaintext - bytes to encrypt, any length
 * @param options - fixed ephemeral key or randomness, for tests only
 * @returns `ephemeralPublicKey (65) || ciphertext || tag (16)`, 81 bytes longer than the plaintext
 * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_public_key`,
 *   `invalid_private_key` (a bad `options.ephemeralPrivateKey`)
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateP256KeyPair();
 * const message = appleEncrypt(publicKey, new TextEncoder().encode('hello'));
 * new TextDecoder().decode(appleDecrypt(privateKey, message)); // 'hello'
 * ```
 */
export function appleEncrypt(
  recipientPublicKey: Uint8Array,
  plaintext: Uint8Array,
  options: AppleEncryptOptions = {},
): Uint8Array {
  assertP256PublicKey(recipientPublicKey, 'recipientPublicKey');
  assertBytes(plaintext, 'plaintext');
  const ephemeral = ephemeralKeyPair(options.ephemeralPrivateKey, options.randomBytes);
  const sharedX = ecdhX(ephemeral.privateKey, recipientPublicKey);
  const { material, key, iv } = appleKeyAndIv(sharedX, ephemeral.publicKey);
  const sealed = gcm(key, iv).encrypt(plaintext);
  sharedX.fill(0);
  material.fill(0);
  if (options.ephemeralPrivateKey === undefined) ephemeral.privateKey.fill(0);

  const out = new Uint8Array(P256_PUBLIC_KEY_LENGTH + sealed.length);
  out.set(ephemeral.publicKey, 0);
  out.set(sealed, P256_PUBLIC_KEY_LENGTH);
  return out;
}

/**
 * Decrypts what Apple's `SecKeyCreateEncryptedData` with
 * `kSecKeyAlgorithmECIESEncryptionStandardVariableIVX963SHA256AESGCM` (or its `Cofactor`
 * twin) produced for a P-256 key.
 *
 * @param recipientPrivateKey - 32-byte big-endian scalar in [1, n - 1]
 * @param message - `ephemeralPublicKey (65) || ciphertext || tag (16)`
 * @returns the plaintext
 * @throws {EciesError} `invalid_type`, `invalid_length`, `invalid_private_key` (bad key);
 *   `ciphertext_too_short` (under 81 bytes), `invalid_public_key` (the leading ephemeral key
 *   is not an uncompressed P-256 point), `decryption_failed` (tag mismatch: altered message,
 *   wrong key, or another algorithm)
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateP256KeyPair();
 * appleDecrypt(privateKey, appleEncrypt(publicKey, new Uint8Array([7]))); // Uint8Array [7]
 * ```
 */
export function appleDecrypt(recipientPrivateKey: Uint8Array, message: Uint8Array): Uint8Array {
  assertP256PrivateKey(recipientPrivateKey, 'recipientPrivateKey');
  assertBytes(message, 'message');
  if (message.length < APPLE_MIN_MESSAGE_LENGTH) {
    throw new EciesError(
      'ciphertext_too_short',
      `An Apple ECIES message for P-256 is at least ${APPLE_MIN_MESSAGE_LENGTH} bytes, this one is ${message.length}.`,
    );
  }
  const ephemeralPublicKey = assertP256PublicKey(
    message.subarray(0, P256_PUBLIC_KEY_LENGTH),
    'the ephemeral public key',
  );
  const sharedX = ecdhX(recipientPrivateKey, ephemeralPublicKey);
  const { material, key, iv } = appleKeyAndIv(sharedX, ephemeralPublicKey);
  sharedX.fill(0);
  try {
    return gcm(key, iv).decrypt(message.subarray(P256_PUBLIC_KEY_LENGTH));
  } catch (cause) {
    throw new EciesError(
      'decryption_failed',
      'The Apple ECIES message failed authentication: it was altered, it is not for this key, or it was made with another algorithm.',
      { cause },
    );
  } finally {
    material.fill(0);
  }
}
