/**
 * Random mutations of valid encrypted requests, sent to a real gateway: whatever the bytes,
 * the answer is a 4xx (or a 200 whose inner answer is an error), never a 500, never a hang,
 * and the gateway keeps serving.
 */
import {
  createChunkedRequestWriter,
  decodeKeyConfigs,
  encapsulateRequest,
  encodeBhttpRequest,
  type OhttpKeyConfig,
  obolEncrypt,
  p256PublicKeyFromHex,
} from '@tollgate/ecies';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from './server.js';
import { captureLogger, startTestGateway } from './test-helpers.js';

let gateway: Gateway;
let config: OhttpKeyConfig;
let obolKey: Uint8Array;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  ({ gateway } = await startTestGateway(
    { values: { api_keys: ['k'] }, logger: captureLogger('warn').logger },
    (cleanup) => cleanups.push(cleanup),
  ));
  [config] = decodeKeyConfigs(
    new Uint8Array(await (await fetch(`${gateway.url}/.well-known/ohttp-gateway`)).arrayBuffer()),
  ) as [OhttpKeyConfig];
  const { pubkey } = (await (await fetch(`${gateway.url}/v1/enclave/pubkey`)).json()) as {
    pubkey: string;
  };
  obolKey = p256PublicKeyFromHex(pubkey);
}, 60_000);

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const inner = () =>
  encodeBhttpRequest({
    method: 'POST',
    scheme: 'https',
    path: '/v1/chat/completions',
    headers: [
      ['authorization', 'Bearer k'],
      ['content-type', 'application/json'],
      ['date', new Date().toUTCString()],
    ],
    body: new TextEncoder().encode(
      JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] }),
    ),
  });

/** A valid message of each kind, as [content type, path, bytes]. */
function validMessages(): Array<[string, string, Uint8Array]> {
  const writer = createChunkedRequestWriter(config);
  return [
    [
      'message/ohttp-req',
      '/.well-known/ohttp-gateway',
      encapsulateRequest(config, inner()).encapsulatedRequest,
    ],
    [
      'message/ohttp-chunked-req',
      '/.well-known/ohttp-gateway',
      new Uint8Array([...writer.start(), ...writer.final(inner())]),
    ],
    [
      'application/x-obol-encrypted',
      '/v1/chat/completions',
      obolEncrypt(
        obolKey,
        new TextEncoder().encode(
          JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] }),
        ),
      ),
    ],
  ];
}

const mutation = fc.oneof(
  fc.record({
    kind: fc.constant('flip' as const),
    at: fc.nat(),
    bit: fc.integer({ min: 0, max: 7 }),
  }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
  fc.record({ kind: fc.constant('replace' as const), bytes: fc.uint8Array({ maxLength: 300 }) }),
);

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(bytes: Uint8Array, change: Mutation): Uint8Array {
  switch (change.kind) {
    case 'flip': {
      const out = bytes.slice();
      const index = change.at % out.length;
      out[index]! ^= 1 << change.bit;
      return out;
    }
    case 'cut':
      return bytes.slice(0, change.at % bytes.length);
    case 'append':
      return new Uint8Array([...bytes, ...change.bytes]);
    case 'replace':
      return change.bytes;
  }
}

describe('mutated encrypted requests', () => {
  it('behavior: never a 5xx, never a hang; the gateway keeps serving', {
    timeout: 120_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2 }), mutation, async (which, change) => {
        const [contentType, path, bytes] = validMessages()[which]!;
        const response = await fetch(`${gateway.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': contentType, authorization: 'Bearer k' },
          body: mutate(bytes, change) as Uint8Array<ArrayBuffer>,
          signal: AbortSignal.timeout(10_000),
        });
        await response.arrayBuffer();
        expect(response.status).toBeLessThan(500);
      }),
      { numRuns: 150 },
    );
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
  });
});
