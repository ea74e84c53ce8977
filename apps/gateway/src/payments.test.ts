/**
 * x402 payments through a real gateway socket, with a scripted facilitator on loopback (the
 * on-chain proof with anvil is payments.e2e.test.ts): 402 terms, paid requests metered as
 * their payer and recorded as payments, what is refused before any backend work, what is
 * not charged, and the answers of a failing facilitator.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FakeUpstream } from '@tollgate/backends/testing';
import { createEncryptedFetch, createPayingFetch, getPaymentReceipt } from '@tollgate/client';
import type { TenancyStore } from '@tollgate/tenancy';
import {
  decodeHeader,
  encodeHeader,
  type PaymentRequired,
  type SettleResponse,
  type VerifyResponse,
} from '@tollgate/x402';
import OpenAI from 'openai';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Gateway } from './server.js';
import { signPayment, startTestGateway, testStore } from './test-helpers.js';

vi.setConfig({ testTimeout: 30_000, hookTimeout: 30_000 });

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const MODEL = 'fake-model';
const PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
type Account = ReturnType<typeof privateKeyToAccount>;
/** A payer of its own per test, so usage and payments are told apart in the shared store. */
const newPayer = (): Account => privateKeyToAccount(generatePrivateKey());
let payer = newPayer();

/** A facilitator on loopback whose answers each test scripts. */
interface FakeFacilitator {
  url: string;
  calls: { verify: unknown[]; settle: unknown[] };
  verify: (body: unknown) => VerifyResponse | 'crash';
  settle: (body: unknown) => SettleResponse | 'crash';
}

async function startFacilitator(): Promise<FakeFacilitator> {
  const facilitator: FakeFacilitator = {
    url: '',
    calls: { verify: [], settle: [] },
    verify: () => ({ isValid: true, payer: payer.address }),
    settle: () => ({
      success: true,
      transaction: `0x${'ab'.repeat(32)}`,
      network: 'eip155:84532',
      payer: payer.address,
    }),
  };
  const server = createServer(async (request: IncomingMessage, response) => {
    let text = '';
    for await (const chunk of request) text += String(chunk);
    const body = JSON.parse(text) as unknown;
    const endpoint = request.url === '/verify' ? 'verify' : 'settle';
    facilitator.calls[endpoint].push(body);
    const answer = facilitator[endpoint](body);
    if (answer === 'crash') {
      response.writeHead(500, { 'content-type': 'text/plain' }).end('boom');
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  facilitator.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  return facilitator;
}

let store: TenancyStore;
beforeAll(async () => {
  store = await testStore();
});
beforeEach(() => {
  payer = newPayer();
});

async function start(
  payments: Record<string, unknown> = {},
  values: Record<string, unknown> = {},
): Promise<{ gateway: Gateway; upstream: FakeUpstream; facilitator: FakeFacilitator }> {
  const facilitator = await startFacilitator();
  const { gateway, upstream } = await startTestGateway(
    {
      values: {
        payments: { pay_to: PAY_TO, facilitator_url: facilitator.url, ...payments },
        ...values,
      },
      store,
    },
    (cleanup) => cleanups.push(cleanup),
  );
  return { gateway, upstream, facilitator };
}

const chatBody = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    model: MODEL,
    messages: [{ role: 'user', content: 'Say hello' }],
    max_tokens: 16,
    ...extra,
  });

async function post(
  gateway: Gateway,
  headers: Record<string, string> = {},
  body = chatBody(),
): Promise<Response> {
  return fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
}

/** The terms of a 402, from its header (checked equal to its body). */
async function termsOf(response: Response): Promise<PaymentRequired> {
  expect(response.status).toBe(402);
  const fromHeader = decodeHeader(response.headers.get('payment-required')!) as PaymentRequired;
  expect(await response.json()).toEqual(fromHeader);
  return fromHeader;
}

/** The inference requests the upstream got (the gateway also lists models and checks health). */
const inference = (upstream: FakeUpstream) =>
  upstream.requests.filter((request) => request.method === 'POST');

/** Waits until the gateway has recorded `count` payments of the current payer. */
async function paymentsOf(gateway: Gateway, count: number) {
  for (let attempt = 0; attempt < 100; attempt++) {
    await gateway.tenancy.flush();
    const rows = await gateway.tenancy.listPayments({ payer: payer.address.toLowerCase() });
    if (rows.length >= count) return rows;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`fewer than ${count} payments were recorded`);
}

async function usageOf(gateway: Gateway) {
  await gateway.tenancy.flush();
  return gateway.tenancy.usage({ tenantId: `x402:${payer.address.toLowerCase()}` });
}

describe('x402 payments through the gateway', () => {
  it('behavior: a request without key or payment gets the 402 terms in the header and the body, not cached', async () => {
    const { gateway, upstream, facilitator } = await start();
    const response = await post(gateway);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const terms = await termsOf(response);
    expect(terms).toMatchObject({
      x402Version: 2,
      resource: { url: `${gateway.url}/v1/chat/completions` },
      accepts: [
        {
          scheme: 'exact',
          network: 'eip155:84532',
          amount: '1000',
          asset: '0x036CbD53842c5426634e7929541eC2318f3dCF7e',
          payTo: PAY_TO,
          extra: { name: 'USDC', version: '2' },
        },
      ],
    });
    expect(inference(upstream)).toHaveLength(0);
    expect(facilitator.calls.verify).toHaveLength(0);
    // The model list stays free: a stranger needs it to know what to pay for.
    const models = await fetch(`${gateway.url}/v1/models`);
    expect(models.status).toBe(200);
  });

  it('behavior: a paid request is served with the receipt, metered as its payer and recorded as a payment', async () => {
    const { gateway, upstream, facilitator } = await start();
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const response = await post(gateway, { 'payment-signature': await signPayment(payer, terms!) });
    expect(response.status).toBe(200);
    const completion = (await response.json()) as {
      choices: Array<{ message: { content: string } }>;
    };
    expect(completion.choices[0]!.message.content).toBe('Hello from the fake upstream.');
    const receipt = decodeHeader(response.headers.get('payment-response')!) as SettleResponse;
    expect(receipt).toMatchObject({ success: true, network: 'eip155:84532', payer: payer.address });
    expect(inference(upstream)).toHaveLength(1);
    // The facilitator judged the server's own terms, and settled what it verified.
    expect(facilitator.calls.verify[0]).toMatchObject({
      x402Version: 2,
      paymentRequirements: terms,
    });
    expect(facilitator.calls.settle).toEqual(facilitator.calls.verify);

    const [record] = await paymentsOf(gateway, 1);
    expect(record).toMatchObject({
      requestId: response.headers.get('x-request-id'),
      payer: payer.address.toLowerCase(),
      network: 'eip155:84532',
      payTo: PAY_TO,
      amount: '1000',
      scheme: 'exact',
      x402Version: 2,
      status: 'settled',
      transaction: receipt.transaction,
      error: null,
    });
    expect(record!.usageId).toMatch(/^ad_/);
    expect(await usageOf(gateway)).toMatchObject([
      { requests: 1, totalTokens: expect.any(Number) },
    ]);
  });

  it('behavior: the price follows the model and max_tokens, and a payment for other terms is refused', async () => {
    const { gateway, upstream, facilitator } = await start({
      price: { per_request: '0.001', output_per_million: '100' },
    });
    const small = (await termsOf(await post(gateway, {}, chatBody({ max_tokens: 10 }))))
      .accepts[0]!;
    const large = (await termsOf(await post(gateway, {}, chatBody({ max_tokens: 1000 }))))
      .accepts[0]!;
    // $100 per million output tokens: 10 tokens cost 1000 units more than none, 1000 tokens 100000.
    expect(small.amount).toBe(String(1000 + 1000));
    expect(large.amount).toBe(String(1000 + 100_000));
    // Paid for 10 tokens, asked for 1000.
    const response = await post(
      gateway,
      { 'payment-signature': await signPayment(payer, small) },
      chatBody({ max_tokens: 1000 }),
    );
    expect(response.status).toBe(402);
    expect(response.headers.get('x-payment-error')).toBe('terms_mismatch');
    expect(inference(upstream)).toHaveLength(0);
    expect(facilitator.calls.verify).toHaveLength(0);
  });

  it('behavior: with completion tokens priced, a paid request without max_tokens is capped at the tokens it paid for', async () => {
    const { gateway, upstream } = await start({ price: { output_per_million: '1' } });
    const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] });
    const [terms] = (await termsOf(await post(gateway, {}, body))).accepts;
    // tenancy.default_max_tokens (1024) at $1 per million: 1024 units.
    expect(terms!.amount).toBe('1024');
    const response = await post(
      gateway,
      { 'payment-signature': await signPayment(payer, terms!) },
      body,
    );
    expect(response.status).toBe(200);
    expect(inference(upstream)[0]!.body).toMatchObject({ max_tokens: 1024 });
  });

  it('error: a replayed payment is refused without backend or facilitator work', async () => {
    const { gateway, upstream, facilitator } = await start();
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const header = await signPayment(payer, terms!);
    expect((await post(gateway, { 'payment-signature': header })).status).toBe(200);
    const replay = await post(gateway, { 'payment-signature': header });
    expect(replay.status).toBe(402);
    expect(replay.headers.get('x-payment-error')).toBe('authorization_used');
    expect((await termsOf(replay)).error).toMatch(/already used/);
    expect(inference(upstream)).toHaveLength(1);
    expect(facilitator.calls.verify).toHaveLength(1);
  });

  it('error: two concurrent requests with the same authorization: exactly one is served', async () => {
    const { gateway, upstream, facilitator } = await start();
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const header = await signPayment(payer, terms!);
    const statuses = await Promise.all(
      Array.from({ length: 4 }, () =>
        post(gateway, { 'payment-signature': header }).then((r) => r.status),
      ),
    );
    expect(statuses.sort()).toEqual([200, 402, 402, 402]);
    expect(inference(upstream)).toHaveLength(1);
    expect(facilitator.calls.settle).toHaveLength(1);
  });

  it.each([
    ['a wrong amount', { value: '999' }, 'amount_mismatch'],
    [
      'an expired authorization',
      { validBefore: Math.floor(Date.now() / 1000) - 1 },
      'authorization_expired',
    ],
    ['the wrong domain name', { domainName: 'USD Coin' }, 'invalid_signature'],
    ['terms the gateway never offered', { accepted: { amount: '1' } }, 'terms_mismatch'],
  ] as const)(
    'error: %s is refused with 402 before any backend work',
    async (_name, change, code) => {
      const { gateway, upstream, facilitator } = await start();
      const [terms] = (await termsOf(await post(gateway))).accepts;
      const response = await post(gateway, {
        'payment-signature': await signPayment(payer, terms!, change),
      });
      expect(response.status).toBe(402);
      expect(response.headers.get('x-payment-error')).toBe(code);
      expect(response.headers.get('payment-required')).toBeTruthy();
      expect(inference(upstream)).toHaveLength(0);
      expect(facilitator.calls.verify).toHaveLength(0);
    },
  );

  it('error: a tampered signature and a malformed header are refused (402 and 400)', async () => {
    const { gateway, upstream } = await start();
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const payment = decodeHeader(await signPayment(payer, terms!)) as {
      payload: { signature: string };
    };
    const signature = payment.payload.signature;
    payment.payload.signature = `${signature.slice(0, 10)}${signature[10] === '0' ? '1' : '0'}${signature.slice(11)}`;
    const tampered = await post(gateway, { 'payment-signature': encodeHeader(payment) });
    expect(tampered.status).toBe(402);
    expect(tampered.headers.get('x-payment-error')).toBe('invalid_signature');
    const garbage = await post(gateway, { 'payment-signature': 'not base64!' });
    expect(garbage.status).toBe(400);
    expect(await garbage.json()).toMatchObject({ error: { code: 'invalid_payment' } });
    expect(inference(upstream)).toHaveLength(0);
  });

  it('behavior: an upstream error is not charged: no settlement, the error passes through, the authorization stays usable', async () => {
    const { gateway, upstream, facilitator } = await start();
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const header = await signPayment(payer, terms!);
    upstream.setBehavior({ errorStatus: 500, errorMessage: 'the model crashed' });
    const failed = await post(gateway, { 'payment-signature': header });
    expect(failed.status).toBeGreaterThanOrEqual(500);
    expect(failed.headers.get('payment-response')).toBeNull();
    expect(facilitator.calls.settle).toHaveLength(0);
    upstream.setBehavior({ errorStatus: undefined });
    // Nothing was charged, so the same authorization may pay for the retry.
    const retried = await post(gateway, { 'payment-signature': header });
    expect(retried.status).toBe(200);
    expect(facilitator.calls.settle).toHaveLength(1);
  });

  it('error: a refused verification (402 with its reason) and an unreachable facilitator (503) serve nothing', async () => {
    const { gateway, upstream, facilitator } = await start();
    const [terms] = (await termsOf(await post(gateway))).accepts;
    facilitator.verify = () => ({
      isValid: false,
      invalidReason: 'insufficient_funds',
      payer: payer.address,
    });
    const refused = await post(gateway, { 'payment-signature': await signPayment(payer, terms!) });
    expect(refused.status).toBe(402);
    expect(refused.headers.get('x-payment-error')).toBe('verification_failed');
    expect((await termsOf(refused)).error).toContain('insufficient_funds');
    facilitator.verify = () => 'crash';
    const down = await post(gateway, { 'payment-signature': await signPayment(payer, terms!) });
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ error: { code: 'facilitator_unavailable' } });
    expect(inference(upstream)).toHaveLength(0);
  });

  it('error: a failed settlement answers 402 with the receipt, and the request is recorded as failed, not served', async () => {
    const { gateway, facilitator } = await start();
    const [terms] = (await termsOf(await post(gateway))).accepts;
    facilitator.settle = () => ({
      success: false,
      errorReason: 'insufficient_funds',
      transaction: '',
      network: 'eip155:84532',
      payer: payer.address,
    });
    const response = await post(gateway, { 'payment-signature': await signPayment(payer, terms!) });
    expect(response.status).toBe(402);
    expect(decodeHeader(response.headers.get('payment-response')!)).toMatchObject({
      success: false,
      errorReason: 'insufficient_funds',
    });
    expect(JSON.stringify(await termsOf(response))).not.toContain('Hello from the fake upstream');
    const [record] = await paymentsOf(gateway, 1);
    expect(record).toMatchObject({
      status: 'failed',
      error: 'insufficient_funds',
      transaction: null,
    });
  });

  it('behavior: verify-only serves without settling and refuses the replay', async () => {
    const { gateway, facilitator } = await start({ verify_only: true });
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const header = await signPayment(payer, terms!);
    const served = await post(gateway, { 'payment-signature': header });
    expect(served.status).toBe(200);
    expect(served.headers.get('payment-response')).toBeNull();
    expect((await post(gateway, { 'payment-signature': header })).status).toBe(402);
    expect(facilitator.calls.settle).toHaveLength(0);
    const [record] = await paymentsOf(gateway, 1);
    expect(record).toMatchObject({ status: 'verified', transaction: null });
  });

  it('error: payer_limits hold for each paying address: over them, a 429 and nothing is charged', async () => {
    const { gateway, facilitator } = await start({ payer_limits: { requests_per_minute: 1 } });
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const first = await post(gateway, { 'payment-signature': await signPayment(payer, terms!) });
    expect(first.status).toBe(200);
    expect(first.headers.get('x-ratelimit-limit-requests')).toBe('1');
    const over = await post(gateway, { 'payment-signature': await signPayment(payer, terms!) });
    expect(over.status).toBe(429);
    expect(((await over.json()) as { error: { code: string } }).error.code).toBe(
      'rate_limit_exceeded',
    );
    expect(over.headers.get('payment-response')).toBeNull();
    expect(facilitator.calls.settle).toHaveLength(1);
    // Another address has its own allowance.
    const other = newPayer();
    const theirs = await post(gateway, { 'payment-signature': await signPayment(other, terms!) });
    expect(theirs.status).toBe(200);
    expect(facilitator.calls.settle).toHaveLength(2);
  });

  it('behavior: key holders are metered, not charged, unless key_holders_pay', async () => {
    const { gateway, facilitator } = await start({}, { api_keys: ['sk-holder'] });
    const withKey = await post(gateway, { authorization: 'Bearer sk-holder' });
    expect(withKey.status).toBe(200);
    expect(withKey.headers.get('payment-response')).toBeNull();
    const { gateway: strict } = await start({ key_holders_pay: true }, { api_keys: ['sk-holder'] });
    const unpaid = await post(strict, { authorization: 'Bearer sk-holder' });
    const [terms] = (await termsOf(unpaid)).accepts;
    const paid = await post(strict, {
      authorization: 'Bearer sk-holder',
      'payment-signature': await signPayment(payer, terms!),
    });
    expect(paid.status).toBe(200);
    expect(paid.headers.get('payment-response')).toBeTruthy();
    // A wrong key is still a 401, payment or not.
    expect((await post(strict, { authorization: 'Bearer sk-wrong' })).status).toBe(401);
    expect(facilitator.calls.settle).toHaveLength(0);
  });

  it('behavior: a v1 payment in X-PAYMENT is verified against v1 terms and answered with X-PAYMENT-RESPONSE', async () => {
    const { gateway, facilitator } = await start();
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const v2 = decodeHeader(await signPayment(payer, terms!)) as { payload: unknown };
    const v1 = encodeHeader({
      x402Version: 1,
      scheme: 'exact',
      network: 'base-sepolia',
      payload: v2.payload,
    });
    const response = await post(gateway, { 'x-payment': v1 });
    expect(response.status).toBe(200);
    expect(decodeHeader(response.headers.get('x-payment-response')!)).toMatchObject({
      success: true,
    });
    expect(facilitator.calls.verify[0]).toMatchObject({
      x402Version: 1,
      paymentRequirements: {
        network: 'base-sepolia',
        maxAmountRequired: '1000',
        resource: `${gateway.url}/v1/chat/completions`,
      },
    });
  });

  it('behavior: GET /admin/payments lists payments by payer and status', async () => {
    const { gateway } = await start({}, { admin_key: 'admin-secret' });
    const [terms] = (await termsOf(await post(gateway))).accepts;
    const served = await post(gateway, { 'payment-signature': await signPayment(payer, terms!) });
    expect(served.status).toBe(200);
    await paymentsOf(gateway, 1);
    const admin = (path: string) =>
      fetch(`${gateway.url}/admin${path}`, { headers: { authorization: 'Bearer admin-secret' } });
    const listed = await admin(`/payments?payer=${payer.address}&status=settled`);
    expect(listed.status).toBe(200);
    expect(await listed.json()).toMatchObject({
      object: 'list',
      data: [
        {
          payer: payer.address.toLowerCase(),
          request_id: served.headers.get('x-request-id'),
          amount: '1000',
          status: 'settled',
          usage_id: expect.stringMatching(/^ad_/),
        },
      ],
    });
    const bad = await admin('/payments?status=paid');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { param: 'status' } });
  });

  it('behavior: an Oblivious HTTP request carries its payment inside; the 402 and the receipt travel back encrypted', async () => {
    const { gateway, upstream, facilitator } = await start();
    const wire: Array<{ url: string; headers: Headers; status: number }> = [];
    const watched: typeof fetch = async (input, init) => {
      const request = new Request(input, init);
      const response = await fetch(request);
      wire.push({ url: request.url, headers: request.headers, status: response.status });
      return response;
    };
    let receipt: SettleResponse | undefined;
    const openai = new OpenAI({
      baseURL: `${gateway.url}/v1`,
      apiKey: 'x402',
      defaultHeaders: { Authorization: null },
      maxRetries: 0,
      fetch: async (input, init) => {
        const response = await createPayingFetch({
          signer: payer,
          maxPrice: '0.01',
          fetch: createEncryptedFetch({ gatewayUrl: gateway.url, fetch: watched }),
        })(input, init);
        receipt = getPaymentReceipt(response);
        return response;
      },
    });
    const stream = await openai.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toBe('Hello from the fake upstream.');
    expect(receipt).toMatchObject({ success: true, payer: payer.address });
    // On the wire: only encapsulated POSTs (and the key fetch), all answered 200; the 402 and
    // the payment headers were inside.
    const posts = wire.filter(
      (entry) =>
        entry.url.endsWith('/.well-known/ohttp-gateway') &&
        entry.headers.get('content-type')?.includes('message'),
    );
    expect(posts).toHaveLength(2);
    for (const entry of wire) {
      expect(entry.status).toBe(200);
      expect(entry.headers.get('payment-signature')).toBeNull();
    }
    expect(inference(upstream)).toHaveLength(1);
    expect(facilitator.calls.settle).toHaveLength(1);
  });

  it('behavior: CORS lets a browser send payments and read the terms and the receipt', async () => {
    const { gateway } = await start(
      {},
      { cors: { origins: ['https://app.example'], allow_headers: ['content-type'] } },
    );
    const preflight = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,payment-signature',
      },
    });
    const allowed = preflight.headers.get('access-control-allow-headers')!.toLowerCase();
    expect(allowed).toContain('payment-signature');
    expect(allowed).toContain('x-payment');
    const response = await post(gateway, { origin: 'https://app.example' });
    const exposed = response.headers.get('access-control-expose-headers')!.toLowerCase();
    for (const name of ['payment-required', 'payment-response', 'x-payment-response']) {
      expect(exposed).toContain(name);
    }
  });
});
