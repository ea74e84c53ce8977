import { describe, expect, it } from 'vitest';
import {
  checkPayment,
  type DecodedPayment,
  isX402Error,
  type PaymentPayloadV1,
  type PaymentPayloadV2,
  type PaymentRequirements,
  parsePayment,
  SETTLEMENT_MARGIN_SECONDS,
  X402_ERROR_CODES,
  type X402ErrorCode,
} from './index.js';
import {
  MAINNET,
  NOW,
  OTHER,
  PAY_TO,
  PAYER,
  paymentV1,
  paymentV2,
  SEPOLIA,
  SOMEONE_ELSE,
  sepoliaTerms,
} from './test-fixtures.js';

const TERMS = sepoliaTerms('1000');

function decoded(payment: PaymentPayloadV1 | PaymentPayloadV2): DecodedPayment {
  return parsePayment(
    JSON.parse(JSON.stringify(payment)),
    payment.x402Version === 2 ? 'payment-signature' : 'x-payment',
  );
}

async function check(
  payment: PaymentPayloadV1 | PaymentPayloadV2,
  terms: PaymentRequirements = TERMS,
  nowSeconds = NOW,
): Promise<string> {
  return checkPayment(decoded(payment), terms, { nowSeconds });
}

async function codeOf(run: Promise<unknown>): Promise<X402ErrorCode | 'no error'> {
  try {
    await run;
  } catch (error) {
    if (isX402Error(error)) return error.code;
    throw error;
  }
  return 'no error';
}

describe('checkPayment', () => {
  it('behavior: a valid signed payment passes and gives the payer', async () => {
    expect(await check(await paymentV2({ terms: TERMS }))).toBe(PAYER.address);
  });

  it('behavior: a valid v1 payment passes (no accepted terms to compare)', async () => {
    expect(await check(await paymentV1({ terms: TERMS }))).toBe(PAYER.address);
  });

  it("behavior: the x402 specification's own example payment recovers to its payer", async () => {
    // specs/x402-specification-v2.md, PAYMENT-SIGNATURE example (Base Sepolia USDC).
    const payment: PaymentPayloadV2 = {
      x402Version: 2,
      accepted: { ...sepoliaTerms('10000', 60) },
      payload: {
        signature:
          '0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c',
        authorization: {
          from: '0x857b06519E91e3A54538791bDbb0E22373e36b66',
          to: '0x209693Bc6afc0C5328bA36FaF03C514EF312287C',
          value: '10000',
          validAfter: '1740672089',
          validBefore: '1740672154',
          nonce: '0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480',
        },
      },
    };
    expect(await check(payment, sepoliaTerms('10000', 60), 1740672100)).toBe(
      '0x857b06519E91e3A54538791bDbb0E22373e36b66',
    );
  });

  it('behavior: addresses compare without regard to case', async () => {
    const payment = await paymentV2({ terms: TERMS });
    const lower = {
      ...TERMS,
      payTo: PAY_TO.toLowerCase() as `0x${string}`,
      asset: SEPOLIA.usdc.address.toLowerCase() as `0x${string}`,
    };
    expect(await check(payment, lower)).toBe(PAYER.address);
  });

  it('error: an authorization to someone else -> recipient_mismatch', async () => {
    const payment = await paymentV2({ terms: TERMS, authorization: { to: SOMEONE_ELSE } });
    expect(await codeOf(check(payment))).toBe('recipient_mismatch');
  });

  it.each([
    ['more', '1001'],
    ['less', '999'],
    ['nothing', '0'],
  ])('error: an authorization for %s than the price -> amount_mismatch', async (_which, value) => {
    const payment = await paymentV2({ terms: TERMS, authorization: { value } });
    expect(await codeOf(check(payment))).toBe('amount_mismatch');
  });

  it('error: validBefore within the settlement margin -> authorization_expired', async () => {
    expect(SETTLEMENT_MARGIN_SECONDS).toBe(6);
    for (const validBefore of [NOW + 5, NOW, NOW - 3600]) {
      const payment = await paymentV2({
        terms: TERMS,
        authorization: { validBefore: String(validBefore) },
      });
      expect(await codeOf(check(payment))).toBe('authorization_expired');
    }
    const justInTime = await paymentV2({
      terms: TERMS,
      authorization: { validBefore: String(NOW + 6) },
    });
    expect(await check(justInTime)).toBe(PAYER.address);
  });

  it('error: validAfter in the future -> authorization_not_yet_valid', async () => {
    const early = await paymentV2({ terms: TERMS, authorization: { validAfter: String(NOW + 1) } });
    expect(await codeOf(check(early))).toBe('authorization_not_yet_valid');
    const now = await paymentV2({ terms: TERMS, authorization: { validAfter: String(NOW) } });
    expect(await check(now)).toBe(PAYER.address);
  });

  it('error: signed under the mainnet domain name ("USD Coin") on Base Sepolia -> invalid_signature', async () => {
    const payment = await paymentV2({ terms: TERMS, domain: { name: 'USD Coin' } });
    const error = await check(payment).catch((caught: unknown) => caught);
    expect(isX402Error(error) && error.code).toBe('invalid_signature');
    expect((error as Error).message).toContain('"USDC" version "2"');
  });

  it.each([
    ['another chain id', { chainId: MAINNET.chainId }],
    ['another contract', { verifyingContract: MAINNET.usdc.address }],
    ['another version', { version: '1' }],
  ] as const)('error: signed under %s -> invalid_signature', async (_name, domain) => {
    const payment = await paymentV2({ terms: TERMS, domain });
    expect(await codeOf(check(payment))).toBe('invalid_signature');
  });

  it('error: one byte of the signature changed -> invalid_signature', async () => {
    const payment = await paymentV2({ terms: TERMS });
    for (const at of [2, 66, 130]) {
      const signature = payment.payload.signature;
      const flipped = ((Number.parseInt(signature.slice(at, at + 2), 16) ^ 0x01) & 0xff)
        .toString(16)
        .padStart(2, '0');
      const tampered = structuredClone(payment);
      tampered.payload.signature =
        `${signature.slice(0, at)}${flipped}${signature.slice(at + 2)}` as `0x${string}`;
      expect(await codeOf(check(tampered))).toBe('invalid_signature');
    }
  });

  it('error: the authorization changed after signing -> invalid_signature', async () => {
    const payment = await paymentV2({ terms: TERMS });
    const tampered = structuredClone(payment);
    tampered.payload.authorization.nonce = `0x${'00'.repeat(32)}`;
    expect(await codeOf(check(tampered))).toBe('invalid_signature');
  });

  it('error: signed by another key than from -> invalid_signature', async () => {
    const payment = await paymentV2({
      terms: TERMS,
      account: OTHER,
      authorization: { from: PAYER.address },
    });
    expect(await codeOf(check(payment))).toBe('invalid_signature');
  });

  it.each([
    ['amount', { amount: '2000' }],
    ['asset', { asset: MAINNET.usdc.address }],
    ['payTo', { payTo: SOMEONE_ELSE }],
  ] as const)(
    'error: accepted terms with another %s -> terms_mismatch',
    async (field, accepted) => {
      const payment = await paymentV2({ terms: TERMS, accepted });
      const error = await check(payment).catch((caught: unknown) => caught);
      expect(isX402Error(error) && error.code).toBe('terms_mismatch');
      expect((error as Error).message).toContain(`${field} differs`);
    },
  );

  it('error: a payment on another network -> terms_mismatch', async () => {
    const v2 = await paymentV2({ terms: TERMS, accepted: { network: 'eip155:8453' } });
    expect(await codeOf(check(v2))).toBe('terms_mismatch');
    const v1 = await paymentV1({ terms: TERMS, network: 'base' });
    expect(await codeOf(check(v1))).toBe('terms_mismatch');
  });

  it('behavior: a v2 payment naming the network by its v1 name matches', async () => {
    const payment = await paymentV2({ terms: TERMS, accepted: { network: 'base-sepolia' } });
    expect(await check(payment)).toBe(PAYER.address);
  });

  it('error: the "upto" scheme -> unsupported_payment (400)', async () => {
    const payment = await paymentV2({ terms: TERMS, accepted: { scheme: 'upto' as 'exact' } });
    expect(await codeOf(check(payment))).toBe('unsupported_payment');
    expect(X402_ERROR_CODES.unsupported_payment).toBe(400);
  });

  it('behavior: a smart-wallet signature (longer than 65 bytes) is left to the facilitator', async () => {
    const payment = await paymentV2({ terms: TERMS, account: OTHER });
    for (const bytes of [66, 97, 300]) {
      const wallet = structuredClone(payment);
      wallet.payload.signature = `0x${'5a'.repeat(bytes)}`;
      wallet.payload.authorization.from = '0x00000000000000000000000000000000DeaDBeef';
      expect(await check(wallet)).toBe('0x00000000000000000000000000000000DeaDBeef');
    }
  });

  it('behavior: the checks that need no signature still run for a smart wallet', async () => {
    const payment = await paymentV2({ terms: TERMS, authorization: { value: '1' } });
    payment.payload.signature = `0x${'5a'.repeat(97)}`;
    expect(await codeOf(check(payment))).toBe('amount_mismatch');
  });
});
