/**
 * Oblivious HTTP through a real gateway socket: a client built from @tollgate/ecies fetches the
 * key configurations, encapsulates binary HTTP requests, and reads the answers — whole, or
 * chunk by chunk as a completion streams.
 */
import type { StartFakeUpstreamOptions } from '@tollgate/backends/testing';
import {
  createBhttpResponseDecoder,
  createChunkedRequestWriter,
  decodeBhttpResponse,
  decodeKeyConfigs,
  encapsulateRequest,
  encodeBhttpRequest,
  type OhttpKeyConfig,
} from '@tollgate/ecies';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startTestGateway } from './test-helpers.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEY = 'sk-ohttp-1';

/** The parts of an inner answer the tests read: a completion or an error envelope. */
interface AnswerJson {
  choices: Array<{ message: { content: string } }>;
  error: { code: string; message: string };
}
const PROMPT = [{ role: 'user', content: 'Say hello please' }];

async function start(
  upstreamOptions: Partial<StartFakeUpstreamOptions> = {},
  values: Record<string, unknown> = {},
) {
  const { gateway, upstream } = await startTestGateway(
    { values: { api_keys: [KEY], ...values }, upstream: upstreamOptions },
    (cleanup) => cleanups.push(cleanup),
  );
  const configs = await fetch(`${gateway.url}/.well-known/ohttp-gateway`);
  const [config] = decodeKeyConfigs(new Uint8Array(await configs.arrayBuffer()));
  return { gateway, upstream, config: config as OhttpKeyConfig };
}

function innerRequest(
  body: unknown,
  headers: Array<[string, string]> = [
    ['authorization', `Bearer ${KEY}`],
    ['date', new Date().toUTCString()],
  ],
): Uint8Array {
  return encodeBhttpRequest({
    method: 'POST',
    scheme: 'https',
    authority: 'gateway.example',
    path: '/v1/chat/completions',
    headers: [['content-type', 'application/json'], ...headers],
    body: new TextEncoder().encode(JSON.stringify(body)),
  });
}

function postOuter(url: string, body: Uint8Array, contentType = 'message/ohttp-req') {
  return fetch(`${url}/.well-known/ohttp-gateway`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: body as Uint8Array<ArrayBuffer>,
  });
}

async function exchange(url: string, config: OhttpKeyConfig, inner: Uint8Array) {
  const { encapsulatedRequest, context } = encapsulateRequest(config, inner);
  const outer = await postOuter(url, encapsulatedRequest);
  expect(outer.status).toBe(200);
  expect(outer.headers.get('content-type')).toBe('message/ohttp-res');
  const response = decodeBhttpResponse(
    context.decapsulateResponse(new Uint8Array(await outer.arrayBuffer())),
  );
  return {
    ...response,
    json: JSON.parse(new TextDecoder().decode(response.body)) as AnswerJson,
  };
}

describe('POST /.well-known/ohttp-gateway', () => {
  it('behavior: an encapsulated chat completion is served through the same auth and metering, the answer encapsulated', async () => {
    const { gateway, config } = await start();
    const answer = await exchange(
      gateway.url,
      config,
      innerRequest({ model: 'fake-model', messages: PROMPT }),
    );
    expect(answer.status).toBe(200);
    expect(answer.json.choices[0]!.message.content).toBe('Hello from the fake upstream.');
    await gateway.tenancy.flush();
    const usage = await gateway.tenancy.usage({});
    expect(usage[0]?.requests).toBeGreaterThanOrEqual(1);

    // Without the key inside, the inner request is refused inside: the 401 travels back sealed.
    const refused = await exchange(
      gateway.url,
      config,
      innerRequest({ model: 'fake-model', messages: PROMPT }, [['date', new Date().toUTCString()]]),
    );
    expect(refused.status).toBe(401);
    expect(refused.json.error.code).toBe('missing_api_key');
  });

  it('behavior: with encryption.required, encapsulated requests are served and plaintext ones refused', async () => {
    const { gateway, config } = await start({}, { encryption: { required: true } });
    const answer = await exchange(
      gateway.url,
      config,
      innerRequest({ model: 'fake-model', messages: PROMPT }),
    );
    expect(answer.status).toBe(200);
    const plaintext = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake-model', messages: PROMPT }),
    });
    expect(plaintext.status).toBe(415);
  });

  it('error: a replayed, undated or stale request is refused inside, without reaching the upstream', async () => {
    const { gateway, upstream, config } = await start();
    const { encapsulatedRequest, context } = encapsulateRequest(
      config,
      innerRequest({ model: 'fake-model', messages: PROMPT }),
    );
    expect((await postOuter(gateway.url, encapsulatedRequest)).status).toBe(200);
    const again = await postOuter(gateway.url, encapsulatedRequest);
    const replayed = decodeBhttpResponse(
      context.decapsulateResponse(new Uint8Array(await again.arrayBuffer())),
    );
    expect(replayed.status).toBe(400);
    expect(new TextDecoder().decode(replayed.body)).toContain('already received');

    for (const headers of [
      [['authorization', `Bearer ${KEY}`]],
      [
        ['authorization', `Bearer ${KEY}`],
        ['date', new Date(Date.now() - 5 * 60_000).toUTCString()],
      ],
    ] as Array<Array<[string, string]>>) {
      const answer = await exchange(
        gateway.url,
        config,
        innerRequest({ model: 'fake-model', messages: PROMPT }, headers),
      );
      expect(answer.status).toBe(400);
      expect(answer.json.error.message).toContain('Date header');
    }
    const served = upstream.requests.filter((request) => request.method === 'POST');
    expect(served).toHaveLength(1);
  });

  it('error: what cannot be decapsulated is a 400 in the clear; an unknown key id says to refetch keys', async () => {
    const { gateway, config } = await start();
    const { encapsulatedRequest } = encapsulateRequest(
      config,
      innerRequest({ model: 'fake-model', messages: PROMPT }),
    );
    const tampered = encapsulatedRequest.slice();
    tampered[tampered.length - 1]! ^= 1;
    const tamperedAnswer = await postOuter(gateway.url, tampered);
    expect(tamperedAnswer.status).toBe(400);
    expect(((await tamperedAnswer.json()) as AnswerJson).error.code).toBe('decryption_failed');
    expect(tamperedAnswer.headers.get('x-ohttp-error')).toBe('decryption_failed');

    // Each failure says which it is: cut short, or a chunked request without its final chunk.
    const cut = await postOuter(gateway.url, encapsulatedRequest.slice(0, 40));
    expect(cut.status).toBe(400);
    expect(cut.headers.get('x-ohttp-error')).toBe('ciphertext_too_short');
    const writer = createChunkedRequestWriter(config);
    const unfinished = new Uint8Array([
      ...writer.start(),
      ...writer.chunk(innerRequest({ model: 'fake-model', messages: PROMPT })),
    ]);
    const truncated = await postOuter(gateway.url, unfinished, 'message/ohttp-chunked-req');
    expect(truncated.status).toBe(400);
    expect(truncated.headers.get('x-ohttp-error')).toBe('truncated');

    const otherKey = encapsulatedRequest.slice();
    otherKey[0] = 200;
    const unknown = await postOuter(gateway.url, otherKey);
    expect(unknown.status).toBe(400);
    expect(unknown.headers.get('x-ohttp-key-error')).toBe('unknown_key_id');
    expect(unknown.headers.get('x-ohttp-error')).toBe('unknown_key_id');

    expect((await postOuter(gateway.url, encapsulatedRequest, 'application/json')).status).toBe(
      415,
    );
    expect((await postOuter(gateway.url, new Uint8Array(3))).status).toBe(400);
  });

  it('behavior: a chunked request streams its completion back encrypted, token by token, and ends with a final chunk', async () => {
    const reply = 'one two three four five six';
    const { gateway, config } = await start({ chunkDelayMs: 150, reply });
    const writer = createChunkedRequestWriter(config);
    const body = new Uint8Array([
      ...writer.start(),
      ...writer.final(innerRequest({ model: 'fake-model', messages: PROMPT, stream: true })),
    ]);
    const outer = await postOuter(gateway.url, body, 'message/ohttp-chunked-req');
    expect(outer.status).toBe(200);
    expect(outer.headers.get('content-type')).toBe('message/ohttp-chunked-res');
    expect(outer.headers.get('incremental')).toBe('?1');

    const reader = writer.context.createResponseReader();
    const decoder = createBhttpResponseDecoder();
    const source = outer.body!.getReader();
    let status = 0;
    let text = '';
    let tokensBeforeEnd = 0;
    for (;;) {
      const { done, value } = await source.read();
      if (done) break;
      for (const plaintext of reader.push(value)) {
        for (const event of decoder.push(plaintext)) {
          if (event.type === 'head') status = event.status;
          if (event.type === 'body') {
            text += new TextDecoder().decode(event.data);
            if (event.data.length > 0) tokensBeforeEnd++;
          }
        }
      }
    }
    for (const event of decoder.push(reader.end())) {
      if (event.type === 'body') text += new TextDecoder().decode(event.data);
    }
    decoder.end();
    expect(status).toBe(200);
    // The tokens came out in separate encrypted chunks, as they were produced.
    expect(tokensBeforeEnd).toBeGreaterThan(3);
    const content = text
      .split('\n')
      .filter((line) => line.startsWith('data: {'))
      .map((line) => JSON.parse(line.slice(6)).choices[0]?.delta?.content ?? '')
      .join('');
    expect(content).toBe(reply);
    expect(text).toContain('data: [DONE]');
  });
});
