/**
 * Reading what a caller hands to `fetch` (a string, a `URL` or a `Request`, with `init` as
 * `Headers` or a plain record) into one buffered request, and placing it under the gateway.
 */
import { ClientError } from './errors.js';

/** The gateway's address, split for the checks and paths every request needs. */
export interface Gateway {
  /** `https://host:port` of the gateway. */
  readonly origin: string;
  /** `https` or `http`, as binary HTTP's `:scheme` wants it. */
  readonly scheme: string;
  /** `host:port`, binary HTTP's `:authority`. */
  readonly authority: string;
  /** The path prefix the gateway lives under, without its trailing slash ('' at the root). */
  readonly prefix: string;
  /** The absolute URL of a gateway path such as `/.well-known/ohttp-gateway`. */
  url(path: string): string;
}

/** A request read whole: the body is buffered so an encrypted request can be sent again. */
export interface BufferedRequest {
  readonly url: URL;
  readonly method: string;
  /** Lowercase names, in the order `Headers` iterates them. */
  readonly headers: Array<[string, string]>;
  /** Empty for GET and HEAD and for requests without a body. */
  readonly body: Uint8Array;
  readonly signal: AbortSignal | undefined;
}

/**
 * Parses an absolute http(s) URL option.
 *
 * @throws {ClientError} `invalid_options`
 */
export function parseHttpUrl(value: unknown, name: string): URL {
  let url: URL | undefined;
  try {
    url = new URL(String(value));
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new ClientError(
      'invalid_options',
      `${name} must be an absolute http(s) URL such as https://gateway.example, not ${JSON.stringify(String(value))}.`,
    );
  }
  return url;
}

/**
 * Parses `gatewayUrl` (its query and fragment are ignored).
 *
 * @throws {ClientError} `invalid_options`
 */
export function parseGateway(gatewayUrl: unknown): Gateway {
  const url = parseHttpUrl(gatewayUrl, 'gatewayUrl');
  const prefix = url.pathname.replace(/\/+$/, '');
  return {
    origin: url.origin,
    scheme: url.protocol.slice(0, -1),
    authority: url.host,
    prefix,
    url: (path) => url.origin + prefix + path,
  };
}

/**
 * The request's path and query relative to the gateway (what the gateway's own routes see).
 *
 * @throws {ClientError} `outside_gateway` when the URL is not under the gateway
 */
export function gatewayPath(gateway: Gateway, url: URL): string {
  const { pathname } = url;
  const under =
    url.origin === gateway.origin &&
    (gateway.prefix === '' ||
      pathname === gateway.prefix ||
      pathname.startsWith(gateway.prefix + '/'));
  if (!under) {
    throw new ClientError(
      'outside_gateway',
      `${url.origin}${pathname} is not under the gateway ${gateway.origin}${gateway.prefix}/: this fetch only sends requests to the gateway whose keys it encrypts to. Use another fetch for other hosts, or fix the SDK's baseURL.`,
    );
  }
  return (pathname.slice(gateway.prefix.length) || '/') + url.search;
}

function isRequest(value: unknown): value is Request {
  return (
    typeof value === 'object' &&
    value !== null &&
    !(value instanceof URL) &&
    typeof (value as Request).url === 'string' &&
    typeof (value as Request).arrayBuffer === 'function'
  );
}

/**
 * Reads `fetch`'s arguments into a {@link BufferedRequest}. A relative URL resolves against the
 * gateway (so `fetch('v1/models')` works in Node, where there is no document base).
 */
export async function readRequest(
  gateway: Gateway,
  input: string | URL | Request,
  init: RequestInit | undefined,
): Promise<BufferedRequest> {
  let request: Request;
  if (isRequest(input)) {
    request = init === undefined ? input : new Request(input, init);
  } else {
    const url = new URL(String(input), gateway.url('/'));
    // A streamed body needs `duplex` in Node's fetch; it is buffered below either way.
    const streamed = typeof ReadableStream !== 'undefined' && init?.body instanceof ReadableStream;
    request = new Request(url, streamed ? ({ ...init, duplex: 'half' } as RequestInit) : init);
  }
  const method = request.method.toUpperCase();
  const body =
    method === 'GET' || method === 'HEAD' || request.body === null
      ? new Uint8Array(0)
      : new Uint8Array(await request.arrayBuffer());
  return {
    url: new URL(request.url),
    method,
    headers: [...request.headers],
    body,
    signal: init?.signal ?? (isRequest(input) ? input.signal : undefined) ?? undefined,
  };
}
