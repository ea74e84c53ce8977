/**
 * `createEncryptedFetch`: a drop-in `fetch` that sends each request to a Tollgate gateway
 * encrypted end to end and hands back the decrypted answer, streamed as it arrives.
 */
import { ClientError } from './errors.js';
import { createObolTransport } from './obol.js';
import { createOhttpTransport } from './ohttp.js';
import { parseGateway, parseHttpUrl, readRequest } from './request.js';

/** The wire formats: Oblivious HTTP (RFC 9458, chunked) or the Obol format (bodies only). */
export type EncryptionFormat = 'ohttp' | 'obol';

/** Options of {@link createEncryptedFetch}. */
export interface EncryptedFetchOptions {
  /**
   * The gateway, e.g. `https://gateway.example` (a path prefix is allowed when a proxy mounts the
   * gateway under one). Requests must be under it; others are refused, never sent.
   */
  gatewayUrl: string | URL;
  /**
   * `'ohttp'`: the whole request (method, path, headers such as Authorization, body) travels as
   * an encapsulated binary HTTP request, and the answer streams back chunk by chunk.
   * `'obol'`: only bodies are encrypted (headers and path stay in the clear) and a streamed
   * answer arrives whole; for gateways that speak only that format.
   * @default 'ohttp'
   */
  format?: EncryptionFormat;
  /**
   * OHTTP only: an Oblivious relay to post the encapsulated requests to instead of
   * `{gatewayUrl}/.well-known/ohttp-gateway`; it forwards them, so the gateway never sees the
   * caller's address. The key configuration is still fetched from the gateway unless
   * `keyConfigs` is given.
   * @default undefined (post to the gateway itself)
   */
  relayUrl?: string | URL;
  /**
   * The fetch that carries the encrypted requests. Pass another wrapper's fetch to compose
   * (it sees only the encrypted outer requests).
   * @default globalThis.fetch
   */
  fetch?: typeof fetch;
  /**
   * OHTTP only: the gateway's key configurations (`application/ohttp-keys` bytes) obtained
   * beforehand, so the first request skips `GET /.well-known/ohttp-gateway`. They are fetched
   * anyway once the gateway reports an unknown key id.
   * @default undefined (fetched on first use, then cached)
   */
  keyConfigs?: Uint8Array;
  /**
   * The clock, in milliseconds since the epoch, for the `Date` header of each inner request
   * (the gateway refuses dates more than 60 s from its own).
   * @default Date.now
   */
  now?: () => number;
}

/**
 * Creates a `fetch` that encrypts every request to a Tollgate gateway and decrypts the answer.
 *
 * With the default OHTTP format, the first call fetches and caches the gateway's key
 * configuration; every request is then encoded as a binary HTTP request (method, path and query
 * relative to `gatewayUrl`, all headers with `Authorization`, a fresh `date`, the body) and sent
 * as a chunked OHTTP request — always chunked, so any answer, a streamed completion above all,
 * is decrypted and handed on chunk by chunk as the gateway produces it. The returned
 * `Response` carries the inner status, headers and body; its body stream errors with a
 * {@link ClientError} `truncated` if the answer is cut before its final chunk. When the gateway
 * has rotated its keys (400 with `x-ohttp-key-error: unknown_key_id`) the keys are fetched again
 * and the request sent once more. Errors of the outer exchange (415, 400) come back as that
 * `Response`; network errors and aborts reject as with plain `fetch`.
 *
 * @throws {ClientError} `invalid_options` at once for a malformed option. The returned fetch
 *   rejects with `outside_gateway` for a URL not under `gatewayUrl`, `key_fetch_failed` when
 *   the keys cannot be had, `invalid_response` when the answer cannot be opened.
 * @example
 * ```ts
 * import OpenAI from 'openai';
 * import { createEncryptedFetch } from '@tollgate/client';
 *
 * const gatewayUrl = 'https://gateway.example';
 * const openai = new OpenAI({
 *   baseURL: `${gatewayUrl}/v1`,
 *   apiKey: process.env.TOLLGATE_API_KEY,
 *   fetch: createEncryptedFetch({ gatewayUrl }),
 * });
 * const stream = await openai.chat.completions.create({
 *   model: 'llama3.2',
 *   messages: [{ role: 'user', content: 'Hello' }],
 *   stream: true,
 * });
 * for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta.content ?? '');
 * ```
 */
export function createEncryptedFetch(options: EncryptedFetchOptions): typeof fetch {
  if (typeof options !== 'object' || options === null) {
    throw new ClientError(
      'invalid_options',
      'createEncryptedFetch takes an options object: { gatewayUrl }.',
    );
  }
  const gateway = parseGateway(options.gatewayUrl);
  const format = options.format ?? 'ohttp';
  if (format !== 'ohttp' && format !== 'obol') {
    throw new ClientError(
      'invalid_options',
      `format must be 'ohttp' or 'obol', not ${JSON.stringify(format)}.`,
    );
  }
  const underlying = options.fetch ?? globalThis.fetch;
  if (typeof underlying !== 'function') {
    throw new ClientError(
      'invalid_options',
      'No fetch to send requests with: pass options.fetch (this runtime has no global fetch).',
    );
  }
  if (format === 'obol' && (options.relayUrl !== undefined || options.keyConfigs !== undefined)) {
    throw new ClientError(
      'invalid_options',
      "relayUrl and keyConfigs belong to the 'ohttp' format; the Obol format has no relay or key configuration.",
    );
  }
  const relayUrl =
    options.relayUrl === undefined ? undefined : parseHttpUrl(options.relayUrl, 'relayUrl').href;
  // Calls through the default keep `this` unbound, as some runtimes' fetch requires.
  const send: typeof fetch = (input, init) => underlying(input, init);
  const transport =
    format === 'ohttp'
      ? createOhttpTransport({
          gateway,
          fetch: send,
          now: options.now ?? Date.now,
          relayUrl,
          keyConfigs: options.keyConfigs,
        })
      : createObolTransport({ gateway, fetch: send });

  return async function encryptedFetch(
    input: string | URL | Request,
    init?: RequestInit,
  ): Promise<Response> {
    return transport(await readRequest(gateway, input, init));
  } as typeof fetch;
}
