/**
 * @module @tollgate/x402
 *
 * x402 pay-per-request for HTTP servers, framework-free: prices (flat, per model, or from
 * the request), the v1 and v2 header codecs, a facilitator client, local checks of a
 * payment (terms, amount, time window, EIP-712 signature), a replay lock in memory or
 * Redis, and a payment gate that settles once an answer's status is known and before its
 * body streams. Hono middleware at `@tollgate/x402/hono`.
 */
export {
  type DecodedPayment,
  decodeHeader,
  encodeHeader,
  HEADERS,
  type PaymentRequiredV1,
  parsePayment,
  readPayment,
  readPaymentRequired,
  receiptHeaders,
  toRequirementsV1,
} from './codec.js';
export { isX402Error, X402_ERROR_CODES, X402Error, type X402ErrorCode } from './errors.js';
export {
  createHttpFacilitator,
  type Facilitator,
  type FacilitatorRequest,
  type HttpFacilitator,
  type HttpFacilitatorOptions,
  serializeSettlements,
} from './facilitator.js';
export {
  type Authorize,
  createPaymentGate,
  type GateContext,
  type PaymentGate,
  type PaymentGateOptions,
  type SettleOutcome,
  settleAnswer,
  type VerifiedPayment,
} from './gate.js';
export {
  type Address,
  type AssetDeployment,
  chainIdOf,
  findNetwork,
  NETWORKS,
  type NetworkInfo,
  toCaip2,
} from './networks.js';
export {
  createPricing,
  estimatePromptTokens,
  formatUnits,
  type ModelPrice,
  type PriceRequest,
  type Pricing,
  type PricingOptions,
  parseUsd,
} from './pricing.js';
export {
  authorizationKey,
  createMemoryReplayLock,
  createRedisReplayLock,
  type RedisLike,
  type ReleaseLock,
  type ReplayLock,
} from './replay.js';
export type {
  Authorization,
  ExactEvmPayload,
  PaymentPayloadV1,
  PaymentPayloadV2,
  PaymentRequired,
  PaymentRequirements,
  PaymentRequirementsV1,
  ResourceInfo,
  SettleResponse,
  VerifyResponse,
} from './types.js';
export {
  authorizationTypedData,
  type CheckPaymentOptions,
  checkPayment,
  SETTLEMENT_MARGIN_SECONDS,
  TRANSFER_WITH_AUTHORIZATION_TYPES,
} from './verify.js';
