import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type EciesErrorCode, isEciesError } from './errors.js';
import { hpkeSuite } from './hpke.js';
import {
  createChunkedRequestReader,
  createChunkedRequestWriter,
  createChunkedResponseDecryptor,
  createChunkedResponseEncryptor,
  decapsulateRequest,
  decodeKeyConfig,
  decodeKeyConfigs,
  encapsulateRequest,
  encodeKeyConfig,
  encodeKeyConfigs,
  generateOhttpKey,
  importOhttpKey,
  type OhttpChunkedReader,
  type OhttpKeyConfig,
  type OhttpServerKey,
  ohttpKeyConfig,
} from './ohttp.js';
import { encodeVarint } from './varint.js';

const hex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s/g, ''), 'hex'));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const ascii = (text: string) => new TextEncoder().encode(text);
const concat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));

function codeOf(run: () => unknown): EciesErrorCode | 'none' {
  try {
    run();
    return 'none';
  } catch (error) {
    if (!isEciesError(error)) throw error;
    return error.code;
  }
}

const load = <T>(file: string): T =>
  JSON.parse(readFileSync(new URL(`../test-vectors/${file}`, import.meta.url), 'utf8'));

interface CommonVector {
  key_id: number;
  kem_id: number;
  kdf_id: number;
  aead_id: number;
  server_private_key: string;
  key_config: string;
  request: string;
  ephemeral_private_key: string;
  enc: string;
  info: string;
  response: string;
  response_secret: string;
  response_nonce: string;
  response_salt: string;
  response_prk: string;
  response_key: string;
  response_aead_nonce: string;
}

interface OneShotVector extends CommonVector {
  server_public_key: string;
  encapsulated_request: string;
  encapsulated_response: string;
}

interface ChunkedVector extends CommonVector {
  request_chunk_lengths: number[];
  encapsulated_request_parts: string[];
  response_chunk_lengths: number[];
  response_chunk_nonces: string[];
  encapsulated_response_parts: string[];
}

const rfc = load<OneShotVector>('rfc9458-appendix-a.json');
const draft = load<ChunkedVector>('chunked-ohttp-appendix-a.json');

/** Splits `data` into pieces of the given lengths (the last length may be 0). */
function split(data: Uint8Array, lengths: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let offset = 0;
  for (const length of lengths) {
    out.push(data.subarray(offset, offset + length));
    offset += length;
  }
  expect(offset).toBe(data.length);
  return out;
}

/** Feeds `wire` to a reader in pieces cut at `cuts`, returning every plaintext piece, final included. */
function readAll(reader: OhttpChunkedReader, wire: Uint8Array, cuts: number[] = []): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (wire.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let previous = 0;
  for (const point of [...points, wire.length]) {
    out.push(...reader.push(wire.subarray(previous, point)));
    previous = point;
  }
  out.push(reader.end());
  return out;
}

/** Where the final chunk's zero length sits in a stream written with the given chunk lengths. */
function finalIndicatorOffset(prefixLength: number, sealedLengths: number[]): number {
  let offset = prefixLength;
  for (const length of sealedLengths) offset += encodeVarint(length).length + length;
  return offset;
}

const suites = [
  { name: 'P-256, HKDF-SHA256, AES-128-GCM', kemId: 0x0010, aeadId: 0x0001 },
  { name: 'X25519, HKDF-SHA256, ChaCha20-Poly1305', kemId: 0x0020, aeadId: 0x0003 },
] as const;

function keyFor(kemId: number, keyId = 3): OhttpServerKey {
  return generateOhttpKey({ keyId, kemId });
}

describe('RFC 9458 Appendix A', () => {
  const key = importOhttpKey({
    keyId: rfc.key_id,
    kemId: rfc.kem_id,
    privateKey: hex(rfc.server_private_key),
    symmetric: [
      { kdfId: 0x0001, aeadId: 0x0001 },
      { kdfId: 0x0001, aeadId: 0x0003 },
    ],
  });

  it('behavior: the key configuration is reproduced from the private key and decodes back', () => {
    expect(toHex(key.publicKey)).toBe(rfc.server_public_key);
    expect(toHex(encodeKeyConfig(key))).toBe(rfc.key_config);
    const decoded = decodeKeyConfig(hex(rfc.key_config));
    expect(decoded).toEqual(ohttpKeyConfig(key));
    expect(decodeKeyConfigs(encodeKeyConfigs([decoded]))).toEqual([decoded]);
  });

  it('behavior: the Client reproduces the encapsulated request byte for byte', () => {
    const config = decodeKeyConfig(hex(rfc.key_config));
    const { encapsulatedRequest, context } = encapsulateRequest(config, hex(rfc.request), {
      suite: { kdfId: rfc.kdf_id, aeadId: rfc.aead_id },
      ephemeralPrivateKey: hex(rfc.ephemeral_private_key),
    });
    expect(toHex(context.enc)).toBe(rfc.enc);
    expect(toHex(encapsulatedRequest)).toBe(rfc.encapsulated_request);
    expect(toHex(context.decapsulateResponse(hex(rfc.encapsulated_response)))).toBe(rfc.response);
  });

  it('behavior: the Gateway opens the request and reproduces the encapsulated response', () => {
    const { request, context } = decapsulateRequest([key], hex(rfc.encapsulated_request));
    expect(toHex(request)).toBe(rfc.request);
    expect(context).toMatchObject({ keyId: 1, kemId: 0x0020, kdfId: 1, aeadId: 1 });
    expect(toHex(context.enc)).toBe(rfc.enc);
    const response = context.encapsulateResponse(hex(rfc.response), {
      responseNonce: hex(rfc.response_nonce),
    });
    expect(toHex(response)).toBe(rfc.encapsulated_response);
  });

  it('behavior: every intermediate value of the appendix, derived step by step with HPKE', () => {
    const suite = hpkeSuite({ kem: rfc.kem_id, kdf: rfc.kdf_id, aead: rfc.aead_id });
    const header = hex(rfc.encapsulated_request).subarray(0, 7);
    expect(toHex(concat(ascii('message/bhttp request'), Uint8Array.of(0), header))).toBe(rfc.info);
    const receiver = suite.setupBaseR(hex(rfc.enc), hex(rfc.server_private_key), hex(rfc.info));
    const secret = receiver.export(ascii('message/bhttp response'), 16);
    expect(toHex(secret)).toBe(rfc.response_secret);
    const salt = concat(hex(rfc.enc), hex(rfc.response_nonce));
    expect(toHex(salt)).toBe(rfc.response_salt);
    const prk = suite.extract(salt, secret);
    expect(toHex(prk)).toBe(rfc.response_prk);
    const key = suite.expand(prk, ascii('key'), 16);
    const nonce = suite.expand(prk, ascii('nonce'), 12);
    expect(toHex(key)).toBe(rfc.response_key);
    expect(toHex(nonce)).toBe(rfc.response_aead_nonce);
    expect(
      toHex(concat(hex(rfc.response_nonce), suite.aeadSeal(key, nonce, hex(rfc.response)))),
    ).toBe(rfc.encapsulated_response);
  });
});

describe('draft-ietf-ohai-chunked-ohttp-08 Appendix A', () => {
  const key = importOhttpKey({
    keyId: draft.key_id,
    kemId: draft.kem_id,
    privateKey: hex(draft.server_private_key),
  });
  const requestParts = draft.encapsulated_request_parts.map(hex);
  const responseParts = draft.encapsulated_response_parts.map(hex);
  const requestChunks = split(hex(draft.request), draft.request_chunk_lengths);
  const responseChunks = split(hex(draft.response), draft.response_chunk_lengths);

  it('behavior: the key configuration is reproduced', () => {
    expect(toHex(encodeKeyConfig(key))).toBe(draft.key_config);
  });

  it('behavior: the Client reproduces the chunked request, chunk by chunk', () => {
    const writer = createChunkedRequestWriter(decodeKeyConfig(hex(draft.key_config)), {
      ephemeralPrivateKey: hex(draft.ephemeral_private_key),
    });
    expect(toHex(writer.start())).toBe(toHex(concat(requestParts[0]!, requestParts[1]!)));
    expect(toHex(writer.chunk(requestChunks[0]!))).toBe(toHex(requestParts[2]!));
    expect(toHex(writer.chunk(requestChunks[1]!))).toBe(toHex(requestParts[3]!));
    expect(toHex(writer.final(requestChunks[2]!))).toBe(toHex(requestParts[4]!));
    expect(writer.finished).toBe(true);
    expect(toHex(writer.context.enc)).toBe(draft.enc);

    const reader = writer.context.createResponseReader();
    const plaintext = [responseParts.flatMap((part) => reader.push(part)), [reader.end()]].flat();
    expect(plaintext.map(toHex)).toEqual(responseChunks.map(toHex));
  });

  it('behavior: the Gateway reads the request incrementally and reproduces the chunked response', () => {
    const reader = createChunkedRequestReader(key);
    expect(reader.push(requestParts[0]!)).toEqual([]);
    expect(reader.context).toBeUndefined();
    expect(reader.push(requestParts[1]!)).toEqual([]);
    expect(reader.context).toMatchObject({ keyId: 1, kemId: 0x0020, kdfId: 1, aeadId: 1 });
    expect(reader.push(requestParts[2]!).map(toHex)).toEqual([toHex(requestChunks[0]!)]);
    expect(reader.push(requestParts[3]!).map(toHex)).toEqual([toHex(requestChunks[1]!)]);
    expect(reader.push(requestParts[4]!)).toEqual([]);
    expect(reader.end()).toEqual(new Uint8Array(0));

    const writer = reader.context!.createResponseWriter({
      responseNonce: hex(draft.response_nonce),
    });
    expect(toHex(writer.start())).toBe(toHex(responseParts[0]!));
    expect(toHex(writer.chunk(responseChunks[0]!))).toBe(toHex(responseParts[1]!));
    expect(toHex(writer.chunk(responseChunks[1]!))).toBe(toHex(responseParts[2]!));
    expect(toHex(writer.final())).toBe(toHex(responseParts[3]!));
  });

  it('behavior: every intermediate value, derived step by step with HPKE and the listed nonces', () => {
    const suite = hpkeSuite({ kem: draft.kem_id, kdf: draft.kdf_id, aead: draft.aead_id });
    const header = requestParts[0]!;
    expect(toHex(concat(ascii('message/bhttp chunked request'), Uint8Array.of(0), header))).toBe(
      draft.info,
    );
    const receiver = suite.setupBaseR(
      hex(draft.enc),
      hex(draft.server_private_key),
      hex(draft.info),
    );
    // Request chunks: the HPKE sequence number orders them; "final" marks the last.
    expect(toHex(receiver.open(requestParts[2]!.subarray(1)))).toBe(toHex(requestChunks[0]!));
    expect(toHex(receiver.open(requestParts[3]!.subarray(1)))).toBe(toHex(requestChunks[1]!));
    expect(receiver.open(requestParts[4]!.subarray(1), ascii('final'))).toEqual(new Uint8Array(0));

    const secret = receiver.export(ascii('message/bhttp chunked response'), 16);
    expect(toHex(secret)).toBe(draft.response_secret);
    const salt = concat(hex(draft.enc), hex(draft.response_nonce));
    expect(toHex(salt)).toBe(draft.response_salt);
    const prk = suite.extract(salt, secret);
    expect(toHex(prk)).toBe(draft.response_prk);
    const key = suite.expand(prk, ascii('key'), 16);
    expect(toHex(key)).toBe(draft.response_key);
    expect(toHex(suite.expand(prk, ascii('nonce'), 12))).toBe(draft.response_aead_nonce);
    const [n0, n1, n2] = draft.response_chunk_nonces.map(hex);
    expect(toHex(suite.aeadOpen(key, n0!, responseParts[1]!.subarray(1)))).toBe(
      toHex(responseChunks[0]!),
    );
    expect(toHex(suite.aeadOpen(key, n1!, responseParts[2]!.subarray(1)))).toBe(
      toHex(responseChunks[1]!),
    );
    expect(suite.aeadOpen(key, n2!, responseParts[3]!.subarray(1), ascii('final'))).toEqual(
      new Uint8Array(0),
    );
  });
});

describe('key configurations', () => {
  it('behavior: generated keys of both KEMs encode, decode and import back', () => {
    for (const kemId of [0x0010, 0x0020]) {
      const key = generateOhttpKey({ keyId: 200, kemId });
      const encoded = encodeKeyConfig(key);
      expect(encoded.length).toBe(1 + 2 + (kemId === 0x0010 ? 65 : 32) + 2 + 8);
      expect(decodeKeyConfig(encoded)).toEqual(ohttpKeyConfig(key));
      expect(importOhttpKey(key)).toEqual(key);
    }
    expect(generateOhttpKey().kemId).toBe(0x0010);
  });

  it('behavior: a list keeps its order and skips a configuration whose KEM is unknown', () => {
    const a = generateOhttpKey({ keyId: 2 });
    const b = generateOhttpKey({ keyId: 1, kemId: 0x0020 });
    const unknown = Uint8Array.of(9, 0x00, 0x21, 1, 2, 3, 0x00, 0x04, 0x00, 0x01, 0x00, 0x01);
    const list = concat(
      encodeKeyConfigs([a]),
      Uint8Array.of(0, unknown.length),
      unknown,
      encodeKeyConfigs([b]),
    );
    expect(decodeKeyConfigs(list)).toEqual([ohttpKeyConfig(a), ohttpKeyConfig(b)]);
    expect(codeOf(() => decodeKeyConfigs(concat(Uint8Array.of(0, unknown.length), unknown)))).toBe(
      'unsupported_suite',
    );
  });

  it('behavior: suites this library lacks are kept on decode and skipped when encapsulating', () => {
    const key = generateOhttpKey({ kemId: 0x0020 });
    const config: OhttpKeyConfig = {
      ...ohttpKeyConfig(key),
      symmetric: [
        { kdfId: 0x0002, aeadId: 0x0001 },
        { kdfId: 0x0001, aeadId: 0xffff },
        { kdfId: 0x0001, aeadId: 0x0003 },
      ],
    };
    const decoded = decodeKeyConfig(encodeKeyConfig(config));
    expect(decoded.symmetric).toHaveLength(3);
    const { context } = encapsulateRequest(decoded, new Uint8Array(1));
    expect(context.aeadId).toBe(0x0003);
  });
});

describe('one-shot round trips', () => {
  for (const { name, kemId, aeadId } of suites) {
    it(`behavior: request and response round trip (${name})`, () => {
      const key = keyFor(kemId);
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 300 }),
          fc.uint8Array({ maxLength: 300 }),
          (request, response) => {
            const sent = encapsulateRequest(key, request, { suite: { kdfId: 1, aeadId } });
            expect(sent.encapsulatedRequest.length).toBe(
              7 + sent.context.enc.length + request.length + 16,
            );
            const received = decapsulateRequest([keyFor(kemId, 9), key], sent.encapsulatedRequest);
            expect(received.request).toEqual(request);
            expect(received.context.enc).toEqual(sent.context.enc);
            const reply = received.context.encapsulateResponse(response);
            expect(reply.length).toBe(response.length + (aeadId === 1 ? 16 : 32) + 16);
            expect(sent.context.decapsulateResponse(reply)).toEqual(response);
          },
        ),
        { numRuns: 25 },
      );
    });

    it(`error: any flipped bit of a request or response is rejected (${name})`, () => {
      const key = keyFor(kemId);
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(), (payload, position) => {
          const sent = encapsulateRequest(key, payload, { suite: { kdfId: 1, aeadId } });
          const request = sent.encapsulatedRequest.slice();
          const bit = position % (request.length * 8);
          request[bit >> 3] = request[bit >> 3]! ^ (1 << (bit & 7));
          expect(codeOf(() => decapsulateRequest(key, request))).not.toBe('none');

          const reply = decapsulateRequest(
            key,
            sent.encapsulatedRequest,
          ).context.encapsulateResponse(payload);
          const other = position % (reply.length * 8);
          reply[other >> 3] = reply[other >> 3]! ^ (1 << (other & 7));
          expect(codeOf(() => sent.context.decapsulateResponse(reply))).toBe('decryption_failed');
        }),
        { numRuns: 40 },
      );
    });
  }

  it('error: a tag failure in the ciphertext is decryption_failed', () => {
    const key = keyFor(0x0020);
    const { encapsulatedRequest } = encapsulateRequest(key, ascii('hello'));
    const altered = encapsulatedRequest.slice();
    altered[altered.length - 1] = altered[altered.length - 1]! ^ 1;
    expect(codeOf(() => decapsulateRequest(key, altered))).toBe('decryption_failed');
  });

  it('error: a key id the Gateway does not have is unknown_key_id', () => {
    const key = keyFor(0x0020, 4);
    const { encapsulatedRequest } = encapsulateRequest(keyFor(0x0020, 5), ascii('x'));
    expect(codeOf(() => decapsulateRequest(key, encapsulatedRequest))).toBe('unknown_key_id');
  });
});

/** Writes a chunked message and returns its wire bytes and each sealed chunk's length. */
function writeChunked(
  writer: {
    start(): Uint8Array;
    chunk(p: Uint8Array): Uint8Array;
    final(p?: Uint8Array): Uint8Array;
  },
  chunks: Uint8Array[],
  last: Uint8Array,
): { wire: Uint8Array; prefixLength: number; sealed: number[] } {
  const prefix = writer.start();
  const pieces = chunks.map((chunk) => writer.chunk(chunk));
  const sealed = chunks.filter((chunk) => chunk.length > 0).map((chunk) => chunk.length + 16);
  return {
    wire: concat(prefix, ...pieces, writer.final(last)),
    prefixLength: prefix.length,
    sealed,
  };
}

const chunkList = fc.array(fc.uint8Array({ maxLength: 70 }), { maxLength: 6 });

describe('chunked round trips', () => {
  for (const { name, kemId, aeadId } of suites) {
    it(`behavior: any chunking, received in any split, round trips (${name})`, () => {
      const key = keyFor(kemId);
      fc.assert(
        fc.property(
          chunkList,
          fc.uint8Array({ maxLength: 50 }),
          fc.array(fc.nat(), { maxLength: 8 }),
          chunkList,
          fc.uint8Array({ maxLength: 50 }),
          fc.array(fc.nat(), { maxLength: 8 }),
          (chunks, last, cuts, responseChunks, responseLast, responseCuts) => {
            const writer = createChunkedRequestWriter(key, { suite: { kdfId: 1, aeadId } });
            const { wire } = writeChunked(writer, chunks, last);
            const reader = createChunkedRequestReader([keyFor(kemId, 8), key]);
            const received = readAll(reader, wire, cuts);
            expect(received.slice(0, -1).every((piece) => piece.length > 0)).toBe(true);
            expect(concat(...received)).toEqual(concat(...chunks, last));
            expect(received.at(-1)).toEqual(last);

            const responseWriter = reader.context!.createResponseWriter();
            const response = writeChunked(responseWriter, responseChunks, responseLast);
            expect(response.prefixLength).toBe(aeadId === 1 ? 16 : 32);
            const back = readAll(
              writer.context.createResponseReader(),
              response.wire,
              responseCuts,
            );
            expect(concat(...back)).toEqual(concat(...responseChunks, responseLast));
          },
        ),
        { numRuns: 30 },
      );
    });

    it(`error: any flipped bit of a chunked request or response is rejected (${name})`, () => {
      const key = keyFor(kemId);
      fc.assert(
        fc.property(
          chunkList,
          fc.uint8Array({ maxLength: 20 }),
          fc.nat(),
          (chunks, last, position) => {
            const writer = createChunkedRequestWriter(key, { suite: { kdfId: 1, aeadId } });
            const { wire } = writeChunked(writer, chunks, last);
            const request = wire.slice();
            const bit = position % (request.length * 8);
            request[bit >> 3] = request[bit >> 3]! ^ (1 << (bit & 7));
            expect(codeOf(() => readAll(createChunkedRequestReader(key), request))).not.toBe(
              'none',
            );

            const reader = createChunkedRequestReader(key);
            readAll(reader, wire);
            const response = writeChunked(
              reader.context!.createResponseWriter(),
              chunks,
              last,
            ).wire;
            const other = position % (response.length * 8);
            response[other >> 3] = response[other >> 3]! ^ (1 << (other & 7));
            expect(codeOf(() => readAll(writer.context.createResponseReader(), response))).not.toBe(
              'none',
            );
          },
        ),
        { numRuns: 40 },
      );
    });
  }

  it('error: a stream cut before its final chunk is truncated, wherever the cut', () => {
    const key = keyFor(0x0020);
    const chunks = [ascii('first chunk'), ascii('second'), ascii('third one')];
    const writer = createChunkedRequestWriter(key);
    const { wire, prefixLength, sealed } = writeChunked(writer, chunks, ascii('end'));
    const indicator = finalIndicatorOffset(prefixLength, sealed);
    for (let cut = 0; cut <= indicator; cut++) {
      expect(codeOf(() => readAll(createChunkedRequestReader(key), wire.subarray(0, cut)))).toBe(
        'truncated',
      );
    }
    // Inside the final chunk a cut cannot be told from an alteration.
    for (let cut = indicator + 1; cut < wire.length; cut++) {
      expect(['truncated', 'decryption_failed']).toContain(
        codeOf(() => readAll(createChunkedRequestReader(key), wire.subarray(0, cut))),
      );
    }

    const reader = createChunkedRequestReader(key);
    readAll(reader, wire);
    const response = writeChunked(
      reader.context!.createResponseWriter(),
      chunks,
      new Uint8Array(0),
    );
    const responseIndicator = finalIndicatorOffset(response.prefixLength, response.sealed);
    for (let cut = 0; cut <= responseIndicator; cut++) {
      expect(
        codeOf(() =>
          readAll(writer.context.createResponseReader(), response.wire.subarray(0, cut)),
        ),
      ).toBe('truncated');
    }
  });

  it('error: reordered or dropped chunks are decryption_failed', () => {
    const key = keyFor(0x0010);
    const chunks = [ascii('aaaa'), ascii('bbbb'), ascii('cccc')];
    const writer = createChunkedRequestWriter(key);
    const prefix = writer.start();
    const [a, b, c] = chunks.map((chunk) => writer.chunk(chunk));
    const final = writer.final(ascii('z'));
    const reorder = (...parts: Uint8Array[]) =>
      codeOf(() => readAll(createChunkedRequestReader(key), concat(prefix, ...parts)));
    expect(reorder(a!, b!, c!, final)).toBe('none');
    expect(reorder(b!, a!, c!, final)).toBe('decryption_failed');
    expect(reorder(a!, c!, final)).toBe('decryption_failed');
    expect(reorder(a!, b!, final)).toBe('decryption_failed');
    // A non-final chunk relabelled as the final one fails its "final" associated data.
    expect(reorder(a!, b!, concat(Uint8Array.of(0), c!.subarray(1)))).toBe('decryption_failed');

    const reader = createChunkedRequestReader(key);
    readAll(reader, concat(prefix, a!, b!, c!, final));
    const responseWriter = reader.context!.createResponseWriter();
    const nonce = responseWriter.start();
    const [x, y] = [ascii('xx'), ascii('yy')].map((chunk) => responseWriter.chunk(chunk));
    const end = responseWriter.final();
    const readResponse = (...parts: Uint8Array[]) =>
      codeOf(() => readAll(writer.context.createResponseReader(), concat(nonce, ...parts)));
    expect(readResponse(x!, y!, end)).toBe('none');
    expect(readResponse(y!, x!, end)).toBe('decryption_failed');
    expect(readResponse(y!, end)).toBe('decryption_failed');
    expect(readResponse(x!, end)).toBe('decryption_failed');
  });

  it('behavior: 16 KiB chunks are accepted; a chunk above maxChunkLength is refused', () => {
    const key = keyFor(0x0020);
    const big = new Uint8Array(16 * 1024).fill(7);
    const writer = createChunkedRequestWriter(key);
    const { wire } = writeChunked(writer, [big, big], big);
    expect(concat(...readAll(createChunkedRequestReader(key), wire))).toEqual(
      concat(big, big, big),
    );
    const small = createChunkedRequestReader(key, { maxChunkLength: 1000 });
    expect(codeOf(() => small.push(wire))).toBe('invalid_length');
    // The final chunk is bounded too, while it is still arriving.
    const finalOnly = createChunkedRequestWriter(key);
    const onlyFinal = writeChunked(finalOnly, [], big).wire;
    expect(
      codeOf(() => createChunkedRequestReader(key, { maxChunkLength: 1000 }).push(onlyFinal)),
    ).toBe('invalid_length');
  });

  it('error: a non-final chunk without plaintext is malformed_message', () => {
    const key = keyFor(0x0020, 6);
    const suite = hpkeSuite({ kem: 0x0020, kdf: 1, aead: 1 });
    const header = Uint8Array.of(6, 0x00, 0x20, 0x00, 0x01, 0x00, 0x01);
    const info = concat(ascii('message/bhttp chunked request'), Uint8Array.of(0), header);
    const { enc, context } = suite.setupBaseS(key.publicKey, info);
    const emptyChunk = context.seal(new Uint8Array(0));
    const reader = createChunkedRequestReader(key);
    expect(codeOf(() => reader.push(concat(header, enc, encodeVarint(16), emptyChunk)))).toBe(
      'malformed_message',
    );
    // The reader stays failed.
    expect(codeOf(() => reader.end())).toBe('malformed_message');
    const tooShort = createChunkedRequestReader(key);
    expect(codeOf(() => tooShort.push(concat(header, enc, Uint8Array.of(5, 1, 2, 3, 4, 5))))).toBe(
      'malformed_message',
    );
  });

  it('behavior: empty non-final chunks are skipped by the writer; chunk before start prepends the prefix', () => {
    const key = keyFor(0x0020);
    const writer = createChunkedRequestWriter(key);
    const first = writer.chunk(new Uint8Array(0));
    expect(first.length).toBe(7 + 32);
    const rest = concat(writer.chunk(ascii('a')), writer.chunk(new Uint8Array(0)), writer.final());
    expect(readAll(createChunkedRequestReader(key), concat(first, rest)).map(toHex)).toEqual([
      toHex(ascii('a')),
      '',
    ]);
    expect(codeOf(() => writer.chunk(ascii('late')))).toBe('invalid_type');
    expect(codeOf(() => writer.start())).toBe('invalid_type');
  });

  it('error: an unknown key id is reported as soon as the header arrives', () => {
    const writer = createChunkedRequestWriter(keyFor(0x0020, 1));
    const reader = createChunkedRequestReader(keyFor(0x0020, 2));
    expect(reader.push(writer.start().subarray(0, 6))).toEqual([]);
    expect(codeOf(() => reader.push(Uint8Array.of(0x00)))).toBe('unknown_key_id');
  });
});

describe('web streams', () => {
  async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const part of stream as unknown as AsyncIterable<Uint8Array>) parts.push(part);
    return concat(...parts);
  }

  function source(parts: Uint8Array[], fail = false): ReadableStream<Uint8Array> {
    return new ReadableStream({
      start(controller) {
        for (const part of parts) controller.enqueue(part);
        if (fail) controller.error(new Error('upstream failed'));
        else controller.close();
      },
    });
  }

  function exchange() {
    const key = keyFor(0x0010);
    const writer = createChunkedRequestWriter(key);
    const reader = createChunkedRequestReader(key);
    readAll(reader, concat(writer.start(), writer.final(ascii('GET'))));
    return { client: writer.context, server: reader.context! };
  }

  it('behavior: encryptor and decryptor round trip a streamed response', async () => {
    const { client, server } = exchange();
    const parts = [ascii('data: one\n\n'), new Uint8Array(0), ascii('data: two\n\n')];
    const encrypted = source(parts).pipeThrough(createChunkedResponseEncryptor(server));
    const plaintext = await collect(encrypted.pipeThrough(createChunkedResponseDecryptor(client)));
    expect(new TextDecoder().decode(plaintext)).toBe('data: one\n\ndata: two\n\n');
  });

  it('error: a response stream without its final chunk errors with truncated', async () => {
    const { client, server } = exchange();
    const writer = server.createResponseWriter();
    const cut = concat(writer.start(), writer.chunk(ascii('partial')));
    const stream = source([cut]).pipeThrough(createChunkedResponseDecryptor(client));
    await expect(collect(stream)).rejects.toMatchObject({ code: 'truncated' });
  });
});

describe('wrong inputs', () => {
  const p256Key = generateOhttpKey({ keyId: 1 });
  const x25519Key = generateOhttpKey({ keyId: 2, kemId: 0x0020 });
  const config = encodeKeyConfig(x25519Key);
  const { encapsulatedRequest, context } = encapsulateRequest(x25519Key, ascii('hi'));
  const server = decapsulateRequest(x25519Key, encapsulatedRequest).context;
  const bytes = new Uint8Array(40);

  const table: Array<[string, () => unknown, EciesErrorCode]> = [
    ['keyId 256', () => generateOhttpKey({ keyId: 256 }), 'invalid_key_config'],
    ['keyId -1', () => generateOhttpKey({ keyId: -1 }), 'invalid_key_config'],
    ['unknown KEM', () => generateOhttpKey({ kemId: 0x0011 }), 'unsupported_suite'],
    [
      'unknown AEAD offered',
      () => generateOhttpKey({ symmetric: [{ kdfId: 1, aeadId: 9 }] }),
      'unsupported_suite',
    ],
    [
      'export-only AEAD offered',
      () => generateOhttpKey({ symmetric: [{ kdfId: 1, aeadId: 0xffff }] }),
      'unsupported_suite',
    ],
    [
      'unknown KDF offered',
      () => generateOhttpKey({ symmetric: [{ kdfId: 2, aeadId: 1 }] }),
      'unsupported_suite',
    ],
    ['no suites', () => generateOhttpKey({ symmetric: [] }), 'invalid_key_config'],
    ['options not an object', () => generateOhttpKey(5 as never), 'invalid_type'],
    [
      'import: short private key',
      () => importOhttpKey({ keyId: 1, kemId: 0x0020, privateKey: new Uint8Array(31) }),
      'invalid_length',
    ],
    [
      'import: P-256 key zero',
      () => importOhttpKey({ keyId: 1, kemId: 0x0010, privateKey: new Uint8Array(32) }),
      'invalid_private_key',
    ],
    [
      'import: not bytes',
      () => importOhttpKey({ keyId: 1, kemId: 0x0020, privateKey: 'ab' as never }),
      'invalid_type',
    ],
    [
      'encode: public key of the wrong length',
      () => encodeKeyConfig({ ...p256Key, publicKey: new Uint8Array(64) }),
      'invalid_key_config',
    ],
    [
      'encode: public key off the curve',
      () => encodeKeyConfig({ ...p256Key, publicKey: Uint8Array.of(4, ...new Uint8Array(64)) }),
      'invalid_key_config',
    ],
    [
      'encode: suite id above 16 bits',
      () => encodeKeyConfig({ ...p256Key, symmetric: [{ kdfId: 0x10000, aeadId: 1 }] }),
      'invalid_key_config',
    ],
    ['encode: not an object', () => encodeKeyConfig(null as never), 'invalid_type'],
    ['encode list: empty', () => encodeKeyConfigs([]), 'invalid_key_config'],
    ['encode list: not an array', () => encodeKeyConfigs(p256Key as never), 'invalid_type'],
    ['decode: not bytes', () => decodeKeyConfig('01' as never), 'invalid_type'],
    ['decode: 2 bytes', () => decodeKeyConfig(Uint8Array.of(1, 0)), 'invalid_key_config'],
    [
      'decode: unknown KEM',
      () => decodeKeyConfig(Uint8Array.of(1, 0, 0x30, 1, 2, 3)),
      'unsupported_suite',
    ],
    [
      'decode: cut in the public key',
      () => decodeKeyConfig(config.subarray(0, 20)),
      'invalid_key_config',
    ],
    [
      'decode: trailing byte',
      () => decodeKeyConfig(concat(config, Uint8Array.of(0))),
      'invalid_key_config',
    ],
    [
      'decode: cut in the suites',
      () => decodeKeyConfig(config.subarray(0, config.length - 1)),
      'invalid_key_config',
    ],
    [
      'decode: suites length 0',
      () => decodeKeyConfig(concat(config.subarray(0, 35), Uint8Array.of(0, 0))),
      'invalid_key_config',
    ],
    [
      'decode: suites length 6',
      () => decodeKeyConfig(concat(config.subarray(0, 35), Uint8Array.of(0, 6), new Uint8Array(6))),
      'invalid_key_config',
    ],
    [
      'decode: small-order X25519 key',
      () => decodeKeyConfig(concat(config.subarray(0, 3), new Uint8Array(32), config.subarray(35))),
      'invalid_key_config',
    ],
    ['decode list: empty', () => decodeKeyConfigs(new Uint8Array(0)), 'invalid_key_config'],
    ['decode list: 1 byte', () => decodeKeyConfigs(Uint8Array.of(0)), 'invalid_key_config'],
    [
      'decode list: length beyond the end',
      () => decodeKeyConfigs(concat(Uint8Array.of(0, 99), config)),
      'invalid_key_config',
    ],
    [
      'decode list: one bad entry spoils all',
      () => decodeKeyConfigs(concat(encodeKeyConfigs([x25519Key]), Uint8Array.of(0, 2, 1, 0))),
      'invalid_key_config',
    ],
    [
      'encapsulate: request not bytes',
      () => encapsulateRequest(x25519Key, 'GET' as never),
      'invalid_type',
    ],
    [
      'encapsulate: suite not offered',
      () => encapsulateRequest(x25519Key, bytes, { suite: { kdfId: 1, aeadId: 2 } }),
      'unsupported_suite',
    ],
    [
      'encapsulate: no implemented suite',
      () => encapsulateRequest({ ...x25519Key, symmetric: [{ kdfId: 7, aeadId: 1 }] }, bytes),
      'unsupported_suite',
    ],
    [
      'encapsulate: short ikmE',
      () => encapsulateRequest(x25519Key, bytes, { ikmE: new Uint8Array(8) }),
      'invalid_length',
    ],
    [
      'encapsulate: short ephemeral key',
      () => encapsulateRequest(x25519Key, bytes, { ephemeralPrivateKey: new Uint8Array(8) }),
      'invalid_length',
    ],
    ['decapsulate: not bytes', () => decapsulateRequest(x25519Key, [] as never), 'invalid_type'],
    [
      'decapsulate: keys not keys',
      () => decapsulateRequest([{}] as never, encapsulatedRequest),
      'invalid_type',
    ],
    [
      'decapsulate: 6 bytes',
      () => decapsulateRequest(x25519Key, encapsulatedRequest.subarray(0, 6)),
      'ciphertext_too_short',
    ],
    [
      'decapsulate: no tag',
      () => decapsulateRequest(x25519Key, encapsulatedRequest.subarray(0, 7 + 32 + 15)),
      'ciphertext_too_short',
    ],
    [
      'decapsulate: unknown key id',
      () => decapsulateRequest(p256Key, encapsulatedRequest),
      'unknown_key_id',
    ],
    [
      'decapsulate: key id with another KEM',
      () => decapsulateRequest({ ...p256Key, keyId: 2 }, encapsulatedRequest),
      'unknown_key_id',
    ],
    [
      'decapsulate: AEAD not offered',
      () =>
        decapsulateRequest(
          x25519Key,
          concat(
            encapsulatedRequest.subarray(0, 6),
            Uint8Array.of(2),
            encapsulatedRequest.subarray(7),
          ),
        ),
      'unsupported_suite',
    ],
    [
      'decapsulate: small-order enc',
      () =>
        decapsulateRequest(
          x25519Key,
          concat(
            encapsulatedRequest.subarray(0, 7),
            new Uint8Array(32),
            encapsulatedRequest.subarray(39),
          ),
        ),
      'invalid_public_key',
    ],
    [
      'response: short',
      () => context.decapsulateResponse(new Uint8Array(31)),
      'ciphertext_too_short',
    ],
    ['response: not bytes', () => context.decapsulateResponse(null as never), 'invalid_type'],
    [
      'response: nonce of 12 bytes',
      () => server.encapsulateResponse(bytes, { responseNonce: new Uint8Array(12) }),
      'invalid_length',
    ],
    ['response: body not bytes', () => server.encapsulateResponse('ok' as never), 'invalid_type'],
    [
      'response: randomBytes not a function',
      () => server.encapsulateResponse(bytes, { randomBytes: 1 as never }),
      'invalid_type',
    ],
    [
      'chunked reader: maxChunkLength 0',
      () => createChunkedRequestReader(x25519Key, { maxChunkLength: 0 }),
      'invalid_length',
    ],
    [
      'chunked reader: maxChunkLength 1.5',
      () => createChunkedRequestReader(x25519Key, { maxChunkLength: 1.5 }),
      'invalid_type',
    ],
    [
      'chunked reader: push a string',
      () => createChunkedRequestReader(x25519Key).push('x' as never),
      'invalid_type',
    ],
    [
      'chunked reader: end with nothing',
      () => createChunkedRequestReader(x25519Key).end(),
      'truncated',
    ],
    [
      'chunked writer: chunk not bytes',
      () => createChunkedRequestWriter(x25519Key).chunk(1 as never),
      'invalid_type',
    ],
    [
      'chunked writer: start twice',
      () => {
        const w = createChunkedRequestWriter(x25519Key);
        w.start();
        w.start();
      },
      'invalid_type',
    ],
    [
      'chunked writer: final twice',
      () => {
        const w = createChunkedRequestWriter(x25519Key);
        w.final();
        w.final();
      },
      'invalid_type',
    ],
    [
      'chunked response: unsupported AEAD in request header',
      () => createChunkedRequestReader(x25519Key).push(Uint8Array.of(2, 0, 0x20, 0, 1, 0, 9)),
      'unsupported_suite',
    ],
    [
      'chunked response: chunk length above 2^53',
      () => {
        const r = createChunkedRequestReader(x25519Key);
        r.push(createChunkedRequestWriter(x25519Key).start());
        r.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
      },
      'invalid_length',
    ],
  ];

  it.each(table)('error: %s', (_name, run, code) => {
    expect(codeOf(run)).toBe(code);
  });
});
