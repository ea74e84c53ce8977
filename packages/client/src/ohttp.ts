/**
 * The Oblivious HTTP side of the encrypted fetch (RFC 9458, chunked as
 * draft-ietf-ohai-chunked-ohttp): every request is a binary HTTP request (RFC 9292) sealed as a
 * chunked OHTTP request, and every answer is opened chunk by chunk into a `Response` whose body
 * streams as the gateway produces it.
 */
import {
  type BhttpField,
  type BhttpResponseEvent,
  createBhttpResponseDecoder,
  createChunkedRequestWriter,
  createChunkedResponseDecryptor,
  decodeKeyConfigs,
  encodeBhttpRequest,
  isEciesError,
  type OhttpChunkedClientContext,
  type OhttpKeyConfig,
} from '@tollgate/ecies';
import { createCache } from './cache.js';
import { ClientError } from './errors.js';
import { type BufferedRequest, type Gateway, gatewayPath } from './request.js';

/** The gateway resource and key configuration path (RFC 9540). */
export const OHTTP_PATH = '/.well-known/ohttp-gateway';
const KEYS_MEDIA_TYPE = 'application/ohttp-keys';
const CHUNKED_REQUEST = 'message/ohttp-chunked-req';
const CHUNKED_RESPONSE = 'message/ohttp-chunked-res';
// Hop-by-hop or framing fields: they describe the outer connection, never the inner message.
const CONNECTION_FIELDS = new Set([
  'connection',
  'content-length',
  'date',
  'host',
  'keep-alive',
  'transfer-encoding',
]);
// Statuses whose Response may not have a body (the Fetch standard's null body statuses).
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

export interface OhttpTransportOptions {
  gateway: Gateway;
  fetch: typeof fetch;
  now: () => number;
  relayUrl: string | undefined;
  keyConfigs: Uint8Array | undefined;
}

function mediaType(value: string | null): string {
  return (value ?? '').split(';')[0]!.trim().toLowerCase();
}

function concat(first: Uint8Array, second: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(first.length + second.length);
  out.set(first, 0);
  out.set(second, first.length);
  return out;
}

/**
 * Decodes `application/ohttp-keys` into the configurations this library can encrypt to.
 *
 * @throws {ClientError} `key_fetch_failed` (or `invalid_options` for preloaded bytes)
 */
export function decodeGatewayKeys(
  bytes: Uint8Array,
  code: 'key_fetch_failed' | 'invalid_options',
  source: string,
): OhttpKeyConfig[] {
  try {
    return decodeKeyConfigs(bytes);
  } catch (error) {
    throw new ClientError(
      code,
      `${source} is not a usable application/ohttp-keys list (${isEciesError(error) ? error.code : 'malformed'}): check that it comes from a Tollgate gateway with encryption on.`,
      { cause: error },
    );
  }
}

/** Turns a failure while reading the answer into what the body stream reports. */
function answerError(error: unknown): unknown {
  if (!isEciesError(error)) return error; // network errors and aborts stay what they are
  if (error.code === 'truncated') {
    return new ClientError(
      'truncated',
      'The encrypted answer ended before its final chunk: the connection was cut or the gateway failed mid-answer. Send the request again.',
      { cause: error },
    );
  }
  return new ClientError(
    'invalid_response',
    `The encrypted answer could not be opened (${error.code}): it was altered on the way or does not come from the gateway this request was encrypted for.`,
    { cause: error },
  );
}

/**
 * Reads the chunked answer up to the inner status and headers, and returns a `Response` whose
 * body is fed by the rest as it arrives.
 */
async function openAnswer(outer: Response, context: OhttpChunkedClientContext): Promise<Response> {
  if (outer.body === null) {
    throw new ClientError('invalid_response', 'The gateway sent an empty encrypted answer.');
  }
  const plaintext = outer.body.pipeThrough(createChunkedResponseDecryptor(context)).getReader();
  const decoder = createBhttpResponseDecoder();
  let head: { status: number; headers: BhttpField[] } | undefined;
  let finished = false;
  let pending: Uint8Array[] = [];

  const take = (events: BhttpResponseEvent[]) => {
    for (const event of events) {
      if (event.type === 'head') head = { status: event.status, headers: event.headers };
      else if (event.type === 'body') pending.push(event.data);
      // Informational responses and trailers have no place in a fetch Response.
    }
  };
  /** Reads one more piece of plaintext; false once the chunked message has ended. */
  const step = async (): Promise<boolean> => {
    try {
      const { done, value } = await plaintext.read();
      if (done) {
        take(decoder.end());
        finished = true;
        return false;
      }
      take(decoder.push(value));
      return true;
    } catch (error) {
      throw answerError(error);
    }
  };

  while (head === undefined) {
    if (!(await step())) {
      throw new ClientError('invalid_response', 'The encrypted answer holds no HTTP response.');
    }
  }
  const headers = new Headers();
  for (const [name, value] of head.headers) {
    if (name !== 'transfer-encoding' && name !== 'connection' && name !== 'keep-alive') {
      headers.append(name, value);
    }
  }
  if (NULL_BODY_STATUSES.has(head.status)) {
    while (!finished) await step();
    return new Response(null, { status: head.status, headers });
  }
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      // One pull may read several pieces: a piece can complete a chunk without body bytes.
      while (pending.length === 0 && !finished) await step();
      for (const piece of pending) controller.enqueue(piece);
      pending = [];
      if (finished) controller.close();
    },
    cancel(reason) {
      return plaintext.cancel(reason);
    },
  });
  return new Response(body, { status: head.status, headers });
}

/**
 * The OHTTP transport: sends a buffered request encrypted, refetching the key configurations
 * once when the gateway no longer knows the key id.
 */
export function createOhttpTransport(options: OhttpTransportOptions) {
  const { gateway, now } = options;
  const underlying = options.fetch;
  const keysUrl = gateway.url(OHTTP_PATH);
  const target = options.relayUrl ?? keysUrl;
  const preloaded =
    options.keyConfigs === undefined
      ? undefined
      : decodeGatewayKeys(options.keyConfigs, 'invalid_options', 'keyConfigs');
  const keys = createCache(async () => {
    let response: Response;
    try {
      response = await underlying(keysUrl, { headers: { accept: KEYS_MEDIA_TYPE } });
    } catch (error) {
      throw new ClientError(
        'key_fetch_failed',
        `GET ${keysUrl} failed: is the gateway reachable at ${gateway.origin}?`,
        { cause: error },
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new ClientError(
        'key_fetch_failed',
        `GET ${keysUrl} answered ${response.status}: the gateway does not publish Oblivious HTTP keys there (is gatewayUrl right, and encryption on?).`,
      );
    }
    return decodeGatewayKeys(
      new Uint8Array(await response.arrayBuffer()),
      'key_fetch_failed',
      keysUrl,
    );
  }, preloaded);

  const encode = (request: BufferedRequest): Uint8Array => {
    const headers: Array<[string, string]> = request.headers.filter(
      ([name]) => !CONNECTION_FIELDS.has(name),
    );
    // The gateway refuses an inner request without a recent Date: it bounds replays.
    headers.push(['date', new Date(now()).toUTCString()]);
    return encodeBhttpRequest({
      method: request.method,
      scheme: gateway.scheme,
      authority: gateway.authority,
      path: gatewayPath(gateway, request.url),
      headers,
      ...(request.body.length > 0 ? { body: request.body } : {}),
    });
  };

  const send = async (request: BufferedRequest, configs: OhttpKeyConfig[]) => {
    const inner = encode(request);
    let writer: ReturnType<typeof createChunkedRequestWriter>;
    try {
      writer = createChunkedRequestWriter(configs[0]!);
    } catch (error) {
      throw new ClientError(
        'key_fetch_failed',
        `The gateway's current key configuration cannot be used by this client (${isEciesError(error) ? error.code : 'unknown'}): it offers no KEM, KDF and AEAD this library implements.`,
        { cause: error },
      );
    }
    const outer = await underlying(target, {
      method: 'POST',
      headers: { 'content-type': CHUNKED_REQUEST, incremental: '?1' },
      body: concat(writer.start(), writer.final(inner)),
      ...(request.signal ? { signal: request.signal } : {}),
    });
    return { outer, context: writer.context };
  };

  return async function sendOhttp(request: BufferedRequest): Promise<Response> {
    // Checked before any key fetch: a request for another host must not leave at all.
    gatewayPath(gateway, request.url);
    const loaded = keys.get();
    let { outer, context } = await send(request, await loaded);
    if (outer.status === 400 && outer.headers.get('x-ohttp-key-error') === 'unknown_key_id') {
      // The gateway rotated its keys past the one cached here: fetch them again, retry once.
      await outer.body?.cancel();
      ({ outer, context } = await send(request, await keys.refresh(loaded)));
    }
    // Outer errors (415, 400, a relay's 502) are in the clear: the caller's SDK reports them.
    if (!outer.ok) return outer;
    if (mediaType(outer.headers.get('content-type')) !== CHUNKED_RESPONSE) {
      await outer.body?.cancel();
      throw new ClientError(
        'invalid_response',
        `${target} answered ${outer.status} with ${outer.headers.get('content-type') ?? 'no content type'} instead of ${CHUNKED_RESPONSE}: is it a Tollgate gateway (or a relay forwarding to one)?`,
      );
    }
    return openAnswer(outer, context);
  };
}
