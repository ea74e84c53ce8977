/**
 * A Tollgate gateway in a function, for the client's tests: OHTTP keys and resource, the Obol key
 * and routes, built from @tollgate/ecies' server half. No sockets; every outer request and every
 * decrypted inner request is recorded, and `state.answer` decides what the inner routes answer.
 */
import {
  type BhttpRequest,
  createBhttpResponseEncoder,
  createChunkedRequestReader,
  decodeBhttpRequest,
  encodeKeyConfigs,
  generateOhttpKey,
  generateP256KeyPair,
  isEciesError,
  type OhttpServerKey,
  obolDecrypt,
  obolEncrypt,
  p256PublicKeyFromHex,
  p256PublicKeyToHex,
} from '@tollgate/ecies';

export const GATEWAY = 'https://gateway.example';
export const KEYS_PATH = '/.well-known/ohttp-gateway';
const decoder = new TextDecoder();

export interface OuterCall {
  url: string;
  method: string;
  headers: Headers;
  body: Uint8Array;
}

export type Answer = (inner: BhttpRequest) => Response | Promise<Response>;

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function json(value: unknown, status = 200): Response {
  return new Response(JSON.stringify(value), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

/** A gateway in a function: OHTTP keys and resource, the Obol key and routes. */
export function fakeGateway() {
  let keys: OhttpServerKey[] = [generateOhttpKey({ keyId: 1 })];
  let obolKey = generateP256KeyPair();
  const calls: OuterCall[] = [];
  const inner: BhttpRequest[] = [];
  const state = {
    answer: ((request) =>
      json({ echo: decoder.decode(request.body), path: request.path })) as Answer,
    /** End streamed answers without their final chunk, as a cut connection would. */
    cut: false,
    /** Rotate the OHTTP key before answering each POST (the client can never catch up). */
    rotateEveryPost: false,
    /** Answer the next outer POST with this instead (an outer error in the clear). */
    outerError: undefined as Response | undefined,
  };

  const rotate = () => {
    const next = (keys[0]!.keyId + 1) % 256;
    keys = [generateOhttpKey({ keyId: next })];
  };

  async function ohttp(body: Uint8Array): Promise<Response> {
    if (state.rotateEveryPost) rotate();
    const reader = createChunkedRequestReader(keys);
    let bytes: Uint8Array;
    try {
      bytes = concat([...reader.push(body), reader.end()]);
    } catch (error) {
      const unknown = isEciesError(error) && error.code === 'unknown_key_id';
      return new Response(JSON.stringify({ error: { code: 'decryption_failed' } }), {
        status: 400,
        headers: {
          'content-type': 'application/json',
          ...(unknown ? { 'x-ohttp-key-error': 'unknown_key_id' } : {}),
        },
      });
    }
    const request = decodeBhttpRequest(bytes);
    inner.push(request);
    const response = await state.answer(request);
    const writer = reader.context!.createResponseWriter();
    const bhttp = createBhttpResponseEncoder();
    const source = response.body?.getReader();
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(writer.start());
        controller.enqueue(
          writer.chunk(bhttp.head({ status: response.status, headers: [...response.headers] })),
        );
      },
      async pull(controller) {
        const next = source ? await source.read() : { done: true as const, value: undefined };
        if (next.done) {
          if (!state.cut) controller.enqueue(writer.final(bhttp.end()));
          controller.close();
          return;
        }
        const sealed = writer.chunk(bhttp.body(next.value));
        if (sealed.length > 0) controller.enqueue(sealed);
      },
    });
    return new Response(stream, {
      headers: { 'content-type': 'message/ohttp-chunked-res', incremental: '?1' },
    });
  }

  async function obol(request: Request, body: Uint8Array): Promise<Response> {
    let plaintext: Uint8Array;
    try {
      plaintext = obolDecrypt(obolKey.privateKey, body);
    } catch {
      return json({ error: { code: 'decryption_failed' } }, 400);
    }
    const url = new URL(request.url);
    const answer = await state.answer({
      method: request.method,
      scheme: 'https',
      authority: url.host,
      path: url.pathname,
      headers: [...request.headers],
      body: plaintext,
      trailers: [],
    });
    const replyHex = request.headers.get('x-obol-reply-pubkey');
    if (!replyHex || answer.status === 401) return answer;
    const sealed = obolEncrypt(
      p256PublicKeyFromHex(replyHex),
      new Uint8Array(await answer.arrayBuffer()),
    );
    return new Response(sealed as Uint8Array<ArrayBuffer>, {
      status: answer.status,
      headers: { 'content-type': 'application/x-obol-encrypted' },
    });
  }

  async function handle(request: Request): Promise<Response> {
    const body = new Uint8Array(await request.arrayBuffer());
    calls.push({ url: request.url, method: request.method, headers: request.headers, body });
    const url = new URL(request.url);
    // As a proxy mounting the gateway under /tollgate would, the prefix is stripped.
    url.pathname = url.pathname.replace(/^\/tollgate(?=\/)/, '');
    if (url.pathname === '/relay') return ohttp(body); // the relay forwards the bytes as they are
    if (url.origin !== GATEWAY) return new Response('no such host', { status: 502 });
    if (request.method === 'GET' && url.pathname === KEYS_PATH) {
      return new Response(encodeKeyConfigs(keys) as Uint8Array<ArrayBuffer>, {
        headers: { 'content-type': 'application/ohttp-keys' },
      });
    }
    if (request.method === 'POST' && url.pathname === KEYS_PATH) {
      const outerError = state.outerError;
      state.outerError = undefined;
      if (outerError) return outerError;
      return ohttp(body);
    }
    if (request.method === 'GET' && url.pathname === '/v1/enclave/pubkey') {
      return json({ pubkey: p256PublicKeyToHex(obolKey.publicKey), tag: 'k1', persistent: true });
    }
    if (request.headers.get('content-type') === 'application/x-obol-encrypted') {
      return obol(request, body);
    }
    return json({ plaintext: true, path: url.pathname, method: request.method });
  }

  const fetch = (async (input: string | URL | Request, init?: RequestInit) =>
    handle(new Request(input, init))) as typeof globalThis.fetch;

  return {
    fetch,
    calls,
    inner,
    state,
    keys: () => keys,
    rotate,
    rotateObol: () => {
      obolKey = generateP256KeyPair();
    },
    /** Outer requests to a path, in order, as "METHOD path". */
    trail: () => calls.map((call) => `${call.method} ${new URL(call.url).pathname}`),
  };
}
