import { fileURLToPath } from 'node:url';
import { createPublicClient, createWalletClient, http } from 'viem';
import { mnemonicToAccount } from 'viem/accounts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ANVIL_MNEMONIC,
  ANVIL_PRIVATE_KEYS,
  type AnvilChain,
  anvilAccounts,
  anvilAvailable,
  findAnvilBinary,
  isTestChainError,
  startAnvil,
} from './index.js';

describe('accounts', () => {
  it('behavior: the private keys are the first ten of the default mnemonic', () => {
    ANVIL_PRIVATE_KEYS.forEach((privateKey, addressIndex) => {
      const derived = mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex });
      expect(anvilAccounts()[addressIndex]).toEqual({ address: derived.address, privateKey });
    });
  });
});

describe('startAnvil arguments', () => {
  it('error: a missing binary says so with code anvil_not_found', async () => {
    const error = await startAnvil({ binaryPath: '/nonexistent/anvil' }).catch((e: unknown) => e);
    expect(isTestChainError(error) && error.code).toBe('anvil_not_found');
    expect(String(error)).toMatch(/No anvil binary at \/nonexistent\/anvil/);
  });

  it('error: a file that cannot be executed fails with anvil_start_failed', async () => {
    const notExecutable = fileURLToPath(new URL('../contracts/TestUsdc.sol', import.meta.url));
    const error = await startAnvil({ binaryPath: notExecutable }).catch((e: unknown) => e);
    expect(isTestChainError(error) && error.code).toBe('anvil_start_failed');
    expect(String(error)).toMatch(/EACCES/);
  });

  it('error: a bad chain id is refused before spawning', async () => {
    const error = await startAnvil({ chainId: -1 }).catch((e: unknown) => e);
    expect(isTestChainError(error) && error.code).toBe('invalid_argument');
  });

  it('error: a binary that exits at once fails with its output', async () => {
    const error = await startAnvil({ binaryPath: process.execPath, extraArgs: [] }).catch(
      (e: unknown) => e,
    );
    expect(isTestChainError(error) && error.code).toBe('anvil_start_failed');
  });
});

describe.skipIf(!anvilAvailable())('startAnvil', () => {
  let chain: AnvilChain;

  beforeAll(async () => {
    chain = await startAnvil();
  });

  afterAll(async () => {
    await chain?.stop();
  });

  it('behavior: the binary comes from the platform package of @foundry-rs/anvil', () => {
    expect(findAnvilBinary()).toMatch(
      /@foundry-rs[/\\]anvil-[a-z0-9]+-[a-z0-9]+[/\\]bin[/\\]anvil/,
    );
  });

  it('behavior: listens on 127.0.0.1 with chain id 84532', async () => {
    expect(chain.rpcUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(chain.chainId).toBe(84532);
    const client = createPublicClient({ transport: http(chain.rpcUrl) });
    expect(await client.getChainId()).toBe(84532);
  });

  it('behavior: the accounts are the node own funded accounts', async () => {
    const client = createPublicClient({ transport: http(chain.rpcUrl) });
    const nodeAccounts = await createWalletClient({ transport: http(chain.rpcUrl) }).getAddresses();
    expect(nodeAccounts.map((address) => address.toLowerCase())).toEqual(
      chain.accounts.map((account) => account.address.toLowerCase()),
    );
    for (const account of chain.accounts.slice(0, 5)) {
      expect(await client.getBalance({ address: account.address })).toBeGreaterThan(0n);
    }
  });

  it('behavior: stop() ends the process and is idempotent', async () => {
    const other = await startAnvil();
    const client = createPublicClient({ transport: http(other.rpcUrl, { retryCount: 0 }) });
    expect(await client.getChainId()).toBe(84532);
    await Promise.all([other.stop(), other.stop()]);
    expect(() => process.kill(other.pid, 0)).toThrow();
    await expect(client.getChainId()).rejects.toThrow();
  });

  it('args: chainId sets another chain id', async () => {
    const other = await startAnvil({ chainId: 8453 });
    try {
      const client = createPublicClient({ transport: http(other.rpcUrl) });
      expect(await client.getChainId()).toBe(8453);
    } finally {
      await other.stop();
    }
  });
});
