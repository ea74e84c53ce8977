/**
 * What encryption costs, compared in the same run with WebCrypto doing the same AES-GCM work:
 * - sealing and opening an 8 KiB request: Oblivious HTTP (P-256 and X25519 key agreement,
 *   AES-128-GCM) and the Obol format (P-256, AES-256-GCM), against WebCrypto AES-GCM alone
 *   (no key agreement), the floor of the symmetric part;
 * - one streamed token: a chunked OHTTP response chunk sealed and opened, against WebCrypto
 *   AES-GCM sealing and opening the same bytes.
 * Run: `npx tsx packages/ecies/bench/ecies.bench.ts` (BENCH_ROUNDS, BENCH_SECONDS to tune).
 */
import { webcrypto } from 'node:crypto';
import { measure as measureFor, row as rowOf } from '../../../bench/timing.js';
import {
  createChunkedRequestReader,
  createChunkedRequestWriter,
  decapsulateRequest,
  encapsulateRequest,
  generateOhttpKey,
  generateP256KeyPair,
  obolDecrypt,
  obolEncrypt,
  ohttpKeyConfig,
} from '../src/index.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const seconds = Number(process.env.BENCH_SECONDS ?? 1);
const measure = (work: () => unknown) => measureFor(work, { rounds, seconds });
const row = (label: string, micros: number, baseline?: number) => rowOf(label, micros, baseline);
const subtle = webcrypto.subtle;

async function main(): Promise<void> {
  const request = new Uint8Array(8192).map((_, index) => index % 251);
  const token = new TextEncoder().encode('data: {"choices":[{"delta":{"content":" fox"}}]}\n\n');

  // WebCrypto AES-GCM seal + open: the baseline for the symmetric work.
  const aes128 = await subtle.importKey('raw', new Uint8Array(16).fill(7), 'AES-GCM', false, [
    'encrypt',
    'decrypt',
  ]);
  const iv = new Uint8Array(12).fill(1);
  const webcryptoRoundTrip = (bytes: Uint8Array) => async () => {
    const sealed = await subtle.encrypt({ name: 'AES-GCM', iv }, aes128, bytes);
    await subtle.decrypt({ name: 'AES-GCM', iv }, aes128, sealed);
  };

  console.log(`seal + open, median of ${rounds} rounds of ${seconds}s`);
  const baselineRequest = await measure(webcryptoRoundTrip(request));
  console.log(row('baseline: WebCrypto AES-128-GCM, 8 KiB', baselineRequest));
  for (const [name, kemId] of [
    ['OHTTP request, P-256 + AES-128-GCM, 8 KiB', 0x0010],
    ['OHTTP request, X25519 + AES-128-GCM, 8 KiB', 0x0020],
  ] as const) {
    const key = generateOhttpKey({ keyId: 1, kemId });
    const config = ohttpKeyConfig(key);
    const micros = await measure(() => {
      const { encapsulatedRequest } = encapsulateRequest(config, request);
      decapsulateRequest(key, encapsulatedRequest);
    });
    console.log(row(name, micros, baselineRequest));
  }
  const pair = generateP256KeyPair();
  const obol = await measure(() =>
    obolDecrypt(pair.privateKey, obolEncrypt(pair.publicKey, request)),
  );
  console.log(row('Obol format, P-256 + AES-256-GCM, 8 KiB', obol, baselineRequest));

  console.log(`\none streamed token (${token.length} bytes), sealed and opened`);
  const baselineToken = await measure(webcryptoRoundTrip(token));
  console.log(row('baseline: WebCrypto AES-128-GCM, one token', baselineToken));
  const key = generateOhttpKey({ keyId: 1 });
  const writer = createChunkedRequestWriter(ohttpKeyConfig(key));
  const chunkedRequest = new Uint8Array([...writer.start(), ...writer.final(new Uint8Array(0))]);
  // The gateway's side of a chunked exchange, to get a response writer.
  const requestReader = createChunkedRequestReader(key);
  requestReader.push(chunkedRequest);
  requestReader.end();
  const responseWriter = requestReader.context!.createResponseWriter();
  const responseReader = writer.context.createResponseReader();
  responseReader.push(responseWriter.start());
  const perToken = await measure(() => {
    responseReader.push(responseWriter.chunk(token));
  });
  console.log(row('chunked OHTTP response chunk, AES-128-GCM', perToken, baselineToken));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
