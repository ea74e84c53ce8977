/**
 * viem plumbing shared by the helpers: Base Sepolia's chain definition pointed at a local
 * node, with a short polling interval because anvil mines every transaction at once.
 */
import { type Chain, createPublicClient, defineChain, http, type PublicClient } from 'viem';
import { baseSepolia } from 'viem/chains';

/**
 * viem's Base Sepolia chain (Multicall3 at its canonical address) with its RPC URL replaced by
 * a local one, so nothing reaches the real network.
 *
 * @param rpcUrl - the local node, e.g. `AnvilChain.rpcUrl`
 * @param chainId - the node's chain id @default 84532
 * @example
 * ```ts
 * const client = createPublicClient({ chain: localBaseSepolia(chain.rpcUrl), transport: http() });
 * ```
 */
export function localBaseSepolia(rpcUrl: string, chainId: number = baseSepolia.id): Chain {
  return defineChain({
    ...baseSepolia,
    id: chainId,
    rpcUrls: { default: { http: [rpcUrl] } },
    // No block explorer for a local chain: links to the real one would mislead.
    blockExplorers: undefined,
  });
}

/** Milliseconds between receipt polls; anvil's automine makes receipts appear at once. */
export const POLLING_INTERVAL_MS = 50;

/** A public client for a local node, with no retries so a dead node fails fast. */
export function localPublicClient(rpcUrl: string, chainId?: number): PublicClient {
  return createPublicClient({
    chain: localBaseSepolia(rpcUrl, chainId),
    transport: http(rpcUrl, { retryCount: 0 }),
    pollingInterval: POLLING_INTERVAL_MS,
  });
}
