/** Errors of @tollgate/x402, each with a stable code and the HTTP status it answers with. */

/** Why a payment was not accepted, and what a server answers. */
export const X402_ERROR_CODES = {
  /** The payment header is not base64 JSON of a known shape. */
  invalid_payment: 400,
  /** An x402 version or scheme this server does not take. */
  unsupported_payment: 400,
  /** The payment's terms are not the ones this request costs (price, asset, payTo, network). */
  terms_mismatch: 402,
  /** The authorization pays someone other than the server's payTo. */
  recipient_mismatch: 402,
  /** The authorized value is not the price. */
  amount_mismatch: 402,
  /** validAfter is still in the future. */
  authorization_not_yet_valid: 402,
  /** validBefore has passed (or is too close to settle in time). */
  authorization_expired: 402,
  /** The EIP-712 signature does not recover to `from` under this asset's domain. */
  invalid_signature: 402,
  /** This authorization was already presented (a replay, or a concurrent duplicate). */
  authorization_used: 402,
  /** The facilitator says the payment is not valid (its reason is in the message). */
  verification_failed: 402,
  /** The facilitator could not settle the payment on-chain. */
  settlement_failed: 402,
  /** The facilitator could not be reached or answered something unusable. */
  facilitator_unavailable: 503,
  /** The replay lock's store (Redis) failed, so a replay could not be ruled out. */
  replay_lock_unavailable: 503,
} as const;

/** A stable error code of this package. */
export type X402ErrorCode = keyof typeof X402_ERROR_CODES;

const brand = Symbol.for('@tollgate/x402.error');

/** An error of this package: `code` says why, `status` is the HTTP status to answer with. */
export class X402Error extends Error {
  override name = 'X402Error';
  readonly code: X402ErrorCode;
  readonly status: number;
  /** The facilitator's own reason string, when it gave one (opaque). */
  readonly reason: string | undefined;
  readonly [brand] = true;

  constructor(
    code: X402ErrorCode,
    message: string,
    options: { cause?: unknown; reason?: string } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = X402_ERROR_CODES[code];
    this.reason = options.reason;
  }
}

/** Tells whether a value is an {@link X402Error}, also from a duplicate install of this package. */
export function isX402Error(value: unknown): value is X402Error {
  return (
    typeof value === 'object' && value !== null && (value as { [brand]?: unknown })[brand] === true
  );
}
