/**
 * The one error class of @tollgate/client. HTTP errors of the gateway are not errors here: they
 * come back as a `Response` with their status, so the `openai` SDK reports them as it would a
 * plaintext answer. These are the failures no `Response` can stand for.
 */

/** Stable error codes; new ones may be added, none changes meaning. */
export const CLIENT_ERROR_CODES = [
  /** An option of `createEncryptedFetch` is missing or malformed. */
  'invalid_options',
  /** A request names a URL outside `gatewayUrl`: it is never sent, encrypted or not. */
  'outside_gateway',
  /** The gateway's public keys could not be fetched or decoded. */
  'key_fetch_failed',
  /** An encrypted answer could not be decrypted or decoded (altered, or not from the gateway). */
  'invalid_response',
  /** An encrypted answer ended before its final chunk: the connection was cut mid-answer. */
  'truncated',
] as const;

/** One of {@link CLIENT_ERROR_CODES}. */
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

const brand = Symbol.for('tollgate.client.error');

/**
 * A failure of @tollgate/client: a stable `code`, the `cause` (often an `EciesError`), and a
 * message that says what to do next.
 *
 * @example
 * ```ts
 * try {
 *   await encryptedFetch('https://gateway.example/v1/models');
 * } catch (error) {
 *   if (isClientError(error) && error.code === 'key_fetch_failed') console.error(error.message);
 * }
 * ```
 */
export class ClientError extends Error {
  override name = 'ClientError';
  readonly code: ClientErrorCode;
  readonly [brand] = true;

  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Whether a value is a {@link ClientError}, also from another copy of this package.
 *
 * @example
 * ```ts
 * const reading = response.body!.getReader();
 * await reading.read().catch((error) => isClientError(error) && error.code === 'truncated');
 * ```
 */
export function isClientError(value: unknown): value is ClientError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[brand] === true
  );
}
