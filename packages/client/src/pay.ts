/**
 * `createPayingFetch`: a `fetch` that answers an x402 `402 Payment Required` by signing an
 * EIP-3009 USDC authorization within a price limit and sending the request once more with it;
 * `getPaymentReceipt` reads the settlement receipt of the paid answer.
 */
import {
  type Address,
  type Authorization,
  authorizationTypedData,
  decodeHeader,
  encodeHeader,
  findNetwork,
  formatUnits,
  HEADERS,
  NETWORKS,
  type NetworkInfo,
  type PaymentRequirements,
  parseUsd,
  type ResourceInfo,
  readPaymentRequired,
  type SettleResponse,
  type TRANSFER_WITH_AUTHORIZATION_TYPES,
} from '@tollgate/x402';
import { ClientError, PaymentError } from './errors.js';

/** The EIP-712 typed data of one EIP-3009 `TransferWithAuthorization`, as the signer gets it. */
export interface TransferWithAuthorizationTypedData {
  /** The token's EIP-712 domain: `verifyingContract` is the USDC contract. */
  domain: { name: string; version: string; chainId: number; verifyingContract: Address };
  types: typeof TRANSFER_WITH_AUTHORIZATION_TYPES;
  primaryType: 'TransferWithAuthorization';
  message: {
    from: Address;
    to: Address;
    /** Atomic units of the token. */
    value: bigint;
    /** Unix seconds. */
    validAfter: bigint;
    /** Unix seconds. */
    validBefore: bigint;
    /** 32 random bytes, `0x` hex. */
    nonce: `0x${string}`;
  };
}

/**
 * Who pays: an address and a function that signs EIP-712 typed data for it. A viem
 * `LocalAccount` (`privateKeyToAccount(key)`) is one as it is; for a wallet client pass
 * `{ address, signTypedData: (parameters) => walletClient.signTypedData({ account, ...parameters }) }`.
 */
export interface PaymentSigner {
  /** The paying address (`from` of every authorization). */
  address: Address;
  /** Signs the typed data and resolves to the signature, `0x` hex (65 bytes for an ordinary key). */
  signTypedData(parameters: TransferWithAuthorizationTypedData): Promise<`0x${string}`>;
}

/**
 * One payment option of a 402, in the v2 shape whatever the server's version: `network` is the
 * CAIP-2 id (`eip155:84532`) and `amount` the price in atomic units (v1's `maxAmountRequired`).
 */
export type PaymentTerms = PaymentRequirements & {
  /** The x402 version of the server's terms. */
  x402Version: 1 | 2;
  /** What is being paid for, as the server describes it. */
  resource?: ResourceInfo;
};

/** Options of {@link createPayingFetch}. */
export interface PayingFetchOptions {
  /** Signs the payment authorizations (see {@link PaymentSigner}). */
  signer: PaymentSigner;
  /**
   * The most one request may cost: US dollars as a decimal string (`'0.01'`), or atomic units of
   * the asset as a bigint (`10_000n` is $0.01 in USDC). An answer asking more is not paid.
   */
  maxPrice: string | bigint;
  /**
   * The networks it pays on, as CAIP-2 ids or x402 v1 names (`'eip155:8453'` or `'base'` for Base
   * mainnet). Only their known USDC is paid.
   * @default ['eip155:84532'] (Base Sepolia: test money only; mainnet must be named explicitly)
   */
  networks?: string[];
  /**
   * The fetch that carries the requests, the paid one too: pass `createEncryptedFetch(...)` to
   * pay for encrypted requests.
   * @default globalThis.fetch
   */
  fetch?: typeof fetch;
  /**
   * The clock, in milliseconds since the epoch, for the authorization's validity window.
   * @default Date.now
   */
  now?: () => number;
  /**
   * Called with the chosen terms before paying; return (or resolve to) `false` to refuse, and the
   * call rejects with a {@link PaymentError} `payment_declined`. An error it throws rejects the
   * call as it is.
   * @default undefined (pay whatever fits `maxPrice`)
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a callback that returns nothing (a logger, async or not) must fit.
  onPayment?: (terms: PaymentTerms) => boolean | void | Promise<boolean | void>;
}

/** Seconds before now an authorization already counts as valid: room for clocks that differ. */
const VALID_AFTER_SLACK_SECONDS = 600;
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const UINT = /^(0|[1-9][0-9]{0,77})$/;
// 65 bytes for an ordinary key; smart wallets' signatures are longer.
const SIGNATURE = /^0x([0-9a-fA-F]{2}){65,}$/;

/** A payment option this fetch can pay, but maybe not at its price. */
interface Offer {
  /** The option exactly as the server sent it: a v2 payment copies it into `accepted`. */
  raw: Record<string, unknown>;
  terms: PaymentTerms;
  network: NetworkInfo;
  amount: bigint;
  limit: bigint;
}

function invalid(message: string): ClientError {
  return new ClientError('invalid_options', message);
}

function readLimits(maxPrice: unknown, networks: NetworkInfo[]): Map<string, bigint> {
  if (typeof maxPrice === 'bigint') {
    if (maxPrice < 0n) throw invalid(`maxPrice must not be negative, not ${maxPrice}n.`);
    return new Map(networks.map((network) => [network.id, maxPrice]));
  }
  if (typeof maxPrice !== 'string') {
    throw invalid(
      "maxPrice is required: US dollars as a decimal string such as '0.01', or atomic units as a bigint such as 10000n.",
    );
  }
  try {
    return new Map(
      networks.map((network) => [
        network.id,
        parseUsd(maxPrice, network.usdc.decimals, 'maxPrice'),
      ]),
    );
  } catch (error) {
    throw new ClientError('invalid_options', (error as Error).message, { cause: error });
  }
}

function readNetworks(networks: unknown): NetworkInfo[] {
  const names = networks ?? ['eip155:84532'];
  if (!Array.isArray(names) || names.length === 0) {
    throw invalid("networks must be a non-empty array of network names such as ['eip155:84532'].");
  }
  return names.map((name: unknown) => {
    const network = typeof name === 'string' ? findNetwork(name) : undefined;
    if (network === undefined) {
      throw invalid(
        `networks: ${JSON.stringify(name)} is not a network this client can pay on; use one of ${knownNetworks()}.`,
      );
    }
    return network;
  });
}

function knownNetworks(): string {
  return NETWORKS.map((network) => `${network.id} (${network.v1Name})`).join(', ');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads one option of the terms into an {@link Offer}, or undefined when this fetch cannot pay
 * it: another scheme, a network not in `networks`, an asset other than that network's USDC, or
 * a malformed field.
 */
function readOffer(
  raw: unknown,
  version: 1 | 2,
  resource: ResourceInfo | undefined,
  limits: Map<string, bigint>,
): Offer | undefined {
  if (!isRecord(raw) || raw.scheme !== 'exact' || typeof raw.network !== 'string') return;
  const network = findNetwork(raw.network);
  const limit = network && limits.get(network.id);
  if (network === undefined || limit === undefined) return;
  const amount = version === 1 ? raw.maxAmountRequired : raw.amount;
  const { asset, payTo, maxTimeoutSeconds } = raw;
  if (
    typeof amount !== 'string' ||
    !UINT.test(amount) ||
    typeof asset !== 'string' ||
    asset.toLowerCase() !== network.usdc.address.toLowerCase() ||
    typeof payTo !== 'string' ||
    !ADDRESS.test(payTo) ||
    typeof maxTimeoutSeconds !== 'number' ||
    !Number.isSafeInteger(maxTimeoutSeconds) ||
    maxTimeoutSeconds <= 0
  ) {
    return;
  }
  // v1 servers may leave the domain out; the known deployment's is the one the token signs with.
  const extra = isRecord(raw.extra) ? raw.extra : {};
  const terms: PaymentTerms = {
    x402Version: version,
    scheme: 'exact',
    network: network.id,
    amount,
    asset: asset as Address,
    payTo: payTo as Address,
    maxTimeoutSeconds,
    extra: {
      ...extra,
      name: typeof extra.name === 'string' ? extra.name : network.usdc.name,
      version: typeof extra.version === 'string' ? extra.version : network.usdc.version,
    },
    ...(resource ? { resource } : {}),
  };
  return { raw, terms, network, amount: BigInt(amount), limit };
}

/** The v1 option's own description of its resource. */
function v1Resource(raw: unknown): ResourceInfo | undefined {
  if (!isRecord(raw) || typeof raw.resource !== 'string') return;
  return {
    url: raw.resource,
    ...(typeof raw.description === 'string' ? { description: raw.description } : {}),
    ...(typeof raw.mimeType === 'string' ? { mimeType: raw.mimeType } : {}),
  };
}

function describeOption(raw: unknown): string {
  if (!isRecord(raw)) return 'a malformed option';
  const field = (value: unknown) => String(value).slice(0, 66);
  return `${field(raw.scheme)} on ${field(raw.network)} in ${field(raw.asset)}`;
}

function usdc(amount: bigint, network: NetworkInfo): string {
  return `${formatUnits(amount, network.usdc.decimals)} USDC (${amount} atomic units)`;
}

function hex(bytes: Uint8Array): `0x${string}` {
  let out = '0x';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out as `0x${string}`;
}

/**
 * Creates a `fetch` that pays for requests with x402: when an answer is `402 Payment Required`
 * with x402 terms (the `PAYMENT-REQUIRED` header, or a v1 JSON body), it picks the first option
 * it can pay — scheme `exact`, a network in `networks`, that network's USDC, a price at most
 * `maxPrice` — asks `onPayment`, signs an EIP-3009 `TransferWithAuthorization` for exactly that
 * price (valid from 10 minutes ago until `maxTimeoutSeconds` from now, with a random nonce), and
 * sends the request once more with the payment (`PAYMENT-SIGNATURE` for v2 terms, `X-PAYMENT` for
 * v1). The answer to that retry is returned whatever it is, a second 402 too: it never pays
 * twice for one call. Other answers, a 402 without x402 terms, and requests that already carry a
 * payment header pass through untouched.
 *
 * The request (a streamed body too) is kept so it can be sent again identically. Relative URLs
 * are not resolved: pass absolute ones (the `openai` SDK does).
 *
 * @throws {ClientError} `invalid_options` at once for a malformed option. The returned fetch
 *   rejects with a {@link PaymentError}: `no_supported_terms` when no option can be paid here,
 *   `price_above_maximum` when the payable options cost more than `maxPrice`, `payment_declined`
 *   when `onPayment` refuses, `signing_failed` when the signer fails.
 * @example
 * ```ts
 * import OpenAI from 'openai';
 * import { privateKeyToAccount } from 'viem/accounts';
 * import { createPayingFetch, getPaymentReceipt } from '@tollgate/client';
 *
 * const payingFetch = createPayingFetch({
 *   signer: privateKeyToAccount(process.env.WALLET_KEY as `0x${string}`),
 *   maxPrice: '0.01',
 * });
 * const openai = new OpenAI({
 *   baseURL: 'https://gateway.example/v1',
 *   apiKey: 'unused',
 *   fetch: payingFetch,
 * });
 * const { data, response } = await openai.chat.completions
 *   .create({ model: 'llama3.2', messages: [{ role: 'user', content: 'Hello' }] })
 *   .withResponse();
 * console.log(data.choices[0]?.message.content, getPaymentReceipt(response)?.transaction);
 * ```
 */
export function createPayingFetch(options: PayingFetchOptions): typeof fetch {
  if (typeof options !== 'object' || options === null) {
    throw invalid('createPayingFetch takes an options object: { signer, maxPrice }.');
  }
  const { signer, onPayment } = options;
  if (
    typeof signer !== 'object' ||
    signer === null ||
    typeof signer.address !== 'string' ||
    !ADDRESS.test(signer.address) ||
    typeof signer.signTypedData !== 'function'
  ) {
    throw invalid(
      'signer must have an address (0x and 40 hex digits) and a signTypedData function, such as a viem account from privateKeyToAccount(key).',
    );
  }
  const networks = readNetworks(options.networks);
  const limits = readLimits(options.maxPrice, networks);
  const underlying = options.fetch ?? globalThis.fetch;
  if (typeof underlying !== 'function') {
    throw invalid(
      'No fetch to send requests with: pass options.fetch (this runtime has no global fetch).',
    );
  }
  if (onPayment !== undefined && typeof onPayment !== 'function') {
    throw invalid('onPayment must be a function that returns false to refuse a payment.');
  }
  const now = options.now ?? Date.now;
  // Calls through the default keep `this` unbound, as some runtimes' fetch requires.
  const send = (request: Request) => underlying(request);

  /** Picks what to pay for a 402, or throws why not. */
  function choose(request: Request, response: Response, required: unknown): Offer {
    const version = isRecord(required) ? required.x402Version : undefined;
    const accepts = isRecord(required) && Array.isArray(required.accepts) ? required.accepts : [];
    const offers: Offer[] = [];
    if (version === 1 || version === 2) {
      const resource =
        version === 2 && isRecord(required) && isRecord(required.resource)
          ? (required.resource as unknown as ResourceInfo)
          : undefined;
      for (const raw of accepts) {
        const offer = readOffer(raw, version, version === 1 ? v1Resource(raw) : resource, limits);
        if (offer && offer.amount <= offer.limit) return offer;
        if (offer) offers.push(offer);
      }
    }
    const what = `${request.method} ${request.url}`;
    if (offers.length === 0) {
      const offered =
        accepts.length === 0
          ? 'no options'
          : accepts.slice(0, 4).map(describeOption).join('; ') + (accepts.length > 4 ? '; …' : '');
      throw new PaymentError(
        'no_supported_terms',
        `${what} asks for a payment this client cannot make (x402Version ${String(version)}, offered: ${offered}). It pays scheme "exact" in USDC on ${networks.map((network) => network.id).join(', ')}; add the server's network to \`networks\` if you mean to pay there.`,
        { response },
      );
    }
    const cheapest = offers.reduce((best, offer) => (offer.amount < best.amount ? offer : best));
    throw new PaymentError(
      'price_above_maximum',
      `${what} costs ${usdc(cheapest.amount, cheapest.network)} on ${cheapest.network.id}, more than maxPrice, ${usdc(cheapest.limit, cheapest.network)}. Raise maxPrice to pay it.`,
      { response, terms: cheapest.terms },
    );
  }

  /** Signs the authorization and encodes the payment header for the offer's version. */
  async function pay(
    offer: Offer,
    request: Request,
    response: Response,
  ): Promise<[string, string]> {
    const { terms, network } = offer;
    const seconds = Math.floor(now() / 1000);
    const authorization: Authorization = {
      from: signer.address,
      to: terms.payTo,
      value: terms.amount,
      validAfter: String(Math.max(0, seconds - VALID_AFTER_SLACK_SECONDS)),
      validBefore: String(seconds + terms.maxTimeoutSeconds),
      nonce: hex(globalThis.crypto.getRandomValues(new Uint8Array(32))),
    };
    let signature: unknown;
    try {
      signature = await signer.signTypedData(
        authorizationTypedData({ ...terms, network: network.id }, authorization),
      );
    } catch (error) {
      throw new PaymentError(
        'signing_failed',
        `The signer did not sign the payment of ${usdc(offer.amount, network)} for ${request.method} ${request.url} (see cause): check that it can sign EIP-712 typed data as ${signer.address}.`,
        { response, terms, cause: error },
      );
    }
    if (typeof signature !== 'string' || !SIGNATURE.test(signature)) {
      throw new PaymentError(
        'signing_failed',
        `The signer returned ${typeof signature === 'string' ? 'a malformed signature' : typeof signature} instead of a 0x hex signature of 65 bytes or more.`,
        { response, terms },
      );
    }
    const payload = { signature: signature as `0x${string}`, authorization };
    if (terms.x402Version === 1) {
      return [
        'X-PAYMENT',
        encodeHeader({ x402Version: 1, scheme: 'exact', network: offer.raw.network, payload }),
      ];
    }
    return [
      'PAYMENT-SIGNATURE',
      encodeHeader({
        x402Version: 2,
        ...(terms.resource ? { resource: terms.resource } : {}),
        accepted: offer.raw,
        payload,
      }),
    ];
  }

  return async function payingFetch(
    input: string | URL | Request,
    init?: RequestInit,
  ): Promise<Response> {
    // A streamed body needs `duplex` in Node's fetch.
    const streamed = typeof ReadableStream !== 'undefined' && init?.body instanceof ReadableStream;
    const request = new Request(
      input,
      streamed ? ({ ...init, duplex: 'half' } as RequestInit) : init,
    );
    if (request.headers.has(HEADERS.paymentSignature) || request.headers.has(HEADERS.xPayment)) {
      return send(request); // the caller pays this one itself
    }
    // Cloned before sending: the body (a stream too) is teed, so the retry sends the same bytes.
    const retry = request.clone();
    const response = await send(request);
    if (response.status !== 402) return response;
    const required = await readPaymentRequired(response);
    if (required === undefined) return response; // a 402 that is not x402's
    const offer = choose(request, response, required);
    if (onPayment && (await onPayment(offer.terms)) === false) {
      throw new PaymentError(
        'payment_declined',
        `onPayment declined to pay ${usdc(offer.amount, offer.network)} on ${offer.network.id} for ${request.method} ${request.url}.`,
        { response, terms: offer.terms },
      );
    }
    const [name, value] = await pay(offer, request, response);
    await response.body?.cancel().catch(() => undefined);
    retry.headers.set(name, value);
    return send(retry);
  } as typeof fetch;
}

/**
 * The settlement receipt of a paid answer: the `PAYMENT-RESPONSE` header (v2), else
 * `X-PAYMENT-RESPONSE` (v1), decoded. Undefined when there is none or it cannot be decoded.
 * In browsers the gateway must expose the header through CORS (`Access-Control-Expose-Headers`).
 *
 * @example
 * ```ts
 * const response = await payingFetch('https://gateway.example/v1/models');
 * const receipt = getPaymentReceipt(response);
 * if (receipt?.success) console.log(`paid in ${receipt.transaction} on ${receipt.network}`);
 * ```
 */
export function getPaymentReceipt(response: Response): SettleResponse | undefined {
  const header =
    response.headers.get(HEADERS.paymentResponse) ?? response.headers.get(HEADERS.xPaymentResponse);
  if (header === null) return;
  let receipt: unknown;
  try {
    receipt = decodeHeader(header);
  } catch {
    return;
  }
  if (
    !isRecord(receipt) ||
    typeof receipt.success !== 'boolean' ||
    typeof receipt.transaction !== 'string' ||
    typeof receipt.network !== 'string'
  ) {
    return;
  }
  return receipt as unknown as SettleResponse;
}
