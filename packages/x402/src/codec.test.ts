import {
  decodePaymentRequiredHeader,
  decodePaymentResponseHeader,
  decodePaymentSignatureHeader,
  encodePaymentRequiredHeader,
  encodePaymentResponseHeader,
  encodePaymentSignatureHeader,
} from '@x402/core/http';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeHeader,
  encodeHeader,
  HEADERS,
  isX402Error,
  type PaymentPayloadV1,
  type PaymentPayloadV2,
  type PaymentRequired,
  parsePayment,
  readPayment,
  readPaymentRequired,
  receiptHeaders,
  type SettleResponse,
  toRequirementsV1,
  X402_ERROR_CODES,
  type X402ErrorCode,
} from './index.js';
import { PAY_TO, SEPOLIA, sepoliaTerms } from './test-fixtures.js';

// Codec tests need well-formed payments, not valid signatures (verify.test.ts signs).
const AUTHORIZATION = {
  from: '0x857b06519E91e3A54538791bDbb0E22373e36b66',
  to: PAY_TO,
  value: '1000',
  validAfter: '1740672089',
  validBefore: '1740672154',
  nonce: `0x${'f3'.repeat(32)}`,
} as const;
const SIGNATURE = `0x${'2d'.repeat(65)}` as const;

const V2: PaymentPayloadV2 = {
  x402Version: 2,
  resource: { url: 'https://api.example/v1/chat/completions', description: 'Café ☕ – 東京' },
  accepted: sepoliaTerms(),
  payload: { signature: SIGNATURE, authorization: AUTHORIZATION },
};
const V1: PaymentPayloadV1 = {
  x402Version: 1,
  scheme: 'exact',
  network: 'base-sepolia',
  payload: { signature: SIGNATURE, authorization: AUTHORIZATION },
};
const TERMS: PaymentRequired = {
  x402Version: 2,
  error: 'Paiement requis — 支払いが必要です',
  resource: { url: 'https://api.example/v1/chat/completions', mimeType: 'application/json' },
  accepts: [sepoliaTerms()],
};
const RECEIPT: SettleResponse = {
  success: true,
  transaction: `0x${'ab'.repeat(32)}`,
  network: 'eip155:84532',
  payer: AUTHORIZATION.from,
};

function codeOf(run: () => unknown): X402ErrorCode | 'no error' {
  try {
    run();
  } catch (error) {
    if (isX402Error(error)) return error.code;
    throw error;
  }
  return 'no error';
}

describe('encodeHeader / decodeHeader', () => {
  it('behavior: round trips non-ASCII text as standard base64 of UTF-8 JSON', () => {
    const value = { text: 'naïve café, 東京, 🚀, \u0000 and "quotes"', n: [1, 2.5, null] };
    const header = encodeHeader(value);
    expect(header).toBe(Buffer.from(JSON.stringify(value), 'utf8').toString('base64'));
    expect(decodeHeader(header)).toEqual(value);
  });

  it('behavior: round trips any JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const header = encodeHeader(value);
        expect(header).toMatch(/^[A-Za-z0-9+/]*={0,2}$/);
        expect(decodeHeader(header)).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
  });

  it('behavior: encodes values larger than one chunk of String.fromCharCode', () => {
    const value = { big: 'é'.repeat(50_000) };
    expect(encodeHeader(value)).toBe(Buffer.from(JSON.stringify(value)).toString('base64'));
  });

  it('behavior: tolerates surrounding whitespace', () => {
    expect(decodeHeader(`  ${encodeHeader({ a: 1 })}\t`)).toEqual({ a: 1 });
  });
});

describe('interop with @x402/core/http', () => {
  it('behavior: a PAYMENT-SIGNATURE from the official encoder reads back', () => {
    const header = encodePaymentSignatureHeader(V2 as never);
    expect(header).toBe(encodeHeader(V2));
    const payment = readPayment(new Headers({ 'PAYMENT-SIGNATURE': header }));
    expect(payment?.raw).toEqual(V2);
  });

  it('behavior: the official decoders read what this package encodes', () => {
    expect(decodePaymentSignatureHeader(encodeHeader(V2))).toEqual(V2);
    expect(decodePaymentRequiredHeader(encodeHeader(TERMS))).toEqual(TERMS);
    const headers = receiptHeaders(RECEIPT, { x402Version: 2, header: 'payment-signature' });
    expect(decodePaymentResponseHeader(headers[HEADERS.paymentResponse]!)).toEqual(RECEIPT);
  });

  it('behavior: this package decodes the official encoders, byte for byte the same headers', () => {
    const required = encodePaymentRequiredHeader(TERMS as never);
    expect(required).toBe(encodeHeader(TERMS));
    expect(decodeHeader(required)).toEqual(TERMS);
    const response = encodePaymentResponseHeader(RECEIPT as never);
    expect(response).toBe(encodeHeader(RECEIPT));
    expect(decodeHeader(response)).toEqual(RECEIPT);
  });
});

describe('readPayment', () => {
  it('behavior: reads a v2 payment from PAYMENT-SIGNATURE', () => {
    const payment = readPayment(new Headers({ 'payment-signature': encodeHeader(V2) }));
    expect(payment).toMatchObject({
      x402Version: 2,
      header: 'payment-signature',
      scheme: 'exact',
      network: 'eip155:84532',
      accepted: V2.accepted,
      payload: V2.payload,
    });
  });

  it('behavior: reads a v1 payment from X-PAYMENT, with its network as CAIP-2', () => {
    const payment = readPayment(new Headers({ 'X-Payment': encodeHeader(V1) }));
    expect(payment).toEqual({
      x402Version: 1,
      header: 'x-payment',
      scheme: 'exact',
      network: 'eip155:84532',
      payload: V1.payload,
      raw: V1,
    });
  });

  it('behavior: a v2 payload in X-PAYMENT is read as v2 (the version decides, not the header)', () => {
    const payment = readPayment(new Headers({ 'x-payment': encodeHeader(V2) }));
    expect(payment?.x402Version).toBe(2);
    expect(payment?.header).toBe('x-payment');
    expect(payment?.accepted).toEqual(V2.accepted);
  });

  it('behavior: PAYMENT-SIGNATURE wins over X-PAYMENT; a blank one does not count', () => {
    const both = new Headers({
      'payment-signature': encodeHeader(V2),
      'x-payment': encodeHeader(V1),
    });
    expect(readPayment(both)?.header).toBe('payment-signature');
    const blank = new Headers({ 'payment-signature': ' ', 'x-payment': encodeHeader(V1) });
    expect(readPayment(blank)?.header).toBe('x-payment');
  });

  it('behavior: no payment header gives undefined', () => {
    expect(readPayment(new Headers())).toBeUndefined();
    expect(readPayment(new Headers({ 'x-payment': '' }))).toBeUndefined();
  });

  it('behavior: keeps unknown fields of the payment for the facilitator', () => {
    const withExtensions = { ...V2, extensions: { 'payment-identifier': { id: 'abc' } } };
    const payment = readPayment(new Headers({ 'payment-signature': encodeHeader(withExtensions) }));
    expect(payment?.raw).toEqual(withExtensions);
  });

  const plusSlash = encodeHeader({ ...V2, memo: '~~~?>?' });
  // One of three lengths in a row needs padding.
  const padded = ['x', 'xx', 'xxx']
    .map((memo) => encodeHeader({ ...V2, memo }))
    .find((header) => header.endsWith('='))!;
  const oversize = encodeHeader({ ...V2, memo: 'x'.repeat(13_000) });
  const changed = (change: (value: Record<string, unknown>) => void): string => {
    const value = structuredClone(V2) as unknown as Record<string, unknown>;
    change(value);
    return encodeHeader(value);
  };
  const authorization = (value: Record<string, unknown>) =>
    (value.payload as { authorization: Record<string, unknown> }).authorization;

  it('behavior: the fixtures of the malformed table are otherwise well-formed', () => {
    expect(plusSlash).toMatch(/[+/]/);
    expect(oversize.length).toBeGreaterThan(16 * 1024);
    for (const header of [plusSlash, padded]) {
      expect(codeOf(() => readPayment(new Headers({ 'payment-signature': header })))).toBe(
        'no error',
      );
    }
    expect(codeOf(() => parsePayment(decodeHeaderUnchecked(oversize), 'x-payment'))).toBe(
      'no error',
    );
  });

  it.each<[string, string, X402ErrorCode]>([
    ['not base64', '!!not base64!!', 'invalid_payment'],
    [
      'base64url characters',
      plusSlash.replaceAll('+', '-').replaceAll('/', '_'),
      'invalid_payment',
    ],
    ['padding missing', padded.replace(/=+$/, ''), 'invalid_payment'],
    ['padding in the middle', `${padded.slice(0, 8)}=${padded.slice(9)}`, 'invalid_payment'],
    ['too much padding', `${padded.slice(0, -4)}A===`, 'invalid_payment'],
    ['not JSON', btoa('not json'), 'invalid_payment'],
    ['not UTF-8', btoa('\xff\xfe{}'), 'invalid_payment'],
    ['JSON null', btoa('null'), 'invalid_payment'],
    ['a JSON array', btoa('[2]'), 'invalid_payment'],
    ['no x402Version', changed((v) => delete v.x402Version), 'invalid_payment'],
    ['x402Version as a string', changed((v) => (v.x402Version = '2')), 'invalid_payment'],
    ['x402Version 3', changed((v) => (v.x402Version = 3)), 'unsupported_payment'],
    ['x402Version 0', changed((v) => (v.x402Version = 0)), 'unsupported_payment'],
    ['no payload', changed((v) => delete v.payload), 'invalid_payment'],
    ['no accepted (v2)', changed((v) => delete v.accepted), 'invalid_payment'],
    [
      'a Permit2 payload (no authorization)',
      changed((v) => delete (v.payload as Record<string, unknown>).authorization),
      'invalid_payment',
    ],
    ['no nonce', changed((v) => delete authorization(v).nonce), 'invalid_payment'],
    ['a bad from address', changed((v) => (authorization(v).from = '0x1234')), 'invalid_payment'],
    [
      'a bad payTo in accepted',
      changed((v) => ((v.accepted as Record<string, unknown>).payTo = 'alice.eth')),
      'invalid_payment',
    ],
    [
      'a 31-byte nonce',
      changed((v) => (authorization(v).nonce = `0x${'ab'.repeat(31)}`)),
      'invalid_payment',
    ],
    [
      'a 33-byte nonce',
      changed((v) => (authorization(v).nonce = `0x${'ab'.repeat(33)}`)),
      'invalid_payment',
    ],
    [
      'a 64-byte signature',
      changed((v) => ((v.payload as Record<string, unknown>).signature = `0x${'ab'.repeat(64)}`)),
      'invalid_payment',
    ],
    [
      'an odd-length signature',
      changed((v) => ((v.payload as Record<string, unknown>).signature = `0x${'a'.repeat(131)}`)),
      'invalid_payment',
    ],
    ['a value as a number', changed((v) => (authorization(v).value = 1000)), 'invalid_payment'],
    ['a negative value', changed((v) => (authorization(v).value = '-1')), 'invalid_payment'],
    ['a fractional value', changed((v) => (authorization(v).value = '1.5')), 'invalid_payment'],
    [
      'a value with a leading zero',
      changed((v) => (authorization(v).value = '01')),
      'invalid_payment',
    ],
    ['oversize', oversize, 'invalid_payment'],
  ])('error: %s', (_name, header, code) => {
    const run = () => readPayment(new Headers({ 'payment-signature': header }));
    expect(codeOf(run)).toBe(code);
    expect(X402_ERROR_CODES[code]).toBe(400);
  });

  it('error: a malformed payment says where', () => {
    const header = changed((v) => (authorization(v).from = '0x1234'));
    expect(() => readPayment(new Headers({ 'x-payment': header }))).toThrow(
      /payload\.authorization\.from/,
    );
  });
});

/** Decodes without the size limit, to show that only the size is wrong. */
function decodeHeaderUnchecked(header: string): unknown {
  return JSON.parse(Buffer.from(header, 'base64').toString('utf8'));
}

describe('readPaymentRequired', () => {
  it('behavior: reads v2 terms from the PAYMENT-REQUIRED header', async () => {
    const response = new Response('{}', {
      status: 402,
      headers: { 'payment-required': encodeHeader(TERMS) },
    });
    expect(await readPaymentRequired(response)).toEqual(TERMS);
  });

  it('behavior: reads v1 terms from the body, leaving the body unread', async () => {
    const v1 = {
      x402Version: 1,
      error: 'X-PAYMENT header is required',
      accepts: [toRequirementsV1(sepoliaTerms(), { url: 'https://api.example/x' }, 'base-sepolia')],
    };
    const response = new Response(JSON.stringify(v1), { status: 402 });
    expect(await readPaymentRequired(response)).toEqual(v1);
    expect(await response.json()).toEqual(v1);
  });

  it('behavior: an undecodable header falls back to the body', async () => {
    const response = new Response(JSON.stringify(TERMS), {
      status: 402,
      headers: { 'payment-required': 'garbage!' },
    });
    expect(await readPaymentRequired(response)).toEqual(TERMS);
  });

  it('behavior: no terms anywhere gives undefined', async () => {
    expect(await readPaymentRequired(new Response('not json', { status: 402 }))).toBeUndefined();
    expect(await readPaymentRequired(new Response('{"x402Version":3,"accepts":[]}'))).toBe(
      undefined,
    );
    expect(await readPaymentRequired(new Response(null, { status: 402 }))).toBeUndefined();
  });
});

describe('receiptHeaders and toRequirementsV1', () => {
  it.each([
    [2, 'payment-signature', ['payment-response']],
    [2, 'x-payment', ['payment-response', 'x-payment-response']],
    [1, 'x-payment', ['x-payment-response']],
    [1, 'payment-signature', ['x-payment-response']],
  ] as const)('behavior: x402Version %s in %s -> %j', (x402Version, header, names) => {
    const headers = receiptHeaders(RECEIPT, { x402Version, header });
    expect(Object.keys(headers).sort()).toEqual([...names].sort());
    for (const name of names) expect(decodeHeader(headers[name]!)).toEqual(RECEIPT);
  });

  it('behavior: v1 terms carry maxAmountRequired and the resource URL', () => {
    expect(
      toRequirementsV1(sepoliaTerms('2500'), { url: 'https://api.example/x' }, SEPOLIA.v1Name),
    ).toEqual({
      scheme: 'exact',
      network: 'base-sepolia',
      maxAmountRequired: '2500',
      resource: 'https://api.example/x',
      description: '',
      mimeType: '',
      payTo: PAY_TO,
      maxTimeoutSeconds: 120,
      asset: SEPOLIA.usdc.address,
      extra: { name: 'USDC', version: '2' },
    });
  });
});
