/**
 * @module @tollgate/test-chain
 *
 * Test support for x402 payments, offline: a local anvil node with chain id 84532, a test
 * USDC with EIP-3009 at the real Base Sepolia USDC address (domain "USDC", version "2"), a
 * Multicall3 for the facilitator's diagnostics, and an in-process x402 facilitator over HTTP
 * whose calls can be counted and made to fail. Not published.
 *
 * @example
 * ```ts
 * describe.skipIf(!anvilAvailable())('payments', () => {
 *   let chain: AnvilChain;
 *   beforeAll(async () => {
 *     chain = await startAnvil();
 *   });
 *   afterAll(() => chain?.stop());
 * });
 * ```
 */
export {
  ANVIL_MNEMONIC,
  ANVIL_PRIVATE_KEYS,
  anvilAccounts,
  type TestAccount,
} from './accounts.js';
export {
  type AnvilChain,
  anvilAvailable,
  BASE_SEPOLIA_CHAIN_ID,
  findAnvilBinary,
  type StartAnvilOptions,
  startAnvil,
} from './anvil.js';
export { localBaseSepolia } from './chain.js';
export { type CompiledContract, type ContractName, compileContracts } from './compile.js';
export { isTestChainError, TestChainError, type TestChainErrorCode } from './errors.js';
export {
  type FacilitatorEndpoint,
  type FacilitatorFault,
  type FacilitatorRequestRecord,
  INJECTED_FAULT_REASON,
  type StartFacilitatorOptions,
  startFacilitator,
  type TestFacilitator,
} from './facilitator.js';
export {
  BASE_SEPOLIA_USDC_ADDRESS,
  type DeployUsdcOptions,
  deployUsdc,
  installMulticall3,
  MULTICALL3_ADDRESS,
  type TestUsdc,
  testUsdcAbi,
  USDC_DECIMALS,
  USDC_DOMAIN_NAME,
  USDC_DOMAIN_VERSION,
} from './usdc.js';
