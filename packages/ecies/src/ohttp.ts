/**
 * Oblivious HTTP (RFC 9458) and chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp, wire
 * format of -08) on the HPKE of this package: key configurations and their
 * `application/ohttp-keys` list, one-shot request and response encapsulation, and incremental
 * chunked encapsulation for streams (push bytes in, get plaintext chunks out as they complete).
 *
 * The payloads are opaque bytes; they are normally binary HTTP messages (RFC 9292, see
 * bhttp.ts). Request side: the Client encapsulates, the Gateway decapsulates; response side the
 * reverse, with keys exported from the request's HPKE context.
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { expand, extract } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concatBytes, isBytes, randomBytes as nobleRandomBytes } from '@noble/hashes/utils.js';
import { EciesError } from './errors.js';
import {
  HPKE_AEAD,
  HPKE_KDF,
  HPKE_KEM,
  type HpkeRecipientContext,
  type HpkeSenderContext,
  type HpkeSuite,
  type HpkeSuiteParameters,
  hpkeSuite,
} from './hpke.js';
import { decodeVarint, encodeVarint } from './varint.js';

// ---------------------------------------------------------------------------------------------
// Types

/** One (KDF, AEAD) pair a key configuration offers (RFC 9458 section 3.1). */
export interface OhttpSymmetricSuite {
  /** HPKE KDF identifier, e.g. 0x0001 (HKDF-SHA256). */
  kdfId: number;
  /** HPKE AEAD identifier, e.g. 0x0001 (AES-128-GCM) or 0x0003 (ChaCha20-Poly1305). */
  aeadId: number;
}

/** A key configuration (RFC 9458 section 3.1): what a Gateway publishes and a Client encrypts to. */
export interface OhttpKeyConfig {
  /** Key identifier, 0 to 255, chosen by the Gateway. */
  keyId: number;
  /** HPKE KEM identifier: 0x0010 (DHKEM(P-256, HKDF-SHA256)) or 0x0020 (DHKEM(X25519, HKDF-SHA256)). */
  kemId: number;
  /** The KEM public key, Npk bytes (65 for P-256, uncompressed; 32 for X25519). */
  publicKey: Uint8Array;
  /** The (KDF, AEAD) pairs offered, in the Gateway's order of preference; at least one. */
  symmetric: readonly OhttpSymmetricSuite[];
}

/** A Gateway's key: its public configuration plus the KEM private key (Nsk bytes). Keep it secret. */
export interface OhttpServerKey extends OhttpKeyConfig {
  /** The KEM private key, Nsk bytes (32 for both KEMs). */
  privateKey: Uint8Array;
  /** A native Diffie-Hellman for this key's KEM (see {@link HpkeSuiteParameters.dh}). */
  dh?: HpkeSuiteParameters['dh'];
}

/** The algorithm header of an encapsulated request (RFC 9458 section 4.3), without enc. */
export interface OhttpHeader {
  /** Key identifier, 0 to 255. */
  readonly keyId: number;
  /** HPKE KEM identifier. */
  readonly kemId: number;
  /** HPKE KDF identifier. */
  readonly kdfId: number;
  /** HPKE AEAD identifier. */
  readonly aeadId: number;
}

/** A source of randomness: `length` random bytes. */
export type OhttpRandomBytes = (length: number) => Uint8Array;

/** Options of {@link generateOhttpKey}. */
export interface GenerateOhttpKeyOptions {
  /**
   * Key identifier, 0 to 255. Give each live key its own (rotation adds a new one).
   * @default 0
   */
  keyId?: number;
  /**
   * KEM: 0x0010 (P-256, keys that can live in secure hardware) or 0x0020 (X25519).
   * @default 0x0010
   */
  kemId?: number;
  /**
   * The (KDF, AEAD) pairs to offer, each implemented here.
   * @default [{ kdfId: 0x0001, aeadId: 0x0001 }, { kdfId: 0x0001, aeadId: 0x0003 }]
   */
  symmetric?: readonly OhttpSymmetricSuite[];
  /**
   * Source of randomness for the key pair.
   * @default crypto.getRandomValues, through @noble/hashes
   */
  randomBytes?: OhttpRandomBytes;
}

/** Parameters of {@link importOhttpKey}. */
export interface ImportOhttpKeyParameters {
  /** Key identifier, 0 to 255. */
  keyId: number;
  /** KEM identifier, 0x0010 or 0x0020. */
  kemId: number;
  /** The KEM private key, Nsk bytes. */
  privateKey: Uint8Array;
  /**
   * The (KDF, AEAD) pairs to offer.
   * @default [{ kdfId: 0x0001, aeadId: 0x0001 }, { kdfId: 0x0001, aeadId: 0x0003 }]
   */
  symmetric?: readonly OhttpSymmetricSuite[];
  /**
   * A native Diffie-Hellman for the KEM, used when requests to this key are opened (see
   * {@link HpkeSuiteParameters.dh}). @default @noble/curves
   */
  dh?: HpkeSuiteParameters['dh'];
}

/** Options of {@link encapsulateRequest} and {@link createChunkedRequestWriter}. */
export interface OhttpEncapsulateOptions {
  /**
   * The (KDF, AEAD) pair to use; it must be one the key configuration offers.
   * @default the first pair of the configuration this library implements
   */
  suite?: OhttpSymmetricSuite;
  /**
   * Input keying material for the ephemeral key pair (DeriveKeyPair(ikmE)), at least Nsk bytes.
   * Only for deterministic tests: a fixed value reuses the ephemeral key and breaks secrecy.
   * @default fresh random bytes
   */
  ikmE?: Uint8Array;
  /**
   * The ephemeral private key itself (Nsk bytes), as RFC 9458 Appendix A lists it. Only for
   * deterministic tests, like `ikmE`; takes precedence over it.
   * @default a fresh key pair
   */
  ephemeralPrivateKey?: Uint8Array;
  /**
   * Source of randomness for the ephemeral key.
   * @default crypto.getRandomValues, through @noble/hashes
   */
  randomBytes?: OhttpRandomBytes;
}

/** Options of {@link OhttpServerContext.encapsulateResponse} and chunked response writers. */
export interface OhttpResponseOptions {
  /**
   * The response nonce, max(Nn, Nk) bytes (16 for AES-128-GCM, 32 for ChaCha20-Poly1305).
   * Only for deterministic tests: it must be fresh for every response.
   * @default random bytes
   */
  responseNonce?: Uint8Array;
  /**
   * Source of randomness for the response nonce.
   * @default crypto.getRandomValues, through @noble/hashes
   */
  randomBytes?: OhttpRandomBytes;
}

/** Options of the chunked readers. */
export interface OhttpChunkedReaderOptions {
  /**
   * The largest sealed chunk accepted, in bytes (the final chunk included): bounds what a reader
   * buffers. The draft asks receivers to accept at least 16 KiB.
   * @default 16 MiB (16_777_216)
   */
  maxChunkLength?: number;
}

/** The Client's state after {@link encapsulateRequest}: it opens the matching response. */
export interface OhttpClientContext extends OhttpHeader {
  /** The encapsulated KEM key sent in the request, Nenc bytes. */
  readonly enc: Uint8Array;
  /**
   * Decapsulates the Gateway's response (RFC 9458 section 4.4).
   * @param encapsulatedResponse - response_nonce (max(Nn, Nk) bytes) || ciphertext || tag
   * @returns the response bytes (normally a binary HTTP response)
   * @throws {EciesError} `invalid_type`; `ciphertext_too_short`; `decryption_failed`
   */
  decapsulateResponse(encapsulatedResponse: Uint8Array): Uint8Array;
}

/** The Gateway's state after {@link decapsulateRequest}: it seals the response. */
export interface OhttpServerContext extends OhttpHeader {
  /** The request's encapsulated KEM key, Nenc bytes (what a replay cache remembers). */
  readonly enc: Uint8Array;
  /**
   * Encapsulates a response (RFC 9458 section 4.4).
   * @param response - the response bytes (normally a binary HTTP response)
   * @returns response_nonce || ciphertext || tag (response length + max(Nn, Nk) + Nt bytes)
   * @throws {EciesError} `invalid_type`; `invalid_length` for a response nonce of the wrong length
   */
  encapsulateResponse(response: Uint8Array, options?: OhttpResponseOptions): Uint8Array;
}

/**
 * The sending half of a chunked message. Call `start` once, `chunk` any number of times, then
 * `final` once; send the returned bytes in order. Calling `chunk` or `final` before `start`
 * prepends what `start` would have returned.
 */
export interface OhttpChunkedWriter {
  /**
   * The bytes before the first chunk: the request header and enc, or the response nonce.
   * @throws {EciesError} `invalid_type` if called after `chunk`, `final` or a previous `start`
   */
  start(): Uint8Array;
  /**
   * Seals a non-final chunk: varint(length) || sealed chunk. An empty plaintext returns empty
   * bytes and seals nothing (the format forbids empty non-final chunks).
   * @throws {EciesError} `invalid_type` (after `final`, or not bytes); `message_limit_reached`
   */
  chunk(plaintext: Uint8Array): Uint8Array;
  /**
   * Seals the final chunk with the associated data "final": 0x00 || sealed chunk. It may be empty.
   * @param plaintext - the last bytes of the message @default empty
   * @throws {EciesError} `invalid_type` (after `final`, or not bytes); `message_limit_reached`
   */
  final(plaintext?: Uint8Array): Uint8Array;
  /** Whether `final` was called. */
  readonly finished: boolean;
}

/**
 * The receiving half of a chunked message. Push the bytes as they arrive, in order; each call
 * returns the plaintext chunks that became complete. Call `end` when the stream ends: it opens
 * the final chunk, which runs to the end of the stream.
 */
export interface OhttpChunkedReader {
  /**
   * Adds received bytes (any split).
   * @returns the plaintext of each non-final chunk completed by these bytes (non-empty each)
   * @throws {EciesError} `invalid_type`; `decryption_failed` (altered, reordered or dropped chunk);
   *   `malformed_message` (a non-final chunk with no plaintext); `invalid_length` (a chunk longer
   *   than `maxChunkLength`); `unknown_key_id`, `unsupported_suite`, `invalid_public_key`
   *   (request header). After an error the reader throws the same error again.
   */
  push(bytes: Uint8Array): Uint8Array[];
  /**
   * Ends the stream and opens the final chunk.
   * @returns the final chunk's plaintext (possibly empty)
   * @throws {EciesError} `truncated` if the stream ended before its final chunk (cut between or
   *   inside chunks); `decryption_failed`; or the error `push` threw before
   */
  end(): Uint8Array;
  /** Whether `end` returned successfully. */
  readonly finished: boolean;
}

/** The Client's state of a chunked request: it reads the chunked response. */
export interface OhttpChunkedClientContext extends OhttpHeader {
  /** The encapsulated KEM key sent in the request, Nenc bytes. */
  readonly enc: Uint8Array;
  /**
   * A reader of the chunked response (response nonce, then chunks).
   * @throws {EciesError} `invalid_type`, `invalid_length` for wrong options
   */
  createResponseReader(options?: OhttpChunkedReaderOptions): OhttpChunkedReader;
}

/** The Gateway's state of a chunked request: it writes the chunked response. */
export interface OhttpChunkedServerContext extends OhttpHeader {
  /** The request's encapsulated KEM key, Nenc bytes (what a replay cache remembers). */
  readonly enc: Uint8Array;
  /**
   * A writer of the chunked response; its `start` returns the response nonce.
   * @throws {EciesError} `invalid_type`; `invalid_length` for a response nonce of the wrong length
   */
  createResponseWriter(options?: OhttpResponseOptions): OhttpChunkedWriter;
}

/** A {@link OhttpChunkedWriter} for a request, with the context that reads its response. */
export interface OhttpChunkedRequestWriter extends OhttpChunkedWriter {
  /** Reads the response to this request. */
  readonly context: OhttpChunkedClientContext;
}

/** A {@link OhttpChunkedReader} for a request; its context exists once the header has arrived. */
export interface OhttpChunkedRequestReader extends OhttpChunkedReader {
  /** Writes the response; `undefined` until the header (7 + Nenc bytes) has been pushed. */
  readonly context: OhttpChunkedServerContext | undefined;
}

// ---------------------------------------------------------------------------------------------
// Constants and byte helpers

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const REQUEST_LABEL = encoder.encode('message/bhttp request');
const RESPONSE_LABEL = encoder.encode('message/bhttp response');
const CHUNKED_REQUEST_LABEL = encoder.encode('message/bhttp chunked request');
const CHUNKED_RESPONSE_LABEL = encoder.encode('message/bhttp chunked response');
const FINAL_AAD = encoder.encode('final');
const KEY_LABEL = encoder.encode('key');
const NONCE_LABEL = encoder.encode('nonce');
const HPKE_V1 = encoder.encode('HPKE-v1');
/** key_id (1) || kem_id (2) || kdf_id (2) || aead_id (2). */
const HEADER_LENGTH = 7;
const DEFAULT_MAX_CHUNK_LENGTH = 16 * 1024 * 1024;
const DEFAULT_SYMMETRIC: readonly OhttpSymmetricSuite[] = Object.freeze([
  Object.freeze({ kdfId: HPKE_KDF.HKDF_SHA256, aeadId: HPKE_AEAD.AES_128_GCM }),
  Object.freeze({ kdfId: HPKE_KDF.HKDF_SHA256, aeadId: HPKE_AEAD.CHACHA20_POLY1305 }),
]);

function bytes(value: unknown, name: string): Uint8Array {
  if (!isBytes(value)) {
    throw new EciesError('invalid_type', `${name} must be a Uint8Array.`);
  }
  return value;
}

function u16(value: number): Uint8Array {
  return Uint8Array.of(value >> 8, value & 0xff);
}

function readU16(input: Uint8Array, offset: number): number {
  return (input[offset]! << 8) | input[offset + 1]!;
}

function hex16(id: number): string {
  return '0x' + id.toString(16).toUpperCase().padStart(4, '0');
}

function isUint(value: unknown, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= max;
}

function randomSource(value: unknown): OhttpRandomBytes {
  if (value === undefined) return nobleRandomBytes;
  if (typeof value !== 'function') {
    throw new EciesError('invalid_type', 'randomBytes must be a function (length) => Uint8Array.');
  }
  return value as OhttpRandomBytes;
}

function optionsObject<T extends object>(value: T | undefined, name: string): Partial<T> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null) {
    throw new EciesError('invalid_type', `The ${name} options must be an object.`);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Suites

/** A suite only used for its KEM (Npk, Nsk, key validation); the KDF and AEAD do not matter. */
function kemSuite(kemId: number): HpkeSuite {
  if (!isUint(kemId, 0xffff)) {
    throw new EciesError('invalid_type', 'kemId must be an integer from 0 to 0xFFFF.');
  }
  return hpkeSuite({ kem: kemId, kdf: HPKE_KDF.HKDF_SHA256, aead: HPKE_AEAD.AES_128_GCM });
}

/** Whether this library can seal and open with a (KDF, AEAD) pair (export-only cannot). */
function isImplemented(kemId: number, pair: OhttpSymmetricSuite): boolean {
  if (pair.aeadId === HPKE_AEAD.EXPORT_ONLY) return false;
  try {
    hpkeSuite({ kem: kemId, kdf: pair.kdfId, aead: pair.aeadId });
    return true;
  } catch {
    return false;
  }
}

function fullSuite(
  kemId: number,
  pair: OhttpSymmetricSuite,
  dh?: HpkeSuiteParameters['dh'],
): HpkeSuite {
  if (pair.aeadId === HPKE_AEAD.EXPORT_ONLY) {
    throw new EciesError(
      'unsupported_suite',
      'The export-only AEAD (0xFFFF) cannot protect OHTTP messages; choose an AEAD such as 0x0001.',
    );
  }
  return hpkeSuite({ kem: kemId, kdf: pair.kdfId, aead: pair.aeadId, ...(dh ? { dh } : {}) });
}

function checkSymmetric(value: unknown, name: string): OhttpSymmetricSuite[] {
  if (!Array.isArray(value)) {
    throw new EciesError('invalid_type', `${name} must be an array of { kdfId, aeadId }.`);
  }
  if (value.length === 0 || value.length > 0xfffc / 4) {
    throw new EciesError(
      'invalid_key_config',
      `${name} must list 1 to 16383 (KDF, AEAD) pairs, not ${value.length}.`,
    );
  }
  return value.map((pair: unknown) => {
    if (typeof pair !== 'object' || pair === null) {
      throw new EciesError('invalid_type', `Each entry of ${name} must be { kdfId, aeadId }.`);
    }
    const { kdfId, aeadId } = pair as Record<string, unknown>;
    if (!isUint(kdfId, 0xffff) || !isUint(aeadId, 0xffff)) {
      throw new EciesError(
        'invalid_key_config',
        `Each entry of ${name} needs kdfId and aeadId, integers from 0 to 0xFFFF.`,
      );
    }
    return { kdfId, aeadId };
  });
}

function checkKeyId(value: unknown): number {
  if (!isUint(value, 0xff)) {
    throw new EciesError('invalid_key_config', 'keyId must be an integer from 0 to 255.');
  }
  return value;
}

/** Checks a configuration given as an argument; returns a normalized copy. */
function checkKeyConfig(config: unknown): OhttpKeyConfig {
  if (typeof config !== 'object' || config === null) {
    throw new EciesError(
      'invalid_type',
      'A key configuration is { keyId, kemId, publicKey, symmetric }.',
    );
  }
  const { keyId, kemId, publicKey, symmetric } = config as Record<string, unknown>;
  const suite = kemSuite(kemId as number);
  const key = bytes(publicKey, 'publicKey');
  let validated: Uint8Array;
  try {
    validated = suite.deserializePublicKey(key);
  } catch (error) {
    throw new EciesError(
      'invalid_key_config',
      `The key configuration's public key is not a valid ${hex16(suite.kemId)} key.`,
      { cause: error },
    );
  }
  return {
    keyId: checkKeyId(keyId),
    kemId: suite.kemId,
    publicKey: validated,
    symmetric: checkSymmetric(symmetric, 'symmetric'),
  };
}

// ---------------------------------------------------------------------------------------------
// Keys and key configurations

/**
 * Generates a Gateway key: a fresh KEM key pair with its key id and offered suites.
 *
 * @throws {EciesError} `invalid_type`; `invalid_key_config` (key id out of range, empty
 *   `symmetric`); `unsupported_suite` for a KEM, KDF or AEAD this library does not implement
 * @example
 * ```ts
 * const key = generateOhttpKey({ keyId: 1 }); // P-256, HKDF-SHA256, AES-128-GCM or ChaCha20-Poly1305
 * const body = encodeKeyConfigs([key]); // serve as application/ohttp-keys
 * ```
 */
export function generateOhttpKey(options?: GenerateOhttpKeyOptions): OhttpServerKey {
  const {
    keyId = 0,
    kemId = HPKE_KEM.DHKEM_P256_HKDF_SHA256,
    symmetric = DEFAULT_SYMMETRIC,
  } = optionsObject(options, 'generateOhttpKey');
  const random = randomSource(options?.randomBytes);
  const suite = kemSuite(kemId);
  const pairs = checkOffered(suite.kemId, symmetric);
  const { privateKey, publicKey } = suite.deriveKeyPair(random(suite.Nsk));
  return {
    keyId: checkKeyId(keyId),
    kemId: suite.kemId,
    publicKey,
    symmetric: pairs,
    privateKey: suite.serializePrivateKey(privateKey),
  };
}

function checkOffered(kemId: number, symmetric: unknown): OhttpSymmetricSuite[] {
  const pairs = checkSymmetric(symmetric, 'symmetric');
  for (const pair of pairs) fullSuite(kemId, pair);
  return pairs;
}

/**
 * Rebuilds a Gateway key from a stored private key (the public key is recomputed).
 *
 * @throws {EciesError} `invalid_type`; `invalid_length` / `invalid_private_key` for a bad
 *   private key; `invalid_key_config`; `unsupported_suite`
 * @example
 * ```ts
 * const stored = generateOhttpKey({ keyId: 7, kemId: 0x0020 });
 * const key = importOhttpKey({ keyId: 7, kemId: 0x0020, privateKey: stored.privateKey });
 * ```
 */
export function importOhttpKey(parameters: ImportOhttpKeyParameters): OhttpServerKey {
  if (typeof parameters !== 'object' || parameters === null) {
    throw new EciesError('invalid_type', 'importOhttpKey takes { keyId, kemId, privateKey }.');
  }
  const suite = kemSuite(parameters.kemId);
  const privateKey = suite.deserializePrivateKey(bytes(parameters.privateKey, 'privateKey'));
  return {
    keyId: checkKeyId(parameters.keyId),
    kemId: suite.kemId,
    publicKey: suite.getPublicKey(privateKey),
    symmetric: checkOffered(suite.kemId, parameters.symmetric ?? DEFAULT_SYMMETRIC),
    privateKey,
    ...(parameters.dh ? { dh: parameters.dh } : {}),
  };
}

/**
 * The public part of a key (drops `privateKey`), safe to serialize or log.
 *
 * @throws {EciesError} as {@link encodeKeyConfig}
 * @example
 * ```ts
 * const config = ohttpKeyConfig(generateOhttpKey()); // { keyId, kemId, publicKey, symmetric }
 * ```
 */
export function ohttpKeyConfig(key: OhttpKeyConfig): OhttpKeyConfig {
  return checkKeyConfig(key);
}

/**
 * Encodes a key configuration (RFC 9458 section 3.1): key_id (1) || kem_id (2) || public key
 * (Npk) || symmetric length (2) || (kdf_id (2) || aead_id (2))...
 *
 * @throws {EciesError} `invalid_type`; `invalid_key_config` (key id, public key or suites
 *   malformed); `unsupported_suite` for an unknown KEM
 * @example
 * ```ts
 * const bytes = encodeKeyConfig(generateOhttpKey({ kemId: 0x0020 })); // 41 bytes with two suites
 * ```
 */
export function encodeKeyConfig(config: OhttpKeyConfig): Uint8Array {
  const { keyId, kemId, publicKey, symmetric } = checkKeyConfig(config);
  const out = new Uint8Array(1 + 2 + publicKey.length + 2 + 4 * symmetric.length);
  out[0] = keyId;
  out.set(u16(kemId), 1);
  out.set(publicKey, 3);
  let offset = 3 + publicKey.length;
  out.set(u16(4 * symmetric.length), offset);
  offset += 2;
  for (const { kdfId, aeadId } of symmetric) {
    out.set(u16(kdfId), offset);
    out.set(u16(aeadId), offset + 2);
    offset += 4;
  }
  return out;
}

/**
 * Decodes one key configuration (RFC 9458 section 3.1). Suites this library does not implement
 * are kept (the Client skips them when encapsulating); the KEM must be known, since it fixes the
 * key's length.
 *
 * @throws {EciesError} `invalid_type`; `invalid_key_config` (short, trailing bytes, bad suites
 *   length, invalid public key); `unsupported_suite` for an unknown KEM
 * @example
 * ```ts
 * const config = decodeKeyConfig(encodeKeyConfig(generateOhttpKey()));
 * ```
 */
export function decodeKeyConfig(input: Uint8Array): OhttpKeyConfig {
  bytes(input, 'The key configuration');
  if (input.length < 3) {
    throw new EciesError(
      'invalid_key_config',
      `A key configuration is at least 3 bytes (key id, KEM id); this one is ${input.length}.`,
    );
  }
  const suite = kemSuite(readU16(input, 1));
  const afterKey = 3 + suite.Npk;
  if (input.length < afterKey + 2) {
    throw new EciesError(
      'invalid_key_config',
      `The key configuration ends inside its ${suite.Npk}-byte public key or the suites length.`,
    );
  }
  const symmetricLength = readU16(input, afterKey);
  if (symmetricLength < 4 || symmetricLength % 4 !== 0) {
    throw new EciesError(
      'invalid_key_config',
      `The symmetric algorithms length must be a positive multiple of 4, not ${symmetricLength}.`,
    );
  }
  if (input.length !== afterKey + 2 + symmetricLength) {
    throw new EciesError(
      'invalid_key_config',
      `The key configuration should be ${afterKey + 2 + symmetricLength} bytes, not ${input.length}.`,
    );
  }
  const symmetric: OhttpSymmetricSuite[] = [];
  for (let offset = afterKey + 2; offset < input.length; offset += 4) {
    symmetric.push({ kdfId: readU16(input, offset), aeadId: readU16(input, offset + 2) });
  }
  return checkKeyConfig({
    keyId: input[0]!,
    kemId: suite.kemId,
    publicKey: input.slice(3, afterKey),
    symmetric,
  });
}

/**
 * Encodes the `application/ohttp-keys` list (RFC 9458 section 3.2): each configuration prefixed
 * with its 2-byte length. Put the newest key first.
 *
 * @throws {EciesError} as {@link encodeKeyConfig}; `invalid_key_config` for an empty list
 * @example
 * ```ts
 * const body = encodeKeyConfigs([newKey, previousKey]); // Content-Type: application/ohttp-keys
 * ```
 */
export function encodeKeyConfigs(configs: readonly OhttpKeyConfig[]): Uint8Array {
  if (!Array.isArray(configs)) {
    throw new EciesError('invalid_type', 'encodeKeyConfigs takes an array of key configurations.');
  }
  if (configs.length === 0) {
    throw new EciesError('invalid_key_config', 'application/ohttp-keys lists at least one key.');
  }
  const parts: Uint8Array[] = [];
  for (const config of configs) {
    const encoded = encodeKeyConfig(config);
    parts.push(u16(encoded.length), encoded);
  }
  return concatBytes(...parts);
}

/**
 * Decodes an `application/ohttp-keys` list (RFC 9458 section 3.2). Any encoding error rejects
 * the whole list, as the RFC requires of Clients; configurations with a KEM this library does
 * not implement are skipped (their length prefix delimits them).
 *
 * @returns the supported configurations, in the list's order
 * @throws {EciesError} `invalid_type`; `invalid_key_config` (empty, cut or malformed entry);
 *   `unsupported_suite` if no configuration has a supported KEM
 * @example
 * ```ts
 * const response = await fetch('https://gateway.example/.well-known/ohttp-gateway');
 * const [config] = decodeKeyConfigs(new Uint8Array(await response.arrayBuffer()));
 * ```
 */
export function decodeKeyConfigs(input: Uint8Array): OhttpKeyConfig[] {
  bytes(input, 'The key configuration list');
  if (input.length === 0) {
    throw new EciesError('invalid_key_config', 'The application/ohttp-keys list is empty.');
  }
  const configs: OhttpKeyConfig[] = [];
  let skipped: unknown;
  let offset = 0;
  while (offset < input.length) {
    if (offset + 2 > input.length) {
      throw new EciesError('invalid_key_config', 'The key list ends inside a length prefix.');
    }
    const length = readU16(input, offset);
    const end = offset + 2 + length;
    if (end > input.length) {
      throw new EciesError(
        'invalid_key_config',
        `A key configuration announces ${length} bytes; only ${input.length - offset - 2} remain.`,
      );
    }
    const entry = input.subarray(offset + 2, end);
    try {
      configs.push(decodeKeyConfig(entry));
    } catch (error) {
      if (!(error instanceof EciesError) || error.code !== 'unsupported_suite') throw error;
      skipped = error;
    }
    offset = end;
  }
  if (configs.length === 0) {
    throw new EciesError(
      'unsupported_suite',
      'No key configuration in the list uses a KEM this library implements (0x0010, 0x0020).',
      { cause: skipped },
    );
  }
  return configs;
}

// ---------------------------------------------------------------------------------------------
// Shared encapsulation steps

function chooseSuite(config: OhttpKeyConfig, requested: unknown): HpkeSuite {
  if (requested !== undefined) {
    const [pair] = checkSymmetric([requested], 'suite');
    const offered = config.symmetric.some(
      (entry) => entry.kdfId === pair!.kdfId && entry.aeadId === pair!.aeadId,
    );
    if (!offered) {
      throw new EciesError(
        'unsupported_suite',
        `Key ${config.keyId} does not offer KDF ${hex16(pair!.kdfId)} with AEAD ${hex16(pair!.aeadId)}; pick one of its symmetric suites.`,
      );
    }
    return fullSuite(config.kemId, pair!);
  }
  const pair = config.symmetric.find((entry) => isImplemented(config.kemId, entry));
  if (pair === undefined) {
    throw new EciesError(
      'unsupported_suite',
      `Key ${config.keyId} offers no (KDF, AEAD) pair this library implements.`,
    );
  }
  return fullSuite(config.kemId, pair);
}

function headerBytes(keyId: number, suite: HpkeSuite): Uint8Array {
  return concatBytes(Uint8Array.of(keyId), u16(suite.kemId), u16(suite.kdfId), u16(suite.aeadId));
}

/**
 * DHKEM Encap with a given ephemeral private key (RFC 9180 section 4.1), for reproducing
 * published examples that list the key rather than DeriveKeyPair's input.
 */
function encapWithPrivateKey(
  suite: HpkeSuite,
  recipientPublicKey: Uint8Array,
  ephemeralPrivateKey: Uint8Array,
): { enc: Uint8Array; sharedSecret: Uint8Array } {
  const skE = suite.deserializePrivateKey(bytes(ephemeralPrivateKey, 'ephemeralPrivateKey'));
  const pkE = suite.getPublicKey(skE);
  const dh =
    suite.kemId === HPKE_KEM.DHKEM_X25519_HKDF_SHA256
      ? x25519.getSharedSecret(skE, recipientPublicKey)
      : p256.getSharedSecret(skE, recipientPublicKey, true).slice(1);
  // Both KEMs use HKDF-SHA256 with suite_id "KEM" || kem_id (RFC 9180 section 4.1).
  const kemId = concatBytes(encoder.encode('KEM'), u16(suite.kemId));
  const prk = extract(sha256, concatBytes(HPKE_V1, kemId, encoder.encode('eae_prk'), dh), EMPTY);
  const info = concatBytes(
    u16(suite.Nsecret),
    HPKE_V1,
    kemId,
    encoder.encode('shared_secret'),
    pkE,
    recipientPublicKey,
  );
  return { enc: pkE, sharedSecret: expand(sha256, prk, info, suite.Nsecret) };
}

function senderSetup(
  config: OhttpKeyConfig,
  label: Uint8Array,
  options: OhttpEncapsulateOptions | undefined,
): { header: Uint8Array; suite: HpkeSuite; enc: Uint8Array; context: HpkeSenderContext } {
  const checked = checkKeyConfig(config);
  const { suite: requested, ikmE, ephemeralPrivateKey } = optionsObject(options, 'encapsulation');
  const suite = chooseSuite(checked, requested);
  const header = headerBytes(checked.keyId, suite);
  const info = concatBytes(label, Uint8Array.of(0), header);
  if (ephemeralPrivateKey !== undefined) {
    const { enc, sharedSecret } = encapWithPrivateKey(
      suite,
      checked.publicKey,
      ephemeralPrivateKey,
    );
    return {
      header,
      suite,
      enc,
      context: suite.senderContext(suite.keySchedule(sharedSecret, info)),
    };
  }
  const random = randomSource(options?.randomBytes);
  const { enc, context } = suite.setupBaseS(checked.publicKey, info, {
    ikmE: ikmE ?? random(suite.Nsk),
  });
  return { header, suite, enc, context };
}

function keyList(keys: unknown): readonly OhttpServerKey[] {
  const list = Array.isArray(keys) ? keys : [keys];
  for (const key of list) {
    if (typeof key !== 'object' || key === null || !isBytes((key as OhttpServerKey).privateKey)) {
      throw new EciesError(
        'invalid_type',
        'keys must be a Gateway key { keyId, kemId, privateKey, publicKey, symmetric } or an array of them.',
      );
    }
  }
  return list as readonly OhttpServerKey[];
}

interface ParsedHeader extends OhttpHeader {
  key: OhttpServerKey;
  suite: HpkeSuite;
}

/** Reads the 7-byte header and finds the key it names (input holds at least 7 bytes). */
function parseHeader(keys: readonly OhttpServerKey[], input: Uint8Array): ParsedHeader {
  const keyId = input[0]!;
  const kemId = readU16(input, 1);
  const kdfId = readU16(input, 3);
  const aeadId = readU16(input, 5);
  const key = keys.find((candidate) => candidate.keyId === keyId && candidate.kemId === kemId);
  if (key === undefined) {
    throw new EciesError(
      'unknown_key_id',
      `No key has id ${keyId} with KEM ${hex16(kemId)}; the Client should fetch the key configurations again.`,
    );
  }
  const offered = key.symmetric.some((pair) => pair.kdfId === kdfId && pair.aeadId === aeadId);
  if (!offered) {
    throw new EciesError(
      'unsupported_suite',
      `Key ${keyId} does not offer KDF ${hex16(kdfId)} with AEAD ${hex16(aeadId)}.`,
    );
  }
  return { keyId, kemId, kdfId, aeadId, key, suite: fullSuite(kemId, { kdfId, aeadId }, key.dh) };
}

function entropyLength(suite: HpkeSuite): number {
  return Math.max(suite.Nn, suite.Nk);
}

function responseNonceOf(suite: HpkeSuite, options: OhttpResponseOptions | undefined): Uint8Array {
  const { responseNonce, randomBytes } = optionsObject(options, 'response');
  const length = entropyLength(suite);
  if (responseNonce === undefined) return randomSource(randomBytes)(length);
  bytes(responseNonce, 'responseNonce');
  if (responseNonce.length !== length) {
    throw new EciesError(
      'invalid_length',
      `The response nonce must be max(Nn, Nk) = ${length} bytes, not ${responseNonce.length}.`,
    );
  }
  return responseNonce.slice();
}

/** RFC 9458 section 4.4 (and the chunked draft with its own label): the response AEAD key and nonce. */
function responseKeys(
  suite: HpkeSuite,
  context: HpkeSenderContext | HpkeRecipientContext,
  label: Uint8Array,
  enc: Uint8Array,
  responseNonce: Uint8Array,
): { key: Uint8Array; nonce: Uint8Array } {
  const secret = context.export(label, entropyLength(suite));
  const prk = suite.extract(concatBytes(enc, responseNonce), secret);
  return {
    key: suite.expand(prk, KEY_LABEL, suite.Nk),
    nonce: suite.expand(prk, NONCE_LABEL, suite.Nn),
  };
}

function headerOf(suite: HpkeSuite, keyId: number): OhttpHeader {
  return { keyId, kemId: suite.kemId, kdfId: suite.kdfId, aeadId: suite.aeadId };
}

// ---------------------------------------------------------------------------------------------
// One-shot requests and responses (RFC 9458 section 4)

/**
 * Encapsulates a request to a Gateway's key configuration (RFC 9458 section 4.3):
 * header (7 bytes) || enc (Nenc) || ciphertext || tag, sealed with info "message/bhttp
 * request" || 0x00 || header.
 *
 * @param keyConfig - the Gateway's configuration (from {@link decodeKeyConfigs})
 * @param request - the request bytes, normally a binary HTTP request
 * @returns the bytes to POST as `message/ohttp-req`, and the context that opens the response
 * @throws {EciesError} `invalid_type`; `invalid_key_config`; `unsupported_suite` (no usable or
 *   not offered KDF/AEAD); `invalid_length` / `invalid_private_key` for a bad `ikmE` or
 *   `ephemeralPrivateKey`
 * @example
 * ```ts
 * const [config] = decodeKeyConfigs(keysBody);
 * const { encapsulatedRequest, context } = encapsulateRequest(config, encodeBhttpRequest(request));
 * const response = await fetch(gatewayUrl, {
 *   method: 'POST',
 *   headers: { 'content-type': 'message/ohttp-req' },
 *   body: encapsulatedRequest,
 * });
 * const inner = decodeBhttpResponse(context.decapsulateResponse(new Uint8Array(await response.arrayBuffer())));
 * ```
 */
export function encapsulateRequest(
  keyConfig: OhttpKeyConfig,
  request: Uint8Array,
  options?: OhttpEncapsulateOptions,
): { encapsulatedRequest: Uint8Array; context: OhttpClientContext } {
  bytes(request, 'The request');
  const { header, suite, enc, context } = senderSetup(keyConfig, REQUEST_LABEL, options);
  const encapsulatedRequest = concatBytes(header, enc, context.seal(request, EMPTY));
  const Nr = entropyLength(suite);
  return {
    encapsulatedRequest,
    context: Object.freeze({
      ...headerOf(suite, header[0]!),
      enc,
      decapsulateResponse(encapsulatedResponse: Uint8Array): Uint8Array {
        bytes(encapsulatedResponse, 'The encapsulated response');
        if (encapsulatedResponse.length < Nr + suite.Nt) {
          throw new EciesError(
            'ciphertext_too_short',
            `An encapsulated response is at least ${Nr + suite.Nt} bytes (nonce and tag); this one is ${encapsulatedResponse.length}.`,
          );
        }
        const responseNonce = encapsulatedResponse.subarray(0, Nr);
        const { key, nonce } = responseKeys(suite, context, RESPONSE_LABEL, enc, responseNonce);
        return suite.aeadOpen(key, nonce, encapsulatedResponse.subarray(Nr), EMPTY);
      },
    }),
  };
}

/**
 * Decapsulates a request with the Gateway's key(s), picked by the request's key id and KEM
 * (RFC 9458 section 4.3).
 *
 * @param keys - one Gateway key or several (current and those in their grace period)
 * @param encapsulatedRequest - the `message/ohttp-req` body
 * @returns the request bytes and the context that encapsulates the response
 * @throws {EciesError} `invalid_type`; `ciphertext_too_short`; `unknown_key_id` (no key with
 *   that id and KEM: the Client should refetch the keys); `unsupported_suite` (KDF/AEAD not
 *   offered); `invalid_public_key` (bad enc); `decryption_failed`
 * @example
 * ```ts
 * const { request, context } = decapsulateRequest(keys, body);
 * const inner = decodeBhttpRequest(request);
 * const reply = context.encapsulateResponse(encodeBhttpResponse({ status: 200, body: new Uint8Array(0) }));
 * ```
 */
export function decapsulateRequest(
  keys: OhttpServerKey | readonly OhttpServerKey[],
  encapsulatedRequest: Uint8Array,
): { request: Uint8Array; context: OhttpServerContext } {
  const list = keyList(keys);
  bytes(encapsulatedRequest, 'The encapsulated request');
  if (encapsulatedRequest.length < HEADER_LENGTH) {
    throw new EciesError(
      'ciphertext_too_short',
      `An encapsulated request starts with a ${HEADER_LENGTH}-byte header; this one is ${encapsulatedRequest.length} bytes.`,
    );
  }
  const parsed = parseHeader(list, encapsulatedRequest);
  const { suite } = parsed;
  const minimum = HEADER_LENGTH + suite.Nenc + suite.Nt;
  if (encapsulatedRequest.length < minimum) {
    throw new EciesError(
      'ciphertext_too_short',
      `This suite's encapsulated requests are at least ${minimum} bytes; this one is ${encapsulatedRequest.length}.`,
    );
  }
  const header = encapsulatedRequest.slice(0, HEADER_LENGTH);
  const enc = encapsulatedRequest.slice(HEADER_LENGTH, HEADER_LENGTH + suite.Nenc);
  const info = concatBytes(REQUEST_LABEL, Uint8Array.of(0), header);
  const context = suite.setupBaseR(enc, parsed.key.privateKey, info);
  const request = context.open(encapsulatedRequest.subarray(HEADER_LENGTH + suite.Nenc), EMPTY);
  return {
    request,
    context: Object.freeze({
      ...headerOf(suite, parsed.keyId),
      enc,
      encapsulateResponse(response: Uint8Array, options?: OhttpResponseOptions): Uint8Array {
        bytes(response, 'The response');
        const responseNonce = responseNonceOf(suite, options);
        const { key, nonce } = responseKeys(suite, context, RESPONSE_LABEL, enc, responseNonce);
        return concatBytes(responseNonce, suite.aeadSeal(key, nonce, response, EMPTY));
      },
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Chunked: shared machinery

/** Received bytes not yet consumed, kept as pieces so a large chunk is copied once. */
function createByteQueue() {
  const pieces: Uint8Array[] = [];
  let head = 0;
  let length = 0;
  function copy(count: number, consume: boolean): Uint8Array {
    const out = new Uint8Array(count);
    let written = 0;
    let index = 0;
    let offset = head;
    while (written < count) {
      const piece = pieces[index]!;
      const take = Math.min(piece.length - offset, count - written);
      out.set(piece.subarray(offset, offset + take), written);
      written += take;
      offset += take;
      if (offset === piece.length) {
        index++;
        offset = 0;
      }
    }
    if (consume) {
      pieces.splice(0, index);
      head = offset;
      length -= count;
    }
    return out;
  }
  return {
    get length() {
      return length;
    },
    push(piece: Uint8Array) {
      if (piece.length === 0) return;
      // A copy: the caller may reuse its buffer before the chunk completes.
      pieces.push(piece.slice());
      length += piece.length;
    },
    peek: (count: number) => copy(count, false),
    take: (count: number) => copy(count, true),
  };
}

function maxChunkLengthOf(options: OhttpChunkedReaderOptions | undefined): number {
  const { maxChunkLength = DEFAULT_MAX_CHUNK_LENGTH } = optionsObject(options, 'reader');
  if (typeof maxChunkLength !== 'number' || !Number.isSafeInteger(maxChunkLength)) {
    throw new EciesError('invalid_type', 'maxChunkLength must be an integer number of bytes.');
  }
  if (maxChunkLength < 1) {
    throw new EciesError('invalid_length', 'maxChunkLength must be at least 1 byte.');
  }
  return maxChunkLength;
}

interface ChunkOpener {
  /** Bytes before the first chunk (request header and enc, or response nonce). */
  prefix(queue: ReturnType<typeof createByteQueue>): boolean;
  open(ciphertext: Uint8Array, final: boolean): Uint8Array;
  tagLength(): number;
}

function createChunkReader(opener: ChunkOpener, maxChunkLength: number) {
  const queue = createByteQueue();
  let started = false;
  let finalStarted = false;
  let finished = false;
  let failure: unknown;

  function guard<T>(run: () => T): T {
    if (failure !== undefined) throw failure;
    if (finished) {
      throw new EciesError('invalid_type', 'This chunked reader has already ended.');
    }
    try {
      return run();
    } catch (error) {
      failure = error;
      throw error;
    }
  }

  function drain(): Uint8Array[] {
    const out: Uint8Array[] = [];
    if (!started) {
      if (!opener.prefix(queue)) return out;
      started = true;
    }
    const Nt = opener.tagLength();
    while (!finalStarted && queue.length > 0) {
      const first = queue.peek(1)[0]!;
      const varintLength = 1 << (first >> 6);
      if (queue.length < varintLength) break;
      const { value } = decodeVarint(queue.peek(varintLength));
      if (value === 0) {
        queue.take(varintLength);
        finalStarted = true;
        break;
      }
      if (value > maxChunkLength) {
        throw new EciesError(
          'invalid_length',
          `A chunk announces ${value} bytes; this reader accepts at most ${maxChunkLength}.`,
        );
      }
      if (value <= Nt) {
        throw new EciesError(
          'malformed_message',
          `A non-final chunk of ${value} bytes carries no plaintext after its ${Nt}-byte tag; non-final chunks must not be empty.`,
        );
      }
      if (queue.length < varintLength + value) break;
      queue.take(varintLength);
      out.push(opener.open(queue.take(value), false));
    }
    if (finalStarted && queue.length > maxChunkLength) {
      throw new EciesError(
        'invalid_length',
        `The final chunk exceeds ${maxChunkLength} bytes, the most this reader buffers.`,
      );
    }
    return out;
  }

  return {
    push(input: Uint8Array): Uint8Array[] {
      bytes(input, 'The received bytes');
      return guard(() => {
        queue.push(input);
        return drain();
      });
    },
    end(): Uint8Array {
      return guard(() => {
        if (!finalStarted) {
          const where = !started
            ? 'before its header was complete'
            : queue.length > 0
              ? 'inside a chunk'
              : 'without its final chunk';
          throw new EciesError(
            'truncated',
            `The chunked message ended ${where}; it was cut or its sender failed.`,
          );
        }
        if (queue.length < opener.tagLength()) {
          throw new EciesError(
            'truncated',
            `The final chunk is ${queue.length} bytes, shorter than its ${opener.tagLength()}-byte tag; the message was cut.`,
          );
        }
        const plaintext = opener.open(queue.take(queue.length), true);
        finished = true;
        return plaintext;
      });
    },
    get finished() {
      return finished;
    },
  };
}

function createChunkWriter(
  prefix: Uint8Array,
  seal: (plaintext: Uint8Array, final: boolean) => Uint8Array,
): OhttpChunkedWriter {
  let started = false;
  let finished = false;
  function lead(): Uint8Array {
    if (finished) {
      throw new EciesError(
        'invalid_type',
        'This chunked writer has already written its final chunk.',
      );
    }
    if (started) return EMPTY;
    started = true;
    return prefix;
  }
  return {
    start() {
      if (started || finished) {
        throw new EciesError('invalid_type', 'start() comes once, before any chunk.');
      }
      started = true;
      return prefix.slice();
    },
    chunk(plaintext: Uint8Array) {
      bytes(plaintext, 'The chunk');
      const before = lead();
      if (plaintext.length === 0) return before.slice();
      const sealed = seal(plaintext, false);
      return concatBytes(before, encodeVarint(sealed.length), sealed);
    },
    final(plaintext: Uint8Array = EMPTY) {
      bytes(plaintext, 'The final chunk');
      const before = lead();
      const sealed = seal(plaintext, true);
      finished = true;
      return concatBytes(before, Uint8Array.of(0), sealed);
    },
    get finished() {
      return finished;
    },
  };
}

/** The response side of chunked OHTTP: nonce = aead_nonce XOR counter, counter from 0. */
function chunkNonceSequence(suite: HpkeSuite, baseNonce: Uint8Array) {
  let counter = 0n;
  const limit = 1n << BigInt(8 * suite.Nn);
  return () => {
    if (counter >= limit) {
      throw new EciesError(
        'message_limit_reached',
        'This chunked response has used every chunk nonce; it cannot carry more chunks.',
      );
    }
    const nonce = baseNonce.slice();
    let rest = counter;
    for (let index = nonce.length - 1; index >= 0 && rest > 0n; index--) {
      nonce[index] = nonce[index]! ^ Number(rest & 0xffn);
      rest >>= 8n;
    }
    counter += 1n;
    return nonce;
  };
}

// ---------------------------------------------------------------------------------------------
// Chunked requests and responses (draft-ietf-ohai-chunked-ohttp)

/**
 * Starts a chunked request (draft-ietf-ohai-chunked-ohttp section 6.1): `start()` returns
 * header || enc, each `chunk()` varint(length) || Seal("", chunk), `final()` 0x00 ||
 * Seal("final", chunk); HPKE info is "message/bhttp chunked request" || 0x00 || header.
 * Send with `Content-Type: message/ohttp-chunked-req` and `Incremental: ?1`.
 *
 * @throws {EciesError} as {@link encapsulateRequest}
 * @example
 * ```ts
 * const writer = createChunkedRequestWriter(config);
 * const parts = [writer.start(), writer.chunk(head), writer.chunk(bodyPart), writer.final()];
 * // ...POST the parts as one streamed body, then read the response:
 * const reader = writer.context.createResponseReader();
 * for await (const piece of response.body) for (const plaintext of reader.push(piece)) use(plaintext);
 * use(reader.end()); // throws 'truncated' if the response was cut
 * ```
 */
export function createChunkedRequestWriter(
  keyConfig: OhttpKeyConfig,
  options?: OhttpEncapsulateOptions,
): OhttpChunkedRequestWriter {
  const { header, suite, enc, context } = senderSetup(keyConfig, CHUNKED_REQUEST_LABEL, options);
  const writer = createChunkWriter(concatBytes(header, enc), (plaintext, final) =>
    context.seal(plaintext, final ? FINAL_AAD : EMPTY),
  );
  const clientContext: OhttpChunkedClientContext = Object.freeze({
    ...headerOf(suite, header[0]!),
    enc,
    createResponseReader(readerOptions?: OhttpChunkedReaderOptions): OhttpChunkedReader {
      const Nr = entropyLength(suite);
      let keys: { key: Uint8Array; next: () => Uint8Array } | undefined;
      return createChunkReader(
        {
          prefix(queue) {
            if (queue.length < Nr) return false;
            const responseNonce = queue.take(Nr);
            const derived = responseKeys(
              suite,
              context,
              CHUNKED_RESPONSE_LABEL,
              enc,
              responseNonce,
            );
            keys = { key: derived.key, next: chunkNonceSequence(suite, derived.nonce) };
            return true;
          },
          open(ciphertext, final) {
            return suite.aeadOpen(keys!.key, keys!.next(), ciphertext, final ? FINAL_AAD : EMPTY);
          },
          tagLength: () => suite.Nt,
        },
        maxChunkLengthOf(readerOptions),
      );
    },
  });
  return Object.freeze({
    start: writer.start,
    chunk: writer.chunk,
    final: writer.final,
    get finished() {
      return writer.finished;
    },
    context: clientContext,
  });
}

/**
 * Reads a chunked request at the Gateway, incrementally: the key is looked up as soon as the
 * 7-byte header arrives, the HPKE context set up once enc has, and each chunk opened as soon as
 * it is complete. The final chunk runs to the end of the body, so `end()` opens it.
 *
 * @param keys - one Gateway key or several
 * @throws {EciesError} `invalid_type`, `invalid_length` for wrong options (the reader's own
 *   errors are listed on {@link OhttpChunkedReader})
 * @example
 * ```ts
 * const reader = createChunkedRequestReader(keys);
 * const decoder = createBhttpRequestDecoder();
 * for await (const piece of request.body) {
 *   for (const plaintext of reader.push(piece)) decoder.push(plaintext);
 * }
 * decoder.push(reader.end()); // throws 'truncated' if the request was cut
 * const writer = reader.context!.createResponseWriter();
 * ```
 */
export function createChunkedRequestReader(
  keys: OhttpServerKey | readonly OhttpServerKey[],
  options?: OhttpChunkedReaderOptions,
): OhttpChunkedRequestReader {
  const list = keyList(keys);
  let parsed: ParsedHeader | undefined;
  let hpke: HpkeRecipientContext | undefined;
  let serverContext: OhttpChunkedServerContext | undefined;
  const reader = createChunkReader(
    {
      prefix(queue) {
        if (queue.length < HEADER_LENGTH) return false;
        parsed ??= parseHeader(list, queue.peek(HEADER_LENGTH));
        const { suite } = parsed;
        if (queue.length < HEADER_LENGTH + suite.Nenc) return false;
        const header = queue.take(HEADER_LENGTH);
        const enc = queue.take(suite.Nenc);
        const info = concatBytes(CHUNKED_REQUEST_LABEL, Uint8Array.of(0), header);
        const context = suite.setupBaseR(enc, parsed.key.privateKey, info);
        hpke = context;
        serverContext = Object.freeze({
          ...headerOf(suite, parsed.keyId),
          enc,
          createResponseWriter(writerOptions?: OhttpResponseOptions): OhttpChunkedWriter {
            const responseNonce = responseNonceOf(suite, writerOptions);
            const derived = responseKeys(
              suite,
              context,
              CHUNKED_RESPONSE_LABEL,
              enc,
              responseNonce,
            );
            const next = chunkNonceSequence(suite, derived.nonce);
            return createChunkWriter(responseNonce, (plaintext, final) =>
              suite.aeadSeal(derived.key, next(), plaintext, final ? FINAL_AAD : EMPTY),
            );
          },
        });
        return true;
      },
      open: (ciphertext, final) => hpke!.open(ciphertext, final ? FINAL_AAD : EMPTY),
      tagLength: () => parsed!.suite.Nt,
    },
    maxChunkLengthOf(options),
  );
  return Object.freeze({
    push: reader.push,
    end: reader.end,
    get finished() {
      return reader.finished;
    },
    get context() {
      return serverContext;
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Web streams

/**
 * A TransformStream that encrypts a response body as a chunked OHTTP response: the nonce first,
 * one chunk per non-empty input piece, and the empty final chunk when the input closes. If the
 * input errors, no final chunk is written, so the Client sees a truncated response.
 *
 * @throws {EciesError} as {@link OhttpChunkedServerContext.createResponseWriter}
 * @example
 * ```ts
 * const reader = createChunkedRequestReader(keys);
 * // ...push the request and end()...
 * const body = innerResponseBytes.pipeThrough(createChunkedResponseEncryptor(reader.context!));
 * return new Response(body, { headers: { 'content-type': 'message/ohttp-chunked-res', incremental: '?1' } });
 * ```
 */
export function createChunkedResponseEncryptor(
  context: OhttpChunkedServerContext,
  options?: OhttpResponseOptions,
): TransformStream<Uint8Array, Uint8Array> {
  const writer = context.createResponseWriter(options);
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      controller.enqueue(writer.start());
    },
    transform(piece, controller) {
      const out = writer.chunk(piece);
      if (out.length > 0) controller.enqueue(out);
    },
    flush(controller) {
      controller.enqueue(writer.final());
    },
  });
}

/**
 * A TransformStream that decrypts a chunked OHTTP response into its plaintext pieces; it errors
 * with `truncated` if the response ends without its final chunk.
 *
 * @throws {EciesError} as {@link OhttpChunkedClientContext.createResponseReader}
 * @example
 * ```ts
 * const writer = createChunkedRequestWriter(config);
 * // ...send the request...
 * const plaintext = response.body!.pipeThrough(createChunkedResponseDecryptor(writer.context));
 * ```
 */
export function createChunkedResponseDecryptor(
  context: OhttpChunkedClientContext,
  options?: OhttpChunkedReaderOptions,
): TransformStream<Uint8Array, Uint8Array> {
  const reader = context.createResponseReader(options);
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(piece, controller) {
      for (const plaintext of reader.push(piece)) controller.enqueue(plaintext);
    },
    flush(controller) {
      const last = reader.end();
      if (last.length > 0) controller.enqueue(last);
    },
  });
}
