/**
 * The encrypted fetch against a fake gateway made of @tollgate/ecies' server half, behind an
 * injected fetch: no sockets, every outer request recorded.
 */
import { encodeKeyConfigs, generateP256KeyPair, p256PublicKeyToHex } from '@tollgate/ecies';
import { describe, expect, it } from 'vitest';
import { CLIENT_ERROR_CODES, createEncryptedFetch, isClientError } from './index.js';
import { fakeGateway, GATEWAY, json, KEYS_PATH } from './testing/fake-gateway.js';

const PROMPT = 'the secret prompt nobody may read';
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function chat(stream = false): RequestInit {
  return {
    method: 'POST',
    headers: { authorization: 'Bearer tg_secret', 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'llama3.2',
      messages: [{ role: 'user', content: PROMPT }],
      stream,
    }),
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('createEncryptedFetch (ohttp)', () => {
  it('behavior: fetches the key configuration once and reuses it, also for concurrent calls', async () => {
    const gateway = fakeGateway();
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch });
    await Promise.all([
      encryptedFetch(`${GATEWAY}/v1/models`),
      encryptedFetch(`${GATEWAY}/v1/models`),
    ]);
    await encryptedFetch(`${GATEWAY}/v1/models`);
    expect(gateway.trail()).toEqual([
      `GET ${KEYS_PATH}`,
      `POST ${KEYS_PATH}`,
      `POST ${KEYS_PATH}`,
      `POST ${KEYS_PATH}`,
    ]);
  });

  it('behavior: preloaded keyConfigs skip the first GET', async () => {
    const gateway = fakeGateway();
    const encryptedFetch = createEncryptedFetch({
      gatewayUrl: GATEWAY,
      fetch: gateway.fetch,
      keyConfigs: encodeKeyConfigs(gateway.keys()),
    });
    expect((await encryptedFetch(`${GATEWAY}/v1/models`)).status).toBe(200);
    expect(gateway.trail()).toEqual([`POST ${KEYS_PATH}`]);
  });

  it('behavior: the inner binary HTTP request carries method, path and query, headers with authorization and date, and the body', async () => {
    const gateway = fakeGateway();
    const now = Date.UTC(2025, 0, 2, 3, 4, 5);
    const encryptedFetch = createEncryptedFetch({
      gatewayUrl: `${GATEWAY}/tollgate/`,
      fetch: gateway.fetch,
      now: () => now,
    });
    const response = await encryptedFetch(
      `${GATEWAY}/tollgate/v1/chat/completions?trace=1`,
      chat(),
    );
    const [request] = gateway.inner;
    expect(request!.method).toBe('POST');
    expect(request!.path).toBe('/v1/chat/completions?trace=1');
    expect(request!.scheme).toBe('https');
    const headers = new Map(request!.headers);
    expect(headers.get('authorization')).toBe('Bearer tg_secret');
    expect(headers.get('content-type')).toBe('application/json');
    expect(headers.get('date')).toBe('Thu, 02 Jan 2025 03:04:05 GMT');
    expect(JSON.parse(decoder.decode(request!.body)).messages[0].content).toBe(PROMPT);
    // The answer is the inner one, decrypted.
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(((await response.json()) as { path: string }).path).toBe('/v1/chat/completions?trace=1');
    // Outside, only the resource and ciphertext: no path, no key, no prompt.
    const outer = gateway.calls.at(-1)!;
    expect(outer.headers.get('content-type')).toBe('message/ohttp-chunked-req');
    expect(outer.headers.get('authorization')).toBeNull();
    expect(decoder.decode(outer.body)).not.toContain(PROMPT);
    expect(decoder.decode(outer.body)).not.toContain('tg_secret');
  });

  it('behavior: takes a Request, a URL or a relative string, with Headers or a plain record', async () => {
    const gateway = fakeGateway();
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch });
    await encryptedFetch(
      new Request(`${GATEWAY}/v1/embeddings`, {
        method: 'POST',
        headers: new Headers({ authorization: 'Bearer a' }),
        body: '{"input":"x"}',
      }),
    );
    await encryptedFetch(new URL(`${GATEWAY}/v1/models`), {
      headers: new Headers({ authorization: 'Bearer b' }),
    });
    await encryptedFetch('v1/models?limit=2', { headers: { authorization: 'Bearer c' } });
    expect(
      gateway.inner.map((request) => [
        request.method,
        request.path,
        new Map(request.headers).get('authorization'),
        decoder.decode(request.body),
      ]),
    ).toEqual([
      ['POST', '/v1/embeddings', 'Bearer a', '{"input":"x"}'],
      ['GET', '/v1/models', 'Bearer b', ''],
      ['GET', '/v1/models?limit=2', 'Bearer c', ''],
    ]);
  });

  it('behavior: a streamed answer is readable piece by piece before the gateway has finished', async () => {
    const gateway = fakeGateway();
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    gateway.state.answer = () =>
      new Response(
        new ReadableStream<Uint8Array>({
          start(controller) {
            feed = controller;
          },
        }),
        { headers: { 'content-type': 'text/event-stream' } },
      );
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch });
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat(true));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    const body = response.body!.getReader();

    feed.enqueue(encoder.encode('data: {"token":"one"}\n\n'));
    expect(decoder.decode((await body.read()).value)).toBe('data: {"token":"one"}\n\n');
    // The inner stream is still open here: the first piece came through on its own.
    feed.enqueue(encoder.encode('data: {"token":"two"}\n\n'));
    expect(decoder.decode((await body.read()).value)).toBe('data: {"token":"two"}\n\n');
    feed.enqueue(encoder.encode('data: [DONE]\n\n'));
    feed.close();
    expect(decoder.decode((await body.read()).value)).toBe('data: [DONE]\n\n');
    expect((await body.read()).done).toBe(true);
  });

  it('error: an answer cut before its final chunk errors the body stream with truncated', async () => {
    const gateway = fakeGateway();
    gateway.state.cut = true;
    gateway.state.answer = () =>
      new Response('data: {"token":"one"}\n\n', {
        headers: { 'content-type': 'text/event-stream' },
      });
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch });
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat(true));
    const body = response.body!.getReader();
    expect(decoder.decode((await body.read()).value)).toBe('data: {"token":"one"}\n\n');
    const error = await rejection(body.read());
    expect(isClientError(error) && error.code).toBe('truncated');
  });

  it('behavior: after a key rotation (unknown_key_id) the keys are fetched again and the request retried once', async () => {
    const gateway = fakeGateway();
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch });
    await encryptedFetch(`${GATEWAY}/v1/models`);
    gateway.rotate();
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    expect(response.status).toBe(200);
    expect(((await response.json()) as { echo: string }).echo).toContain(PROMPT);
    expect(gateway.trail()).toEqual([
      `GET ${KEYS_PATH}`,
      `POST ${KEYS_PATH}`,
      `POST ${KEYS_PATH}`,
      `GET ${KEYS_PATH}`,
      `POST ${KEYS_PATH}`,
    ]);
    // The retry is a new encapsulation of the same buffered body.
    const [first, second] = gateway.calls.slice(-3).filter((call) => call.method === 'POST');
    expect(first!.body).not.toEqual(second!.body);
  });

  it('error: a second unknown_key_id is returned as the 400, without a third attempt', async () => {
    const gateway = fakeGateway();
    gateway.state.rotateEveryPost = true;
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch });
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    expect(response.status).toBe(400);
    expect(response.headers.get('x-ohttp-key-error')).toBe('unknown_key_id');
    expect(gateway.trail().filter((line) => line.startsWith('POST'))).toHaveLength(2);
  });

  it('error: an outer error in the clear comes back as that response', async () => {
    const gateway = fakeGateway();
    gateway.state.outerError = json({ error: { code: 'unsupported_media_type' } }, 415);
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch });
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    expect(response.status).toBe(415);
    expect(await response.json()).toEqual({ error: { code: 'unsupported_media_type' } });
  });

  it('error: network errors reject as they are; a failed key fetch is tried again on the next call', async () => {
    const gateway = fakeGateway();
    const failure = new TypeError('fetch failed');
    let down = true;
    const flaky = (async (input: string | URL | Request, init?: RequestInit) => {
      if (down) throw failure;
      return gateway.fetch(input, init);
    }) as typeof fetch;
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: flaky });
    const error = await rejection(encryptedFetch(`${GATEWAY}/v1/models`));
    expect(isClientError(error) && error.code).toBe('key_fetch_failed');
    expect((error as Error).cause).toBe(failure);
    down = false;
    expect((await encryptedFetch(`${GATEWAY}/v1/models`)).status).toBe(200);
    // With keys cached, a network failure of the request itself is the fetch's own error.
    down = true;
    expect(await rejection(encryptedFetch(`${GATEWAY}/v1/models`))).toBe(failure);
  });

  it('error: a key configuration endpoint that answers 404 or garbage is key_fetch_failed', async () => {
    for (const answer of [
      new Response('not found', { status: 404 }),
      new Response(new Uint8Array([0, 3, 1, 2])),
    ]) {
      const encryptedFetch = createEncryptedFetch({
        gatewayUrl: GATEWAY,
        fetch: (async () => answer) as typeof fetch,
      });
      const error = await rejection(encryptedFetch(`${GATEWAY}/v1/models`));
      expect(isClientError(error) && error.code).toBe('key_fetch_failed');
    }
  });

  it('error: a URL outside gatewayUrl is refused before anything is sent', async () => {
    const gateway = fakeGateway();
    for (const format of ['ohttp', 'obol'] as const) {
      const encryptedFetch = createEncryptedFetch({
        gatewayUrl: `${GATEWAY}/tollgate`,
        fetch: gateway.fetch,
        format,
      });
      for (const url of [
        'https://elsewhere.example/v1/models',
        `${GATEWAY}/v1/models`,
        `${GATEWAY}/tollgate-other/v1/models`,
      ]) {
        const error = await rejection(encryptedFetch(url, chat()));
        expect(isClientError(error) && error.code).toBe('outside_gateway');
      }
    }
    expect(gateway.calls).toEqual([]);
  });

  it('error: an answer that is not a chunked OHTTP response is invalid_response', async () => {
    const gateway = fakeGateway();
    gateway.state.outerError = new Response('<html>hello from a captive portal</html>', {
      headers: { 'content-type': 'text/html' },
    });
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch });
    const error = await rejection(encryptedFetch(`${GATEWAY}/v1/models`));
    expect(isClientError(error) && error.code).toBe('invalid_response');
  });

  it('behavior: with relayUrl the encapsulated request goes to the relay, which forwards it', async () => {
    const gateway = fakeGateway();
    const encryptedFetch = createEncryptedFetch({
      gatewayUrl: GATEWAY,
      relayUrl: 'https://relay.example/relay',
      fetch: gateway.fetch,
    });
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    expect(((await response.json()) as { path: string }).path).toBe('/v1/chat/completions');
    expect(gateway.calls.map((call) => `${call.method} ${call.url}`)).toEqual([
      `GET ${GATEWAY}${KEYS_PATH}`,
      'POST https://relay.example/relay',
    ]);
  });

  it('behavior: composes with wrappers on both sides', async () => {
    const gateway = fakeGateway();
    // Below: a wrapper (a paying fetch, say) sees and may decorate only the outer requests.
    const seenBelow: string[] = [];
    const below = (async (input: string | URL | Request, init?: RequestInit) => {
      const request = new Request(input, init);
      const body = new Uint8Array(await request.clone().arrayBuffer());
      seenBelow.push(`${request.method} ${request.url} ${decoder.decode(body).includes(PROMPT)}`);
      request.headers.set('x-outer', 'added below');
      return gateway.fetch(request);
    }) as typeof fetch;
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: below });
    // Above: a wrapper that adds a header before encryption: it travels inside.
    const above = ((input: string | URL | Request, init?: RequestInit) => {
      const headers = new Headers(init?.headers);
      headers.set('x-inner', 'added above');
      return encryptedFetch(input, { ...init, headers });
    }) as typeof fetch;

    const response = await above(`${GATEWAY}/v1/chat/completions`, chat());
    expect(response.status).toBe(200);
    expect(seenBelow).toEqual([
      `GET ${GATEWAY}${KEYS_PATH} false`,
      `POST ${GATEWAY}${KEYS_PATH} false`,
    ]);
    expect(gateway.calls.at(-1)!.headers.get('x-outer')).toBe('added below');
    expect(gateway.calls.at(-1)!.headers.get('x-inner')).toBeNull();
    expect(new Map(gateway.inner[0]!.headers).get('x-inner')).toBe('added above');
  });

  it("behavior: the caller's AbortSignal reaches the underlying fetch", async () => {
    const gateway = fakeGateway();
    const signals: Array<AbortSignal | null | undefined> = [];
    const watching = (async (input: string | URL | Request, init?: RequestInit) => {
      signals.push(init?.signal);
      return gateway.fetch(input, init);
    }) as typeof fetch;
    const encryptedFetch = createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: watching });
    const controller = new AbortController();
    await encryptedFetch(`${GATEWAY}/v1/models`, { signal: controller.signal });
    const posted = signals.at(-1);
    expect(posted?.aborted).toBe(false);
    controller.abort();
    expect(posted?.aborted).toBe(true);
  });

  it('error: malformed options are refused at once', () => {
    for (const options of [
      { gatewayUrl: 'not a url' },
      { gatewayUrl: 'ftp://gateway.example' },
      { gatewayUrl: GATEWAY, format: 'tls' },
      { gatewayUrl: GATEWAY, relayUrl: 'relay' },
      { gatewayUrl: GATEWAY, keyConfigs: new Uint8Array([1, 2, 3]) },
      { gatewayUrl: GATEWAY, format: 'obol', relayUrl: 'https://relay.example' },
    ]) {
      let caught: unknown;
      try {
        createEncryptedFetch(options as Parameters<typeof createEncryptedFetch>[0]);
      } catch (error) {
        caught = error;
      }
      expect(isClientError(caught) && caught.code, JSON.stringify(options)).toBe('invalid_options');
    }
    expect(CLIENT_ERROR_CODES).toContain('invalid_options');
  });
});

describe('createEncryptedFetch (obol)', () => {
  it('behavior: the body is sealed to the gateway key and the answer opened with a fresh reply key', async () => {
    const gateway = fakeGateway();
    const encryptedFetch = createEncryptedFetch({
      gatewayUrl: GATEWAY,
      format: 'obol',
      fetch: gateway.fetch,
    });
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    const answer = (await response.json()) as { echo: string; path: string };
    expect(JSON.parse(answer.echo).messages[0].content).toBe(PROMPT);
    expect(answer.path).toBe('/v1/chat/completions');

    await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    expect(gateway.trail()).toEqual([
      'GET /v1/enclave/pubkey',
      'POST /v1/chat/completions',
      'POST /v1/chat/completions',
    ]);
    const [first, second] = gateway.calls.filter((call) => call.method === 'POST');
    expect(first!.headers.get('content-type')).toBe('application/x-obol-encrypted');
    expect(first!.headers.get('authorization')).toBe('Bearer tg_secret');
    expect(decoder.decode(first!.body)).not.toContain(PROMPT);
    expect(first!.headers.get('x-obol-reply-pubkey')).toMatch(/^04[0-9a-f]{128}$/);
    expect(first!.headers.get('x-obol-reply-pubkey')).not.toBe(
      second!.headers.get('x-obol-reply-pubkey'),
    );
  });

  it('behavior: a sealed event stream keeps its status and comes back as text/event-stream', async () => {
    const gateway = fakeGateway();
    gateway.state.answer = () =>
      new Response('data: {"token":"one"}\n\ndata: [DONE]\n\n', {
        status: 200,
        headers: { 'content-type': 'text/event-stream' },
      });
    const encryptedFetch = createEncryptedFetch({
      gatewayUrl: GATEWAY,
      format: 'obol',
      fetch: gateway.fetch,
    });
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat(true));
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(await response.text()).toBe('data: {"token":"one"}\n\ndata: [DONE]\n\n');
  });

  it('behavior: plaintext error envelopes and bodiless requests pass through', async () => {
    const gateway = fakeGateway();
    gateway.state.answer = () => json({ error: { code: 'invalid_api_key' } }, 401);
    const encryptedFetch = createEncryptedFetch({
      gatewayUrl: GATEWAY,
      format: 'obol',
      fetch: gateway.fetch,
    });
    const refused = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({ error: { code: 'invalid_api_key' } });
    const models = await encryptedFetch(`${GATEWAY}/v1/models`);
    expect(await models.json()).toEqual({ plaintext: true, path: '/v1/models', method: 'GET' });
  });

  it('behavior: after the gateway changes its key (400 decryption_failed) the key is fetched again and the request retried once', async () => {
    const gateway = fakeGateway();
    const encryptedFetch = createEncryptedFetch({
      gatewayUrl: GATEWAY,
      format: 'obol',
      fetch: gateway.fetch,
    });
    await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    gateway.rotateObol();
    const response = await encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat());
    expect(response.status).toBe(200);
    expect(gateway.trail()).toEqual([
      'GET /v1/enclave/pubkey',
      'POST /v1/chat/completions',
      'POST /v1/chat/completions',
      'GET /v1/enclave/pubkey',
      'POST /v1/chat/completions',
    ]);
  });

  it('error: an answer sealed to another key is invalid_response', async () => {
    const gateway = fakeGateway();
    const stranger = generateP256KeyPair();
    const tampering = (async (input: string | URL | Request, init?: RequestInit) => {
      const request = new Request(input, init);
      if (request.method === 'POST')
        request.headers.set('x-obol-reply-pubkey', p256PublicKeyToHex(stranger.publicKey));
      return gateway.fetch(request);
    }) as typeof fetch;
    const encryptedFetch = createEncryptedFetch({
      gatewayUrl: GATEWAY,
      format: 'obol',
      fetch: tampering,
    });
    const error = await rejection(encryptedFetch(`${GATEWAY}/v1/chat/completions`, chat()));
    expect(isClientError(error) && error.code).toBe('invalid_response');
  });
});
