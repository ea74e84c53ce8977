/**
 * An x402 facilitator for tests: @x402/core's facilitator engine with @x402/evm's `exact`
 * scheme, settling on a local node with a funded key, served over HTTP on 127.0.0.1 the way
 * hosted facilitators are (`POST /verify`, `POST /settle`, `GET /supported`). Tests can count
 * its calls, read what it was sent and make it fail on purpose.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { x402Facilitator } from '@x402/core/facilitator';
import type { Network, PaymentPayload, PaymentRequirements } from '@x402/core/types';
import { type FacilitatorEvmSigner, toFacilitatorEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/facilitator';
import { ExactEvmSchemeV1 } from '@x402/evm/exact/v1/facilitator';
import {
  type Abi,
  type Address,
  createWalletClient,
  type Hex,
  http,
  isHex,
  type VerifyTypedDataParameters,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { BASE_SEPOLIA_CHAIN_ID } from './anvil.js';
import { localBaseSepolia, localPublicClient, POLLING_INTERVAL_MS } from './chain.js';
import { TestChainError } from './errors.js';

/** The facilitator's HTTP endpoints. */
export type FacilitatorEndpoint = 'verify' | 'settle' | 'supported';

/**
 * How an endpoint misbehaves, set with {@link TestFacilitator.setFault}:
 * - `none`: answers normally.
 * - `reject`: answers 200 with a negative result (`isValid: false` / `success: false`, reason
 *   `test_fault_injected`), as when a payment fails on-chain; `/supported` lists no kinds.
 * - `error`: answers 500 with `{ error }`, as a facilitator with an internal error.
 * - `unreachable`: drops the connection without an answer, so `fetch` rejects.
 * - `hang`: never answers (until {@link TestFacilitator.close}), for timeout tests.
 */
export type FacilitatorFault = 'none' | 'reject' | 'error' | 'unreachable' | 'hang';

/** The reason a `reject` fault answers with. */
export const INJECTED_FAULT_REASON = 'test_fault_injected';

/** Options of {@link startFacilitator}. */
export interface StartFacilitatorOptions {
  /** JSON-RPC URL of the node to verify and settle on, e.g. `AnvilChain.rpcUrl`. */
  rpcUrl: string;
  /** Key that pays the gas of settlements (32 bytes, 0x-prefixed hex); needs ETH on the node. */
  privateKey: Hex;
  /** Chain id of the node; the v2 network is `eip155:<chainId>`. @default 84532 */
  chainId?: number;
  /**
   * x402 v1 network name to serve as well, or `false` for v2 only.
   * @default 'base-sepolia' when the chain id is 84532, otherwise `false`
   */
  v1Network?: string | false;
  /** How long a settlement waits for its receipt, in milliseconds. @default 10000 */
  confirmationTimeoutMs?: number;
  /** Largest request body accepted, in bytes. @default 1048576 */
  maxBodyBytes?: number;
}

/** One request the facilitator received on `/verify` or `/settle`. */
export interface FacilitatorRequestRecord {
  endpoint: 'verify' | 'settle';
  /** The parsed JSON body, or `undefined` when it was not JSON. */
  body: unknown;
}

/** A running test facilitator. */
export interface TestFacilitator {
  /** Base URL, e.g. `http://127.0.0.1:40123` (endpoints are `${url}/verify` etc.). */
  url: string;
  /** Address of the key that settles (pays gas and submits `transferWithAuthorization`). */
  address: Address;
  /** The v2 network it serves, e.g. `eip155:84532`. */
  network: Network;
  /**
   * Requests received per endpoint since start or {@link reset}, faulted ones included
   * (a request counts once it reaches the server).
   */
  readonly calls: Readonly<Record<FacilitatorEndpoint, number>>;
  /** Bodies received on `/verify` and `/settle`, oldest first. */
  readonly requests: readonly FacilitatorRequestRecord[];
  /** The engine itself, for code that takes a facilitator object instead of a URL (not counted). */
  engine: x402Facilitator;
  /**
   * Makes `endpoint` misbehave from the next request on; `times` limits it to that many
   * requests, after which it answers normally again.
   */
  setFault(
    endpoint: FacilitatorEndpoint,
    fault: FacilitatorFault,
    options?: { times?: number },
  ): void;
  /** Clears every fault, counter and recorded request. */
  reset(): void;
  /** Stops the server, dropping open connections (including hung ones). */
  close(): Promise<void>;
}

/**
 * Starts an in-process x402 facilitator on 127.0.0.1 at a free port. It serves the `exact`
 * scheme on `eip155:<chainId>` (x402 v2) and, on Base Sepolia, `base-sepolia` (v1), and
 * settles by calling the token's `transferWithAuthorization(…, v, r, s)` from `privateKey`.
 *
 * Like any facilitator with one key, two settlements at the same moment can collide on the
 * key's transaction nonce ("nonce too low"); callers serialise settlements.
 *
 * @throws {TestChainError} `invalid_argument` for a bad key, URL or chain id.
 * @example
 * ```ts
 * const chain = await startAnvil();
 * const usdc = await deployUsdc(chain);
 * const facilitator = await startFacilitator({
 *   rpcUrl: chain.rpcUrl,
 *   privateKey: chain.accounts[0].privateKey,
 * });
 * // point the code under test at facilitator.url
 * facilitator.setFault('settle', 'unreachable', { times: 1 });
 * await facilitator.close();
 * ```
 */
export async function startFacilitator(options: StartFacilitatorOptions): Promise<TestFacilitator> {
  const chainId = options.chainId ?? BASE_SEPOLIA_CHAIN_ID;
  if (!Number.isSafeInteger(chainId) || chainId <= 0) {
    throw new TestChainError(
      'invalid_argument',
      `chainId must be a positive integer, not ${chainId}.`,
    );
  }
  if (!isHex(options.privateKey) || options.privateKey.length !== 66) {
    throw new TestChainError('invalid_argument', 'privateKey must be 32 bytes of 0x-prefixed hex.');
  }
  if (!URL.canParse(options.rpcUrl)) {
    throw new TestChainError('invalid_argument', `rpcUrl must be a URL, not ${options.rpcUrl}.`);
  }
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const network: Network = `eip155:${chainId}`;
  const v1Network =
    options.v1Network ?? (chainId === BASE_SEPOLIA_CHAIN_ID ? 'base-sepolia' : false);

  const signer = createSigner(
    options.rpcUrl,
    chainId,
    options.privateKey,
    options.confirmationTimeoutMs,
  );
  const engine = new x402Facilitator().register(network, new ExactEvmScheme(signer));
  if (v1Network !== false) engine.registerV1(v1Network as Network, new ExactEvmSchemeV1(signer));

  const calls: Record<FacilitatorEndpoint, number> = { verify: 0, settle: 0, supported: 0 };
  const requests: FacilitatorRequestRecord[] = [];
  const faults = new Map<FacilitatorEndpoint, { fault: FacilitatorFault; remaining: number }>();

  const takeFault = (endpoint: FacilitatorEndpoint): FacilitatorFault => {
    const entry = faults.get(endpoint);
    if (entry === undefined) return 'none';
    entry.remaining -= 1;
    if (entry.remaining <= 0) faults.delete(endpoint);
    return entry.fault;
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) {
        sendJson(response, 500, { error: `Facilitator failed: ${messageOf(error)}` });
      } else {
        response.destroy();
      }
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://localhost').pathname.replace(/\/+$/, '');
    const endpoint = (
      { '/verify': 'verify', '/settle': 'settle', '/supported': 'supported' } as const
    )[path as '/verify' | '/settle' | '/supported'];
    if (endpoint === undefined) {
      sendJson(response, 404, {
        error: `No route ${path}: use POST /verify, POST /settle or GET /supported.`,
      });
      return;
    }
    const method = endpoint === 'supported' ? 'GET' : 'POST';
    if (request.method !== method) {
      response.setHeader('allow', method);
      sendJson(response, 405, { error: `Use ${method} ${path}.` });
      return;
    }
    calls[endpoint] += 1;
    const fault = takeFault(endpoint);
    if (fault === 'unreachable') {
      request.socket.destroy();
      return;
    }
    if (fault === 'hang') return;
    if (fault === 'error') {
      sendJson(response, 500, { error: `Injected ${endpoint} failure (setFault).` });
      return;
    }

    if (endpoint === 'supported') {
      const supported = engine.getSupported();
      sendJson(response, 200, fault === 'reject' ? { ...supported, kinds: [] } : supported);
      return;
    }

    const read = await readJson(request, maxBodyBytes);
    requests.push({ endpoint, body: read.ok ? read.value : undefined });
    if (!read.ok) {
      sendJson(response, read.status, { error: read.error });
      return;
    }
    const body = read.value;
    if (!isRecord(body) || !isRecord(body.paymentPayload) || !isRecord(body.paymentRequirements)) {
      sendJson(response, 400, {
        error:
          'Body must be JSON {x402Version, paymentPayload, paymentRequirements} with both objects.',
      });
      return;
    }
    // Bodies are checked by the engine and the scheme; the casts only name what they expect.
    const paymentPayload = body.paymentPayload as unknown as PaymentPayload;
    const paymentRequirements = body.paymentRequirements as unknown as PaymentRequirements;

    if (fault === 'reject') {
      const payer = payerOf(body.paymentPayload);
      const message = `Rejected by setFault('${endpoint}', 'reject').`;
      sendJson(
        response,
        200,
        endpoint === 'verify'
          ? { isValid: false, invalidReason: INJECTED_FAULT_REASON, invalidMessage: message, payer }
          : {
              success: false,
              errorReason: INJECTED_FAULT_REASON,
              errorMessage: message,
              transaction: '',
              network: paymentRequirements.network,
              payer,
            },
      );
      return;
    }

    try {
      const result =
        endpoint === 'verify'
          ? await engine.verify(paymentPayload, paymentRequirements)
          : await engine.settle(paymentPayload, paymentRequirements);
      sendJson(response, 200, result);
    } catch (error) {
      // The engine throws for payloads it cannot route or parse; hosted facilitators answer 500.
      sendJson(response, 500, { error: messageOf(error) });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  let closed: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    address: signer.getAddresses()[0] as Address,
    network,
    calls,
    requests,
    engine,
    setFault(endpoint, fault, faultOptions) {
      const times = faultOptions?.times ?? Number.POSITIVE_INFINITY;
      if (!(times >= 1)) {
        throw new TestChainError('invalid_argument', `times must be at least 1, not ${times}.`);
      }
      if (fault === 'none') faults.delete(endpoint);
      else faults.set(endpoint, { fault, remaining: times });
    },
    reset() {
      faults.clear();
      calls.verify = 0;
      calls.settle = 0;
      calls.supported = 0;
      requests.length = 0;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/**
 * The facilitator signer @x402/evm expects, from viem clients on the local node. @x402/evm
 * reads with `readContract` (token views, Multicall3 `tryAggregate`, simulation of
 * `transferWithAuthorization`), checks signatures itself after `getCode` on the payer, and
 * settles with `writeContract`.
 */
function createSigner(
  rpcUrl: string,
  chainId: number,
  privateKey: Hex,
  confirmationTimeoutMs = 10_000,
): FacilitatorEvmSigner {
  const account = privateKeyToAccount(privateKey);
  const publicClient = localPublicClient(rpcUrl, chainId);
  const wallet = createWalletClient({
    account,
    chain: localBaseSepolia(rpcUrl, chainId),
    transport: http(rpcUrl, { retryCount: 0 }),
    pollingInterval: POLLING_INTERVAL_MS,
  });
  return toFacilitatorEvmSigner(
    {
      address: account.address,
      getCode: (args) => publicClient.getCode(args),
      readContract: (args) =>
        publicClient.readContract({
          address: args.address,
          abi: args.abi as Abi,
          functionName: args.functionName,
          args: args.args ?? [],
        }),
      verifyTypedData: (args) =>
        publicClient.verifyTypedData(args as unknown as VerifyTypedDataParameters),
      writeContract: (args) =>
        wallet.writeContract({
          address: args.address,
          abi: args.abi as Abi,
          functionName: args.functionName,
          args: args.args,
          gas: args.gas,
          dataSuffix: args.dataSuffix,
        }),
      sendTransaction: (args) => wallet.sendTransaction({ to: args.to, data: args.data }),
      waitForTransactionReceipt: (args) =>
        publicClient.waitForTransactionReceipt({ hash: args.hash, timeout: args.timeout }),
    },
    { confirmationTimeoutMs },
  );
}

type ReadResult = { ok: true; value: unknown } | { ok: false; status: number; error: string };

async function readJson(request: IncomingMessage, maxBytes: number): Promise<ReadResult> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      return { ok: false, status: 413, error: `Body is larger than ${maxBytes} bytes.` };
    }
    chunks.push(chunk as Buffer);
  }
  try {
    return { ok: true, value: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
  } catch (error) {
    return { ok: false, status: 400, error: `Body is not valid JSON: ${messageOf(error)}` };
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, (_key, value) =>
    typeof value === 'bigint' ? value.toString() : value,
  );
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function payerOf(paymentPayload: Record<string, unknown>): string | undefined {
  const payload = paymentPayload.payload;
  if (!isRecord(payload) || !isRecord(payload.authorization)) return undefined;
  const from = payload.authorization.from;
  return typeof from === 'string' ? from : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
