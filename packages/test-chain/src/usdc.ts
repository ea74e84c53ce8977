/**
 * The test USDC: `contracts/TestUsdc.sol` placed at the real Base Sepolia USDC address of a
 * local node, with the same EIP-712 domain (name "USDC", version "2"), so gateways, clients
 * and facilitators run with their production settings.
 */
import {
  type Address,
  createTestClient,
  createWalletClient,
  getAddress,
  type Hex,
  http,
  isAddress,
  isHex,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import type { AnvilChain } from './anvil.js';
import { localBaseSepolia, localPublicClient, POLLING_INTERVAL_MS } from './chain.js';
import { compileContracts } from './compile.js';
import { TestChainError } from './errors.js';

/** The USDC contract on Base Sepolia, where {@link deployUsdc} puts the test token. */
export const BASE_SEPOLIA_USDC_ADDRESS: Address = '0x036CbD53842c5426634e7929541eC2318f3dCF7e';

/** The canonical Multicall3 address, the same on every chain that has it. */
export const MULTICALL3_ADDRESS: Address = '0xcA11bde05977b3631167028862bE2a173976CA11';

/** EIP-712 domain name of USDC on Base Sepolia (mainnet's is "USD Coin"). */
export const USDC_DOMAIN_NAME = 'USDC';

/** EIP-712 domain version of USDC on Base and Base Sepolia. */
export const USDC_DOMAIN_VERSION = '2';

/** USDC has 6 decimals: 1_000_000n atomic units are one dollar. */
export const USDC_DECIMALS = 6;

const authorizationInputs = [
  { name: 'from', type: 'address' },
  { name: 'to', type: 'address' },
  { name: 'value', type: 'uint256' },
  { name: 'validAfter', type: 'uint256' },
  { name: 'validBefore', type: 'uint256' },
  { name: 'nonce', type: 'bytes32' },
] as const;

const splitSignatureInputs = [
  { name: 'v', type: 'uint8' },
  { name: 'r', type: 'bytes32' },
  { name: 's', type: 'bytes32' },
] as const;

/**
 * ABI of the test token (`contracts/TestUsdc.sol`), typed for viem. A unit test checks it
 * against what solc compiles.
 */
export const testUsdcAbi = [
  {
    type: 'function',
    name: 'name',
    stateMutability: 'view',
    inputs: [],
    outputs: [{ type: 'string' }],
  },
  {
    type: 'function',
    name: 'symbol',
    stateMutability: 'view',
    inputs: [],
    outputs: [{ type: 'string' }],
  },
  {
    type: 'function',
    name: 'version',
    stateMutability: 'view',
    inputs: [],
    outputs: [{ type: 'string' }],
  },
  {
    type: 'function',
    name: 'decimals',
    stateMutability: 'view',
    inputs: [],
    outputs: [{ type: 'uint8' }],
  },
  {
    type: 'function',
    name: 'totalSupply',
    stateMutability: 'view',
    inputs: [],
    outputs: [{ type: 'uint256' }],
  },
  {
    type: 'function',
    name: 'balanceOf',
    stateMutability: 'view',
    inputs: [{ name: '', type: 'address' }],
    outputs: [{ type: 'uint256' }],
  },
  {
    type: 'function',
    name: 'allowance',
    stateMutability: 'view',
    inputs: [
      { name: '', type: 'address' },
      { name: '', type: 'address' },
    ],
    outputs: [{ type: 'uint256' }],
  },
  {
    type: 'function',
    name: 'authorizationState',
    stateMutability: 'view',
    inputs: [
      { name: '', type: 'address' },
      { name: '', type: 'bytes32' },
    ],
    outputs: [{ type: 'bool' }],
  },
  {
    type: 'function',
    name: 'DOMAIN_SEPARATOR',
    stateMutability: 'view',
    inputs: [],
    outputs: [{ type: 'bytes32' }],
  },
  {
    type: 'function',
    name: 'eip712Domain',
    stateMutability: 'view',
    inputs: [],
    outputs: [
      { name: 'fields', type: 'bytes1' },
      { name: 'domainName', type: 'string' },
      { name: 'domainVersion', type: 'string' },
      { name: 'chainId', type: 'uint256' },
      { name: 'verifyingContract', type: 'address' },
      { name: 'salt', type: 'bytes32' },
      { name: 'extensions', type: 'uint256[]' },
    ],
  },
  {
    type: 'function',
    name: 'mint',
    stateMutability: 'nonpayable',
    inputs: [
      { name: 'to', type: 'address' },
      { name: 'value', type: 'uint256' },
    ],
    outputs: [{ type: 'bool' }],
  },
  {
    type: 'function',
    name: 'transfer',
    stateMutability: 'nonpayable',
    inputs: [
      { name: 'to', type: 'address' },
      { name: 'value', type: 'uint256' },
    ],
    outputs: [{ type: 'bool' }],
  },
  {
    type: 'function',
    name: 'approve',
    stateMutability: 'nonpayable',
    inputs: [
      { name: 'spender', type: 'address' },
      { name: 'value', type: 'uint256' },
    ],
    outputs: [{ type: 'bool' }],
  },
  {
    type: 'function',
    name: 'transferFrom',
    stateMutability: 'nonpayable',
    inputs: [
      { name: 'from', type: 'address' },
      { name: 'to', type: 'address' },
      { name: 'value', type: 'uint256' },
    ],
    outputs: [{ type: 'bool' }],
  },
  {
    type: 'function',
    name: 'transferWithAuthorization',
    stateMutability: 'nonpayable',
    inputs: [...authorizationInputs, ...splitSignatureInputs],
    outputs: [],
  },
  {
    type: 'function',
    name: 'transferWithAuthorization',
    stateMutability: 'nonpayable',
    inputs: [...authorizationInputs, { name: 'signature', type: 'bytes' }],
    outputs: [],
  },
  {
    type: 'function',
    name: 'receiveWithAuthorization',
    stateMutability: 'nonpayable',
    inputs: [...authorizationInputs, ...splitSignatureInputs],
    outputs: [],
  },
  {
    type: 'function',
    name: 'cancelAuthorization',
    stateMutability: 'nonpayable',
    inputs: [
      { name: 'authorizer', type: 'address' },
      { name: 'nonce', type: 'bytes32' },
      ...splitSignatureInputs,
    ],
    outputs: [],
  },
  {
    type: 'event',
    name: 'Transfer',
    inputs: [
      { name: 'from', type: 'address', indexed: true },
      { name: 'to', type: 'address', indexed: true },
      { name: 'value', type: 'uint256', indexed: false },
    ],
  },
  {
    type: 'event',
    name: 'Approval',
    inputs: [
      { name: 'owner', type: 'address', indexed: true },
      { name: 'spender', type: 'address', indexed: true },
      { name: 'value', type: 'uint256', indexed: false },
    ],
  },
  {
    type: 'event',
    name: 'AuthorizationUsed',
    inputs: [
      { name: 'authorizer', type: 'address', indexed: true },
      { name: 'nonce', type: 'bytes32', indexed: true },
    ],
  },
  {
    type: 'event',
    name: 'AuthorizationCanceled',
    inputs: [
      { name: 'authorizer', type: 'address', indexed: true },
      { name: 'nonce', type: 'bytes32', indexed: true },
    ],
  },
] as const;

/** Options of {@link deployUsdc}. */
export interface DeployUsdcOptions {
  /** Where to put the token. @default BASE_SEPOLIA_USDC_ADDRESS */
  address?: Address;
  /**
   * Private key that sends the `mint` transactions. Minting is open to anyone; use a key no
   * other part of the test sends from at the same time, or nonces collide.
   * @default the last anvil account (index 9)
   */
  minterPrivateKey?: Hex;
  /**
   * Also place a Multicall3-compatible contract at {@link MULTICALL3_ADDRESS}, which x402's EVM
   * facilitator needs to say *why* a simulated transfer failed (nonce used, balance too low);
   * without it those reasons collapse into `invalid_exact_evm_transaction_simulation_failed`.
   * @default true
   */
  multicall3?: boolean;
}

/** The test token on a local node, with helpers that wait for each transaction's receipt. */
export interface TestUsdc {
  /** Where the token lives. */
  address: Address;
  /**
   * Creates `amount` atomic units for `to` and resolves once mined.
   * @returns the transaction hash
   */
  mint(to: Address, amount: bigint): Promise<Hex>;
  /** Balance of `owner` in atomic units (6 decimals). */
  balanceOf(owner: Address): Promise<bigint>;
  /** Whether the authorization `nonce` (32 bytes) of `authorizer` is used or canceled. */
  authorizationState(authorizer: Address, nonce: Hex): Promise<boolean>;
}

/**
 * Places a Multicall3-compatible contract (`tryAggregate`, `aggregate3`; compiled from
 * `contracts/TestMulticall3.sol`) at the canonical Multicall3 address of a local node.
 *
 * @throws {TestChainError} `deploy_failed` when the node refuses `anvil_setCode`.
 * @example
 * ```ts
 * await installMulticall3(chain);
 * ```
 */
export async function installMulticall3(
  chain: Pick<AnvilChain, 'rpcUrl' | 'chainId'>,
): Promise<void> {
  await setCode(chain, MULTICALL3_ADDRESS, compileContracts().TestMulticall3.deployedBytecode);
}

/**
 * Compiles the test token (once per process) and places its runtime code at the Base Sepolia
 * USDC address of a local node with `anvil_setCode`, plus Multicall3 unless told not to.
 * Calling it again on the same node keeps the token's storage (balances, used nonces).
 *
 * @throws {TestChainError} `invalid_argument` for a bad address or key, `compile_failed`,
 *   `deploy_failed` when the node refuses the code.
 * @example
 * ```ts
 * const chain = await startAnvil();
 * const usdc = await deployUsdc(chain);
 * await usdc.mint(chain.accounts[1].address, 5_000_000n); // $5
 * console.log(await usdc.balanceOf(chain.accounts[1].address)); // 5000000n
 * ```
 */
export async function deployUsdc(
  chain: Pick<AnvilChain, 'rpcUrl' | 'chainId' | 'accounts'>,
  options: DeployUsdcOptions = {},
): Promise<TestUsdc> {
  const address = options.address ?? BASE_SEPOLIA_USDC_ADDRESS;
  if (!isAddress(address, { strict: false })) {
    throw new TestChainError(
      'invalid_argument',
      `address must be a 20-byte hex address, not ${address}.`,
    );
  }
  const minterKey =
    options.minterPrivateKey ?? chain.accounts[chain.accounts.length - 1]?.privateKey;
  if (minterKey === undefined || !isHex(minterKey) || minterKey.length !== 66) {
    throw new TestChainError(
      'invalid_argument',
      'minterPrivateKey must be 32 bytes of 0x-prefixed hex.',
    );
  }
  const token = getAddress(address);
  await setCode(chain, token, compileContracts().TestUsdc.deployedBytecode);
  if (options.multicall3 ?? true) await installMulticall3(chain);

  const publicClient = localPublicClient(chain.rpcUrl, chain.chainId);
  const wallet = createWalletClient({
    account: privateKeyToAccount(minterKey),
    chain: localBaseSepolia(chain.rpcUrl, chain.chainId),
    transport: http(chain.rpcUrl, { retryCount: 0 }),
    pollingInterval: POLLING_INTERVAL_MS,
  });
  // Mints from one key run one at a time, so parallel calls never reuse a nonce.
  let queue: Promise<unknown> = Promise.resolve();

  return {
    address: token,
    mint(to, amount) {
      const run = async (): Promise<Hex> => {
        const hash = await wallet.writeContract({
          address: token,
          abi: testUsdcAbi,
          functionName: 'mint',
          args: [to, amount],
        });
        const receipt = await publicClient.waitForTransactionReceipt({ hash });
        if (receipt.status !== 'success') {
          throw new TestChainError('deploy_failed', `mint(${to}, ${amount}) reverted in ${hash}.`);
        }
        return hash;
      };
      const result = queue.then(run, run);
      queue = result.catch(() => undefined);
      return result;
    },
    balanceOf(owner) {
      return publicClient.readContract({
        address: token,
        abi: testUsdcAbi,
        functionName: 'balanceOf',
        args: [owner],
      });
    },
    authorizationState(authorizer, nonce) {
      return publicClient.readContract({
        address: token,
        abi: testUsdcAbi,
        functionName: 'authorizationState',
        args: [authorizer, nonce],
      });
    },
  };
}

async function setCode(
  chain: Pick<AnvilChain, 'rpcUrl' | 'chainId'>,
  address: Address,
  bytecode: Hex,
): Promise<void> {
  const client = createTestClient({
    mode: 'anvil',
    chain: localBaseSepolia(chain.rpcUrl, chain.chainId),
    transport: http(chain.rpcUrl, { retryCount: 0 }),
  });
  try {
    await client.setCode({ address, bytecode });
    const code = await localPublicClient(chain.rpcUrl, chain.chainId).getCode({ address });
    if (code?.toLowerCase() !== bytecode.toLowerCase()) {
      throw new Error('eth_getCode does not return the code just set');
    }
  } catch (error) {
    throw new TestChainError(
      'deploy_failed',
      `Could not place code at ${address} on ${chain.rpcUrl}: ${error instanceof Error ? error.message : String(error)}. Is it an anvil node?`,
      { cause: error },
    );
  }
}
