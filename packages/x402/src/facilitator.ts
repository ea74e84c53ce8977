/**
 * Facilitators verify payments and settle them on-chain. {@link createHttpFacilitator} talks
 * to one over HTTP; anything with the same two methods can stand in (an in-process one, a
 * test double). There is deliberately no default URL: a payment must never go to a
 * facilitator the operator did not name.
 */
import { X402Error } from './errors.js';
import type {
  PaymentPayloadV1,
  PaymentPayloadV2,
  PaymentRequirements,
  PaymentRequirementsV1,
  SettleResponse,
  VerifyResponse,
} from './types.js';

/** The body of `POST /verify` and `POST /settle`. */
export interface FacilitatorRequest {
  x402Version: 1 | 2;
  /** The payment as the client sent it (decoded). */
  paymentPayload: PaymentPayloadV1 | PaymentPayloadV2;
  /** The server's own terms, never the client's copy. */
  paymentRequirements: PaymentRequirements | PaymentRequirementsV1;
}

/** A facilitator. Methods reject with {@link X402Error} `facilitator_unavailable` when it cannot answer. */
export interface Facilitator {
  verify(request: FacilitatorRequest): Promise<VerifyResponse>;
  settle(request: FacilitatorRequest): Promise<SettleResponse>;
}

/** Options of {@link createHttpFacilitator}. */
export interface HttpFacilitatorOptions {
  /** Base URL; `/verify`, `/settle` and `/supported` are appended. */
  url: string;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Extra headers (e.g. an API key), or a function giving them per endpoint. */
  headers?:
    | Record<string, string>
    | ((
        endpoint: 'verify' | 'settle' | 'supported',
      ) => Record<string, string> | Promise<Record<string, string>>);
  /**
   * How long to wait for `/verify` and `/supported`, in ms.
   * @default 10_000
   */
  verifyTimeoutMs?: number;
  /**
   * How long to wait for `/settle` (it waits for a block), in ms.
   * @default 60_000
   */
  settleTimeoutMs?: number;
}

/** An HTTP facilitator, with `GET /supported` too. */
export interface HttpFacilitator extends Facilitator {
  /** The kinds (version, scheme, network) the facilitator supports. */
  supported(): Promise<{ kinds: Array<{ x402Version: number; scheme: string; network: string }> }>;
}

/**
 * A facilitator client over HTTP.
 *
 * @throws {TypeError} when `url` is not an http(s) URL, or carries credentials.
 * @example
 * ```ts
 * const facilitator = createHttpFacilitator({ url: 'https://facilitator.example/x402' });
 * const { isValid } = await facilitator.verify({ x402Version: 2, paymentPayload, paymentRequirements });
 * ```
 */
export function createHttpFacilitator(options: HttpFacilitatorOptions): HttpFacilitator {
  let base: URL;
  try {
    base = new URL(options.url);
  } catch {
    throw new TypeError(`The facilitator URL "${options.url}" is not a URL.`);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError(`The facilitator URL must be http(s), not "${base.protocol}".`);
  }
  if (base.username !== '' || base.password !== '') {
    throw new TypeError(
      'The facilitator URL carries credentials, which fetch refuses: pass them in `headers`.',
    );
  }
  // The endpoint goes after the path, before any query (`/x402?key=1` -> `/x402/verify?key=1`);
  // messages name the facilitator without its query, which may hold a key.
  const root = `${base.origin}${base.pathname.replace(/\/+$/, '')}`;
  const endpointUrl = (endpoint: string) => `${root}/${endpoint}${base.search}`;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const verifyTimeoutMs = options.verifyTimeoutMs ?? 10_000;
  const settleTimeoutMs = options.settleTimeoutMs ?? 60_000;

  async function call(
    endpoint: 'verify' | 'settle' | 'supported',
    body?: unknown,
  ): Promise<unknown> {
    const extra =
      typeof options.headers === 'function' ? await options.headers(endpoint) : options.headers;
    let response: Response;
    try {
      response = await fetchImpl(endpointUrl(endpoint), {
        method: body === undefined ? 'GET' : 'POST',
        headers: {
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          ...extra,
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(endpoint === 'settle' ? settleTimeoutMs : verifyTimeoutMs),
      });
    } catch (cause) {
      throw new X402Error(
        'facilitator_unavailable',
        `The payment facilitator at ${root} could not be reached (${describe(cause)}).`,
        { cause },
      );
    }
    let value: unknown;
    try {
      value = await response.json();
    } catch (cause) {
      throw new X402Error(
        'facilitator_unavailable',
        `The payment facilitator answered ${endpoint} with HTTP ${response.status} and no JSON.`,
        { cause },
      );
    }
    // A refusal may come with a 4xx status and still be a well-formed answer; a 5xx is not.
    if (response.status >= 500) {
      throw new X402Error(
        'facilitator_unavailable',
        `The payment facilitator answered ${endpoint} with HTTP ${response.status}.`,
      );
    }
    return value;
  }

  return {
    async verify(request) {
      const value = (await call('verify', request)) as Partial<VerifyResponse> | null;
      if (typeof value?.isValid !== 'boolean') {
        throw new X402Error(
          'facilitator_unavailable',
          'The payment facilitator answered verify without "isValid".',
        );
      }
      return value as VerifyResponse;
    },
    async settle(request) {
      const value = (await call('settle', request)) as Partial<SettleResponse> | null;
      if (typeof value?.success !== 'boolean') {
        throw new X402Error(
          'facilitator_unavailable',
          'The payment facilitator answered settle without "success".',
        );
      }
      return { transaction: '', network: '', ...value } as SettleResponse;
    },
    async supported() {
      const value = (await call('supported')) as { kinds?: unknown } | null;
      if (!Array.isArray(value?.kinds)) {
        throw new X402Error(
          'facilitator_unavailable',
          'The payment facilitator answered supported without "kinds".',
        );
      }
      return value as { kinds: Array<{ x402Version: number; scheme: string; network: string }> };
    },
  };
}

/**
 * Runs a facilitator's settlements one after another. A facilitator sends each settlement
 * as a transaction from one account; two sent at once race for the same account nonce and
 * one fails with "nonce too low".
 */
export function serializeSettlements<T extends Facilitator>(facilitator: T): T {
  let tail: Promise<unknown> = Promise.resolve();
  const settle = (request: FacilitatorRequest): Promise<SettleResponse> => {
    const run = tail.then(() => facilitator.settle(request));
    tail = run.catch(() => {});
    return run;
  };
  return Object.assign(Object.create(facilitator) as T, {
    settle,
    verify: facilitator.verify.bind(facilitator),
  });
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return `${error.name === 'TimeoutError' ? 'timed out' : error.message}${cause}`;
  }
  return String(error);
}
