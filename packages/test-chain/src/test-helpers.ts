/**
 * Helpers for this package's own tests: EIP-3009 authorizations signed the way x402 clients
 * sign them, and x402 v2/v1 bodies around them. Not exported from the package.
 */
import { type Address, type Hex, parseSignature, toHex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { BASE_SEPOLIA_USDC_ADDRESS, USDC_DOMAIN_NAME, USDC_DOMAIN_VERSION } from './usdc.js';

export const transferWithAuthorizationTypes = {
  TransferWithAuthorization: [
    { name: 'from', type: 'address' },
    { name: 'to', type: 'address' },
    { name: 'value', type: 'uint256' },
    { name: 'validAfter', type: 'uint256' },
    { name: 'validBefore', type: 'uint256' },
    { name: 'nonce', type: 'bytes32' },
  ],
} as const;

export type Authorization = {
  from: Address;
  to: Address;
  value: bigint;
  validAfter: bigint;
  validBefore: bigint;
  nonce: Hex;
};

export interface SignedAuthorization {
  authorization: Authorization;
  signature: Hex;
  v: number;
  r: Hex;
  s: Hex;
}

export interface SignOptions {
  payerKey: Hex;
  to: Address;
  value: bigint;
  token?: Address;
  chainId?: number;
  domainName?: string;
  domainVersion?: string;
  validAfter?: bigint;
  validBefore?: bigint;
  nonce?: Hex;
  primaryType?: 'TransferWithAuthorization' | 'ReceiveWithAuthorization';
}

export function randomNonce(): Hex {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

export function nowSeconds(): bigint {
  return BigInt(Math.floor(Date.now() / 1000));
}

export async function signAuthorization(options: SignOptions): Promise<SignedAuthorization> {
  const account = privateKeyToAccount(options.payerKey);
  const authorization: Authorization = {
    from: account.address,
    to: options.to,
    value: options.value,
    validAfter: options.validAfter ?? nowSeconds() - 600n,
    validBefore: options.validBefore ?? nowSeconds() + 300n,
    nonce: options.nonce ?? randomNonce(),
  };
  const primaryType = options.primaryType ?? 'TransferWithAuthorization';
  const signature = await account.signTypedData({
    domain: {
      name: options.domainName ?? USDC_DOMAIN_NAME,
      version: options.domainVersion ?? USDC_DOMAIN_VERSION,
      chainId: options.chainId ?? 84532,
      verifyingContract: options.token ?? BASE_SEPOLIA_USDC_ADDRESS,
    },
    types: { [primaryType]: transferWithAuthorizationTypes.TransferWithAuthorization },
    primaryType,
    message: authorization,
  });
  const { r, s, v } = parseSignature(signature);
  return { authorization, signature, r, s, v: Number(v) };
}

export interface PaymentBodies {
  paymentPayload: Record<string, unknown>;
  paymentRequirements: Record<string, unknown>;
}

/** A v2 `exact` payment on eip155:84532 and the server terms it answers. */
export function v2Payment(
  signed: SignedAuthorization,
  terms: { payTo: Address; amount: bigint; asset?: Address; name?: string },
): PaymentBodies {
  const paymentRequirements = {
    scheme: 'exact',
    network: 'eip155:84532',
    amount: terms.amount.toString(),
    asset: terms.asset ?? BASE_SEPOLIA_USDC_ADDRESS,
    payTo: terms.payTo,
    maxTimeoutSeconds: 300,
    extra: { name: terms.name ?? USDC_DOMAIN_NAME, version: USDC_DOMAIN_VERSION },
  };
  return {
    paymentRequirements,
    paymentPayload: {
      x402Version: 2,
      resource: { url: 'http://127.0.0.1/v1/chat/completions' },
      accepted: paymentRequirements,
      payload: { signature: signed.signature, authorization: wire(signed.authorization) },
    },
  };
}

/** A v1 `exact` payment on base-sepolia and the server terms it answers. */
export function v1Payment(
  signed: SignedAuthorization,
  terms: { payTo: Address; amount: bigint },
): PaymentBodies {
  return {
    paymentRequirements: {
      scheme: 'exact',
      network: 'base-sepolia',
      maxAmountRequired: terms.amount.toString(),
      resource: 'http://127.0.0.1/v1/chat/completions',
      description: 'test',
      mimeType: 'application/json',
      payTo: terms.payTo,
      maxTimeoutSeconds: 300,
      asset: BASE_SEPOLIA_USDC_ADDRESS,
      extra: { name: USDC_DOMAIN_NAME, version: USDC_DOMAIN_VERSION },
    },
    paymentPayload: {
      x402Version: 1,
      scheme: 'exact',
      network: 'base-sepolia',
      payload: { signature: signed.signature, authorization: wire(signed.authorization) },
    },
  };
}

function wire(authorization: Authorization): Record<string, string> {
  return {
    from: authorization.from,
    to: authorization.to,
    value: authorization.value.toString(),
    validAfter: authorization.validAfter.toString(),
    validBefore: authorization.validBefore.toString(),
    nonce: authorization.nonce,
  };
}
