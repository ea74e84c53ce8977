/**
 * x402 on a real chain, offline: anvil (chain id 84532) with an EIP-3009 token at the Base
 * Sepolia USDC address, @x402/core's facilitator engine with @x402/evm's exact scheme on
 * loopback, and the gateway with its production settings. The official @x402/fetch client
 * and Tollgate's own client pay; balances are read from the chain.
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FakeUpstream } from '@tollgate/backends/testing';
import { createPayingFetch, getPaymentReceipt } from '@tollgate/client';
import {
  type AnvilChain,
  anvilAvailable,
  deployUsdc,
  startAnvil,
  startFacilitator,
  type TestFacilitator,
  type TestUsdc,
} from '@tollgate/test-chain';
import {
  decodeHeader,
  encodeHeader,
  type PaymentRequired,
  type PaymentRequirements,
} from '@tollgate/x402';
import { ExactEvmScheme } from '@x402/evm';
import { wrapFetchWithPaymentFromConfig } from '@x402/fetch';
import OpenAI from 'openai';
import { createPublicClient, http } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Gateway } from './server.js';
import { deferred, signPayment, startTestGateway } from './test-helpers.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const PRICE = 1000n; // $0.001: the default price
const HELD_MODEL = 'held-model';

let chain: AnvilChain;
let usdc: TestUsdc;
let facilitator: TestFacilitator;
let payee: `0x${string}`;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  facilitator?.reset();
});

/**
 * An OpenAI-compatible server whose stream sends its first chunk, then waits for `release`:
 * a chunk that reaches the client before the release proves the answer was not held back.
 */
async function startHeldStream() {
  const release = deferred<void>();
  let requests = 0;
  const server = createServer((request, response: ServerResponse) => {
    if (request.method === 'GET') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ object: 'list', data: [{ id: HELD_MODEL, object: 'model' }] }));
      return;
    }
    requests += 1;
    request.resume();
    const chunk = (content: string, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: HELD_MODEL, choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.write(chunk('first '));
    void release.promise.then(() => {
      response.write(chunk('and last', 'stop'));
      response.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    release.resolve();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return {
    baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests: () => requests,
    release: () => release.resolve(),
  };
}

async function start(payments: Record<string, unknown> = {}) {
  const held = await startHeldStream();
  const { gateway, upstream } = await startTestGateway(
    {
      values: { payments: { pay_to: payee, facilitator_url: facilitator.url, ...payments } },
      extraBackends: [{ name: 'held', url: held.baseURL }],
    },
    (cleanup) => cleanups.push(cleanup),
  );
  return { gateway, upstream, held };
}

const inference = (upstream: FakeUpstream) =>
  upstream.requests.filter((request) => request.method === 'POST');

const body = JSON.stringify({
  model: 'fake-model',
  messages: [{ role: 'user', content: 'Say hello' }],
  max_tokens: 16,
});

function post(gateway: Gateway, headers: Record<string, string> = {}) {
  return fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
}

async function termsFor(gateway: Gateway): Promise<PaymentRequirements> {
  const response = await post(gateway);
  expect(response.status).toBe(402);
  return (decodeHeader(response.headers.get('payment-required')!) as PaymentRequired).accepts[0]!;
}

async function balances(...owners: Array<`0x${string}`>): Promise<bigint[]> {
  return Promise.all(owners.map((owner) => usdc.balanceOf(owner)));
}

describe.skipIf(!anvilAvailable())('x402 on a local chain', () => {
  let payerKeys: Array<`0x${string}`>;

  beforeAll(async () => {
    chain = await startAnvil();
    usdc = await deployUsdc(chain);
    facilitator = await startFacilitator({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.accounts[0]!.privateKey,
    });
    payee = chain.accounts[1]!.address;
    payerKeys = chain.accounts.slice(2, 8).map((account) => account.privateKey);
    for (const key of payerKeys) await usdc.mint(privateKeyToAccount(key).address, 1_000_000n);
  });
  afterAll(async () => {
    await facilitator?.close();
    await chain?.stop();
  });

  it("behavior: Tollgate's client pays for a streamed completion; the money moves before the answer, whose first chunk arrives before it ends", async () => {
    const { gateway, held } = await start();
    const payer = privateKeyToAccount(payerKeys[0]!);
    const [payerBefore, payeeBefore] = await balances(payer.address, payee);
    let receipt: ReturnType<typeof getPaymentReceipt>;
    const openai = new OpenAI({
      baseURL: `${gateway.url}/v1`,
      apiKey: 'x402',
      defaultHeaders: { Authorization: null },
      maxRetries: 0,
      fetch: async (input, init) => {
        const response = await createPayingFetch({ signer: payer, maxPrice: '0.01' })(input, init);
        receipt = getPaymentReceipt(response);
        return response;
      },
    });
    const stream = await openai.chat.completions.create({
      model: HELD_MODEL,
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
    });
    const iterator = stream[Symbol.asyncIterator]();
    const first = await iterator.next();
    // The upstream still holds the rest of its answer: the first chunk was not held back.
    expect(first.value?.choices[0]?.delta?.content).toBe('first ');
    // Settled on-chain before a byte of the answer was sent.
    expect(await balances(payer.address, payee)).toEqual([
      payerBefore! - PRICE,
      payeeBefore! + PRICE,
    ]);
    expect(receipt!).toMatchObject({ success: true, network: 'eip155:84532' });
    const onChain = await createPublicClient({
      transport: http(chain.rpcUrl),
    }).getTransactionReceipt({
      hash: receipt!.transaction as `0x${string}`,
    });
    expect(onChain.status).toBe('success');
    held.release();
    let rest = '';
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      rest += next.value.choices[0]?.delta?.content ?? '';
    }
    expect(rest).toBe('and last');
    expect(held.requests()).toBe(1);
  });

  it('behavior: the official @x402/fetch client pays for a completion, and exactly the price moves', async () => {
    const { gateway, upstream } = await start();
    const payer = privateKeyToAccount(payerKeys[1]!);
    const [payerBefore, payeeBefore] = await balances(payer.address, payee);
    const openai = new OpenAI({
      baseURL: `${gateway.url}/v1`,
      apiKey: 'x402',
      defaultHeaders: { Authorization: null },
      maxRetries: 0,
      fetch: wrapFetchWithPaymentFromConfig(fetch, {
        schemes: [{ network: 'eip155:84532', client: new ExactEvmScheme(payer) }],
      }),
    });
    const { data, response } = await openai.chat.completions
      .create({ model: 'fake-model', messages: [{ role: 'user', content: 'Say hello' }] })
      .withResponse();
    expect(data.choices[0]?.message.content).toBe('Hello from the fake upstream.');
    expect(decodeHeader(response.headers.get('payment-response')!)).toMatchObject({
      success: true,
      payer: payer.address,
    });
    expect(await balances(payer.address, payee)).toEqual([
      payerBefore! - PRICE,
      payeeBefore! + PRICE,
    ]);
    expect(inference(upstream)).toHaveLength(1);
    // The gateway recorded it, linked to the usage it bought.
    await gateway.tenancy.flush();
    const [record] = await gateway.tenancy.listPayments({ payer: payer.address });
    expect(record).toMatchObject({
      status: 'settled',
      amount: '1000',
      requestId: response.headers.get('x-request-id'),
    });
  });

  it('error: a replay, a tampered signature, a wrong amount, an expired authorization and the wrong domain name are refused without backend work', async () => {
    const { gateway, upstream } = await start();
    const payer = privateKeyToAccount(payerKeys[2]!);
    const terms = await termsFor(gateway);
    const paid = await signPayment(payer, terms);
    expect((await post(gateway, { 'payment-signature': paid })).status).toBe(200);
    const balancesAfterPaying = await balances(payer.address, payee);
    const settleCalls = facilitator.calls.settle;

    const payment = decodeHeader(await signPayment(payer, terms)) as {
      payload: { signature: string };
    };
    const signature = payment.payload.signature;
    payment.payload.signature = `${signature.slice(0, 20)}${signature[20] === 'a' ? 'b' : 'a'}${signature.slice(21)}`;
    const cases: Array<[string, string, number, string]> = [
      ['replay', paid, 402, 'authorization_used'],
      ['tampered signature', encodeHeader(payment), 402, 'invalid_signature'],
      ['wrong amount', await signPayment(payer, terms, { value: '1' }), 402, 'amount_mismatch'],
      [
        'expired',
        await signPayment(payer, terms, { validBefore: Math.floor(Date.now() / 1000) - 60 }),
        402,
        'authorization_expired',
      ],
      [
        'wrong domain name',
        await signPayment(payer, terms, { domainName: 'USD Coin' }),
        402,
        'invalid_signature',
      ],
    ];
    for (const [name, header, status, code] of cases) {
      const response = await post(gateway, { 'payment-signature': header });
      expect({
        name,
        status: response.status,
        code: response.headers.get('x-payment-error'),
      }).toEqual({ name, status, code });
    }
    expect(inference(upstream)).toHaveLength(1);
    expect(facilitator.calls.settle).toBe(settleCalls);
    expect(await balances(payer.address, payee)).toEqual(balancesAfterPaying);

    // A gateway that never saw the payment (another replica, or after a restart) is protected
    // by the chain: the facilitator finds the nonce used.
    const { gateway: other, upstream: otherUpstream } = await start();
    const replayed = await post(other, { 'payment-signature': paid });
    expect(replayed.status).toBe(402);
    expect(replayed.headers.get('x-payment-error')).toBe('verification_failed');
    expect(((await replayed.json()) as PaymentRequired).error).toContain('nonce_already_used');
    expect(inference(otherUpstream)).toHaveLength(0);
  });

  it('behavior: an upstream error is not charged', async () => {
    const { gateway, upstream } = await start();
    const payer = privateKeyToAccount(payerKeys[3]!);
    const before = await balances(payer.address, payee);
    upstream.setBehavior({ errorStatus: 500, errorMessage: 'the model crashed' });
    const response = await post(gateway, {
      'payment-signature': await signPayment(payer, await termsFor(gateway)),
    });
    expect(response.status).toBeGreaterThanOrEqual(500);
    expect(facilitator.calls.settle).toBe(0);
    expect(await balances(payer.address, payee)).toEqual(before);
  });

  it('behavior: two concurrent requests with the same authorization: exactly one is served and paid', async () => {
    const { gateway, upstream } = await start();
    const payer = privateKeyToAccount(payerKeys[4]!);
    const [payerBefore] = await balances(payer.address);
    const header = await signPayment(payer, await termsFor(gateway));
    const statuses = await Promise.all([
      post(gateway, { 'payment-signature': header }).then((response) => response.status),
      post(gateway, { 'payment-signature': header }).then((response) => response.status),
    ]);
    expect(statuses.sort()).toEqual([200, 402]);
    expect(inference(upstream)).toHaveLength(1);
    expect(await balances(payer.address)).toEqual([payerBefore! - PRICE]);
  });

  it('behavior: verify-only serves without moving money and refuses a replay of the authorization', async () => {
    const { gateway, upstream } = await start({ verify_only: true });
    const payer = privateKeyToAccount(payerKeys[5]!);
    const before = await balances(payer.address, payee);
    const header = await signPayment(payer, await termsFor(gateway));
    expect((await post(gateway, { 'payment-signature': header })).status).toBe(200);
    const replay = await post(gateway, { 'payment-signature': header });
    expect(replay.status).toBe(402);
    expect(replay.headers.get('x-payment-error')).toBe('authorization_used');
    expect(inference(upstream)).toHaveLength(1);
    expect(facilitator.calls.settle).toBe(0);
    expect(await balances(payer.address, payee)).toEqual(before);
  });

  it('error: a settlement the facilitator rejects is a 402 with its receipt; an unreachable one a 503; neither moves money', async () => {
    const { gateway } = await start();
    const payer = privateKeyToAccount(payerKeys[0]!);
    const before = await balances(payer.address, payee);
    const terms = await termsFor(gateway);
    facilitator.setFault('settle', 'reject', { times: 1 });
    const rejected = await post(gateway, { 'payment-signature': await signPayment(payer, terms) });
    expect(rejected.status).toBe(402);
    expect(decodeHeader(rejected.headers.get('payment-response')!)).toMatchObject({
      success: false,
    });
    facilitator.setFault('settle', 'unreachable', { times: 1 });
    const unreachable = await post(gateway, {
      'payment-signature': await signPayment(payer, terms),
    });
    expect(unreachable.status).toBe(503);
    expect(await balances(payer.address, payee)).toEqual(before);
  });
});
