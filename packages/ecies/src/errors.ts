/**
 * The one error class of @tollgate/ecies. Every failure carries a stable `code`, so a caller
 * (the gateway turning it into a 400, a client deciding to refetch keys) branches on the code,
 * never on the message.
 */

/** Stable error codes; new ones may be added, none changes meaning. */
export const ECIES_ERROR_CODES = [
  /** An argument has the wrong type (a string where bytes are expected, ...). */
  'invalid_type',
  /** An argument has the wrong length (a 64-byte public key, a 31-byte secret, ...). */
  'invalid_length',
  /** A public key is not a valid point (wrong prefix, not on the curve, the identity). */
  'invalid_public_key',
  /** A private key is out of range (zero, at or above the group order). */
  'invalid_private_key',
  /** A ciphertext is shorter than its format's minimum. */
  'ciphertext_too_short',
  /** A ciphertext names a format version this library does not know. */
  'unsupported_version',
  /** Authentication failed: the ciphertext, its tag or its associated data was altered, or the key is wrong. */
  'decryption_failed',
  /** An HPKE, OHTTP or key-configuration suite (KEM, KDF, AEAD) this library does not implement. */
  'unsupported_suite',
  /** An HPKE context has sealed or opened as many messages as its nonce allows. */
  'message_limit_reached',
  /** A key configuration (RFC 9458 section 3) is malformed. */
  'invalid_key_config',
  /** An encapsulated request names a key id the recipient does not have. */
  'unknown_key_id',
  /** A binary HTTP message (RFC 9292) is malformed. */
  'malformed_message',
  /** A message or stream ended before its end (a cut chunked stream, a short binary HTTP message). */
  'truncated',
] as const;

/** One of {@link ECIES_ERROR_CODES}. */
export type EciesErrorCode = (typeof ECIES_ERROR_CODES)[number];

const brand = Symbol.for('tollgate.ecies.error');

/**
 * A failure of @tollgate/ecies: a stable `code` and a message that says what was wrong.
 *
 * @example
 * ```ts
 * throw new EciesError('invalid_length', 'The public key must be 65 bytes (0x04 || X || Y), not 64.');
 * ```
 */
export class EciesError extends Error {
  override name = 'EciesError';
  readonly code: EciesErrorCode;
  readonly [brand] = true;

  constructor(code: EciesErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Whether a value is an {@link EciesError}, also from another copy of this package. */
export function isEciesError(value: unknown): value is EciesError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[brand] === true
  );
}
