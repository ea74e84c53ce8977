/**
 * The Obol format side of the encrypted fetch: request bodies sealed to the gateway's P-256 key
 * (`application/x-obol-encrypted`), answers sealed back to a fresh key of this request
 * (`X-Obol-Reply-Pubkey`). It protects bodies only, and a streamed answer arrives whole.
 */
import {
  generateP256KeyPair,
  isEciesError,
  obolDecrypt,
  obolEncrypt,
  p256PublicKeyFromHex,
  p256PublicKeyToHex,
} from '@tollgate/ecies';
import { createCache } from './cache.js';
import { ClientError } from './errors.js';
import { type BufferedRequest, type Gateway, gatewayPath } from './request.js';

/** Where the gateway publishes its Obol key. */
export const OBOL_PUBKEY_PATH = '/v1/enclave/pubkey';
/** The media type of Obol-encrypted bodies. */
export const OBOL_MEDIA_TYPE = 'application/x-obol-encrypted';

export interface ObolTransportOptions {
  gateway: Gateway;
  fetch: typeof fetch;
}

function mediaType(value: string | null): string {
  return (value ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * The gateway replaces the answer's Content-Type with the Obol one, so the original is
 * recognized from the plaintext: JSON, or server-sent events for a streamed completion.
 */
function sniffContentType(plaintext: Uint8Array): string {
  const start = new TextDecoder().decode(plaintext.subarray(0, 16)).trimStart();
  if (start.startsWith('{') || start.startsWith('[')) return 'application/json';
  if (/^(data|event|id|retry)?:/.test(start)) return 'text/event-stream';
  return 'application/octet-stream';
}

/** Whether a 400 says the body was not encrypted to a key the gateway holds (it rotated). */
async function isDecryptionFailure(response: Response): Promise<boolean> {
  if (response.status !== 400) return false;
  try {
    const envelope = (await response.clone().json()) as { error?: { code?: unknown } };
    return envelope.error?.code === 'decryption_failed';
  } catch {
    return false;
  }
}

/** The Obol transport; requests without a body go out unchanged (there is nothing to seal). */
export function createObolTransport(options: ObolTransportOptions) {
  const { gateway } = options;
  const underlying = options.fetch;
  const pubkeyUrl = gateway.url(OBOL_PUBKEY_PATH);
  const pubkey = createCache(async () => {
    let response: Response;
    try {
      response = await underlying(pubkeyUrl, { headers: { accept: 'application/json' } });
    } catch (error) {
      throw new ClientError(
        'key_fetch_failed',
        `GET ${pubkeyUrl} failed: is the gateway reachable at ${gateway.origin}?`,
        { cause: error },
      );
    }
    if (!response.ok) {
      await response.body?.cancel();
      throw new ClientError(
        'key_fetch_failed',
        `GET ${pubkeyUrl} answered ${response.status}: the gateway publishes no Obol key (is gatewayUrl right, and does it hold a P-256 key?).`,
      );
    }
    try {
      const { pubkey: hex } = (await response.json()) as { pubkey?: unknown };
      return p256PublicKeyFromHex(String(hex));
    } catch (error) {
      throw new ClientError(
        'key_fetch_failed',
        `GET ${pubkeyUrl} did not answer {"pubkey": "<130 hex characters>"}: check that gatewayUrl is a Tollgate gateway.`,
        { cause: error },
      );
    }
  });

  const send = async (request: BufferedRequest, key: Uint8Array, replyPublicKey: Uint8Array) => {
    const headers = new Headers(request.headers);
    headers.delete('content-length');
    headers.set('content-type', OBOL_MEDIA_TYPE);
    headers.set('x-obol-reply-pubkey', p256PublicKeyToHex(replyPublicKey));
    return underlying(request.url, {
      method: request.method,
      headers,
      body: obolEncrypt(key, request.body) as Uint8Array<ArrayBuffer>,
      ...(request.signal ? { signal: request.signal } : {}),
    });
  };

  return async function sendObol(request: BufferedRequest): Promise<Response> {
    gatewayPath(gateway, request.url);
    if (request.body.length === 0) {
      return underlying(request.url, {
        method: request.method,
        headers: request.headers,
        ...(request.signal ? { signal: request.signal } : {}),
      });
    }
    // A key pair per request: one answer's key never opens another's.
    const reply = generateP256KeyPair();
    const loaded = pubkey.get();
    let response = await send(request, await loaded, reply.publicKey);
    if (await isDecryptionFailure(response)) {
      // The format names no key: a 400 decryption_failed is how a rotated-away key shows.
      await response.body?.cancel();
      response = await send(request, await pubkey.refresh(loaded), reply.publicKey);
    }
    if (mediaType(response.headers.get('content-type')) !== OBOL_MEDIA_TYPE) {
      return response; // the gateway's own errors (401, 429, ...) stay plaintext envelopes
    }
    let plaintext: Uint8Array;
    try {
      plaintext = obolDecrypt(reply.privateKey, new Uint8Array(await response.arrayBuffer()));
    } catch (error) {
      if (!isEciesError(error)) throw error;
      throw new ClientError(
        'invalid_response',
        `The encrypted answer could not be opened (${error.code}): it was altered on the way, or the reply key was swapped by something between this client and the gateway.`,
        { cause: error },
      );
    }
    const headers = new Headers(response.headers);
    // Both described the sealed bytes (fetch has already undone any content coding).
    headers.delete('content-length');
    headers.delete('content-encoding');
    headers.set('content-type', sniffContentType(plaintext));
    return new Response(plaintext as Uint8Array<ArrayBuffer>, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  };
}
