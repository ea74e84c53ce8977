/**
 * Signing helpers for this package's tests (not exported from the entry): real EIP-3009
 * authorizations signed by a viem local account, in v2 and v1 payment shapes.
 */
import { keccak256, type LocalAccount, stringToHex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import {
  type Address,
  type Authorization,
  authorizationTypedData,
  type ExactEvmPayload,
  encodeHeader,
  type FacilitatorRequest,
  NETWORKS,
  type PaymentPayloadV1,
  type PaymentPayloadV2,
  type PaymentRequirements,
  type SettleResponse,
  type VerifyResponse,
} from './index.js';

/** Anvil's first development key: public, never holds real money. */
export const PAYER = privateKeyToAccount(
  '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
);
/** Anvil's second development key. */
export const OTHER = privateKeyToAccount(
  '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
);
/** The payee of the x402 specification's examples. */
export const PAY_TO: Address = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
export const SOMEONE_ELSE: Address = '0x1111111111111111111111111111111111111111';

/** A fixed "now" (2030-03-17), in seconds and as a clock in ms. */
export const NOW = 1_900_000_000;
export const clock = (): number => NOW * 1000;

export const SEPOLIA = NETWORKS.find((network) => network.id === 'eip155:84532')!;
export const MAINNET = NETWORKS.find((network) => network.id === 'eip155:8453')!;

/** Base Sepolia USDC terms for `amount` atomic units to {@link PAY_TO}. */
export function sepoliaTerms(amount = '1000', maxTimeoutSeconds = 120): PaymentRequirements {
  return {
    scheme: 'exact',
    network: SEPOLIA.id,
    amount,
    asset: SEPOLIA.usdc.address,
    payTo: PAY_TO,
    maxTimeoutSeconds,
    extra: { name: SEPOLIA.usdc.name, version: SEPOLIA.usdc.version },
  };
}

let nonces = 0;
/** A fresh 32-byte nonce, the same sequence on every run. */
export function nextNonce(): `0x${string}` {
  nonces += 1;
  return keccak256(stringToHex(`x402 test nonce ${nonces}`));
}

/** What to sign: the terms, and what to change in the authorization or the domain. */
export interface SignOptions {
  terms: PaymentRequirements;
  account?: LocalAccount;
  authorization?: Partial<Authorization>;
  domain?: Partial<{
    name: string;
    version: string;
    chainId: number;
    verifyingContract: Address;
  }>;
}

/** Signs a `TransferWithAuthorization` for the terms (valid from now-60 to now+300). */
export async function signAuthorization(options: SignOptions): Promise<ExactEvmPayload> {
  const account = options.account ?? PAYER;
  const { terms } = options;
  const authorization: Authorization = {
    from: account.address,
    to: terms.payTo,
    value: terms.amount,
    validAfter: String(NOW - 60),
    validBefore: String(NOW + 300),
    nonce: nextNonce(),
    ...options.authorization,
  };
  const typed = authorizationTypedData(terms, authorization);
  const signature = await account.signTypedData({
    ...typed,
    domain: { ...typed.domain, ...options.domain },
  });
  return { signature, authorization };
}

/** A signed v2 payment; `accepted` overrides what the client says it accepted. */
export async function paymentV2(
  options: SignOptions & { accepted?: Partial<PaymentRequirements>; resource?: string },
): Promise<PaymentPayloadV2> {
  return {
    x402Version: 2,
    ...(options.resource !== undefined ? { resource: { url: options.resource } } : {}),
    accepted: { ...options.terms, ...options.accepted },
    payload: await signAuthorization(options),
  };
}

/** A signed v1 payment (network by its v1 name). */
export async function paymentV1(
  options: SignOptions & { network?: string },
): Promise<PaymentPayloadV1> {
  return {
    x402Version: 1,
    scheme: 'exact',
    network: options.network ?? SEPOLIA.v1Name,
    payload: await signAuthorization(options),
  };
}

/** Request headers carrying a payment. */
export function paid(
  payment: PaymentPayloadV1 | PaymentPayloadV2,
  header: 'payment-signature' | 'x-payment' = payment.x402Version === 2
    ? 'payment-signature'
    : 'x-payment',
): Headers {
  return new Headers({ [header]: encodeHeader(payment) });
}

/** A promise with its resolve and reject, to hold a fake's answer until the test lets go. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A successful receipt for a request. */
export function receiptFor(request: FacilitatorRequest): SettleResponse {
  return {
    success: true,
    transaction: `0x${'ab'.repeat(32)}`,
    network: 'eip155:84532',
    payer: request.paymentPayload.payload.authorization.from,
  };
}

/**
 * An in-memory facilitator that records its calls. Its answers are replaceable per test;
 * by default every payment is valid and settles.
 */
export function fakeFacilitator() {
  const calls = { verify: [] as FacilitatorRequest[], settle: [] as FacilitatorRequest[] };
  const answers = {
    verify: async (_request: FacilitatorRequest): Promise<VerifyResponse> => ({ isValid: true }),
    settle: async (request: FacilitatorRequest): Promise<SettleResponse> => receiptFor(request),
  };
  return {
    calls,
    answers,
    facilitator: {
      async verify(request: FacilitatorRequest) {
        calls.verify.push(request);
        return answers.verify(request);
      },
      async settle(request: FacilitatorRequest) {
        calls.settle.push(request);
        return answers.settle(request);
      },
    },
  };
}

/** A readable stream the test feeds, recording whether it was cancelled and why. */
export function controlledStream() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const state = { cancelled: false, reason: undefined as unknown };
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel(reason) {
      state.cancelled = true;
      state.reason = reason;
    },
  });
  const encoder = new TextEncoder();
  return {
    stream,
    state,
    push(text: string) {
      controller.enqueue(encoder.encode(text));
    },
    close() {
      controller.close();
    },
  };
}
