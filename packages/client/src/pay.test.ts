/**
 * The paying fetch against a fake x402 seller in a function (no sockets): the seller reads the
 * payment with @tollgate/x402's readPayment and checks it with checkPayment, a real EIP-712
 * recovery, against its own terms; composed with the encrypted fetch it sits behind the fake
 * gateway of the encrypted client's tests.
 */
import {
  checkPayment,
  type DecodedPayment,
  encodeHeader,
  NETWORKS,
  type PaymentRequirements,
  readPayment,
  receiptHeaders,
  toRequirementsV1,
} from '@tollgate/x402';
import OpenAI from 'openai';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { describe, expect, it } from 'vitest';
import {
  CLIENT_ERROR_CODES,
  createEncryptedFetch,
  createPayingFetch,
  getPaymentReceipt,
  isClientError,
  isPaymentError,
  PAYMENT_ERROR_CODES,
  type PayingFetchOptions,
  type PaymentTerms,
} from './index.js';
import { fakeGateway, GATEWAY, KEYS_PATH } from './testing/fake-gateway.js';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const NOW_SECONDS = NOW / 1000;
const SELLER = 'https://seller.example';
const PAY_TO = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';
const TRANSACTION = `0x${'ab'.repeat(32)}`;
const sepolia = NETWORKS.find((network) => network.id === 'eip155:84532')!;
const mainnet = NETWORKS.find((network) => network.id === 'eip155:8453')!;
const account = privateKeyToAccount(generatePrivateKey());
const decoder = new TextDecoder();

/** v2 terms for Base Sepolia USDC, $0.001 unless told. */
function sepoliaTerms(amount = '1000'): PaymentRequirements {
  return {
    scheme: 'exact',
    network: sepolia.id,
    amount,
    asset: sepolia.usdc.address,
    payTo: PAY_TO,
    maxTimeoutSeconds: 60,
    extra: { name: sepolia.usdc.name, version: sepolia.usdc.version },
  };
}

function mainnetTerms(amount = '1000'): PaymentRequirements {
  return {
    ...sepoliaTerms(amount),
    network: mainnet.id,
    asset: mainnet.usdc.address,
    extra: { name: mainnet.usdc.name, version: mainnet.usdc.version },
  };
}

interface Seen {
  method: string;
  url: string;
  headers: Headers;
  body: string;
}

interface SellerSetup {
  /** The options of its 402 (v2: also in the PAYMENT-REQUIRED header; v1: the body only). */
  accepts: unknown[];
  version?: 1 | 2;
  /** The terms a payment is checked against (v2 shape). @default accepts[0] */
  price?: PaymentRequirements;
  /** Answer 402 whatever the payment. */
  refuse?: boolean;
}

/** An x402 seller: 402 with terms, then the payment checked for real; a receipt on success. */
function fakeSeller(setup: SellerSetup) {
  const version = setup.version ?? 2;
  const seen: Seen[] = [];
  const payments: DecodedPayment[] = [];
  const required =
    version === 2
      ? {
          x402Version: 2,
          error: 'Payment required',
          resource: { url: `${SELLER}/v1/chat/completions`, mimeType: 'application/json' },
          accepts: setup.accepts,
        }
      : { x402Version: 1, error: 'X-PAYMENT header is required', accepts: setup.accepts };

  const paymentRequired = (error?: string) =>
    new Response(JSON.stringify(error ? { ...required, error } : required), {
      status: 402,
      headers: {
        'content-type': 'application/json',
        ...(version === 2 ? { 'payment-required': encodeHeader(required) } : {}),
      },
    });

  async function answer(request: Seen): Promise<Response> {
    seen.push(request);
    let payment: DecodedPayment | undefined;
    try {
      payment = readPayment(request.headers);
    } catch (error) {
      return Response.json({ error: (error as Error).message }, { status: 400 });
    }
    if (payment === undefined) return paymentRequired();
    payments.push(payment);
    if (setup.refuse) return paymentRequired('insufficient_funds');
    try {
      await checkPayment(payment, setup.price ?? (setup.accepts[0] as PaymentRequirements), {
        nowSeconds: NOW_SECONDS,
      });
    } catch (error) {
      return paymentRequired((error as Error).message);
    }
    const receipt = {
      success: true,
      transaction: TRANSACTION,
      network: payment.raw.x402Version === 1 ? payment.raw.network : payment.network,
      payer: payment.payload.authorization.from,
    };
    return new Response(JSON.stringify({ echo: request.body }), {
      headers: { 'content-type': 'application/json', ...receiptHeaders(receipt, payment) },
    });
  }

  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const request = new Request(input, init);
    return answer({
      method: request.method,
      url: request.url,
      headers: request.headers,
      body: await request.text(),
    });
  }) as typeof globalThis.fetch;

  return { fetch, answer, seen, payments, required };
}

function paying(seller: { fetch: typeof fetch }, options: Partial<PayingFetchOptions> = {}) {
  return createPayingFetch({
    signer: account,
    maxPrice: '0.01',
    fetch: seller.fetch,
    now: () => NOW,
    ...options,
  });
}

function chat(): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'llama3.2', messages: [{ role: 'user', content: 'Hello' }] }),
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

describe('createPayingFetch', () => {
  it('behavior: pays a 402 once, with a v2 payment the seller verifies, and returns the paid answer with its receipt', async () => {
    // The first option is mainnet, which the default networks do not pay on.
    const chosen = { ...sepoliaTerms(), extra: { ...sepoliaTerms().extra, note: 'kept' } };
    const seller = fakeSeller({ accepts: [mainnetTerms(), chosen], price: sepoliaTerms() });
    const response = await paying(seller)(`${SELLER}/v1/chat/completions`, chat());

    expect(response.status).toBe(200);
    expect(seller.seen).toHaveLength(2);
    expect(seller.seen[0]!.headers.get('payment-signature')).toBeNull();
    const [payment] = seller.payments;
    expect(payment!.header).toBe('payment-signature');
    expect(payment!.raw).toMatchObject({
      x402Version: 2,
      resource: seller.required.resource,
      accepted: chosen,
    });
    expect(payment!.payload.authorization).toMatchObject({
      from: account.address,
      to: PAY_TO,
      value: '1000',
      validAfter: String(NOW_SECONDS - 600),
      validBefore: String(NOW_SECONDS + 60),
    });
    expect(payment!.payload.authorization.nonce).toMatch(/^0x[0-9a-f]{64}$/);
    expect(getPaymentReceipt(response)).toEqual({
      success: true,
      transaction: TRANSACTION,
      network: 'eip155:84532',
      payer: account.address,
    });
  });

  it('behavior: each paid call signs a fresh nonce', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms()] });
    const payingFetch = paying(seller);
    await payingFetch(`${SELLER}/v1/models`);
    await payingFetch(`${SELLER}/v1/models`);
    const [first, second] = seller.payments.map((payment) => payment.payload.authorization.nonce);
    expect(first).not.toBe(second);
  });

  it('behavior: the body of a POST is sent again identically, a streamed body too', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms()] });
    const payingFetch = paying(seller);
    const init = chat();
    const response = await payingFetch(`${SELLER}/v1/chat/completions`, init);
    expect(response.status).toBe(200);
    expect(seller.seen.map((request) => [request.method, request.body])).toEqual([
      ['POST', init.body],
      ['POST', init.body],
    ]);
    expect(seller.seen[1]!.headers.get('content-type')).toBe('application/json');

    const pieces = ['{"model":"llama3.2",', '"messages":[]}'];
    const streamed = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const piece of pieces) controller.enqueue(new TextEncoder().encode(piece));
        controller.close();
      },
    });
    const streamedResponse = await payingFetch(`${SELLER}/v1/chat/completions`, {
      method: 'POST',
      body: streamed,
    });
    expect(streamedResponse.status).toBe(200);
    expect(seller.seen.slice(2).map((request) => request.body)).toEqual([
      pieces.join(''),
      pieces.join(''),
    ]);
  });

  it('behavior: takes a Request as input, keeping its method, headers and body', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms()] });
    const request = new Request(`${SELLER}/v1/chat/completions`, {
      ...chat(),
      headers: { 'x-trace': '1' },
    });
    const response = await paying(seller)(request);
    expect(response.status).toBe(200);
    expect(seller.seen[1]!.method).toBe('POST');
    expect(seller.seen[1]!.headers.get('x-trace')).toBe('1');
    expect(seller.seen[1]!.body).toBe(seller.seen[0]!.body);
  });

  it('error: a price above maxPrice is price_above_maximum, with the 402 attached and no second request', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms('20000')] });
    const error = await rejection(paying(seller)(`${SELLER}/v1/chat/completions`, chat()));
    expect(isPaymentError(error) && error.code).toBe('price_above_maximum');
    if (!isPaymentError(error)) return;
    expect(error.message).toContain('0.02 USDC (20000 atomic units)');
    expect(error.message).toContain('0.01 USDC (10000 atomic units)');
    expect(error.terms?.amount).toBe('20000');
    expect(error.response.status).toBe(402);
    expect(((await error.response.json()) as { x402Version: number }).x402Version).toBe(2);
    expect(seller.seen).toHaveLength(1);
    expect(isClientError(error)).toBe(true);
  });

  it('behavior: maxPrice as a bigint of atomic units; a price equal to it is paid', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms('2500')] });
    const exact = await paying(seller, { maxPrice: 2500n })(`${SELLER}/v1/models`);
    expect(exact.status).toBe(200);
    const error = await rejection(paying(seller, { maxPrice: 2499n })(`${SELLER}/v1/models`));
    expect(isPaymentError(error) && error.code).toBe('price_above_maximum');
  });

  it('behavior: the first option that fits maxPrice is paid, not a dearer one before it', async () => {
    const seller = fakeSeller({
      accepts: [sepoliaTerms('50000'), sepoliaTerms('3000')],
      price: sepoliaTerms('3000'),
    });
    const response = await paying(seller)(`${SELLER}/v1/models`);
    expect(response.status).toBe(200);
    expect(seller.payments[0]!.payload.authorization.value).toBe('3000');
  });

  it('error: an unknown network, another asset or another scheme is no_supported_terms', async () => {
    const options: unknown[] = [
      { ...sepoliaTerms(), network: 'eip155:1' },
      { ...sepoliaTerms(), asset: '0x1111111111111111111111111111111111111111' },
      { ...sepoliaTerms(), scheme: 'upto' },
      { ...sepoliaTerms(), payTo: 'somebody' },
      { ...sepoliaTerms(), maxTimeoutSeconds: 0 },
      'not an option',
    ];
    for (const option of options) {
      const seller = fakeSeller({ accepts: [option] });
      const error = await rejection(paying(seller)(`${SELLER}/v1/models`));
      expect(isPaymentError(error) && error.code, JSON.stringify(option)).toBe(
        'no_supported_terms',
      );
      expect(seller.seen).toHaveLength(1);
    }
    const none = await rejection(paying(fakeSeller({ accepts: [] }))(`${SELLER}/v1/models`));
    expect(isPaymentError(none) && none.code).toBe('no_supported_terms');
  });

  it('behavior: mainnet is paid only when named in networks, under its own USDC domain', async () => {
    const seller = fakeSeller({ accepts: [mainnetTerms()] });
    const refused = await rejection(paying(seller)(`${SELLER}/v1/models`));
    expect(isPaymentError(refused) && refused.code).toBe('no_supported_terms');
    expect(isPaymentError(refused) && refused.message).toContain('eip155:84532');

    const response = await paying(seller, { networks: ['base'] })(`${SELLER}/v1/models`);
    expect(response.status).toBe(200);
    expect(seller.payments[0]!.network).toBe('eip155:8453');
  });

  it('behavior: v1 terms in the body are paid with X-PAYMENT and a v1 payload', async () => {
    const v1 = toRequirementsV1(
      sepoliaTerms('1500'),
      { url: `${SELLER}/v1/models`, description: 'models' },
      'base-sepolia',
    );
    const seller = fakeSeller({ accepts: [v1], version: 1, price: sepoliaTerms('1500') });
    const terms: PaymentTerms[] = [];
    const response = await paying(seller, {
      onPayment: (offer) => {
        terms.push(offer);
      },
    })(`${SELLER}/v1/models`);

    expect(response.status).toBe(200);
    expect(seller.seen[1]!.headers.get('payment-signature')).toBeNull();
    const [payment] = seller.payments;
    expect(payment!.header).toBe('x-payment');
    expect(payment!.raw).toMatchObject({
      x402Version: 1,
      scheme: 'exact',
      network: 'base-sepolia',
    });
    expect(payment!.payload.authorization.value).toBe('1500');
    expect(terms[0]).toMatchObject({
      x402Version: 1,
      network: 'eip155:84532',
      amount: '1500',
      resource: { url: `${SELLER}/v1/models`, description: 'models' },
    });
    expect(getPaymentReceipt(response)).toMatchObject({ success: true, network: 'base-sepolia' });
  });

  it('behavior: a second 402 is returned as it is, after exactly two requests', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms()], refuse: true });
    const response = await paying(seller)(`${SELLER}/v1/models`);
    expect(response.status).toBe(402);
    expect(((await response.json()) as { error: string }).error).toBe('insufficient_funds');
    expect(seller.seen).toHaveLength(2);
    expect(seller.payments).toHaveLength(1);
  });

  it('behavior: onPayment sees the terms; false refuses with payment_declined, anything else pays', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms()] });
    const seen: PaymentTerms[] = [];
    const error = await rejection(
      paying(seller, {
        onPayment: async (terms) => {
          seen.push(terms);
          return false;
        },
      })(`${SELLER}/v1/models`),
    );
    expect(isPaymentError(error) && error.code).toBe('payment_declined');
    expect(seller.seen).toHaveLength(1);
    expect(seen).toEqual([
      { x402Version: 2, ...sepoliaTerms(), resource: seller.required.resource },
    ]);

    const paid = await paying(seller, { onPayment: () => true })(`${SELLER}/v1/models`);
    expect(paid.status).toBe(200);
  });

  it('behavior: answers other than 402, a 402 without x402 terms, and already-paid requests pass through untouched', async () => {
    for (const status of [200, 401, 500]) {
      const answer = new Response('as is', { status });
      const calls: Request[] = [];
      const payingFetch = createPayingFetch({
        signer: account,
        maxPrice: '0.01',
        fetch: (async (input: Request) => {
          calls.push(input);
          return answer;
        }) as typeof fetch,
      });
      expect(await payingFetch(`${SELLER}/v1/models`)).toBe(answer);
      expect(calls).toHaveLength(1);
    }

    const plain402 = new Response('{"error":"quota"}', { status: 402 });
    const payingFetch = createPayingFetch({
      signer: account,
      maxPrice: '0.01',
      fetch: (async () => plain402) as typeof fetch,
    });
    expect(await payingFetch(`${SELLER}/v1/models`)).toBe(plain402);

    const seller = fakeSeller({ accepts: [sepoliaTerms()] });
    const response = await paying(seller)(`${SELLER}/v1/models`, {
      headers: { 'payment-signature': encodeHeader({ x402Version: 2, paid: 'by the caller' }) },
    });
    expect(response.status).toBe(400);
    expect(seller.seen).toHaveLength(1);
  });

  it('error: a signer that fails or returns no signature is signing_failed, and nothing is sent again', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms()] });
    const refusal = new Error('user rejected the request');
    const failing = await rejection(
      paying(seller, {
        signer: { address: account.address, signTypedData: () => Promise.reject(refusal) },
      })(`${SELLER}/v1/models`),
    );
    expect(isPaymentError(failing) && failing.code).toBe('signing_failed');
    expect(isPaymentError(failing) && failing.cause).toBe(refusal);

    const garbage = await rejection(
      paying(seller, {
        signer: {
          address: account.address,
          signTypedData: async () => 'nope' as `0x${string}`,
        },
      })(`${SELLER}/v1/models`),
    );
    expect(isPaymentError(garbage) && garbage.code).toBe('signing_failed');
    expect(seller.seen).toHaveLength(2);
  });

  it('behavior: with the openai SDK, a paid completion comes back as the SDK expects', async () => {
    const seller = fakeSeller({ accepts: [sepoliaTerms()] });
    const openai = new OpenAI({
      baseURL: `${SELLER}/v1`,
      apiKey: 'unused',
      maxRetries: 0,
      fetch: paying({
        fetch: (async (input: string | URL | Request, init?: RequestInit) => {
          const response = await seller.fetch(input, init);
          if (response.status !== 200) return response;
          return Response.json(
            {
              id: 'chatcmpl-1',
              object: 'chat.completion',
              created: 0,
              model: 'llama3.2',
              choices: [
                {
                  index: 0,
                  finish_reason: 'stop',
                  message: { role: 'assistant', content: 'paid for' },
                },
              ],
            },
            { headers: response.headers },
          );
        }) as typeof fetch,
      }),
    });
    const { data, response } = await openai.chat.completions
      .create({ model: 'llama3.2', messages: [{ role: 'user', content: 'Hello' }] })
      .withResponse();
    expect(data.choices[0]?.message.content).toBe('paid for');
    expect(getPaymentReceipt(response)?.transaction).toBe(TRANSACTION);
    expect(seller.payments).toHaveLength(1);
  });

  it('behavior: composed outside the encrypting fetch, the 402 and the payment travel encrypted', async () => {
    const gateway = fakeGateway();
    const seller = fakeSeller({ accepts: [sepoliaTerms()] });
    gateway.state.answer = (inner) =>
      seller.answer({
        method: inner.method,
        url: `${GATEWAY}${inner.path}`,
        headers: new Headers(inner.headers),
        body: decoder.decode(inner.body),
      });
    const payingFetch = createPayingFetch({
      signer: account,
      maxPrice: '0.01',
      now: () => NOW,
      fetch: createEncryptedFetch({ gatewayUrl: GATEWAY, fetch: gateway.fetch }),
    });

    const init = chat();
    const response = await payingFetch(`${GATEWAY}/v1/chat/completions`, init);
    expect(response.status).toBe(200);
    expect(getPaymentReceipt(response)?.success).toBe(true);
    expect(gateway.trail()).toEqual([`GET ${KEYS_PATH}`, `POST ${KEYS_PATH}`, `POST ${KEYS_PATH}`]);
    // In the clear: neither the terms nor the payment, only ciphertext.
    for (const call of gateway.calls) {
      expect(call.headers.get('payment-signature')).toBeNull();
      expect(decoder.decode(call.body)).not.toContain('llama3.2');
    }
    expect(seller.seen.map((request) => request.body)).toEqual([init.body, init.body]);
    expect(seller.payments).toHaveLength(1);
  });

  it('error: malformed options are refused at once', () => {
    for (const options of [
      undefined,
      { maxPrice: '0.01' },
      { signer: { address: 'me', signTypedData: account.signTypedData }, maxPrice: '0.01' },
      { signer: account },
      { signer: account, maxPrice: 0.01 },
      { signer: account, maxPrice: 'one cent' },
      { signer: account, maxPrice: '0.0000001' },
      { signer: account, maxPrice: -1n },
      { signer: account, maxPrice: '0.01', networks: [] },
      { signer: account, maxPrice: '0.01', networks: ['solana'] },
      { signer: account, maxPrice: '0.01', onPayment: 'yes' },
    ]) {
      let caught: unknown;
      try {
        createPayingFetch(options as unknown as PayingFetchOptions);
      } catch (error) {
        caught = error;
      }
      const label = String(
        JSON.stringify(options, (_, value) => (typeof value === 'bigint' ? `${value}n` : value)),
      );
      expect(isClientError(caught) && caught.code, label).toBe('invalid_options');
    }
    expect(CLIENT_ERROR_CODES).toEqual(expect.arrayContaining([...PAYMENT_ERROR_CODES]));
  });
});

describe('getPaymentReceipt', () => {
  const receipt = { success: true, transaction: TRANSACTION, network: 'eip155:84532' };

  it('behavior: reads PAYMENT-RESPONSE, else X-PAYMENT-RESPONSE', () => {
    const v2 = new Response(null, { headers: { 'payment-response': encodeHeader(receipt) } });
    expect(getPaymentReceipt(v2)).toEqual(receipt);
    const v1 = new Response(null, {
      headers: { 'x-payment-response': encodeHeader({ ...receipt, network: 'base-sepolia' }) },
    });
    expect(getPaymentReceipt(v1)?.network).toBe('base-sepolia');
  });

  it('error: undefined when the header is absent, not base64 JSON, or not a receipt', () => {
    for (const header of [undefined, 'not base64!', encodeHeader({ ok: true }), encodeHeader(7)]) {
      const response = new Response(null, {
        headers: header === undefined ? {} : { 'payment-response': header },
      });
      expect(getPaymentReceipt(response), String(header)).toBeUndefined();
    }
  });
});
