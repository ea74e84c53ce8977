/**
 * @module @tollgate/x402/hono
 *
 * The payment gate as Hono middleware, for other people's Hono apps: a route behind it
 * answers 402 with the terms until it is paid, then runs, and the payment is settled once
 * the handler's answer is known and before its body streams.
 */
import type { Context, MiddlewareHandler } from 'hono';
import {
  createPaymentGate,
  type PaymentGate,
  type PaymentGateOptions,
  settleAnswer,
} from './gate.js';
import type { PriceRequest } from './pricing.js';

/** Options of {@link x402}: a gate or the options to make one, and how to price a request. */
export type X402MiddlewareOptions = (PaymentGateOptions | { gate: PaymentGate }) & {
  /**
   * What the price of this request is computed from (for a price function). Reading the
   * body here is fine: Hono keeps it for the handler.
   */
  priceRequest?: (c: Context) => PriceRequest | Promise<PriceRequest>;
  /** The resource URL told to clients. @default the request URL */
  resource?: (c: Context) => string;
};

/**
 * Protects the routes it is mounted on with x402 payments.
 *
 * @example
 * ```ts
 * app.use('/paid/*', x402({ payTo: '0x…', price: '0.001', facilitator: createHttpFacilitator({ url }) }));
 * ```
 */
export function x402(options: X402MiddlewareOptions): MiddlewareHandler {
  const gate = 'gate' in options ? options.gate : createPaymentGate(options);
  return async function x402Middleware(c, next) {
    const context = {
      resource: options.resource ? options.resource(c) : c.req.url,
      price: options.priceRequest ? await options.priceRequest(c) : {},
    };
    const decision = await gate.authorize(c.req.raw.headers, context);
    if (decision.status === 'absent') return gate.challenge(context);
    if (decision.status === 'refused') return decision.response;
    try {
      await next();
    } catch (error) {
      await decision.payment.release();
      throw error;
    }
    // Hono turns a thrown error into c.res through onError before we get here.
    const settled = await settleAnswer(decision.payment, c.res);
    // Assigning c.res over a response copies the old one's headers onto the new one: a
    // refusal must not inherit the handler's (content-length, content-encoding, ...).
    c.res = undefined;
    c.res = settled;
  };
}
