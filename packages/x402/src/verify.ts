/**
 * The checks a server can make without the chain, before it calls the facilitator: the
 * terms, the recipient, the amount, the time window and the EIP-712 signature.
 */
import { isAddressEqual, recoverTypedDataAddress } from 'viem';
import type { DecodedPayment } from './codec.js';
import { X402Error } from './errors.js';
import { chainIdOf } from './networks.js';
import type { Authorization, PaymentRequirements } from './types.js';

/** EIP-3009's typed data for `transferWithAuthorization`. */
export const TRANSFER_WITH_AUTHORIZATION_TYPES = {
  TransferWithAuthorization: [
    { name: 'from', type: 'address' },
    { name: 'to', type: 'address' },
    { name: 'value', type: 'uint256' },
    { name: 'validAfter', type: 'uint256' },
    { name: 'validBefore', type: 'uint256' },
    { name: 'nonce', type: 'bytes32' },
  ],
} as const;

/**
 * The EIP-712 typed data an authorization is signed as: the asset's domain (name and version
 * from the terms' `extra`, the chain of their network, the asset as verifying contract) and
 * the authorization's fields as numbers. What a client signs and what a server recovers.
 *
 * @example
 * ```ts
 * const signature = await account.signTypedData(authorizationTypedData(terms, authorization));
 * ```
 */
export function authorizationTypedData(
  terms: Pick<PaymentRequirements, 'network' | 'asset' | 'extra'>,
  authorization: Authorization,
) {
  return {
    domain: {
      name: terms.extra.name,
      version: terms.extra.version,
      // An unknown network has no chain id: the recovered signer then never matches.
      chainId: chainIdOf(terms.network) ?? 0,
      verifyingContract: terms.asset,
    },
    types: TRANSFER_WITH_AUTHORIZATION_TYPES,
    primaryType: 'TransferWithAuthorization' as const,
    message: {
      from: authorization.from,
      to: authorization.to,
      value: BigInt(authorization.value),
      validAfter: BigInt(authorization.validAfter),
      validBefore: BigInt(authorization.validBefore),
      nonce: authorization.nonce,
    },
  };
}

/**
 * Seconds an authorization must still be valid for when it arrives: the time a settlement
 * takes to land in a block (the reference facilitator uses the same margin).
 */
export const SETTLEMENT_MARGIN_SECONDS = 6;

/** Options of {@link checkPayment}. */
export interface CheckPaymentOptions {
  /** The current time, in Unix seconds. */
  nowSeconds: number;
}

/**
 * Checks a payment against the server's own terms for this request. A signature longer than
 * 65 bytes (a smart wallet's, ERC-1271 or ERC-6492) cannot be checked without the chain and
 * is left to the facilitator.
 *
 * @returns the payer's address.
 * @throws {X402Error} with the first failed check's code (`terms_mismatch`,
 *   `recipient_mismatch`, `amount_mismatch`, `authorization_not_yet_valid`,
 *   `authorization_expired`, `invalid_signature`, `unsupported_payment`).
 */
export async function checkPayment(
  payment: DecodedPayment,
  requirements: PaymentRequirements,
  options: CheckPaymentOptions,
): Promise<`0x${string}`> {
  if (payment.scheme !== 'exact') {
    throw new X402Error(
      'unsupported_payment',
      `The scheme "${payment.scheme}" is not accepted here; pay with "exact".`,
    );
  }
  if (payment.network !== requirements.network) {
    throw new X402Error(
      'terms_mismatch',
      `The payment is for network ${payment.network}; this server is paid on ${requirements.network}.`,
    );
  }
  const accepted = payment.accepted;
  if (accepted) {
    const mismatch =
      accepted.scheme !== requirements.scheme
        ? 'scheme'
        : accepted.amount !== requirements.amount
          ? 'amount'
          : !sameAddress(accepted.asset, requirements.asset)
            ? 'asset'
            : !sameAddress(accepted.payTo, requirements.payTo)
              ? 'payTo'
              : undefined;
    if (mismatch) {
      throw new X402Error(
        'terms_mismatch',
        `The payment accepted other terms than this request's (${mismatch} differs): the price depends on the request, so fetch the terms for this exact request again.`,
      );
    }
  }
  const { authorization, signature } = payment.payload;
  if (!sameAddress(authorization.to, requirements.payTo)) {
    throw new X402Error(
      'recipient_mismatch',
      `The authorization pays ${authorization.to}, not ${requirements.payTo}.`,
    );
  }
  if (BigInt(authorization.value) !== BigInt(requirements.amount)) {
    throw new X402Error(
      'amount_mismatch',
      `The authorization is for ${authorization.value} atomic units; this request costs exactly ${requirements.amount}.`,
    );
  }
  const now = BigInt(Math.floor(options.nowSeconds));
  if (BigInt(authorization.validAfter) > now) {
    throw new X402Error(
      'authorization_not_yet_valid',
      'The authorization is not valid yet (validAfter is in the future).',
    );
  }
  if (BigInt(authorization.validBefore) < now + BigInt(SETTLEMENT_MARGIN_SECONDS)) {
    throw new X402Error(
      'authorization_expired',
      'The authorization has expired (validBefore has passed or is too close to settle in time); sign a new one.',
    );
  }
  // 65 bytes: an ordinary account's signature, which recovery checks here.
  if (signature.length === 132) {
    const chainId = chainIdOf(requirements.network);
    let signer: `0x${string}` | undefined;
    try {
      signer = await recoverTypedDataAddress({
        ...authorizationTypedData(requirements, authorization),
        signature,
      });
    } catch {
      signer = undefined;
    }
    if (signer === undefined || !sameAddress(signer, authorization.from)) {
      throw new X402Error(
        'invalid_signature',
        `The signature does not match the authorization under the EIP-712 domain "${requirements.extra.name}" version "${requirements.extra.version}" of ${requirements.asset} on chain ${chainId}.`,
      );
    }
  }
  return authorization.from;
}

function sameAddress(a: string, b: string): boolean {
  try {
    return isAddressEqual(a as `0x${string}`, b as `0x${string}`);
  } catch {
    return false;
  }
}
