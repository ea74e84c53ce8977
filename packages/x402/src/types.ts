/**
 * The x402 wire objects this package reads and writes, in their v2 shape (v1 shapes are
 * translated at the edges; see `codec.ts`).
 */
import type { Address } from './networks.js';

/** What a server accepts as payment for one resource (v2 `PaymentRequirements`). */
export interface PaymentRequirements {
  scheme: 'exact';
  /** CAIP-2 network id, e.g. `eip155:84532`. */
  network: string;
  /** Price in the asset's atomic units, as a decimal string. */
  amount: string;
  /** The token contract. */
  asset: Address;
  /** Who is paid. */
  payTo: Address;
  /** How long the server may take to settle, in seconds. */
  maxTimeoutSeconds: number;
  /** For EIP-3009 assets: the EIP-712 domain name and version. */
  extra: { name: string; version: string; [key: string]: unknown };
}

/** The resource being paid for. */
export interface ResourceInfo {
  url: string;
  description?: string;
  mimeType?: string;
}

/** The terms of a 402 answer (v2 `PaymentRequired`). */
export interface PaymentRequired {
  x402Version: 2;
  error?: string;
  resource: ResourceInfo;
  accepts: PaymentRequirements[];
  extensions?: Record<string, unknown>;
}

/** EIP-3009 `TransferWithAuthorization` fields, numbers as decimal strings. */
export interface Authorization {
  from: Address;
  to: Address;
  value: string;
  /** Unix seconds. */
  validAfter: string;
  /** Unix seconds. */
  validBefore: string;
  /** 32 bytes, `0x` hex. */
  nonce: `0x${string}`;
}

/** The `exact` scheme's payload on EVM networks. */
export interface ExactEvmPayload {
  /** `0x` hex; 65 bytes for an ordinary account, longer for smart wallets. */
  signature: `0x${string}`;
  authorization: Authorization;
}

/** A v2 payment (`PAYMENT-SIGNATURE`). */
export interface PaymentPayloadV2 {
  x402Version: 2;
  resource?: ResourceInfo;
  /** The terms the client chose, copied from the 402. */
  accepted: PaymentRequirements;
  payload: ExactEvmPayload;
  extensions?: Record<string, unknown>;
}

/** A v1 payment (`X-PAYMENT`). */
export interface PaymentPayloadV1 {
  x402Version: 1;
  scheme: 'exact';
  /** v1 network name, e.g. `base-sepolia`. */
  network: string;
  payload: ExactEvmPayload;
}

/** v1 terms, as a v1 facilitator expects them. */
export interface PaymentRequirementsV1 {
  scheme: 'exact';
  network: string;
  maxAmountRequired: string;
  resource: string;
  description: string;
  mimeType: string;
  payTo: Address;
  maxTimeoutSeconds: number;
  asset: Address;
  extra: { name: string; version: string; [key: string]: unknown };
}

/** A facilitator's answer to `POST /verify`. Reason strings are opaque. */
export interface VerifyResponse {
  isValid: boolean;
  invalidReason?: string;
  payer?: string;
}

/** A facilitator's answer to `POST /settle`, and the receipt sent in `PAYMENT-RESPONSE`. */
export interface SettleResponse {
  success: boolean;
  errorReason?: string;
  /** Transaction hash; empty when nothing was sent. */
  transaction: string;
  network: string;
  payer?: string;
}
