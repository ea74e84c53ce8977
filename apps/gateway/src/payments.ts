/**
 * x402 payments for the gateway: the payment gate built from the `payments` config section,
 * its replay lock (in Redis when the gateway shares state with others), and the billing
 * records of what was paid.
 */
import type { PaymentInput } from '@tollgate/tenancy';
import {
  createHttpFacilitator,
  createMemoryReplayLock,
  createPaymentGate,
  createPricing,
  createRedisReplayLock,
  findNetwork,
  formatUnits,
} from '@tollgate/x402';
import { Redis } from 'ioredis';
import type { GatewayPayments } from './app.js';
import type { PaymentsConfig } from './config.js';

/** Options of {@link createGatewayPayments}. */
export interface GatewayPaymentsOptions {
  /** Several gateways refuse each other's replays through Redis. @default in memory */
  redisUrl?: string;
  /** Completion tokens priced for a request without max_tokens. */
  defaultMaxTokens: number;
  /** Records a payment; returns its id (undefined when it could not be recorded). Must not throw. */
  record(payment: PaymentInput): string | undefined;
  /** For the facilitator calls. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** The gateway's payments, and what to close at shutdown. */
export interface OpenedPayments {
  payments: GatewayPayments;
  /** One line for the start-up log. */
  summary: Record<string, unknown>;
  close(): Promise<void>;
}

/**
 * Builds the payment gate of a configured gateway.
 *
 * @example
 * ```ts
 * const { payments } = createGatewayPayments(config.payments, { defaultMaxTokens: 1024, record: (p) => tenancy.recordPayment(p).id });
 * ```
 */
export function createGatewayPayments(
  config: PaymentsConfig,
  options: GatewayPaymentsOptions,
): OpenedPayments {
  const redis =
    options.redisUrl === undefined
      ? undefined
      : new Redis(options.redisUrl, { maxRetriesPerRequest: 1, commandTimeout: 2000 });
  // Errors surface as rejected commands (a refused payment); the event would only repeat them.
  redis?.on('error', () => {});
  const decimals = config.asset?.decimals ?? 6;
  const gate = createPaymentGate({
    payTo: config.payTo,
    network: config.network,
    ...(config.asset ? { asset: config.asset } : {}),
    price: createPricing({
      default: config.price,
      models: config.models,
      defaultMaxTokens: options.defaultMaxTokens,
      decimals,
    }),
    facilitator: createHttpFacilitator({
      url: config.facilitatorUrl,
      ...(config.facilitatorHeaders ? { headers: config.facilitatorHeaders } : {}),
      ...(options.fetch ? { fetch: options.fetch } : {}),
    }),
    replayLock: redis ? createRedisReplayLock(redis) : createMemoryReplayLock(),
    verifyOnly: config.verifyOnly,
    maxTimeoutSeconds: config.maxTimeoutSeconds,
    description: config.description ?? 'Inference on this Tollgate gateway',
  });
  const network = findNetwork(gate.network);
  const chargesOutput = [config.price, ...Object.values(config.models)].some(
    (price) => price.outputPerMillion !== undefined && Number(price.outputPerMillion) > 0,
  );
  return {
    payments: {
      gate,
      keyHoldersPay: config.keyHoldersPay,
      ...(chargesOutput ? { pricedMaxTokens: options.defaultMaxTokens } : {}),
      record: options.record,
    },
    summary: {
      network: gate.network,
      testnet: network?.testnet ?? null,
      asset: gate.asset.address,
      payTo: gate.payTo,
      pricePerRequest: formatUnits(BigInt(gate.requirements().amount), decimals),
      facilitator: new URL(config.facilitatorUrl).origin,
      verifyOnly: config.verifyOnly,
      keyHoldersPay: config.keyHoldersPay,
      replayLock: redis ? 'redis' : 'memory',
    },
    async close() {
      await redis?.quit().catch(() => redis.disconnect());
    },
  };
}
