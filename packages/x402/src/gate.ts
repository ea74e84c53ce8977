/**
 * The payment gate: turns a request's payment header into a decision, and a verified
 * payment into a settlement at the right moment. It settles once the answer's status is
 * known and before its body flows, so a streamed answer streams (the official middleware
 * reads the whole answer first) and a failed upstream is never charged.
 *
 * Order of work for a paid request: decode -> local checks against terms rebuilt from this
 * very request -> replay lock -> facilitator verify -> (the caller serves) -> settle ->
 * receipt in `PAYMENT-RESPONSE`.
 */
import {
  type DecodedPayment,
  encodeHeader,
  HEADERS,
  readPayment,
  receiptHeaders,
  toRequirementsV1,
} from './codec.js';
import { isX402Error, X402Error } from './errors.js';
import { type Facilitator, type FacilitatorRequest, serializeSettlements } from './facilitator.js';
import { type Address, type AssetDeployment, findNetwork, toCaip2 } from './networks.js';
import { type PriceRequest, type Pricing, parseUsd } from './pricing.js';
import {
  authorizationKey,
  createMemoryReplayLock,
  type ReleaseLock,
  type ReplayLock,
} from './replay.js';
import type {
  PaymentRequired,
  PaymentRequirements,
  ResourceInfo,
  SettleResponse,
} from './types.js';
import { checkPayment } from './verify.js';

/** Options of {@link createPaymentGate}. */
export interface PaymentGateOptions {
  /** The address that is paid. */
  payTo: Address;
  /**
   * CAIP-2 network (or its v1 name).
   * @default 'eip155:84532' (Base Sepolia, test money)
   */
  network?: string;
  /**
   * The token paid in, with its EIP-712 domain.
   * @default the network's USDC (required on networks this package does not know)
   */
  asset?: AssetDeployment;
  /**
   * The price: USD per request as a decimal string (`"0.001"`), atomic units as a bigint, or
   * a function of the request (see `createPricing`), which must be deterministic.
   */
  price: string | bigint | Pricing;
  /** Who verifies and settles. Settlements through it are run one at a time. */
  facilitator: Facilitator;
  /** @default a lock in this process's memory */
  replayLock?: ReplayLock;
  /**
   * Verify payments but never settle them: no money moves, and the replay lock holds each
   * authorization until it expires.
   * @default false
   */
  verifyOnly?: boolean;
  /**
   * Seconds the server may take to settle, told to clients.
   * @default 120
   */
  maxTimeoutSeconds?: number;
  /** Told to clients with the terms. */
  description?: string;
  /** Told to clients with the terms. @default 'application/json' */
  mimeType?: string;
  /** Clock in ms. @default Date.now */
  now?: () => number;
}

/** What one request is priced at and where it lives. */
export interface GateContext {
  /** The resource's URL, told to clients in the terms. */
  resource: string;
  /** What the price is computed from. */
  price?: PriceRequest;
}

/** A payment that passed every check and holds its replay lock. */
export interface VerifiedPayment {
  /** Who pays (the authorization's `from`). */
  payer: Address;
  /** What is paid, in atomic units. */
  amount: bigint;
  /** The terms it pays for (the server's own). */
  requirements: PaymentRequirements;
  payment: DecodedPayment;
  /**
   * Settles the payment (at most once; later calls get the same outcome). In verify-only
   * mode nothing moves and the outcome is `ok` without a receipt.
   */
  settle(): Promise<SettleOutcome>;
  /** Gives up the payment without settling (nothing was served): its lock is released. */
  release(): Promise<void>;
}

/** How a settlement ended. */
export type SettleOutcome =
  | {
      ok: true;
      /** The facilitator's receipt; absent in verify-only mode. */
      receipt?: SettleResponse;
      /** Headers to add to the answer (`PAYMENT-RESPONSE`). */
      headers: Record<string, string>;
    }
  | {
      ok: false;
      error: X402Error;
      receipt?: SettleResponse;
      /** The answer to send instead: 402 with the receipt, or 503. */
      response: Response;
    };

/** What {@link PaymentGate.authorize} decided. */
export type Authorize =
  | { status: 'absent' }
  | { status: 'refused'; error: X402Error; response: Response }
  | { status: 'verified'; payment: VerifiedPayment };

/** A configured gate. */
export interface PaymentGate {
  readonly network: `eip155:${number}`;
  readonly asset: AssetDeployment;
  readonly payTo: Address;
  readonly verifyOnly: boolean;
  /** The terms for a request. */
  requirements(price?: PriceRequest): PaymentRequirements;
  /** The 402 terms object (sent as `PAYMENT-REQUIRED` and as the body). */
  paymentRequired(context: GateContext, error?: string): PaymentRequired;
  /** The 402 answer for a request that came without payment. */
  challenge(context: GateContext, message?: string): Response;
  /** Reads and verifies the request's payment; takes its replay lock when it is good. */
  authorize(headers: Headers, context: GateContext): Promise<Authorize>;
  /**
   * The whole gate around a handler: 402 without payment, `serve()` once verified, then
   * settlement before the answer's body is handed on (not when it is an error).
   */
  handle(headers: Headers, context: GateContext, serve: () => Promise<Response>): Promise<Response>;
}

/** Longest a replay lock is held, in ms (an authorization valid for longer is unusual). */
const MAX_LOCK_MS = 366 * 24 * 60 * 60 * 1000;

/**
 * Creates a payment gate.
 *
 * @throws {TypeError} for an unknown network without an `asset`, or a bad `payTo`.
 * @throws {RangeError} for a malformed price.
 * @example
 * ```ts
 * const gate = createPaymentGate({
 *   payTo: '0x209693Bc6afc0C5328bA36FaF03C514EF312287C',
 *   price: '0.001',
 *   facilitator: createHttpFacilitator({ url: 'http://127.0.0.1:4020' }),
 * });
 * const response = await gate.handle(request.headers, { resource: request.url }, () => serve(request));
 * ```
 */
export function createPaymentGate(options: PaymentGateOptions): PaymentGate {
  const network = resolveNetwork(options.network ?? 'eip155:84532');
  const known = findNetwork(network);
  const asset = options.asset ?? known?.usdc;
  if (asset === undefined) {
    throw new TypeError(
      `No USDC deployment is known on ${network}: pass the asset (address, EIP-712 name and version, decimals).`,
    );
  }
  if (!/^0x[0-9a-fA-F]{40}$/.test(options.payTo)) {
    throw new TypeError(`payTo "${options.payTo}" is not an address (0x and 40 hex digits).`);
  }
  const price: Pricing =
    typeof options.price === 'function'
      ? options.price
      : typeof options.price === 'bigint'
        ? constant(options.price)
        : constant(parseUsd(options.price, asset.decimals));
  const facilitator = serializeSettlements(options.facilitator);
  const replayLock = options.replayLock ?? createMemoryReplayLock();
  const verifyOnly = options.verifyOnly ?? false;
  const maxTimeoutSeconds = options.maxTimeoutSeconds ?? 120;
  const now = options.now ?? Date.now;
  const mimeType = options.mimeType ?? 'application/json';

  const requirements = (request: PriceRequest = {}): PaymentRequirements => ({
    scheme: 'exact',
    network,
    amount: price(request).toString(),
    asset: asset.address,
    payTo: options.payTo,
    maxTimeoutSeconds,
    extra: { name: asset.name, version: asset.version },
  });

  const resourceOf = (context: GateContext): ResourceInfo => ({
    url: context.resource,
    ...(options.description !== undefined ? { description: options.description } : {}),
    mimeType,
  });

  const paymentRequired = (context: GateContext, error?: string): PaymentRequired => ({
    x402Version: 2,
    ...(error !== undefined ? { error } : {}),
    resource: resourceOf(context),
    accepts: [requirements(context.price)],
  });

  /** A 402 (or 400/503) carrying the terms, so a client can always pay again. */
  const refusal = (
    context: GateContext,
    error: X402Error,
    extraHeaders: Record<string, string> = {},
  ): Response => {
    // A 503's own message names the facilitator's address and what failed there: it is for
    // the server's log (`error.message`), not for the caller.
    const message =
      error.status === 503
        ? 'Payments cannot be processed right now; try again shortly.'
        : error.message;
    const terms = paymentRequired(context, message);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      [HEADERS.paymentRequired]: encodeHeader(terms),
      'x-payment-error': error.code,
      ...extraHeaders,
    };
    if (error.status === 402) return new Response(JSON.stringify(terms), { status: 402, headers });
    // Not a payment decision: the error envelope (OpenAI's shape, which HTTP clients read).
    if (error.status === 503) headers['retry-after'] = '5';
    const body = {
      error: {
        message,
        type: error.status === 503 ? 'service_unavailable' : 'invalid_request_error',
        param: null,
        code: error.code,
      },
    };
    return new Response(JSON.stringify(body), { status: error.status, headers });
  };

  const facilitatorRequest = (
    payment: DecodedPayment,
    terms: PaymentRequirements,
    context: GateContext,
  ): FacilitatorRequest => {
    if (payment.x402Version === 2) {
      return { x402Version: 2, paymentPayload: payment.raw, paymentRequirements: terms };
    }
    const v1Name = known?.v1Name;
    if (v1Name === undefined) {
      throw new X402Error(
        'unsupported_payment',
        `x402 version 1 has no name for ${network}; pay with version 2.`,
      );
    }
    return {
      x402Version: 1,
      paymentPayload: payment.raw,
      paymentRequirements: toRequirementsV1(terms, resourceOf(context), v1Name),
    };
  };

  function challenge(context: GateContext, message?: string): Response {
    const terms = paymentRequired(
      context,
      message ?? 'Payment required: pay with x402 (a PAYMENT-SIGNATURE header).',
    );
    return new Response(JSON.stringify(terms), {
      status: 402,
      headers: {
        'content-type': 'application/json',
        'cache-control': 'no-store',
        [HEADERS.paymentRequired]: encodeHeader(terms),
      },
    });
  }

  async function authorize(headers: Headers, context: GateContext): Promise<Authorize> {
    let payment: DecodedPayment | undefined;
    let terms: PaymentRequirements;
    let request: FacilitatorRequest;
    let payer: Address;
    try {
      payment = readPayment(headers);
      if (payment === undefined) return { status: 'absent' };
      terms = requirements(context.price);
      payer = await checkPayment(payment, terms, { nowSeconds: now() / 1000 });
      request = facilitatorRequest(payment, terms, context);
    } catch (error) {
      if (!isX402Error(error)) throw error;
      return { status: 'refused', error, response: refusal(context, error) };
    }
    const { authorization } = payment.payload;
    const ttlMs =
      Number(BigInt(authorization.validBefore) * 1000n - BigInt(Math.floor(now()))) + 1000;
    let release: ReleaseLock | undefined;
    try {
      release = await replayLock.acquire(
        authorizationKey(network, terms.asset, authorization),
        Math.min(Math.max(ttlMs, 1000), MAX_LOCK_MS),
      );
    } catch (cause) {
      // Without the lock a replay cannot be told apart: refuse rather than serve unprotected.
      const error = new X402Error(
        'replay_lock_unavailable',
        'The payment could not be checked against earlier ones (the replay store is unreachable); try again shortly.',
        { cause },
      );
      return { status: 'refused', error, response: refusal(context, error) };
    }
    if (release === undefined) {
      const error = new X402Error(
        'authorization_used',
        'This payment authorization was already used; sign a new one (a new nonce) for each request.',
      );
      return { status: 'refused', error, response: refusal(context, error) };
    }
    try {
      const verdict = await facilitator.verify(request);
      if (!verdict.isValid) {
        throw new X402Error(
          'verification_failed',
          `The facilitator refused the payment${verdict.invalidReason ? ` (${verdict.invalidReason})` : ''}.`,
          verdict.invalidReason !== undefined ? { reason: verdict.invalidReason } : {},
        );
      }
    } catch (error) {
      await releaseQuietly(release);
      const refused = isX402Error(error)
        ? error
        : new X402Error('facilitator_unavailable', 'The payment facilitator failed.', {
            cause: error,
          });
      return { status: 'refused', error: refused, response: refusal(context, refused) };
    }
    return {
      status: 'verified',
      payment: verified(payment, terms, payer, request, release, context),
    };
  }

  function verified(
    payment: DecodedPayment,
    terms: PaymentRequirements,
    payer: Address,
    request: FacilitatorRequest,
    release: ReleaseLock,
    context: GateContext,
  ): VerifiedPayment {
    let settlement: Promise<SettleOutcome> | undefined;
    const settle = async (): Promise<SettleOutcome> => {
      if (verifyOnly) return { ok: true, headers: {} };
      let receipt: SettleResponse;
      try {
        receipt = await facilitator.settle(request);
      } catch (cause) {
        // The lock stays: the transaction may have gone out before the facilitator failed.
        const error = isX402Error(cause)
          ? cause
          : new X402Error('facilitator_unavailable', 'The payment facilitator failed.', { cause });
        return { ok: false, error, response: refusal(context, error) };
      }
      const receiptWithPayer = {
        ...receipt,
        network: receipt.network || terms.network,
        payer: receipt.payer ?? payer,
      };
      const headers = receiptHeaders(receiptWithPayer, payment);
      if (!receipt.success) {
        const error = new X402Error(
          'settlement_failed',
          `The payment could not be settled${receipt.errorReason ? ` (${receipt.errorReason})` : ''}; nothing was charged for this answer.`,
          receipt.errorReason !== undefined ? { reason: receipt.errorReason } : {},
        );
        return {
          ok: false,
          error,
          receipt: receiptWithPayer,
          response: refusal(context, error, headers),
        };
      }
      return { ok: true, receipt: receiptWithPayer, headers };
    };
    return {
      payer,
      amount: BigInt(terms.amount),
      requirements: terms,
      payment,
      settle() {
        settlement ??= settle();
        return settlement;
      },
      async release() {
        if (settlement === undefined) await releaseQuietly(release);
      },
    };
  }

  return {
    network,
    asset,
    payTo: options.payTo,
    verifyOnly,
    requirements,
    paymentRequired,
    challenge,
    authorize,
    async handle(headers, context, serve) {
      const decision = await authorize(headers, context);
      if (decision.status === 'absent') return challenge(context);
      if (decision.status === 'refused') return decision.response;
      const { payment } = decision;
      let response: Response;
      try {
        response = await serve();
      } catch (error) {
        await payment.release();
        throw error;
      }
      return settleAnswer(payment, response);
    },
  };
}

/**
 * Settles a verified payment for an answer: an error answer (status >= 400) is not charged
 * and passes through; otherwise the payment is settled before the body is handed on, and
 * the receipt joins the headers. When settlement fails, the answer's body is cancelled (so
 * its upstream stops) and the refusal goes out instead.
 */
export async function settleAnswer(
  payment: VerifiedPayment,
  response: Response,
): Promise<Response> {
  if (response.status >= 400) {
    await payment.release();
    return response;
  }
  const outcome = await payment.settle();
  if (!outcome.ok) {
    await response.body?.cancel(outcome.error).catch(() => {});
    return outcome.response;
  }
  let headers = response.headers;
  try {
    for (const name in outcome.headers) headers.set(name, outcome.headers[name]!);
  } catch {
    // Immutable headers (a fetched Response): copy them.
    headers = new Headers(response.headers);
    for (const name in outcome.headers) headers.set(name, outcome.headers[name]!);
  }
  if (headers === response.headers) return response;
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}

function resolveNetwork(name: string): `eip155:${number}` {
  const network = toCaip2(name);
  if (network === undefined) {
    throw new TypeError(
      `network "${name}" is neither a CAIP-2 eip155 id (eip155:84532) nor a known name (base, base-sepolia).`,
    );
  }
  return network;
}

/**
 * Gives a lock back, ignoring a failure (an unreachable Redis): the authorization then stays
 * locked until it expires, which refuses a retry but never lets a replay through, and the
 * answer being sent (an upstream error, a refusal) is not replaced by the lock's error.
 */
async function releaseQuietly(release: ReleaseLock): Promise<void> {
  await release().catch(() => {});
}

function constant(amount: bigint): Pricing {
  if (amount < 0n) throw new RangeError('The price cannot be negative.');
  return () => amount;
}
