import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type BhttpEncodeOptions,
  type BhttpField,
  type BhttpRequest,
  type BhttpRequestInput,
  type BhttpResponse,
  type BhttpResponseEvent,
  type BhttpResponseInput,
  createBhttpRequestDecoder,
  createBhttpRequestEncoder,
  createBhttpResponseDecoder,
  createBhttpResponseEncoder,
  decodeBhttpRequest,
  decodeBhttpResponse,
  encodeBhttpRequest,
  encodeBhttpResponse,
} from './bhttp.js';
import { type EciesErrorCode, isEciesError } from './errors.js';
import { decodeVarint, decodeVarintBigInt, encodeVarint, MAX_VARINT } from './varint.js';

const hex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s/g, ''), 'hex'));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const text = (value: string) => new TextEncoder().encode(value);

interface VectorFile {
  vectors: Array<{
    name: string;
    type: 'request' | 'response';
    framing: 'known-length' | 'indeterminate-length';
    padding: number;
    truncate: boolean;
    hex: string;
    message: Record<string, unknown> & { bodyHex: string };
  }>;
}

const load = (file: string): VectorFile =>
  JSON.parse(readFileSync(new URL(`../test-vectors/${file}`, import.meta.url), 'utf8'));

const vectors = [
  ...load('rfc9292-section-5.json').vectors,
  ...load('rfc9458-appendix-a-bhttp.json').vectors,
];

function expected(vector: VectorFile['vectors'][number]) {
  const { bodyHex, ...rest } = vector.message;
  return { ...rest, body: hex(bodyHex) };
}

function codeOf(run: () => unknown): EciesErrorCode | 'none' {
  try {
    run();
    return 'none';
  } catch (error) {
    if (!isEciesError(error)) throw error;
    return error.code;
  }
}

function decode(type: 'request' | 'response', bytes: Uint8Array): BhttpRequest | BhttpResponse {
  return type === 'request' ? decodeBhttpRequest(bytes) : decodeBhttpResponse(bytes);
}

/** Feeds `bytes` to a streaming decoder cut at `cuts`, and rebuilds the message from its events. */
function decodeStreaming(type: 'request' | 'response', bytes: Uint8Array, cuts: number[]) {
  const decoder = type === 'request' ? createBhttpRequestDecoder() : createBhttpResponseDecoder();
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const events: Array<Record<string, unknown>> = [];
  let from = 0;
  for (const point of [...points, bytes.length]) {
    events.push(...(decoder.push(bytes.slice(from, point)) as Array<Record<string, unknown>>));
    from = point;
  }
  events.push(...(decoder.end() as Array<Record<string, unknown>>));
  const message: Record<string, unknown> = { headers: [], trailers: [] };
  if (type === 'response') message.informational = [];
  const body: number[] = [];
  for (const { type: kind, ...event } of events) {
    if (kind === 'informational') (message.informational as unknown[]).push(event);
    else if (kind === 'head') Object.assign(message, event);
    else if (kind === 'body') body.push(...(event.data as Uint8Array));
    else message.trailers = event.trailers;
  }
  message.body = Uint8Array.from(body);
  return message;
}

describe('RFC 9292 section 5 and RFC 9458 appendix A examples', () => {
  for (const vector of vectors) {
    const options: BhttpEncodeOptions = {
      framing: vector.framing,
      padding: vector.padding,
      truncate: vector.truncate,
    };

    it(`behavior: ${vector.name} decodes to the message of the RFC`, () => {
      expect(decode(vector.type, hex(vector.hex))).toEqual(expected(vector));
    });

    it(`behavior: ${vector.name} is what the encoder writes for that message`, () => {
      const message = expected(vector);
      const bytes =
        vector.type === 'request'
          ? encodeBhttpRequest(message as unknown as BhttpRequestInput, options)
          : encodeBhttpResponse(message as unknown as BhttpResponseInput, options);
      expect(toHex(bytes)).toBe(vector.hex);
    });

    it(`behavior: ${vector.name} read one byte at a time gives the same message`, () => {
      const bytes = hex(vector.hex);
      const cuts = Array.from({ length: bytes.length }, (_, i) => i);
      expect(decodeStreaming(vector.type, bytes, cuts)).toEqual(expected(vector));
    });
  }

  it('behavior: the Figure 8 request loses nothing when its last one or two bytes are cut (RFC 9292 section 5.1)', () => {
    const [figure8] = vectors;
    const bytes = hex(figure8!.hex);
    for (const cut of [1, 2]) {
      expect(decodeBhttpRequest(bytes.subarray(0, bytes.length - cut))).toEqual(expected(figure8!));
    }
    expect(codeOf(() => decodeBhttpRequest(bytes.subarray(0, bytes.length - 3)))).toBe('truncated');
  });

  it('behavior: the Figure 9 request loses nothing with up to 12 bytes cut, and the 13th is its header terminator', () => {
    const figure9 = vectors[1]!;
    const bytes = hex(figure9.hex);
    for (let cut = 0; cut <= 12; cut++) {
      expect(decodeBhttpRequest(bytes.subarray(0, bytes.length - cut))).toEqual(expected(figure9));
    }
    expect(codeOf(() => decodeBhttpRequest(bytes.subarray(0, bytes.length - 13)))).toBe(
      'truncated',
    );
  });

  it('behavior: the Figure 11 response is reported head first, body, then end', () => {
    const decoder = createBhttpResponseDecoder();
    const events = [...decoder.push(hex(vectors[2]!.hex)), ...decoder.end()];
    expect(events.map((event) => event.type)).toEqual([
      'informational',
      'informational',
      'head',
      'body',
      'end',
    ]);
    expect(decoder.done).toBe(true);
  });
});

describe('varint (RFC 9000 section 16)', () => {
  const examples: Array<[string, bigint]> = [
    ['c2197c5eff14e88c', 151288809941952652n],
    ['9d7f3e7d', 494878333n],
    ['7bbd', 15293n],
    ['25', 37n],
    ['4025', 37n],
  ];

  for (const [encoded, value] of examples) {
    it(`behavior: 0x${encoded} decodes to ${value} (RFC 9000 appendix A.1)`, () => {
      const bytes = hex(encoded);
      expect(decodeVarintBigInt(bytes)).toEqual({ value, length: bytes.length });
      if (value <= BigInt(Number.MAX_SAFE_INTEGER)) {
        expect(decodeVarint(bytes)).toEqual({ value: Number(value), length: bytes.length });
      }
      // The RFC's 0x4025 is a deliberately non-minimal 37; the encoder writes the minimal 0x25.
      if (encoded !== '4025') expect(toHex(encodeVarint(value))).toBe(encoded);
    });
  }

  it('behavior: each length boundary takes the expected number of bytes', () => {
    const cases: Array<[number | bigint, number]> = [
      [0, 1],
      [63, 1],
      [64, 2],
      [16383, 2],
      [16384, 4],
      [2 ** 30 - 1, 4],
      [2 ** 30, 8],
      [Number.MAX_SAFE_INTEGER, 8],
      [MAX_VARINT, 8],
    ];
    for (const [value, length] of cases) {
      const bytes = encodeVarint(value);
      expect(bytes.length).toBe(length);
      expect(decodeVarintBigInt(bytes).value).toBe(BigInt(value));
    }
    expect(toHex(encodeVarint(MAX_VARINT))).toBe('ffffffffffffffff');
  });

  it('behavior: decoding reads at an offset and stops at the integer', () => {
    expect(decodeVarint(Uint8Array.of(0xff, 0x7b, 0xbd, 0x01), 1)).toEqual({
      value: 15293,
      length: 2,
    });
  });

  it('behavior: any integer up to 2^62 - 1 round trips', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: MAX_VARINT }), (value) => {
        const bytes = encodeVarint(value);
        expect(decodeVarintBigInt(bytes)).toEqual({ value, length: bytes.length });
      }),
    );
  });

  const errors: Array<[string, () => unknown, EciesErrorCode]> = [
    ['2^62', () => encodeVarint(MAX_VARINT + 1n), 'invalid_length'],
    ['a negative number', () => encodeVarint(-1), 'invalid_length'],
    ['a negative bigint', () => encodeVarint(-1n), 'invalid_length'],
    ['a fraction', () => encodeVarint(1.5), 'invalid_type'],
    ['an unsafe number', () => encodeVarint(2 ** 60), 'invalid_type'],
    ['a string', () => encodeVarint('1' as unknown as number), 'invalid_type'],
    ['empty input', () => decodeVarint(new Uint8Array(0)), 'truncated'],
    ['a cut two-byte integer', () => decodeVarint(Uint8Array.of(0x40)), 'truncated'],
    ['a cut eight-byte integer', () => decodeVarintBigInt(hex('c2197c5eff14e8')), 'truncated'],
    ['an offset past the end', () => decodeVarint(Uint8Array.of(1), 1), 'truncated'],
    [
      'a value above 2^53 - 1 as a number',
      () => decodeVarint(hex('c2197c5eff14e88c')),
      'invalid_length',
    ],
    [
      'bytes that are not a Uint8Array',
      () => decodeVarint([1] as unknown as Uint8Array),
      'invalid_type',
    ],
    ['a negative offset', () => decodeVarint(Uint8Array.of(1), -1), 'invalid_type'],
  ];
  for (const [name, run, code] of errors) {
    it(`error: ${name} is refused with ${code}`, () => {
      expect(codeOf(run)).toBe(code);
    });
  }
});

// Arbitraries of valid messages: names are lowercase tokens, values are byte strings without
// NUL, CR, LF or surrounding whitespace.
const fieldName = fc.stringMatching(/^[a-z0-9!#$%&'*+.^_`|~-]{1,12}$/);
const fieldValue = fc
  .array(
    fc.integer({ min: 1, max: 255 }).filter((c) => c !== 0x0a && c !== 0x0d),
    { maxLength: 24 },
  )
  .map((codes) => String.fromCharCode(...codes).replace(/^[ \t]+|[ \t]+$/g, ''));
const fields = fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 5 });
const body = fc.uint8Array({ maxLength: 80 });

const requestArbitrary = fc.record({
  method: fc.stringMatching(/^[A-Za-z]{1,8}$/),
  scheme: fc.constantFrom('https', 'http', 'ftp'),
  authority: fc.stringMatching(/^[a-z0-9.:-]{0,20}$/),
  path: fc.stringMatching(/^\/[!-~]{0,30}$/),
  headers: fields,
  body,
  trailers: fields,
});

const responseArbitrary = fc.record({
  status: fc.integer({ min: 200, max: 599 }),
  informational: fc.array(
    fc.record({ status: fc.integer({ min: 100, max: 199 }), headers: fields }),
    { maxLength: 3 },
  ),
  headers: fields,
  body,
  trailers: fields,
});

const optionsArbitrary = fc.record({
  framing: fc.constantFrom('known-length' as const, 'indeterminate-length' as const),
  truncate: fc.boolean(),
  padding: fc.nat({ max: 6 }),
});

const messageArbitrary = fc.oneof(
  fc.record({ type: fc.constant('request' as const), message: requestArbitrary }),
  fc.record({ type: fc.constant('response' as const), message: responseArbitrary }),
);

function encode(
  type: 'request' | 'response',
  message: BhttpRequest | BhttpResponse,
  options: BhttpEncodeOptions,
) {
  return type === 'request'
    ? encodeBhttpRequest(message as BhttpRequest, options)
    : encodeBhttpResponse(message as BhttpResponse, options);
}

/** The indeterminate-length encoding written by the stream encoders, the body cut at `cuts`. */
function encodeStreamed(
  type: 'request' | 'response',
  message: BhttpRequest | BhttpResponse,
  cuts: number[],
): Uint8Array {
  const parts: Uint8Array[] = [];
  let encoder: { body(chunk: Uint8Array): Uint8Array; end(trailers?: BhttpField[]): Uint8Array };
  if (type === 'request') {
    const request = createBhttpRequestEncoder();
    parts.push(request.head(message as BhttpRequest));
    encoder = request;
  } else {
    const response = createBhttpResponseEncoder();
    for (const interim of (message as BhttpResponse).informational) {
      parts.push(response.informational(interim));
    }
    parts.push(response.head(message as BhttpResponse));
    encoder = response;
  }
  const points = [...new Set(cuts.map((cut) => cut % (message.body.length + 1)))].sort(
    (a, b) => a - b,
  );
  let from = 0;
  for (const point of [...points, message.body.length]) {
    parts.push(encoder.body(message.body.slice(from, point)));
    from = point;
  }
  parts.push(encoder.end(message.trailers));
  return Uint8Array.from(parts.flatMap((part) => [...part]));
}

/** Either encoding of a message: one-shot with the given options, or streamed in chunks. */
const encodedArbitrary = fc
  .tuple(messageArbitrary, optionsArbitrary, fc.option(fc.array(fc.nat(), { maxLength: 6 })))
  .map(([{ type, message }, options, cuts]) => ({
    type,
    message,
    bytes: cuts === null ? encode(type, message, options) : encodeStreamed(type, message, cuts),
  }));

describe('binary HTTP round trips', () => {
  it('behavior: any message round trips through either framing, truncated or padded', () => {
    fc.assert(
      fc.property(messageArbitrary, optionsArbitrary, ({ type, message }, options) => {
        expect(decode(type, encode(type, message, options))).toEqual(message);
      }),
      { numRuns: 300 },
    );
  });

  it('behavior: the streaming decoder gives the one-shot result for any split of the input', () => {
    fc.assert(
      fc.property(encodedArbitrary, fc.array(fc.nat(), { maxLength: 20 }), (encoded, cuts) => {
        const { type, message, bytes } = encoded;
        expect(decode(type, bytes)).toEqual(message);
        expect(decodeStreaming(type, bytes, cuts)).toEqual(message);
      }),
      { numRuns: 300 },
    );
  });

  it('behavior: every cut of a message is truncated, or at an allowed point the message with its last sections empty', () => {
    fc.assert(
      fc.property(encodedArbitrary, ({ type, message, bytes }) => {
        for (let length = 0; length < bytes.length; length++) {
          const prefix = bytes.subarray(0, length);
          let cut: BhttpRequest | BhttpResponse;
          try {
            cut = decode(type, prefix);
          } catch (error) {
            expect(isEciesError(error) && error.code).toBe('truncated');
            expect(codeOf(() => decodeStreaming(type, prefix, [length >> 1]))).toBe('truncated');
            continue;
          }
          // A cut may only drop whole sections at the end (or padding), never part of one.
          const { headers, body: content, trailers, ...head } = cut;
          const {
            headers: fullHeaders,
            body: fullBody,
            trailers: fullTrailers,
            ...fullHead
          } = message;
          expect(head).toEqual(fullHead);
          if (trailers.length > 0) expect(trailers).toEqual(fullTrailers);
          if (trailers.length > 0 || content.length > 0) expect(content).toEqual(fullBody);
          if (content.length > 0 || headers.length > 0) expect(headers).toEqual(fullHeaders);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('behavior: a changed byte is read or refused with an EciesError, never anything else', () => {
    fc.assert(
      fc.property(
        messageArbitrary,
        optionsArbitrary,
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        ({ type, message }, options, position, byte) => {
          const bytes = encode(type, message, options).slice();
          bytes[position % bytes.length] = byte;
          const code = codeOf(() => decode(type, bytes));
          expect(['none', 'malformed_message', 'truncated']).toContain(code);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('behavior: random bytes are read or refused with an EciesError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (bytes, asRequest) => {
        const code = codeOf(() => decode(asRequest ? 'request' : 'response', bytes));
        expect(['none', 'malformed_message', 'truncated']).toContain(code);
      }),
      { numRuns: 500 },
    );
  });
});

describe('streaming', () => {
  it('behavior: an SSE stream is read token by token, each token as soon as its bytes arrive', () => {
    const encoder = createBhttpResponseEncoder();
    const decoder = createBhttpResponseDecoder();
    const head = decoder.push(
      encoder.head({ status: 200, headers: [['Content-Type', 'text/event-stream']] }),
    );
    expect(head).toEqual([
      { type: 'head', status: 200, headers: [['content-type', 'text/event-stream']] },
    ]);
    for (const token of ['Hel', 'lo', ',', ' world']) {
      const line = `data: {"content":"${token}"}\n\n`;
      expect(decoder.push(encoder.body(text(line)))).toEqual([{ type: 'body', data: text(line) }]);
    }
    expect(decoder.push(encoder.body(new Uint8Array(0)))).toEqual([]);
    expect(decoder.push(encoder.end([['x-usage', '12']], { padding: 3 }))).toEqual([
      { type: 'end', trailers: [['x-usage', '12']] },
    ]);
    expect(decoder.done).toBe(true);
    expect(decoder.end()).toEqual([]);
  });

  it('behavior: a streamed response with informational responses decodes like the one-shot encoding', () => {
    const encoder = createBhttpResponseEncoder();
    const streamed = [
      encoder.informational({ status: 103, headers: [['link', '</a.css>; rel=preload']] }),
      encoder.head({ status: 201, headers: [['x-a', '1']] }),
      encoder.body(text('abc')),
      encoder.body(text('def')),
      encoder.end([['x-t', '2']]),
    ];
    const joined = Uint8Array.from(streamed.flatMap((part) => [...part]));
    const message: BhttpResponse = {
      status: 201,
      informational: [{ status: 103, headers: [['link', '</a.css>; rel=preload']] }],
      headers: [['x-a', '1']],
      body: text('abcdef'),
      trailers: [['x-t', '2']],
    };
    expect(decodeBhttpResponse(joined)).toEqual(message);
  });

  it('behavior: a streamed request decodes to the same request', () => {
    const encoder = createBhttpRequestEncoder();
    const parts = [
      encoder.head({ method: 'POST', scheme: 'https', authority: 'api.example', path: '/v1/chat' }),
      encoder.body(text('{"a":1}')),
      encoder.end(),
    ];
    const joined = Uint8Array.from(parts.flatMap((part) => [...part]));
    expect(joined[0]).toBe(2);
    expect(decodeBhttpRequest(joined)).toEqual({
      method: 'POST',
      scheme: 'https',
      authority: 'api.example',
      path: '/v1/chat',
      headers: [],
      body: text('{"a":1}'),
      trailers: [],
    });
  });

  it('error: a stream cut inside its content is truncated at end(), after the head was reported', () => {
    const encoder = createBhttpResponseEncoder();
    const decoder = createBhttpResponseDecoder();
    expect(decoder.push(encoder.head({ status: 200 }))[0]?.type).toBe('head');
    expect(decoder.push(encoder.body(text('partial')))[0]?.type).toBe('body');
    expect(codeOf(() => decoder.end())).toBe('truncated');
    expect(codeOf(() => decoder.end())).toBe('truncated');
  });

  it('error: a decoder that met an invalid message refuses everything after it', () => {
    const decoder = createBhttpResponseDecoder();
    expect(codeOf(() => decoder.push(Uint8Array.of(7)))).toBe('malformed_message');
    expect(codeOf(() => decoder.push(Uint8Array.of(3)))).toBe('malformed_message');
    expect(codeOf(() => decoder.end())).toBe('malformed_message');
  });

  it('error: bytes after end() are refused', () => {
    const decoder = createBhttpResponseDecoder();
    decoder.push(hex('0140c8'));
    decoder.end();
    expect(codeOf(() => decoder.push(Uint8Array.of(0)))).toBe('malformed_message');
  });

  it('error: the stream encoders refuse calls out of order', () => {
    const cases: Array<[string, () => unknown]> = [
      ['body before head', () => createBhttpResponseEncoder().body(text('x'))],
      ['end before head', () => createBhttpResponseEncoder().end()],
      [
        'head twice',
        () => {
          const encoder = createBhttpResponseEncoder();
          encoder.head({ status: 200 });
          encoder.head({ status: 200 });
        },
      ],
      [
        'informational after head',
        () => {
          const encoder = createBhttpResponseEncoder();
          encoder.head({ status: 200 });
          encoder.informational({ status: 103 });
        },
      ],
      [
        'body after end',
        () => {
          const encoder = createBhttpRequestEncoder();
          encoder.head({ method: 'GET', scheme: 'https', path: '/' });
          encoder.end();
          encoder.body(text('x'));
        },
      ],
      [
        'a final status as informational',
        () => createBhttpResponseEncoder().informational({ status: 200 }),
      ],
      ['an informational status as head', () => createBhttpResponseEncoder().head({ status: 103 })],
    ];
    for (const [name, run] of cases)
      expect([name, codeOf(run)]).toEqual([name, 'malformed_message']);
  });
});

describe('binary HTTP validity rules', () => {
  it('behavior: field names are lowercased by the encoder, values kept as they are', () => {
    const bytes = encodeBhttpRequest({
      method: 'GET',
      scheme: 'https',
      path: '/',
      headers: [['X-Custom', 'Mixed Case é']],
    });
    expect(decodeBhttpRequest(bytes).headers).toEqual([['x-custom', 'Mixed Case é']]);
    expect(bytes).toContain(0xe9);
  });

  it('behavior: non-minimal varints, extension pseudo-fields and CONNECT without scheme and path are accepted', () => {
    // framing 0 as 0x4000, a status as a four-byte 200, then a :protocol pseudo-field.
    expect(decodeBhttpResponse(hex('4001 800000c8 00')).status).toBe(200);
    const request = encodeBhttpRequest({
      method: 'CONNECT',
      scheme: '',
      authority: 'example.com:443',
      path: '',
      headers: [
        [':protocol', 'websocket'],
        ['origin', 'https://example.com'],
      ],
    });
    expect(decodeBhttpRequest(request).headers[0]).toEqual([':protocol', 'websocket']);
    expect(decodeBhttpRequest(hex('4000 03474554 0468747470 00 012f')).method).toBe('GET');
  });

  // Messages built by hand around one defect each. KL = known length, IL = indeterminate length.
  const get = '03474554 056874747073 00 012f';
  const decodeErrors: Array<[string, 'request' | 'response', string, EciesErrorCode]> = [
    ['framing indicator 4', 'request', '04' + get, 'malformed_message'],
    ['a response where a request is expected', 'request', '0140c8', 'malformed_message'],
    ['a request where a response is expected', 'response', '00' + get, 'malformed_message'],
    ['an uppercase field name', 'request', `00${get} 04 0141 0162`, 'malformed_message'],
    ['a field name with a space', 'request', `00${get} 06 03612062 0162`, 'malformed_message'],
    ['an empty field name (KL)', 'request', `00${get} 03 00 0162`, 'malformed_message'],
    ['a CR in a field value', 'request', `00${get} 05 0161 020d61`, 'malformed_message'],
    ['a NUL in a field value', 'request', `00${get} 05 0161 026100`, 'malformed_message'],
    ['a field value with leading space', 'request', `00${get} 05 0161 022061`, 'malformed_message'],
    ['a field value with trailing tab', 'request', `00${get} 05 0161 026109`, 'malformed_message'],
    ['a :path field', 'request', `02${get} 053a70617468 012f 00`, 'malformed_message'],
    [
      'a :status field in a response',
      'response',
      `0340c8 073a737461747573 03323030 00`,
      'malformed_message',
    ],
    [
      'a pseudo-field after a regular one',
      'request',
      `02${get} 0161 0162 023a78 0179 00`,
      'malformed_message',
    ],
    ['a pseudo-field in trailers', 'request', `02${get} 00 00 023a78 0179 00`, 'malformed_message'],
    [
      'a field line running past its section (KL)',
      'request',
      `00${get} 03 0161 0562 00`,
      'malformed_message',
    ],
    ['status 99', 'response', '0140 63', 'malformed_message'],
    ['status 600', 'response', '014258', 'malformed_message'],
    ['non-zero padding', 'response', '0140c8 000000 0000 01', 'malformed_message'],
    ['a method with a space', 'request', '00 03472054 056874747073 00 012f', 'malformed_message'],
    ['an empty method', 'request', '00 00 056874747073 00 012f', 'malformed_message'],
    ['an empty https path', 'request', '00 03474554 056874747073 00 00', 'malformed_message'],
    ['a scheme starting with a digit', 'request', '00 03474554 0131 00 012f', 'malformed_message'],
    ['a path with a space', 'request', '00 03474554 056874747073 00 022f20', 'malformed_message'],
    ['a length above 2^53 - 1', 'response', '0140c8 c2197c5eff14e88c', 'malformed_message'],
    ['an empty message', 'request', '', 'truncated'],
    ['a message cut inside its control data', 'request', '00 03474554 0568', 'truncated'],
    ['a response with only an informational status', 'response', '014067', 'truncated'],
    ['a response cut after an informational response', 'response', '03 4067 00', 'truncated'],
    ['content shorter than its length (KL)', 'response', '0140c8 00 05 6869', 'truncated'],
    ['a header section shorter than its length (KL)', 'response', '0140c8 06 0161', 'truncated'],
    ['a header section without its terminator (IL)', 'response', '0340c8 0161 0162', 'truncated'],
    ['a field line cut in its value (IL)', 'response', '0340c8 0161 0562', 'truncated'],
    ['content chunks without their terminator (IL)', 'response', '0340c8 00 02 6869', 'truncated'],
    ['trailers without their terminator (IL)', 'response', '0340c8 00 00 0161 0162', 'truncated'],
  ];
  for (const [name, type, bytes, code] of decodeErrors) {
    it(`error: ${name} is refused with ${code}`, () => {
      expect(codeOf(() => decode(type, hex(bytes)))).toBe(code);
    });
  }

  const base = { method: 'GET', scheme: 'https', path: '/' };
  const encodeErrors: Array<[string, () => unknown, EciesErrorCode]> = [
    [
      'bytes that are not a Uint8Array',
      () => decodeBhttpRequest('00' as unknown as Uint8Array),
      'invalid_type',
    ],
    [
      'a string body',
      () => encodeBhttpRequest({ ...base, body: 'x' as unknown as Uint8Array }),
      'invalid_type',
    ],
    [
      'headers that are not an array',
      () => encodeBhttpRequest({ ...base, headers: {} as never }),
      'invalid_type',
    ],
    [
      'a header that is not a pair',
      () => encodeBhttpRequest({ ...base, headers: [['a']] as never }),
      'invalid_type',
    ],
    [
      'a number as a header value',
      () => encodeBhttpRequest({ ...base, headers: [['a', 1]] as never }),
      'invalid_type',
    ],
    [
      'a missing method',
      () => encodeBhttpRequest({ ...base, method: undefined as never }),
      'invalid_type',
    ],
    ['a string status', () => encodeBhttpResponse({ status: '200' as never }), 'invalid_type'],
    [
      'an unknown framing',
      () => encodeBhttpResponse({ status: 200 }, { framing: 'chunked' as never }),
      'invalid_type',
    ],
    [
      'a negative padding',
      () => encodeBhttpResponse({ status: 200 }, { padding: -1 }),
      'invalid_length',
    ],
    [
      'a header name with a space',
      () => encodeBhttpRequest({ ...base, headers: [['a b', 'c']] }),
      'malformed_message',
    ],
    [
      'an empty header name',
      () => encodeBhttpRequest({ ...base, headers: [['', 'c']] }),
      'malformed_message',
    ],
    [
      'a header value with LF',
      () => encodeBhttpRequest({ ...base, headers: [['a', 'b\nc']] }),
      'malformed_message',
    ],
    [
      'a header value above U+00FF',
      () => encodeBhttpRequest({ ...base, headers: [['a', '€']] }),
      'malformed_message',
    ],
    [
      'a :method header',
      () => encodeBhttpRequest({ ...base, headers: [[':method', 'GET']] }),
      'malformed_message',
    ],
    [
      'a pseudo-field in trailers',
      () => encodeBhttpRequest({ ...base, trailers: [[':x', 'y']] }),
      'malformed_message',
    ],
    ['status 600', () => encodeBhttpResponse({ status: 600 }), 'malformed_message'],
    [
      'an informational status 200',
      () => encodeBhttpResponse({ status: 200, informational: [{ status: 200 }] }),
      'malformed_message',
    ],
    [
      'a method with a space',
      () => encodeBhttpRequest({ ...base, method: 'G T' }),
      'malformed_message',
    ],
  ];
  for (const [name, run, code] of encodeErrors) {
    it(`error: ${name} is refused with ${code}`, () => {
      expect(codeOf(run)).toBe(code);
    });
  }

  it('behavior: the decoder copies content out, so reusing an input chunk changes nothing', () => {
    const chunk = hex('0340c8 00 03 616263');
    const decoder = createBhttpResponseDecoder();
    const events: BhttpResponseEvent[] = decoder.push(chunk);
    chunk.fill(0);
    expect(events[1]).toEqual({ type: 'body', data: text('abc') });
  });
});
