/**
 * The networks and USDC deployments this package knows, with the names x402 uses for them
 * in each protocol version.
 */

/** An EVM address as `0x` followed by 40 hex digits. */
export type Address = `0x${string}`;

/** A stablecoin deployment that supports EIP-3009 `transferWithAuthorization`. */
export interface AssetDeployment {
  /** The token contract (the EIP-712 `verifyingContract`). */
  address: Address;
  /** EIP-712 domain name the contract signs with. A wrong name gives signatures that never verify. */
  name: string;
  /** EIP-712 domain version. */
  version: string;
  /** Decimal places: amounts are atomic units (USDC: 6, so "1000" is $0.001). */
  decimals: number;
}

/** A network x402 payments can be made on. */
export interface NetworkInfo {
  /** CAIP-2 id, the x402 v2 name: `eip155:<chain id>`. */
  id: `eip155:${number}`;
  /** The x402 v1 name (`base`, `base-sepolia`). */
  v1Name: string;
  chainId: number;
  /** Whether real money moves there. */
  testnet: boolean;
  /** The USDC deployment on this network. */
  usdc: AssetDeployment;
}

/**
 * Base mainnet and Base Sepolia with Circle's USDC. The domain names differ: "USD Coin" on
 * mainnet, "USDC" on Sepolia (pinned by a test on the domain separators).
 */
export const NETWORKS: readonly NetworkInfo[] = Object.freeze([
  {
    id: 'eip155:8453',
    v1Name: 'base',
    chainId: 8453,
    testnet: false,
    usdc: {
      address: '0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913',
      name: 'USD Coin',
      version: '2',
      decimals: 6,
    },
  },
  {
    id: 'eip155:84532',
    v1Name: 'base-sepolia',
    chainId: 84532,
    testnet: true,
    usdc: {
      address: '0x036CbD53842c5426634e7929541eC2318f3dCF7e',
      name: 'USDC',
      version: '2',
      decimals: 6,
    },
  },
]);

const CAIP2_EVM = /^eip155:([1-9][0-9]{0,18})$/;

/**
 * The CAIP-2 id of a network given by either name (`base-sepolia` or `eip155:84532`), or
 * undefined when it is neither a known v1 name nor an `eip155:` id.
 *
 * @example
 * toCaip2('base-sepolia'); // 'eip155:84532'
 */
export function toCaip2(network: string): `eip155:${number}` | undefined {
  if (CAIP2_EVM.test(network)) return network as `eip155:${number}`;
  return NETWORKS.find((entry) => entry.v1Name === network)?.id;
}

/** The chain id of an `eip155:` network (either name), or undefined. */
export function chainIdOf(network: string): number | undefined {
  const id = toCaip2(network);
  return id === undefined ? undefined : Number(id.slice('eip155:'.length));
}

/** The known network with this name (v1 or CAIP-2), if any. */
export function findNetwork(network: string): NetworkInfo | undefined {
  const id = toCaip2(network);
  return NETWORKS.find((entry) => entry.id === id);
}
