/**
 * Compiles the package's Solidity sources with solc-js, which carries its compiler inside the
 * npm package (nothing is downloaded).
 */
import { readFileSync } from 'node:fs';
import solc from 'solc';
import type { Abi, Hex } from 'viem';
import { TestChainError } from './errors.js';

/** The contracts in `contracts/`, by name. */
export type ContractName = 'TestUsdc' | 'TestMulticall3';

/** What solc produced for one contract. */
export interface CompiledContract {
  /** The ABI as solc reports it. */
  abi: Abi;
  /** Runtime code: what `anvil_setCode` places at an address (no constructor runs). */
  deployedBytecode: Hex;
}

interface SolcOutput {
  errors?: { severity: string; formattedMessage: string }[];
  contracts?: Record<
    string,
    Record<string, { abi: Abi; evm: { deployedBytecode: { object: string } } }>
  >;
}

const SOURCES: Record<ContractName, string> = {
  TestUsdc: 'TestUsdc.sol',
  TestMulticall3: 'TestMulticall3.sol',
};

// Compiling takes about half a second; every caller in a process gets the same result.
let cache: Record<ContractName, CompiledContract> | undefined;

/**
 * Compiles `contracts/TestUsdc.sol` and `contracts/TestMulticall3.sol` once per process
 * (EVM version cancun, no optimizer: compile time matters more here than gas).
 *
 * @throws {TestChainError} `compile_failed` with solc's messages.
 * @example
 * ```ts
 * const { TestUsdc } = compileContracts();
 * console.log(TestUsdc.deployedBytecode.length);
 * ```
 */
export function compileContracts(): Record<ContractName, CompiledContract> {
  if (cache !== undefined) return cache;
  const sources: Record<string, { content: string }> = {};
  for (const file of Object.values(SOURCES)) {
    sources[file] = {
      content: readFileSync(new URL(`../contracts/${file}`, import.meta.url), 'utf8'),
    };
  }
  const input = {
    language: 'Solidity',
    sources,
    settings: {
      evmVersion: 'cancun',
      optimizer: { enabled: false },
      outputSelection: { '*': { '*': ['abi', 'evm.deployedBytecode.object'] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input))) as SolcOutput;
  const errors = (output.errors ?? []).filter((entry) => entry.severity === 'error');
  if (errors.length > 0) {
    throw new TestChainError(
      'compile_failed',
      `solc ${solc.version()} rejected the test contracts:\n${errors.map((entry) => entry.formattedMessage).join('\n')}`,
    );
  }
  const result = {} as Record<ContractName, CompiledContract>;
  for (const [name, file] of Object.entries(SOURCES) as [ContractName, string][]) {
    const contract = output.contracts?.[file]?.[name];
    if (contract === undefined) {
      throw new TestChainError('compile_failed', `solc produced no output for ${name} in ${file}.`);
    }
    result[name] = {
      abi: contract.abi,
      deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
    };
  }
  cache = result;
  return result;
}
