/**
 * Starting and stopping a local anvil node from the binary that ships inside the npm package
 * `@foundry-rs/anvil` (in its per-platform optional dependency), so nothing is downloaded.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { ANVIL_MNEMONIC, anvilAccounts, type TestAccount } from './accounts.js';
import { TestChainError } from './errors.js';

/** Base Sepolia's chain id, which {@link startAnvil} uses by default. */
export const BASE_SEPOLIA_CHAIN_ID = 84532;

/** Options of {@link startAnvil}. */
export interface StartAnvilOptions {
  /** Chain id the node reports and signs with. @default 84532 (Base Sepolia) */
  chainId?: number;
  /** Path of an anvil binary to run instead of the one from `@foundry-rs/anvil`. */
  binaryPath?: string;
  /** How long to wait for the node to answer `eth_chainId`, in milliseconds. @default 15000 */
  startTimeoutMs?: number;
  /** Extra command-line arguments, e.g. `['--block-time', '1']`. @default [] */
  extraArgs?: readonly string[];
}

/** A running anvil node. */
export interface AnvilChain {
  /** JSON-RPC endpoint, e.g. `http://127.0.0.1:40123`. */
  rpcUrl: string;
  /** The chain id the node runs with. */
  chainId: number;
  /** The ten default accounts, each funded with 10000 ETH. */
  accounts: readonly TestAccount[];
  /** Process id of the anvil process. */
  pid: number;
  /** Kills the node and resolves once the process has exited. Safe to call twice. */
  stop(): Promise<void>;
}

const PLATFORM_PACKAGES: Record<string, string> = {
  'linux-x64': 'linux-amd64',
  'linux-arm64': 'linux-arm64',
  'darwin-x64': 'darwin-amd64',
  'darwin-arm64': 'darwin-arm64',
  'win32-x64': 'win32-amd64',
};

/**
 * The path of the anvil binary from `@foundry-rs/anvil`, or `undefined` when this platform has
 * none installed.
 *
 * @example
 * ```ts
 * const binary = findAnvilBinary(); // '/…/@foundry-rs/anvil-linux-amd64/bin/anvil'
 * ```
 */
export function findAnvilBinary(): string | undefined {
  const suffix = PLATFORM_PACKAGES[`${process.platform}-${process.arch}`];
  const binaryName = process.platform === 'win32' ? 'anvil.exe' : 'anvil';
  let anvilPackageJson: string;
  try {
    anvilPackageJson = createRequire(import.meta.url).resolve('@foundry-rs/anvil/package.json');
  } catch {
    return undefined;
  }
  const candidates: string[] = [];
  if (suffix !== undefined) {
    // The platform package is a dependency of @foundry-rs/anvil, not of this package, so it
    // resolves only from anvil's own location.
    try {
      candidates.push(
        createRequire(anvilPackageJson).resolve(`@foundry-rs/anvil-${suffix}/bin/${binaryName}`),
      );
    } catch {
      // not installed for this platform
    }
  }
  // Where the package's postinstall script puts a binary it had to fetch itself.
  candidates.push(join(dirname(anvilPackageJson), binaryName));
  return candidates.find((candidate) => existsSync(candidate));
}

/**
 * Whether an anvil binary is installed for this platform; suites use it to skip.
 *
 * @example
 * ```ts
 * describe.skipIf(!anvilAvailable())('with a chain', () => { ... });
 * ```
 */
export function anvilAvailable(): boolean {
  return findAnvilBinary() !== undefined;
}

// Anvil processes still running in this process, killed when it exits so no test run leaves
// nodes behind. One shared exit hook instead of one per node keeps the listener count flat.
const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  running.add(child);
  child.once('exit', () => running.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const node of running) node.kill('SIGKILL');
    });
  }
}

/**
 * Starts anvil on 127.0.0.1 at a free port with the default mnemonic (so the accounts are
 * always {@link ANVIL_PRIVATE_KEYS}), automining (each transaction is mined at once) and chain
 * id 84532 unless told otherwise. The node is killed when the calling process exits.
 *
 * @throws {TestChainError} `anvil_not_found` when no binary is installed for this platform,
 *   `anvil_start_failed` when it exits or does not answer in time.
 * @example
 * ```ts
 * const chain = await startAnvil();
 * try {
 *   console.log(chain.rpcUrl, chain.accounts[0].address);
 * } finally {
 *   await chain.stop();
 * }
 * ```
 */
export async function startAnvil(options: StartAnvilOptions = {}): Promise<AnvilChain> {
  const chainId = options.chainId ?? BASE_SEPOLIA_CHAIN_ID;
  const startTimeoutMs = options.startTimeoutMs ?? 15_000;
  if (!Number.isSafeInteger(chainId) || chainId <= 0) {
    throw new TestChainError(
      'invalid_argument',
      `chainId must be a positive integer, not ${chainId}.`,
    );
  }
  const binary = options.binaryPath ?? findAnvilBinary();
  if (binary === undefined || !existsSync(binary)) {
    throw new TestChainError(
      'anvil_not_found',
      binary === undefined
        ? `No anvil binary for ${process.platform}-${process.arch}: install @foundry-rs/anvil with its optional platform package (pnpm install without --no-optional).`
        : `No anvil binary at ${binary}.`,
    );
  }
  const args = [
    '--host',
    '127.0.0.1',
    // Port 0 lets the OS pick a free port; anvil prints the one it got.
    '--port',
    '0',
    '--chain-id',
    String(chainId),
    '--mnemonic',
    ANVIL_MNEMONIC,
    '--accounts',
    '10',
    '--color',
    'never',
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);

  let output = '';
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= new Promise<void>((resolve) => {
      // No pid: the spawn itself failed and there is no process to wait for.
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
        resolve();
        return;
      }
      // Keep the event loop alive until the exit is seen, even though the child is unref'd.
      child.ref();
      const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', () => {
        clearTimeout(force);
        resolve();
      });
      child.kill('SIGTERM');
    });
    return stopped;
  };

  try {
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`anvil did not print its address within ${startTimeoutMs} ms`)),
        startTimeoutMs,
      );
      const onData = (chunk: Buffer) => {
        output += chunk.toString('utf8');
        const match = /Listening on (\d+\.\d+\.\d+\.\d+:\d+)/.exec(output);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`anvil exited early (code ${code}, signal ${signal})`));
      });
    });
    // From here on anvil logs one line per RPC call; keep draining its pipes without keeping
    // the text, or a full pipe would stall the node.
    child.stdout?.removeAllListeners('data');
    child.stderr?.removeAllListeners('data');
    child.stdout?.resume();
    child.stderr?.resume();
    // A forgotten stop() must not keep the test process alive; the exit hook then kills anvil.
    child.unref();
    for (const stream of [child.stdout, child.stderr]) {
      if (stream instanceof Socket) stream.unref();
    }

    const rpcUrl = `http://${address}`;
    await waitForChainId(rpcUrl, chainId, startTimeoutMs);
    return {
      rpcUrl,
      chainId,
      accounts: anvilAccounts(),
      pid: child.pid ?? -1,
      stop,
    };
  } catch (error) {
    await stop();
    const tail = output.trim().split('\n').slice(-5).join('\n');
    throw new TestChainError(
      'anvil_start_failed',
      `anvil (${binary}) did not start: ${error instanceof Error ? error.message : String(error)}.${tail ? ` Its last output:\n${tail}` : ''}`,
      { cause: error },
    );
  }
}

async function waitForChainId(rpcUrl: string, chainId: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      });
      const body = (await response.json()) as { result?: string };
      if (body.result !== undefined && Number(body.result) === chainId) return;
      lastError = new Error(`eth_chainId answered ${JSON.stringify(body)}`);
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(
    `eth_chainId at ${rpcUrl} did not answer ${chainId} in time (${lastError instanceof Error ? lastError.message : String(lastError)})`,
  );
}
