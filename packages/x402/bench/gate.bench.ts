/**
 * What the payment gate costs a paid request on the server, before any facilitator or chain
 * time (both are replaced by instant doubles here), compared in the same run with:
 * - Node's native secp256k1 ECDSA verification (OpenSSL): the floor of checking one signature;
 * - reading the payment header alone (base64 + JSON + shape checks).
 * Rows: the local check (EIP-712 hash + signature recovery with viem, pure JS), and the whole
 * `authorize` + `settle` of a fresh payment (header, checks, replay lock, doubles).
 * Run: `npx tsx packages/x402/bench/gate.bench.ts` (BENCH_ROUNDS, BENCH_SECONDS to tune).
 */
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { privateKeyToAccount } from 'viem/accounts';
import { measure as measureFor, row as rowOf } from '../../../bench/timing.js';
import {
  authorizationTypedData,
  checkPayment,
  createPaymentGate,
  encodeHeader,
  type Facilitator,
  type PaymentRequirements,
  readPayment,
} from '../src/index.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const seconds = Number(process.env.BENCH_SECONDS ?? 1);
const measure = (work: () => unknown) => measureFor(work, { rounds, seconds });
const row = (label: string, micros: number, baseline?: number) =>
  rowOf(label, micros, baseline, 58);

// A fixed, well-known test key: it never holds real money.
const account = privateKeyToAccount(
  '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
);
const payTo = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

let nonce = 0n;
async function payment(terms: PaymentRequirements): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const authorization = {
    from: account.address,
    to: terms.payTo,
    value: terms.amount,
    validAfter: String(now - 600),
    validBefore: String(now + 3600),
    nonce: `0x${(++nonce).toString(16).padStart(64, '0')}` as `0x${string}`,
  };
  const signature = await account.signTypedData(authorizationTypedData(terms, authorization));
  return encodeHeader({ x402Version: 2, accepted: terms, payload: { signature, authorization } });
}

async function main(): Promise<void> {
  const facilitator: Facilitator = {
    async verify() {
      return { isValid: true };
    },
    async settle() {
      return { success: true, transaction: `0x${'ab'.repeat(32)}`, network: 'eip155:84532' };
    },
  };
  const gate = createPaymentGate({ payTo, price: '0.001', facilitator });
  const terms = gate.requirements();
  const context = { resource: 'http://gateway.test/v1/chat/completions' };

  // Pre-signed payments, so signing (the client's work) is not timed.
  const pool: string[] = [];
  for (let index = 0; index < 3000; index++) pool.push(await payment(terms));
  const one = pool[0]!;
  const decoded = readPayment(new Headers({ 'payment-signature': one }))!;

  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
  const data = new Uint8Array(32).fill(9);
  const signature = sign('sha256', data, privateKey);
  const native = await measure(() => verify('sha256', data, publicKey, signature));
  const decode = await measure(() => readPayment(new Headers({ 'payment-signature': one })));
  const local = await measure(() =>
    checkPayment(decoded, terms, { nowSeconds: Date.now() / 1000 }),
  );
  let next = 0;
  const whole = await measure(async () => {
    const header = pool[next++ % pool.length]!;
    const decision = await gate.authorize(new Headers({ 'payment-signature': header }), context);
    if (decision.status === 'verified') await decision.payment.settle();
  });

  console.log(
    'x402 payment gate, per paid request (facilitator and chain replaced by instant doubles)',
  );
  console.log(row('native secp256k1 ECDSA verify (baseline)', native));
  console.log(row('read the payment header (base64, JSON, shape)', decode, native));
  console.log(row('local check (EIP-712 hash + recovery, viem)', local, native));
  console.log(row('authorize + settle (header, checks, replay lock)', whole, native));
  if (next > pool.length) {
    console.log(
      `(${next} calls wrapped the pool of ${pool.length} payments: raise it for a fair last row)`,
    );
  }
}

await main();
