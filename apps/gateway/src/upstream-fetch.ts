/**
 * The `fetch` the gateway gives its backends: a thin fetch over an undici connection pool.
 *
 * Node's global fetch stops waiting for response headers after 300 s and for the next body
 * chunk after 300 s; a large prompt on slow hardware takes longer than that before its first
 * token, and a model may pause mid-stream. The pool here has neither timeout: the router's
 * own first-byte timeout decides instead, and a started stream is never cut.
 *
 * It also costs far less per request than undici's `fetch` (which builds a full WHATWG
 * Request, clones bodies, tees streams and runs the fetch algorithm's many steps): requests
 * go straight to the pool's `dispatch`, and the answer becomes a web `Response` whose body is
 * one ReadableStream fed by the socket. What fetch does for a server-side caller is kept:
 * redirects are followed as fetch follows them, compressed bodies are decoded, aborting the
 * signal rejects (or errors the body) with its reason, network failures reject with
 * `TypeError('fetch failed')` carrying the cause, and a body that breaks errors with
 * `TypeError('terminated')`. Calls this path does not cover (an input that is not a URL or
 * string, a streamed or form body, `redirect: 'manual' | 'error'`) go to undici's fetch on
 * the same pool.
 */
import type { Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { Agent, type Dispatcher, fetch as undiciFetch } from 'undici';

/** Options for {@link createUpstreamFetch}. */
export interface UpstreamFetchOptions {
  /** How long an idle keep-alive connection to an upstream is kept, in ms. @default 30000 */
  keepAliveTimeoutMs?: number;
}

/** An upstream fetch and the connection pool behind it. */
export interface UpstreamFetch {
  fetch: typeof fetch;
  /** Closes the pooled connections; anything still under way (a health probe) is aborted. */
  close(): Promise<void>;
}

/** Fetch's limit on redirects followed for one request. */
const MAX_REDIRECTS = 20;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
/** Fetch's limit on stacked content codings (more is treated as an attack). */
const MAX_CONTENT_CODINGS = 5;
/** Bytes the body stream holds before the socket is paused. */
const BODY_HIGH_WATER_MARK = 64 * 1024;
/** Parsed targets are remembered: the backends call a handful of URLs over and over. */
const MAX_CACHED_TARGETS = 256;
/** Request headers that describe a body, dropped when a redirect turns the request into a GET. */
const BODY_HEADERS = ['content-encoding', 'content-language', 'content-location', 'content-type'];

interface Target {
  origin: string;
  path: string;
}

interface Outgoing {
  target: Target;
  method: string;
  /** Lower-case names; `authorization` is dropped on a cross-origin redirect. */
  headers: Map<string, string>;
  body: string | Uint8Array | null;
  signal: AbortSignal | undefined;
  redirects: number;
}

/** Creates a fetch with no headers or body timeout, over its own keep-alive pool. */
export function createUpstreamFetch(options: UpstreamFetchOptions = {}): UpstreamFetch {
  const agent = new Agent({
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
  });
  const targets = new Map<string, Target>();

  function targetOf(url: string): Target | undefined {
    const cached = targets.get(url);
    if (cached) return cached;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return undefined;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return undefined;
    if (parsed.username || parsed.password) return undefined;
    const target = { origin: parsed.origin, path: `${parsed.pathname}${parsed.search}` };
    if (targets.size >= MAX_CACHED_TARGETS) targets.clear();
    targets.set(url, target);
    return target;
  }

  function viaUndiciFetch(input: Parameters<typeof fetch>[0], init?: RequestInit) {
    return undiciFetch(input as Parameters<typeof undiciFetch>[0], {
      ...(init as Parameters<typeof undiciFetch>[1]),
      dispatcher: agent,
    }) as unknown as Promise<Response>;
  }

  const upstreamFetch = (input: Parameters<typeof fetch>[0], init: RequestInit = {}) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : undefined;
    const target = url === undefined ? undefined : targetOf(url);
    const body = plainBody(init.body);
    if (
      !target ||
      body === undefined ||
      (init.redirect !== undefined && init.redirect !== 'follow')
    ) {
      return viaUndiciFetch(input, init);
    }
    const signal = init.signal ?? undefined;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let headers: Map<string, string>;
    try {
      headers = headerMap(init.headers);
    } catch (error) {
      return Promise.reject(error);
    }
    if (typeof body === 'string' && !headers.has('content-type')) {
      headers.set('content-type', 'text/plain;charset=UTF-8');
    }
    const method = normalizeMethod(init.method ?? 'GET');
    return send(agent, { target, method, headers, body, signal, redirects: 0 }, targetOf);
  };

  return { fetch: upstreamFetch as typeof fetch, close: () => agent.destroy() };
}

/** The body as undici takes it, null for none, undefined when only fetch can send it. */
function plainBody(body: RequestInit['body']): string | Uint8Array | null | undefined {
  if (body === undefined || body === null) return null;
  if (typeof body === 'string') return body;
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body))
    return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  return undefined;
}

function headerMap(init: HeadersInit | undefined): Map<string, string> {
  const map = new Map<string, string>();
  if (init === undefined) return map;
  if (init instanceof Headers || Array.isArray(init)) {
    // A Headers object has already validated and lower-cased its names.
    for (const [name, value] of init instanceof Headers ? init : new Headers(init)) {
      map.set(name, value);
    }
    return map;
  }
  // A plain record, read as Headers would read it (names lower-cased, repeated names joined)
  // without building one; undici checks names and values before anything is sent.
  for (const name in init) {
    const value = init[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    const previous = map.get(lower);
    map.set(lower, previous === undefined ? value : `${previous}, ${value}`);
  }
  return map;
}

function normalizeMethod(method: string): string {
  const upper = method.toUpperCase();
  return upper === 'DELETE' ||
    upper === 'GET' ||
    upper === 'HEAD' ||
    upper === 'OPTIONS' ||
    upper === 'POST' ||
    upper === 'PUT'
    ? upper
    : method;
}

function flatHeaders(headers: Map<string, string>): string[] {
  const flat: string[] = [];
  for (const [name, value] of headers) flat.push(name, value);
  return flat;
}

function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

/** Sends one request (and the redirects it leads to); resolves once response headers came. */
function send(
  agent: Dispatcher,
  outgoing: Outgoing,
  targetOf: (url: string) => Target | undefined,
): Promise<Response> {
  const { signal } = outgoing;
  return new Promise<Response>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    let controller: Dispatcher.DispatchController | undefined;
    let body: ReadableStreamDefaultController<Uint8Array> | undefined;
    let decoder: Transform | undefined;
    /** Headers came (or the request failed): later events only concern the body. */
    let answered = false;
    /** Nothing more reaches the caller: the body ended, broke, or was cancelled or aborted. */
    let finished = false;
    let redirectTo: string | undefined;
    let redirectStatus = 0;

    const cleanup = () => {
      finished = true;
      signal?.removeEventListener('abort', onAbort);
    };
    function onAbort(): void {
      const reason = signal!.reason;
      if (!answered) {
        answered = true;
        reject(reason);
      } else if (!finished) {
        body?.error(reason);
      }
      cleanup();
      decoder?.destroy();
      controller?.abort(toError(reason));
    }
    signal?.addEventListener('abort', onAbort, { once: true });

    const fail = (error: unknown) => {
      if (!answered) {
        answered = true;
        cleanup();
        reject(error);
      } else if (!finished) {
        cleanup();
        body?.error(error);
      }
    };

    const deliver = (chunk: Uint8Array) => {
      if (finished || !body) return;
      body.enqueue(chunk);
      if ((body.desiredSize ?? 0) <= 0 && controller && !controller.paused) controller.pause();
    };
    const close = () => {
      if (finished) return;
      cleanup();
      body?.close();
    };

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(dispatchController) {
        controller = dispatchController;
        if (signal?.aborted) dispatchController.abort(toError(signal.reason));
      },
      onResponseStart(_dispatchController, status, headers, statusText) {
        if (status < 200 || answered) return;
        const location = headerValue(headers.location);
        if (location !== undefined && REDIRECT_STATUSES.has(status)) {
          // The redirect's own body is read to its end (so the connection is kept) and dropped.
          redirectTo = location;
          redirectStatus = status;
          return;
        }
        answered = true;
        const responseHeaders = new Headers();
        for (const name in headers) {
          const value = headers[name];
          if (value === undefined) continue;
          if (Array.isArray(value)) for (const item of value) responseHeaders.append(name, item);
          else responseHeaders.append(name, value);
        }
        const hasBody = outgoing.method !== 'HEAD' && !NULL_BODY_STATUSES.has(status);
        let stream: ReadableStream<Uint8Array> | null = null;
        if (hasBody) {
          stream = new ReadableStream<Uint8Array>(
            {
              start(streamController) {
                body = streamController;
              },
              pull() {
                if (controller?.paused) controller.resume();
              },
              cancel(reason) {
                if (finished) return;
                cleanup();
                decoder?.destroy();
                controller?.abort(toError(reason ?? new Error('The body was cancelled.')));
              },
            },
            { highWaterMark: BODY_HIGH_WATER_MARK, size: (chunk) => chunk.byteLength },
          );
          try {
            decoder = decoderFor(
              headerValue(headers['content-encoding']),
              deliver,
              close,
              (error) => {
                fail(error);
                controller?.abort(toError(error));
              },
            );
          } catch (error) {
            fail(error);
            controller?.abort(toError(error));
            return;
          }
        }
        let response: Response;
        try {
          response = new Response(stream, {
            status,
            statusText: statusText ?? '',
            headers: responseHeaders,
          });
        } catch (error) {
          answered = false;
          fail(new TypeError('fetch failed', { cause: error }));
          controller?.abort(toError(error));
          return;
        }
        if (!hasBody) cleanup();
        resolve(response);
      },
      onResponseData(_dispatchController, chunk) {
        if (redirectTo !== undefined || finished) return;
        if (decoder) {
          decoder.write(chunk);
          return;
        }
        // A plain Uint8Array view, as fetch hands out, over the socket's own bytes.
        deliver(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      },
      onResponseEnd() {
        if (redirectTo !== undefined) {
          if (finished || answered) return;
          cleanup();
          follow(outgoing, redirectStatus, redirectTo, targetOf).then(
            (next) => send(agent, next, targetOf).then(resolve, reject),
            reject,
          );
          return;
        }
        if (decoder) decoder.end();
        else close();
      },
      onResponseError(_dispatchController, error) {
        decoder?.destroy();
        if (finished) return;
        fail(
          answered
            ? new TypeError('terminated', { cause: error })
            : new TypeError('fetch failed', { cause: error }),
        );
      },
    };

    try {
      agent.dispatch(
        {
          origin: outgoing.target.origin,
          path: outgoing.target.path,
          method: outgoing.method,
          headers: flatHeaders(outgoing.headers),
          body: outgoing.body,
        },
        handler,
      );
    } catch (error) {
      fail(new TypeError('fetch failed', { cause: error }));
    }
  });
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The request a redirect leads to, following fetch's rules. */
async function follow(
  previous: Outgoing,
  status: number,
  location: string,
  targetOf: (url: string) => Target | undefined,
): Promise<Outgoing> {
  if (previous.redirects >= MAX_REDIRECTS) {
    throw new TypeError('fetch failed', { cause: new Error('redirect count exceeded') });
  }
  let url: URL;
  try {
    url = new URL(location, `${previous.target.origin}${previous.target.path}`);
  } catch (error) {
    throw new TypeError('fetch failed', { cause: error });
  }
  const target = targetOf(url.href);
  if (!target) {
    throw new TypeError('fetch failed', {
      cause: new Error(`cannot follow a redirect to ${url.protocol}`),
    });
  }
  const headers = new Map(previous.headers);
  let { method, body } = previous;
  // 301/302 after a POST and any 303 (but after a HEAD) become a GET without a body.
  if (
    (status === 303 && method !== 'GET' && method !== 'HEAD') ||
    ((status === 301 || status === 302) && method === 'POST')
  ) {
    method = 'GET';
    body = null;
    for (const name of BODY_HEADERS) headers.delete(name);
  }
  if (target.origin !== previous.target.origin) headers.delete('authorization');
  return { ...previous, target, method, headers, body, redirects: previous.redirects + 1 };
}

/**
 * A decoder for the response's content codings (outermost last, as listed), feeding `deliver`;
 * undefined when the body is not encoded, or encoded in a way fetch passes on untouched.
 */
function decoderFor(
  contentEncoding: string | undefined,
  deliver: (chunk: Uint8Array) => void,
  close: () => void,
  fail: (error: unknown) => void,
): Transform | undefined {
  if (!contentEncoding) return undefined;
  const codings = contentEncoding.toLowerCase().split(',');
  if (codings.length > MAX_CONTENT_CODINGS) {
    throw new TypeError('fetch failed', {
      cause: new Error(`too many content-encodings in response: ${codings.length}`),
    });
  }
  const stages: Transform[] = [];
  for (let index = codings.length - 1; index >= 0; index--) {
    const stage = decoderStage(codings[index]!.trim());
    if (!stage) return undefined;
    stages.push(stage);
  }
  if (stages.length === 0) return undefined;
  for (let index = 0; index < stages.length - 1; index++) stages[index]!.pipe(stages[index + 1]!);
  const last = stages[stages.length - 1]!;
  const onError = (error: Error) => fail(new TypeError('terminated', { cause: error }));
  for (const stage of stages) stage.on('error', onError);
  last.on('data', (chunk: Buffer) =>
    deliver(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)),
  );
  last.on('end', close);
  return stages[0];
}

function decoderStage(coding: string): Transform | undefined {
  // Lenient flushing, as fetch and curl decode: servers send slightly truncated streams.
  const lenient = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  if (coding === 'gzip' || coding === 'x-gzip') return zlib.createGunzip(lenient);
  if (coding === 'deflate') return zlib.createInflate(lenient);
  if (coding === 'br') {
    return zlib.createBrotliDecompress({
      flush: zlib.constants.BROTLI_OPERATION_FLUSH,
      finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH,
    });
  }
  return undefined;
}
