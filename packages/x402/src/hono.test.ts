import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { x402 } from './hono.js';
import { createPaymentGate, createPricing, decodeHeader, type PaymentRequired } from './index.js';
import {
  clock,
  controlledStream,
  fakeFacilitator,
  PAY_TO,
  PAYER,
  paid,
  paymentV2,
  sepoliaTerms,
} from './test-fixtures.js';

const TERMS = sepoliaTerms('1000', 120);

function app(options: { onSettle?: () => void } = {}) {
  const fake = fakeFacilitator();
  const settle = fake.answers.settle;
  fake.answers.settle = async (request) => {
    options.onSettle?.();
    return settle(request);
  };
  const body = controlledStream();
  const hono = new Hono();
  let thrown = 0;
  hono.onError((error, c) => c.json({ error: error.message }, 500));
  hono.use(
    '/paid/*',
    x402({ payTo: PAY_TO, price: '0.001', facilitator: fake.facilitator, now: clock }),
  );
  hono.get('/paid/data', (c) => c.json({ data: 'premium' }));
  hono.get('/paid/fail', (c) => c.json({ error: 'upstream failed' }, 500));
  hono.get('/paid/throw', () => {
    thrown += 1;
    throw new Error('handler crashed');
  });
  hono.get(
    '/paid/stream',
    () => new Response(body.stream, { headers: { 'content-type': 'text/event-stream' } }),
  );
  hono.get(
    '/paid/sized',
    () => new Response('hello', { headers: { 'content-length': '5', 'x-upstream': 'yes' } }),
  );
  hono.get('/free', (c) => c.text('free'));
  return { hono, fake, body, thrownCount: () => thrown };
}

const signed = async () => paid(await paymentV2({ terms: TERMS }));

describe('x402 middleware', () => {
  it('behavior: an unpaid request gets 402 with the terms for its URL', async () => {
    const { hono } = app();
    const response = await hono.request('/paid/data');
    expect(response.status).toBe(402);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const terms = decodeHeader(response.headers.get('payment-required')!) as PaymentRequired;
    expect(terms.resource.url).toBe('http://localhost/paid/data');
    expect(terms.accepts).toEqual([TERMS]);
    expect(await response.json()).toEqual(terms);
    expect((await hono.request('/free')).status).toBe(200);
  });

  it('behavior: a paid request runs the handler, settles, and carries PAYMENT-RESPONSE', async () => {
    const { hono, fake } = app();
    const response = await hono.request('/paid/data', { headers: await signed() });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ data: 'premium' });
    expect(fake.calls.settle).toHaveLength(1);
    expect(decodeHeader(response.headers.get('payment-response')!)).toMatchObject({
      success: true,
      network: 'eip155:84532',
      payer: PAYER.address,
    });
  });

  it('behavior: a replayed payment is refused without running the handler', async () => {
    const { hono } = app();
    const headers = await signed();
    expect((await hono.request('/paid/data', { headers })).status).toBe(200);
    const replay = await hono.request('/paid/data', { headers });
    expect(replay.status).toBe(402);
    expect(replay.headers.get('x-payment-error')).toBe('authorization_used');
  });

  it('behavior: a handler answering 500 is not charged, and the payment can be used again', async () => {
    const { hono, fake } = app();
    const headers = await signed();
    const failed = await hono.request('/paid/fail', { headers });
    expect(failed.status).toBe(500);
    expect(await failed.json()).toEqual({ error: 'upstream failed' });
    expect(failed.headers.get('payment-response')).toBeNull();
    expect(fake.calls.settle).toHaveLength(0);
    expect((await hono.request('/paid/data', { headers })).status).toBe(200);
    expect(fake.calls.settle).toHaveLength(1);
  });

  it('behavior: a handler that throws (turned into 500 by onError) is not charged', async () => {
    const { hono, fake, thrownCount } = app();
    const headers = await signed();
    const response = await hono.request('/paid/throw', { headers });
    expect(response.status).toBe(500);
    expect(thrownCount()).toBe(1);
    expect(fake.calls.settle).toHaveLength(0);
    expect((await hono.request('/paid/data', { headers })).status).toBe(200);
  });

  it('behavior: a streamed answer is settled before its first chunk is read', async () => {
    const events: string[] = [];
    const { hono, body } = app({ onSettle: () => events.push('settled') });
    const response = await hono.request('/paid/stream', { headers: await signed() });
    events.push('answered');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/event-stream');
    expect(response.headers.get('payment-response')).not.toBeNull();
    const reader = response.body!.getReader();
    body.push('data: {"delta":"Hel"}\n\n');
    const first = await reader.read();
    events.push('first chunk');
    expect(new TextDecoder().decode(first.value)).toBe('data: {"delta":"Hel"}\n\n');
    expect(events).toEqual(['settled', 'answered', 'first chunk']);
    body.push('data: [DONE]\n\n');
    body.close();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('data: [DONE]\n\n');
    expect((await reader.read()).done).toBe(true);
  });

  it("error: a failed settlement answers 402 without the handler's headers", async () => {
    const { hono, fake } = app();
    fake.answers.settle = async () => ({
      success: false,
      errorReason: 'insufficient_funds',
      transaction: '',
      network: 'eip155:84532',
    });
    const response = await hono.request('/paid/sized', { headers: await signed() });
    expect(response.status).toBe(402);
    expect(response.headers.get('x-upstream')).toBeNull();
    expect(response.headers.get('content-length')).not.toBe('5');
    expect(response.headers.get('payment-response')).not.toBeNull();
    const terms = (await response.json()) as PaymentRequired;
    expect(terms.accepts).toEqual([TERMS]);
  });

  it('behavior: the price may come from the body, which the handler can still read', async () => {
    const fake = fakeFacilitator();
    const gate = createPaymentGate({
      payTo: PAY_TO,
      price: createPricing({ default: { outputPerMillion: '1' } }),
      facilitator: fake.facilitator,
      now: clock,
    });
    const hono = new Hono();
    hono.use(
      '/v1/*',
      x402({
        gate,
        priceRequest: async (c) => {
          const body = (await c.req.json()) as { model?: string };
          return { model: body.model, body };
        },
        resource: () => 'https://gateway.example/v1/chat/completions',
      }),
    );
    hono.post('/v1/chat/completions', async (c) => c.json({ echo: await c.req.json() }));
    const body = { model: 'llama3.2', messages: [], max_tokens: 250 };
    const init = (headers: Headers) => ({
      method: 'POST',
      headers,
      body: JSON.stringify(body),
    });

    const challenge = await hono.request('/v1/chat/completions', init(new Headers()));
    const terms = (await challenge.json()) as PaymentRequired;
    expect(terms.resource.url).toBe('https://gateway.example/v1/chat/completions');
    expect(terms.accepts[0]?.amount).toBe('250');

    const headers = paid(await paymentV2({ terms: terms.accepts[0]! }));
    const response = await hono.request('/v1/chat/completions', init(headers));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ echo: body });
  });
});
