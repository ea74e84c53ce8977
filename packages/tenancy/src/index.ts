/**
 * @module @tollgate/tenancy
 *
 * Tenants, API keys (SHA-256 at rest), limits (requests and tokens per minute, concurrency,
 * model allow lists, day and month budgets in tokens and spend), reserve-then-settle
 * admission, usage metering, x402 payers and payments as billing records, and an audit log.
 * Records live in PGlite (embedded, the default) or PostgreSQL through drizzle-orm; limiter
 * state in memory or in Redis. Usable without the gateway: `createTenancy({ store })` and call
 * `authenticate`, `admit` and `settle`.
 */
export {
  createId,
  type GeneratedKey,
  generateKey,
  hashSecret,
  parseKey,
  SECRET_BYTES,
  secretMatches,
} from './keys.js';
export { createMemoryLimiter, type MemoryLimiterOptions } from './limiter-memory.js';
export { createRedisLimiter, type RedisLimiterOptions } from './limiter-redis.js';
export {
  applyLimitsInput,
  globMatches,
  limitsToJson,
  modelAllowed,
  type TenantLimitsInput,
  tenantLimitsInputSchema,
  toLimiterLimits,
} from './limits.js';
export {
  completionAllowance,
  costMicroUsd,
  estimatePromptTokens,
  type ModelPrice,
  type PriceTable,
  priceFor,
} from './metering.js';
export { type PaymentInput, payerCaller } from './payments.js';
export { createRecorder, type Recorder, type RecorderOptions } from './recorder.js';
export * as schema from './schema.js';
export {
  type CreatePgliteStoreOptions,
  type CreatePostgresStoreOptions,
  type CreateStoreOptions,
  createPgliteStore,
  createPostgresStore,
  createStore,
} from './store.js';
export { createPgliteStoreInWorker } from './store-thread.js';
export {
  type ActorContext,
  type AdmitRequest,
  type Caller,
  createTenancy,
  formatResetDuration,
  type IssuedKey,
  type KeyView,
  type RequestContext,
  type SettleReport,
  type Tenancy,
  type TenancyAdmission,
  type TenancyOptions,
} from './tenancy.js';
export type * from './types.js';
