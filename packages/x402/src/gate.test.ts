import { describe, expect, it } from 'vitest';
import {
  createMemoryReplayLock,
  createPaymentGate,
  createPricing,
  decodeHeader,
  encodeHeader,
  type PaymentGateOptions,
  type PaymentRequired,
  type ReplayLock,
  settleAnswer,
  X402Error,
} from './index.js';
import {
  clock,
  controlledStream,
  fakeFacilitator,
  MAINNET,
  NOW,
  PAY_TO,
  PAYER,
  paid,
  paymentV1,
  paymentV2,
  SEPOLIA,
  SOMEONE_ELSE,
  sepoliaTerms,
} from './test-fixtures.js';

const RESOURCE = 'https://gateway.example/v1/chat/completions';
const CONTEXT = { resource: RESOURCE };
const TERMS = sepoliaTerms('1000', 120);

function setup(options: Partial<PaymentGateOptions> = {}) {
  const fake = fakeFacilitator();
  const gate = createPaymentGate({
    payTo: PAY_TO,
    price: '0.001',
    facilitator: fake.facilitator,
    now: clock,
    description: 'Chat completions',
    ...options,
  });
  return { fake, gate };
}

const served = (body = '{"ok":true}', status = 200) =>
  new Response(body, { status, headers: { 'content-type': 'application/json' } });

async function signed(terms = TERMS) {
  return paid(await paymentV2({ terms, resource: RESOURCE }));
}

async function termsOf(response: Response): Promise<PaymentRequired> {
  const header = response.headers.get('payment-required');
  expect(header).not.toBeNull();
  const terms = decodeHeader(header!) as PaymentRequired;
  return terms;
}

describe('createPaymentGate: challenge', () => {
  it('behavior: no payment header -> 402 with the terms in PAYMENT-REQUIRED and the body', async () => {
    const { gate, fake } = setup();
    let servedCount = 0;
    const response = await gate.handle(new Headers(), CONTEXT, async () => {
      servedCount += 1;
      return served();
    });
    expect(response.status).toBe(402);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('content-type')).toBe('application/json');
    const terms = await termsOf(response);
    expect(await response.json()).toEqual(terms);
    expect(terms).toEqual({
      x402Version: 2,
      error: expect.stringContaining('PAYMENT-SIGNATURE'),
      resource: { url: RESOURCE, description: 'Chat completions', mimeType: 'application/json' },
      accepts: [TERMS],
    });
    expect(servedCount).toBe(0);
    expect(fake.calls.verify).toHaveLength(0);
    expect(await gate.authorize(new Headers(), CONTEXT)).toEqual({ status: 'absent' });
  });

  it('behavior: defaults to Base Sepolia USDC; "base" means mainnet USDC ("USD Coin")', () => {
    expect(setup().gate.requirements()).toEqual(TERMS);
    const mainnet = setup({ network: 'base' }).gate;
    expect(mainnet.network).toBe('eip155:8453');
    expect(mainnet.requirements()).toMatchObject({
      network: 'eip155:8453',
      asset: MAINNET.usdc.address,
      extra: { name: 'USD Coin', version: '2' },
    });
  });

  it('behavior: a price in atomic units, and an asset of your own on another network', () => {
    const gate = setup({
      price: 5n,
      network: 'eip155:10',
      asset: { address: SOMEONE_ELSE, name: 'Token', version: '1', decimals: 18 },
    }).gate;
    expect(gate.requirements()).toMatchObject({
      network: 'eip155:10',
      amount: '5',
      asset: SOMEONE_ELSE,
      extra: { name: 'Token', version: '1' },
    });
    expect(
      setup({ price: '0.5', asset: { ...SEPOLIA.usdc, decimals: 2 } }).gate.requirements(),
    ).toMatchObject({ amount: '50' });
  });

  it('error: bad options are refused at creation', () => {
    expect(() => setup({ network: 'eip155:10' })).toThrow(/pass the asset/);
    expect(() => setup({ network: 'solana' })).toThrow(TypeError);
    expect(() => setup({ payTo: 'alice.eth' as `0x${string}` })).toThrow(TypeError);
    expect(() => setup({ price: '-0.001' })).toThrow(RangeError);
    expect(() => setup({ price: '0.0000001' })).toThrow(RangeError);
    expect(() => setup({ price: -1n })).toThrow(RangeError);
  });
});

describe('createPaymentGate: a paid request', () => {
  it('behavior: valid -> verified with the server terms, then served, settled and receipted', async () => {
    const { gate, fake } = setup();
    const payment = await paymentV2({
      terms: TERMS,
      resource: RESOURCE,
      // Fields the gate does not compare: the facilitator must still get the server's own terms.
      accepted: { maxTimeoutSeconds: 999, extra: { name: 'USDC', version: '2', note: 'client' } },
    });
    const decision = await gate.authorize(paid(payment), CONTEXT);
    expect(decision.status).toBe('verified');
    if (decision.status !== 'verified') return;
    expect(decision.payment.payer).toBe(PAYER.address);
    expect(decision.payment.amount).toBe(1000n);
    expect(decision.payment.requirements).toEqual(TERMS);
    expect(fake.calls.verify).toEqual([
      { x402Version: 2, paymentPayload: payment, paymentRequirements: TERMS },
    ]);
    expect(fake.calls.settle).toHaveLength(0);

    const response = await settleAnswer(decision.payment, served('{"answer":42}'));
    expect(fake.calls.settle).toEqual(fake.calls.verify);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ answer: 42 });
    expect(decodeHeader(response.headers.get('payment-response')!)).toEqual({
      success: true,
      transaction: `0x${'ab'.repeat(32)}`,
      network: 'eip155:84532',
      payer: PAYER.address,
    });
    expect(response.headers.get('x-payment-response')).toBeNull();
  });

  it('behavior: handle() serves, settles before handing the answer on, and adds the receipt', async () => {
    const { gate, fake } = setup();
    const order: string[] = [];
    fake.answers.settle = async (request) => {
      order.push('settle');
      return {
        success: true,
        transaction: '0x01',
        network: '',
        payer: request.paymentPayload.payload.authorization.from,
      };
    };
    const response = await gate.handle(await signed(), CONTEXT, async () => {
      order.push('serve');
      return served();
    });
    order.push('answer');
    expect(order).toEqual(['serve', 'settle', 'answer']);
    expect(response.status).toBe(200);
    // An empty network in the receipt is filled in with the terms' network.
    expect(decodeHeader(response.headers.get('payment-response')!)).toMatchObject({
      success: true,
      transaction: '0x01',
      network: 'eip155:84532',
    });
  });

  it('behavior: a streamed answer is handed on open, after settlement, without being read', async () => {
    const { gate, fake } = setup();
    const body = controlledStream();
    const response = await gate.handle(
      await signed(),
      CONTEXT,
      async () => new Response(body.stream),
    );
    // handle() resolved while the stream is still open: nothing waited for the body.
    expect(fake.calls.settle).toHaveLength(1);
    expect(response.headers.get('payment-response')).not.toBeNull();
    const reader = response.body!.getReader();
    body.push('data: first\n\n');
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: first\n\n');
    body.push('data: second\n\n');
    body.close();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: second\n\n');
    expect((await reader.read()).done).toBe(true);
  });

  it('behavior: the receipt is added to a response whose headers are immutable', async () => {
    const { gate } = setup();
    const decision = await gate.authorize(await signed(), CONTEXT);
    if (decision.status !== 'verified') throw new Error('expected verified');
    const response = await settleAnswer(
      decision.payment,
      Response.redirect(`${RESOURCE}/next`, 302),
    );
    expect(response.status).toBe(302);
    expect(response.headers.get('location')).toBe(`${RESOURCE}/next`);
    expect(response.headers.get('payment-response')).not.toBeNull();
  });

  it('behavior: settle() runs once; release() after it keeps the lock', async () => {
    const { gate, fake } = setup();
    const headers = await signed();
    const decision = await gate.authorize(headers, CONTEXT);
    if (decision.status !== 'verified') throw new Error('expected verified');
    const [first, second] = await Promise.all([
      decision.payment.settle(),
      decision.payment.settle(),
    ]);
    expect(second).toBe(first);
    expect(fake.calls.settle).toHaveLength(1);
    await decision.payment.release();
    expect((await gate.authorize(headers, CONTEXT)).status).toBe('refused');
  });
});

describe('createPaymentGate: not charged', () => {
  it.each([400, 404, 500, 502])(
    'behavior: upstream status %i -> passed through, no settlement, lock released',
    async (status) => {
      const { gate, fake } = setup();
      const headers = await signed();
      const response = await gate.handle(headers, CONTEXT, async () =>
        served('{"error":"upstream"}', status),
      );
      expect(response.status).toBe(status);
      expect(await response.text()).toBe('{"error":"upstream"}');
      expect(response.headers.get('payment-response')).toBeNull();
      expect(fake.calls.settle).toHaveLength(0);
      // The same authorization is accepted again, and this time it pays.
      const retry = await gate.handle(headers, CONTEXT, async () => served());
      expect(retry.status).toBe(200);
      expect(fake.calls.settle).toHaveLength(1);
    },
  );

  it('behavior: a handler that throws -> the error propagates, the lock is released', async () => {
    const { gate, fake } = setup();
    const headers = await signed();
    await expect(
      gate.handle(headers, CONTEXT, async () => {
        throw new Error('backend down');
      }),
    ).rejects.toThrow('backend down');
    expect(fake.calls.settle).toHaveLength(0);
    expect((await gate.authorize(headers, CONTEXT)).status).toBe('verified');
  });
});

describe('createPaymentGate: refusals', () => {
  it('error: a replayed authorization -> 402 authorization_used, no facilitator call', async () => {
    const { gate, fake } = setup();
    const headers = await signed();
    expect((await gate.handle(headers, CONTEXT, async () => served())).status).toBe(200);
    const calls = fake.calls.verify.length;
    let servedAgain = false;
    const replay = await gate.handle(headers, CONTEXT, async () => {
      servedAgain = true;
      return served();
    });
    expect(replay.status).toBe(402);
    expect(replay.headers.get('x-payment-error')).toBe('authorization_used');
    expect(replay.headers.get('cache-control')).toBe('no-store');
    expect((await termsOf(replay)).accepts).toEqual([TERMS]);
    expect(((await replay.json()) as PaymentRequired).error).toMatch(/already used/);
    expect(fake.calls.verify).toHaveLength(calls);
    expect(fake.calls.settle).toHaveLength(1);
    expect(servedAgain).toBe(false);
  });

  it('error: the same authorization twice at once -> exactly one verified', async () => {
    const { gate, fake } = setup();
    const headers = await signed();
    const decisions = await Promise.all([
      gate.authorize(headers, CONTEXT),
      gate.authorize(headers, CONTEXT),
    ]);
    expect(decisions.map((decision) => decision.status).sort()).toEqual(['refused', 'verified']);
    const refused = decisions.find((decision) => decision.status === 'refused');
    expect(refused?.status === 'refused' && refused.error.code).toBe('authorization_used');
    expect(fake.calls.verify).toHaveLength(1);
  });

  it('error: the same authorization sent as v2 and through X-PAYMENT -> one lock', async () => {
    const { gate } = setup();
    const payment = await paymentV2({ terms: TERMS });
    expect((await gate.authorize(paid(payment), CONTEXT)).status).toBe('verified');
    const again = await gate.authorize(paid(payment, 'x-payment'), CONTEXT);
    expect(again.status === 'refused' && again.error.code).toBe('authorization_used');
  });

  it('error: the facilitator says invalid -> 402 verification_failed, lock released', async () => {
    const { gate, fake } = setup();
    fake.answers.verify = async () => ({ isValid: false, invalidReason: 'insufficient_funds' });
    const headers = await signed();
    const decision = await gate.authorize(headers, CONTEXT);
    expect(decision.status).toBe('refused');
    if (decision.status !== 'refused') return;
    expect(decision.error.code).toBe('verification_failed');
    expect(decision.error.reason).toBe('insufficient_funds');
    expect(decision.response.status).toBe(402);
    expect(decision.response.headers.get('x-payment-error')).toBe('verification_failed');
    expect(((await decision.response.json()) as PaymentRequired).error).toContain(
      'insufficient_funds',
    );
    // Funded later, the same authorization goes through.
    fake.answers.verify = async () => ({ isValid: true });
    expect((await gate.authorize(headers, CONTEXT)).status).toBe('verified');
  });

  it.each([
    ['throws a plain error', new Error('ECONNRESET')],
    ['is unavailable', new X402Error('facilitator_unavailable', 'The facilitator is down.')],
  ])('error: the facilitator %s on verify -> 503, lock released', async (_name, failure) => {
    const { gate, fake } = setup();
    fake.answers.verify = async () => {
      throw failure;
    };
    const headers = await signed();
    const response = await gate.handle(headers, CONTEXT, async () => served());
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(response.headers.get('x-payment-error')).toBe('facilitator_unavailable');
    expect(response.headers.get('payment-required')).not.toBeNull();
    expect(await response.json()).toEqual({
      error: {
        message: expect.any(String),
        type: 'service_unavailable',
        param: null,
        code: 'facilitator_unavailable',
      },
    });
    fake.answers.verify = async () => ({ isValid: true });
    expect((await gate.authorize(headers, CONTEXT)).status).toBe('verified');
  });

  it('error: settlement refused -> 402 with PAYMENT-RESPONSE, and the served body is cancelled', async () => {
    const { gate, fake } = setup();
    fake.answers.settle = async () => ({
      success: false,
      errorReason: 'insufficient_funds',
      transaction: '',
      network: 'eip155:84532',
    });
    const body = controlledStream();
    const response = await gate.handle(
      await signed(),
      CONTEXT,
      async () => new Response(body.stream),
    );
    expect(response.status).toBe(402);
    expect(response.headers.get('x-payment-error')).toBe('settlement_failed');
    expect(decodeHeader(response.headers.get('payment-response')!)).toEqual({
      success: false,
      errorReason: 'insufficient_funds',
      transaction: '',
      network: 'eip155:84532',
      payer: PAYER.address,
    });
    const terms = (await response.json()) as PaymentRequired;
    expect(terms.accepts).toEqual([TERMS]);
    expect(terms.error).toContain('insufficient_funds');
    expect(body.state.cancelled).toBe(true);
    expect(body.state.reason).toMatchObject({ code: 'settlement_failed' });
  });

  it('error: settlement unreachable -> 503, body cancelled, authorization not reusable', async () => {
    const { gate, fake } = setup();
    fake.answers.settle = async () => {
      throw new X402Error('facilitator_unavailable', 'timed out');
    };
    const headers = await signed();
    const body = controlledStream();
    const response = await gate.handle(headers, CONTEXT, async () => new Response(body.stream));
    expect(response.status).toBe(503);
    expect(response.headers.get('x-payment-error')).toBe('facilitator_unavailable');
    expect(body.state.cancelled).toBe(true);
    // The transaction may have gone out: the lock stays.
    const again = await gate.authorize(headers, CONTEXT);
    expect(again.status === 'refused' && again.error.code).toBe('authorization_used');
  });

  it.each([
    ['garbage', new Headers({ 'payment-signature': '%%%' })],
    ['version 3', new Headers({ 'payment-signature': encodeHeader({ x402Version: 3 }) })],
  ])(
    'error: a %s payment header -> 400 in the error envelope, with the terms',
    async (_name, headers) => {
      const { gate, fake } = setup();
      const response = await gate.handle(headers, CONTEXT, async () => served());
      expect(response.status).toBe(400);
      expect(response.headers.get('payment-required')).not.toBeNull();
      const body = (await response.json()) as { error: { type: string; code: string } };
      expect(body.error.type).toBe('invalid_request_error');
      expect(['invalid_payment', 'unsupported_payment']).toContain(body.error.code);
      expect(fake.calls.verify).toHaveLength(0);
    },
  );

  it('error: a local check failing -> 402 with its code, no facilitator call, no lock', async () => {
    const { gate, fake } = setup();
    const wrongDomain = await paymentV2({ terms: TERMS, domain: { name: 'USD Coin' } });
    const decision = await gate.authorize(paid(wrongDomain), CONTEXT);
    expect(decision.status === 'refused' && decision.error.code).toBe('invalid_signature');
    expect(decision.status === 'refused' && decision.response.status).toBe(402);
    expect(fake.calls.verify).toHaveLength(0);
  });

  it('error: an expired authorization is refused before the lock', async () => {
    const lock = createMemoryReplayLock({ now: clock });
    const { gate } = setup({ replayLock: lock });
    const expired = await paymentV2({
      terms: TERMS,
      authorization: { validBefore: String(NOW + 1) },
    });
    const decision = await gate.authorize(paid(expired), CONTEXT);
    expect(decision.status === 'refused' && decision.error.code).toBe('authorization_expired');
    expect(lock.size).toBe(0);
  });
});

describe('createPaymentGate: a failing replay store', () => {
  it('error: the lock cannot be taken -> 503 replay_lock_unavailable, nothing served', async () => {
    const broken: ReplayLock = {
      acquire: () => Promise.reject(new Error('ECONNREFUSED 127.0.0.1:6379')),
    };
    const { gate, fake } = setup({ replayLock: broken });
    let servedCount = 0;
    const response = await gate.handle(await signed(), CONTEXT, async () => {
      servedCount += 1;
      return served();
    });
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(response.headers.get('x-payment-error')).toBe('replay_lock_unavailable');
    const body = (await response.json()) as { error: { message: string; code: string } };
    expect(body.error.code).toBe('replay_lock_unavailable');
    expect(body.error.message).not.toContain('6379');
    expect(servedCount).toBe(0);
    expect(fake.calls.verify).toHaveLength(0);
  });

  it('behavior: a release that fails leaves the answer alone (the lock just runs out)', async () => {
    const failingRelease: ReplayLock = {
      acquire: async () => () => Promise.reject(new Error('connection lost')),
    };
    const { gate, fake } = setup({ replayLock: failingRelease });
    const upstream = await gate.handle(await signed(), CONTEXT, async () =>
      served('{"error":"upstream"}', 502),
    );
    expect(upstream.status).toBe(502);
    fake.answers.verify = async () => ({ isValid: false, invalidReason: 'insufficient_funds' });
    const refused = await gate.handle(await signed(), CONTEXT, async () => served());
    expect(refused.headers.get('x-payment-error')).toBe('verification_failed');
  });
});

describe('createPaymentGate: verify-only', () => {
  it('behavior: no settlement, no receipt, and the authorization stays locked until it expires', async () => {
    const ttls: number[] = [];
    const memory = createMemoryReplayLock({ now: clock });
    const spy: ReplayLock = {
      acquire(key, ttlMs) {
        ttls.push(ttlMs);
        return memory.acquire(key, ttlMs);
      },
    };
    const { gate, fake } = setup({ verifyOnly: true, replayLock: spy });
    expect(gate.verifyOnly).toBe(true);
    const headers = await signed();
    const response = await gate.handle(headers, CONTEXT, async () => served());
    expect(response.status).toBe(200);
    expect(response.headers.get('payment-response')).toBeNull();
    expect(fake.calls.verify).toHaveLength(1);
    expect(fake.calls.settle).toHaveLength(0);
    // validBefore is NOW + 300 s: held that long and a second more.
    expect(ttls).toEqual([301_000]);
    const replay = await gate.handle(headers, CONTEXT, async () => served());
    expect(replay.status).toBe(402);
    expect(replay.headers.get('x-payment-error')).toBe('authorization_used');
  });
});

describe('createPaymentGate: prices that depend on the request', () => {
  const pricing = createPricing({ default: { outputPerMillion: '1' } });
  const contextFor = (maxTokens: number) => ({
    resource: RESOURCE,
    price: { model: 'llama3.2', body: { messages: [], max_tokens: maxTokens } },
  });

  it('behavior: the terms are those of this request', () => {
    const { gate } = setup({ price: pricing });
    expect(gate.paymentRequired(contextFor(100)).accepts[0]?.amount).toBe('100');
    expect(gate.paymentRequired(contextFor(200)).accepts[0]?.amount).toBe('200');
  });

  it('error: paid for max_tokens 100, sent with max_tokens 200 -> terms_mismatch', async () => {
    const { gate, fake } = setup({ price: pricing });
    const forHundred = gate.requirements(contextFor(100).price);
    const headers = paid(await paymentV2({ terms: forHundred }));
    const decision = await gate.authorize(headers, contextFor(200));
    expect(decision.status === 'refused' && decision.error.code).toBe('terms_mismatch');
    expect(decision.status === 'refused' && decision.response.status).toBe(402);
    // The refusal carries the terms of the request as sent.
    if (decision.status === 'refused') {
      expect((await termsOf(decision.response)).accepts[0]?.amount).toBe('200');
    }
    expect(fake.calls.verify).toHaveLength(0);
    expect((await gate.authorize(headers, contextFor(100))).status).toBe('verified');
  });
});

describe('createPaymentGate: x402 v1', () => {
  it('behavior: a v1 payment (X-PAYMENT, base-sepolia) -> v1 facilitator call and X-PAYMENT-RESPONSE', async () => {
    const { gate, fake } = setup();
    const payment = await paymentV1({ terms: TERMS });
    const response = await gate.handle(paid(payment), CONTEXT, async () => served());
    expect(response.status).toBe(200);
    const expected = {
      x402Version: 1,
      paymentPayload: payment,
      paymentRequirements: {
        scheme: 'exact',
        network: 'base-sepolia',
        maxAmountRequired: '1000',
        resource: RESOURCE,
        description: 'Chat completions',
        mimeType: 'application/json',
        payTo: PAY_TO,
        maxTimeoutSeconds: 120,
        asset: SEPOLIA.usdc.address,
        extra: { name: 'USDC', version: '2' },
      },
    };
    expect(fake.calls.verify).toEqual([expected]);
    expect(fake.calls.settle).toEqual([expected]);
    expect(response.headers.get('payment-response')).toBeNull();
    expect(decodeHeader(response.headers.get('x-payment-response')!)).toMatchObject({
      success: true,
      payer: PAYER.address,
    });
  });

  it('behavior: a v2 payment in X-PAYMENT gets both receipt headers', async () => {
    const { gate, fake } = setup();
    const payment = await paymentV2({ terms: TERMS });
    const response = await gate.handle(paid(payment, 'x-payment'), CONTEXT, async () => served());
    expect(fake.calls.verify[0]?.x402Version).toBe(2);
    expect(response.headers.get('payment-response')).not.toBeNull();
    expect(response.headers.get('x-payment-response')).toBe(
      response.headers.get('payment-response'),
    );
  });

  it('error: a v1 payment on a network v1 has no name for -> unsupported_payment', async () => {
    const terms = { ...TERMS, network: 'eip155:10', asset: SOMEONE_ELSE };
    const { gate, fake } = setup({
      network: 'eip155:10',
      asset: { address: SOMEONE_ELSE, name: 'USDC', version: '2', decimals: 6 },
    });
    const payment = await paymentV1({ terms, network: 'eip155:10' });
    const decision = await gate.authorize(paid(payment), CONTEXT);
    expect(decision.status === 'refused' && decision.error.code).toBe('unsupported_payment');
    expect(fake.calls.verify).toHaveLength(0);
  });
});
