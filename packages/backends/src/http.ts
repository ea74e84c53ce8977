/**
 * HTTP plumbing shared by every adapter: one `fetch` wrapper that wires the caller's abort
 * signal and a headers timeout, turns network failures into `TollgateError`s that name the
 * backend and URL, and the small URL and response helpers the adapters need.
 */
import { isTollgateError, readUpstreamErrorMessage, TollgateError } from '@tollgate/protocol';
import type { BackendHealth, BackendKind } from './backend.js';

/** Default wait for an upstream's response headers, in milliseconds (10 minutes). */
export const DEFAULT_TIMEOUT_MS = 600_000;

/**
 * Longest wait of a health probe or a model listing, in milliseconds. A server that needs
 * longer to list its models is not one to send traffic to; callers may pass a shorter signal.
 */
export const PROBE_TIMEOUT_MS = 10_000;

/** Options for {@link createUpstreamClient}. @internal */
export interface UpstreamClientOptions {
  /** The backend's name, used in error messages. */
  backendName: string;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Sent as `authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Extra headers sent with every request. */
  headers?: Record<string, string>;
  /** Wait for response headers, in milliseconds. @default 600000 */
  timeoutMs?: number;
}

/** One upstream request. @internal */
export interface UpstreamRequest {
  /** Absolute URL. */
  url: string;
  /** @default 'GET' */
  method?: string;
  /** Serialized as JSON when present. */
  json?: unknown;
  /** The caller's signal; aborting it aborts the request and the response body. */
  signal?: AbortSignal;
  /** Forwarded as `x-request-id`. */
  requestId?: string;
  /** Overrides the client's headers timeout for this request. */
  timeoutMs?: number;
}

/** A fetch bound to one backend's settings. @internal */
export interface UpstreamClient {
  readonly backendName: string;
  /**
   * Sends one request and resolves with the upstream's response, whatever its status.
   *
   * @throws {TollgateError} `upstream_unreachable` when the connection failed,
   *   `upstream_timeout` when no headers came in time; the caller's abort reason as is.
   */
  send(request: UpstreamRequest): Promise<Response>;
  /**
   * GETs JSON with the probe timeout.
   *
   * @throws {TollgateError} as {@link UpstreamClient.send}, and `upstream_error` (with the
   *   upstream's status) for a non-2xx answer or a body that is not JSON.
   */
  getJson(url: string, options?: { signal?: AbortSignal }): Promise<unknown>;
  /**
   * GETs a body of any status as text, with the probe timeout. For health probes.
   *
   * @throws {TollgateError} as {@link UpstreamClient.send}.
   */
  getText(
    url: string,
    options?: { signal?: AbortSignal },
  ): Promise<{ status: number; text: string }>;
}

/** Creates the fetch wrapper every adapter uses. @internal */
export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  const fetchImplementation = options.fetch ?? globalThis.fetch;
  const defaultTimeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const configuredHeaders: Record<string, string> = { ...options.headers };
  if (options.apiKey) configuredHeaders.authorization = `Bearer ${options.apiKey}`;
  // The configured headers as a Headers object would make them (names lower-cased, repeated
  // names joined), worked out once: a plain record per request costs far less than a Headers
  // object on Node. Not at creation, so that a bad header still fails the request, as before.
  let baseHeaders: Record<string, string> | undefined;

  async function send(request: UpstreamRequest): Promise<Response> {
    const { signal } = request;
    if (signal?.aborted) throw signal.reason;
    const timeoutMs = request.timeoutMs ?? defaultTimeoutMs;
    const method = request.method ?? 'GET';
    baseHeaders ??= Object.fromEntries(new Headers(configuredHeaders));
    const headers: Record<string, string> = {
      ...baseHeaders,
      accept: 'application/json, text/event-stream, application/x-ndjson',
    };
    if (request.json !== undefined) headers['content-type'] = 'application/json';
    if (request.requestId) headers['x-request-id'] = request.requestId;
    // The caller's fault, not the server's: refused before anything is sent, so it never
    // counts against the backend's health or fails over.
    let body: string | undefined;
    try {
      body = request.json === undefined ? undefined : JSON.stringify(request.json);
    } catch (error) {
      throw new TollgateError(
        'invalid_request',
        'The request cannot be written as JSON: it is nested too deeply or holds a value JSON cannot represent.',
        { cause: error },
      );
    }

    // One controller carries both the caller's abort and the timeout, and stays linked to
    // the caller after the headers came: a caller who leaves mid-stream cancels the upstream.
    const controller = new AbortController();
    const onAbort = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(timeoutError(options.backendName, method, request.url, timeoutMs));
    }, timeoutMs);
    try {
      return await fetchImplementation(request.url, {
        method,
        headers,
        body,
        signal: controller.signal,
      });
    } catch (error) {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) throw signal.reason;
      if (timedOut) throw timeoutError(options.backendName, method, request.url, timeoutMs, error);
      throw toUpstreamError(options.backendName, method, request.url, error);
    } finally {
      clearTimeout(timer);
    }
  }

  async function getText(
    url: string,
    getOptions: { signal?: AbortSignal } = {},
  ): Promise<{ status: number; text: string }> {
    const response = await send({
      url,
      signal: getOptions.signal,
      timeoutMs: Math.min(defaultTimeoutMs, PROBE_TIMEOUT_MS),
    });
    return { status: response.status, text: await readText(response, getOptions.signal) };
  }

  async function getJson(url: string, getOptions: { signal?: AbortSignal } = {}): Promise<unknown> {
    const { status, text } = await getText(url, getOptions);
    if (status < 200 || status > 299) {
      const message = readUpstreamErrorMessage(text) ?? 'no error message';
      throw new TollgateError(
        'upstream_error',
        `Backend "${options.backendName}" answered GET ${url} with ${status}: ${message}`,
      );
    }
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new TollgateError(
        'upstream_error',
        `Backend "${options.backendName}" answered GET ${url} with a body that is not JSON.`,
        { cause: error },
      );
    }
  }

  return { backendName: options.backendName, send, getJson, getText };
}

/** Reads a body as text, turning a broken connection into a TollgateError. */
async function readText(response: Response, signal?: AbortSignal): Promise<string> {
  try {
    return await response.text();
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    if (isTollgateError(error)) throw error;
    throw new TollgateError(
      'upstream_stream_error',
      'The upstream connection broke while reading its answer.',
      {
        cause: error,
      },
    );
  }
}

function timeoutError(
  backendName: string,
  method: string,
  url: string,
  timeoutMs: number,
  cause?: unknown,
): TollgateError {
  return new TollgateError(
    'upstream_timeout',
    `Backend "${backendName}" did not answer ${method} ${url} within ${timeoutMs} ms. The server may be overloaded or stuck; try again later.`,
    { cause },
  );
}

const networkCodes: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CLOSED: 'connection closed',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_HEADERS_TIMEOUT: 'response headers timed out',
};

/** The error codes found on an error, its `cause` chain and aggregated errors. */
function errorCodes(error: unknown, depth = 0): string[] {
  if (!error || typeof error !== 'object' || depth > 5) return [];
  const record = error as { code?: unknown; cause?: unknown; errors?: unknown };
  const codes: string[] = typeof record.code === 'string' ? [record.code] : [];
  if (Array.isArray(record.errors)) {
    for (const inner of record.errors) codes.push(...errorCodes(inner, depth + 1));
  }
  codes.push(...errorCodes(record.cause, depth + 1));
  return codes;
}

/**
 * A few words on why a request failed without an HTTP answer, e.g. "connection refused".
 * @internal
 */
export function describeNetworkError(error: unknown): string {
  if (isTollgateError(error) && error.code === 'upstream_timeout') return 'timed out';
  for (const code of errorCodes(error)) {
    const description = networkCodes[code];
    if (description) return description;
  }
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return `${error.message}${cause}`;
  }
  return String(error);
}

/** Maps a fetch failure to `upstream_timeout` or `upstream_unreachable`. */
function toUpstreamError(
  backendName: string,
  method: string,
  url: string,
  error: unknown,
): TollgateError {
  if (isTollgateError(error)) return error;
  const codes = errorCodes(error);
  if (codes.includes('UND_ERR_CONNECT_TIMEOUT') || codes.includes('UND_ERR_HEADERS_TIMEOUT')) {
    return new TollgateError(
      'upstream_timeout',
      `Backend "${backendName}" did not answer ${method} ${url} in time (${describeNetworkError(error)}). The server may be overloaded or stuck; try again later.`,
      { cause: error },
    );
  }
  return new TollgateError(
    'upstream_unreachable',
    `Backend "${backendName}" could not be reached at ${url} (${describeNetworkError(error)}): the server is not running or not reachable. Start it or check the backend URL.`,
    { cause: error },
  );
}

/** Joins a base URL and a path with exactly one slash between them. @internal */
export function joinURL(base: string, path: string): string {
  return `${base.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}

/** A server's root URL: no trailing slash, and no trailing `/v1` (which some users paste). @internal */
export function rootURL(url: string): string {
  return url.replace(/\/+$/, '').replace(/\/v1$/, '');
}

/** The default backend name: the kind and the server's host, e.g. `vllm@127.0.0.1:8000`. @internal */
export function defaultBackendName(kind: BackendKind, url: string): string {
  try {
    return `${kind}@${new URL(url).host}`;
  } catch {
    return `${kind}@${url}`;
  }
}

/**
 * Headers that describe the upstream's transfer and no longer hold once `fetch` has decoded
 * the body (it undoes gzip/br and chunking), so they must not travel on.
 */
const hopHeaders = [
  'content-encoding',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
];

/**
 * The upstream's response as the adapter returns it: same status, body and content type, minus
 * transfer headers. The body is the upstream's own stream, so cancelling it cancels the
 * upstream request. @internal
 */
export function passThroughResponse(upstream: Response): Response {
  let headers: Headers = upstream.headers;
  try {
    // The adapter owns this response: editing its headers saves a copy of them and a second
    // Response around the same body.
    for (const name of hopHeaders) headers.delete(name);
    return upstream;
  } catch {
    // A fetch Response's headers are immutable: copy them.
  }
  headers = new Headers(headers);
  for (const name of hopHeaders) headers.delete(name);
  return new Response(upstream.body, {
    status: upstream.status,
    statusText: upstream.statusText,
    headers,
  });
}

/** A health result for a probe that got no HTTP answer. Never throws. @internal */
export function unhealthyFrom(error: unknown): BackendHealth {
  if (isTollgateError(error)) {
    const cause = error.cause;
    if (error.code === 'upstream_timeout') return { ok: false, detail: 'timed out' };
    if (error.code === 'upstream_unreachable')
      return { ok: false, detail: describeNetworkError(cause) };
    return { ok: false, detail: error.message };
  }
  if (error instanceof Error && error.name === 'TimeoutError')
    return { ok: false, detail: 'timed out' };
  if (error instanceof Error && error.name === 'AbortError')
    return { ok: false, detail: 'aborted' };
  return { ok: false, detail: describeNetworkError(error) };
}

/** A record view of a JSON value, or an empty record. @internal */
export function asRecord(value: unknown): Record<string, unknown> {
  return value && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

/** A JSON `Response`. @internal */
export function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}
