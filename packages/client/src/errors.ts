/**
 * The error class of @tollgate/client, and its subclass for payments refused before paying. HTTP
 * errors of the gateway are not errors here: they come back as a `Response` with their status, so
 * the `openai` SDK reports them as it would a plaintext answer. These are the failures no
 * `Response` can stand for.
 */
import type { PaymentTerms } from './pay.js';

/** The codes of a {@link PaymentError}: why the paying fetch would not pay a 402. */
export const PAYMENT_ERROR_CODES = [
  /** No payment option of the 402 is one this fetch can pay (scheme, network or asset). */
  'no_supported_terms',
  /** The options it could pay all cost more than `maxPrice`. */
  'price_above_maximum',
  /** `onPayment` returned false. */
  'payment_declined',
  /** The signer failed to sign the authorization (or returned something that is not a signature). */
  'signing_failed',
] as const;

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
  ...PAYMENT_ERROR_CODES,
] as const;

/** One of {@link CLIENT_ERROR_CODES}. */
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/** One of {@link PAYMENT_ERROR_CODES}. */
export type PaymentErrorCode = (typeof PAYMENT_ERROR_CODES)[number];

const brand = Symbol.for('tollgate.client.error');
const paymentBrand = Symbol.for('tollgate.client.payment-error');

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

/**
 * Why the paying fetch did not pay a 402 (see `createPayingFetch`): a {@link ClientError} whose
 * `code` is one of {@link PAYMENT_ERROR_CODES}, with the 402 `response` itself (its body unread)
 * and, when one was picked, the `terms` it would have paid.
 *
 * @example
 * ```ts
 * try {
 *   await payingFetch('https://gateway.example/v1/chat/completions', init);
 * } catch (error) {
 *   if (isPaymentError(error) && error.code === 'price_above_maximum') {
 *     console.error(error.message, error.terms?.amount);
 *   }
 * }
 * ```
 */
export class PaymentError extends ClientError {
  override name = 'PaymentError';
  declare readonly code: PaymentErrorCode;
  /** The 402 answer that asked for payment, unread. */
  readonly response: Response;
  /** The option that was picked (price_above_maximum, payment_declined, signing_failed). */
  readonly terms: PaymentTerms | undefined;
  readonly [paymentBrand] = true;

  constructor(
    code: PaymentErrorCode,
    message: string,
    details: { response: Response; terms?: PaymentTerms; cause?: unknown },
  ) {
    super(code, message, details.cause === undefined ? undefined : { cause: details.cause });
    this.response = details.response;
    this.terms = details.terms;
  }
}

/**
 * Whether a value is a {@link PaymentError}, also from another copy of this package.
 *
 * @example
 * ```ts
 * const declined = await payingFetch(url).catch((error) => isPaymentError(error) && error.code);
 * ```
 */
export function isPaymentError(value: unknown): value is PaymentError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[paymentBrand] === true
  );
}
