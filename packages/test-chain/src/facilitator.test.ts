import { HTTPFacilitatorClient } from '@x402/core/http';
import type { PaymentPayload, PaymentRequirements } from '@x402/core/types';
import {
  type Address,
  createPublicClient,
  createTestClient,
  type Hex,
  http,
  parseEventLogs,
} from 'viem';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type AnvilChain,
  anvilAvailable,
  deployUsdc,
  INJECTED_FAULT_REASON,
  installMulticall3,
  isTestChainError,
  MULTICALL3_ADDRESS,
  startAnvil,
  startFacilitator,
  type TestFacilitator,
  type TestUsdc,
  testUsdcAbi,
} from './index.js';
import { type PaymentBodies, signAuthorization, v1Payment, v2Payment } from './test-helpers.js';

describe('startFacilitator arguments', () => {
  it('error: a malformed private key is refused', async () => {
    const error = await startFacilitator({
      rpcUrl: 'http://127.0.0.1:1',
      privateKey: '0x12',
    }).catch((e: unknown) => e);
    expect(isTestChainError(error) && error.code).toBe('invalid_argument');
  });
});

describe.skipIf(!anvilAvailable())('startFacilitator on anvil', () => {
  let chain: AnvilChain;
  let usdc: TestUsdc;
  let facilitator: TestFacilitator;
  let client: HTTPFacilitatorClient;

  // Account 0 settles, 1 pays, 2 is paid.
  const payerKey = (): Hex => chain.accounts[1]!.privateKey;
  const payer = (): Address => chain.accounts[1]!.address;
  const payee = (): Address => chain.accounts[2]!.address;

  async function pay(value: bigint, options: { domainName?: string; amount?: bigint } = {}) {
    const signed = await signAuthorization({
      payerKey: payerKey(),
      to: payee(),
      value,
      domainName: options.domainName,
    });
    return v2Payment(signed, { payTo: payee(), amount: options.amount ?? value });
  }

  const verify = (bodies: PaymentBodies) =>
    client.verify(
      bodies.paymentPayload as unknown as PaymentPayload,
      bodies.paymentRequirements as unknown as PaymentRequirements,
    );
  const settle = (bodies: PaymentBodies) =>
    client.settle(
      bodies.paymentPayload as unknown as PaymentPayload,
      bodies.paymentRequirements as unknown as PaymentRequirements,
    );
  const post = (path: string, body: string) =>
    fetch(`${facilitator.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });

  beforeAll(async () => {
    chain = await startAnvil();
    usdc = await deployUsdc(chain);
    await usdc.mint(payer(), 10_000_000n);
    facilitator = await startFacilitator({
      rpcUrl: chain.rpcUrl,
      privateKey: chain.accounts[0]!.privateKey,
    });
    client = new HTTPFacilitatorClient({ url: facilitator.url });
  });

  afterAll(async () => {
    await facilitator?.close();
    await chain?.stop();
  });

  beforeEach(() => {
    facilitator?.reset();
  });

  it('behavior: /supported lists exact on eip155:84532 (v2) and base-sepolia (v1)', async () => {
    const supported = await client.getSupported();
    expect(supported.kinds).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ x402Version: 2, scheme: 'exact', network: 'eip155:84532' }),
        expect.objectContaining({ x402Version: 1, scheme: 'exact', network: 'base-sepolia' }),
      ]),
    );
    expect(JSON.stringify(supported.signers)).toContain(facilitator.address);
    expect(facilitator.address).toBe(chain.accounts[0]!.address);
    expect(facilitator.calls.supported).toBe(1);
  });

  it('behavior: verify then settle over HTTP moves exactly the amount, once', async () => {
    const bodies = await pay(1000n);
    const payerBefore = await usdc.balanceOf(payer());
    const payeeBefore = await usdc.balanceOf(payee());

    expect(await verify(bodies)).toMatchObject({ isValid: true, payer: payer() });
    expect(await usdc.balanceOf(payee())).toBe(payeeBefore);

    const settled = await settle(bodies);
    expect(settled).toMatchObject({ success: true, network: 'eip155:84532', payer: payer() });
    expect(settled.transaction).toMatch(/^0x[0-9a-f]{64}$/);
    expect(await usdc.balanceOf(payer())).toBe(payerBefore - 1000n);
    expect(await usdc.balanceOf(payee())).toBe(payeeBefore + 1000n);
    expect(facilitator.calls).toEqual({ verify: 1, settle: 1, supported: 0 });
    expect(facilitator.requests.map((request) => request.endpoint)).toEqual(['verify', 'settle']);
    expect(facilitator.requests[1]?.body).toMatchObject({
      x402Version: 2,
      paymentRequirements: bodies.paymentRequirements,
    });

    // The settlement is a transferWithAuthorization sent by the facilitator's key.
    const publicClient = createPublicClient({ transport: http(chain.rpcUrl) });
    const receipt = await publicClient.getTransactionReceipt({ hash: settled.transaction as Hex });
    expect(receipt.from.toLowerCase()).toBe(facilitator.address.toLowerCase());
    const transfers = parseEventLogs({
      abi: testUsdcAbi,
      eventName: 'Transfer',
      logs: receipt.logs,
    });
    expect(transfers.map((log) => log.args)).toEqual([
      { from: payer(), to: payee(), value: 1000n },
    ]);
  });

  it('error: a replayed authorization is refused by verify and by settle', async () => {
    const bodies = await pay(10n);
    expect((await settle(bodies)).success).toBe(true);
    const balances = [await usdc.balanceOf(payer()), await usdc.balanceOf(payee())];

    expect(await verify(bodies)).toMatchObject({
      isValid: false,
      invalidReason: 'invalid_exact_evm_nonce_already_used',
    });
    expect(await settle(bodies)).toMatchObject({
      success: false,
      errorReason: 'invalid_exact_evm_nonce_already_used',
    });
    expect([await usdc.balanceOf(payer()), await usdc.balanceOf(payee())]).toEqual(balances);
  });

  it('error: a signature over the domain name "USD Coin" is refused by verify', async () => {
    const bodies = await pay(10n, { domainName: 'USD Coin' });
    expect(await verify(bodies)).toMatchObject({
      isValid: false,
      invalidReason: 'invalid_exact_evm_signature',
    });
  });

  it('error: a tampered amount is refused', async () => {
    const bodies = await pay(10n, { amount: 10n });
    const authorization = (bodies.paymentPayload.payload as { authorization: { value: string } })
      .authorization;
    authorization.value = '11';
    expect(await verify(bodies)).toMatchObject({
      isValid: false,
      invalidReason: 'invalid_exact_evm_signature',
    });
  });

  it('error: more than the balance is refused with the reason, thanks to Multicall3', async () => {
    const bodies = await pay(10n ** 15n);
    expect(await verify(bodies)).toMatchObject({
      isValid: false,
      invalidReason: 'invalid_exact_evm_insufficient_balance',
    });
  });

  it('behavior: without Multicall3 the failure reason is generic', async () => {
    const testClient = createTestClient({ mode: 'anvil', transport: http(chain.rpcUrl) });
    await testClient.setCode({ address: MULTICALL3_ADDRESS, bytecode: '0x' });
    try {
      const bodies = await pay(10n ** 15n);
      expect(await verify(bodies)).toMatchObject({
        isValid: false,
        invalidReason: 'invalid_exact_evm_transaction_simulation_failed',
      });
    } finally {
      await installMulticall3(chain);
    }
  });

  it('behavior: x402 v1 payments on base-sepolia verify and settle', async () => {
    const signed = await signAuthorization({ payerKey: payerKey(), to: payee(), value: 25n });
    const bodies = v1Payment(signed, { payTo: payee(), amount: 25n });
    const before = await usdc.balanceOf(payee());
    expect(await verify(bodies)).toMatchObject({ isValid: true });
    expect(await settle(bodies)).toMatchObject({ success: true, network: 'base-sepolia' });
    expect(await usdc.balanceOf(payee())).toBe(before + 25n);
  });

  describe('faults', () => {
    it('behavior: reject makes settle fail without moving money', async () => {
      const bodies = await pay(10n);
      const before = await usdc.balanceOf(payee());
      facilitator.setFault('settle', 'reject');
      expect(await settle(bodies)).toMatchObject({
        success: false,
        errorReason: INJECTED_FAULT_REASON,
        network: 'eip155:84532',
        payer: payer(),
      });
      expect(await usdc.balanceOf(payee())).toBe(before);
      expect(facilitator.calls.settle).toBe(1);
    });

    it('behavior: reject makes verify fail', async () => {
      facilitator.setFault('verify', 'reject');
      expect(await verify(await pay(10n))).toMatchObject({
        isValid: false,
        invalidReason: INJECTED_FAULT_REASON,
      });
    });

    it('behavior: error answers 500', async () => {
      facilitator.setFault('settle', 'error');
      await expect(settle(await pay(10n))).rejects.toThrow(/500/);
      const response = await post('/settle', '{}');
      expect(response.status).toBe(500);
    });

    it('behavior: unreachable drops the connection', async () => {
      facilitator.setFault('settle', 'unreachable');
      await expect(post('/settle', '{}')).rejects.toThrow();
      await expect(settle(await pay(10n))).rejects.toThrow();
      expect(facilitator.calls.settle).toBe(2);
    });

    it('behavior: times limits a fault, then settling works again', async () => {
      const bodies = await pay(10n);
      facilitator.setFault('settle', 'unreachable', { times: 1 });
      await expect(settle(bodies)).rejects.toThrow();
      expect(await settle(bodies)).toMatchObject({ success: true });
      expect(facilitator.calls.settle).toBe(2);
    });

    it('behavior: hang never answers', async () => {
      facilitator.setFault('verify', 'hang');
      await expect(
        fetch(`${facilitator.url}/verify`, {
          method: 'POST',
          body: '{}',
          signal: AbortSignal.timeout(200),
        }),
      ).rejects.toThrow();
    });

    it('behavior: none and reset clear faults', async () => {
      facilitator.setFault('verify', 'error');
      facilitator.setFault('verify', 'none');
      expect((await verify(await pay(10n))).isValid).toBe(true);
      facilitator.setFault('verify', 'error');
      facilitator.reset();
      expect(facilitator.calls.verify).toBe(0);
      expect((await verify(await pay(10n))).isValid).toBe(true);
    });

    it('error: times below 1 is refused', () => {
      expect(() => facilitator.setFault('settle', 'error', { times: 0 })).toThrow(/at least 1/);
    });
  });

  describe('HTTP', () => {
    it('error: malformed JSON answers 400', async () => {
      const response = await post('/verify', '{"x402Version":');
      expect(response.status).toBe(400);
      expect(await response.json()).toEqual({ error: expect.stringMatching(/not valid JSON/) });
      expect(facilitator.requests).toEqual([{ endpoint: 'verify', body: undefined }]);
    });

    it('error: a body without paymentPayload or paymentRequirements answers 400', async () => {
      const response = await post(
        '/settle',
        JSON.stringify({ x402Version: 2, paymentPayload: {} }),
      );
      expect(response.status).toBe(400);
      expect(facilitator.calls.settle).toBe(1);
    });

    it('error: a payment on a network it does not serve answers 500', async () => {
      const bodies = await pay(10n);
      bodies.paymentRequirements.network = 'eip155:1';
      const response = await post('/verify', JSON.stringify({ x402Version: 2, ...bodies }));
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: expect.stringMatching(/eip155:1/) });
    });

    it('error: unknown routes answer 404 and wrong methods 405', async () => {
      expect((await fetch(`${facilitator.url}/nope`)).status).toBe(404);
      const response = await fetch(`${facilitator.url}/verify`);
      expect(response.status).toBe(405);
      expect(response.headers.get('allow')).toBe('POST');
    });
  });
});
