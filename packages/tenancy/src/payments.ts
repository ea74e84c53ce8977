/**
 * x402 payers as callers, and payments as billing records. A payer is not a tenant: it has no
 * row in `tenants`, no keys and no name; its usage is metered under `x402:<address>` and its
 * limits are the ones configured for every payer.
 */
import { TollgateError } from '@tollgate/protocol';
import { createId } from './keys.js';
import type { Caller } from './tenancy.js';
import type { PaymentRecord, PaymentStatus, TenantLimits } from './types.js';

const EVM_ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const PAYMENT_ID = /^py_[a-z2-7]{16}$/;
const DIGITS = /^\d{1,78}$/;
const STATUSES: ReadonlySet<PaymentStatus> = new Set(['settled', 'verified', 'failed']);
/** The largest value of PostgreSQL's `integer`, the column of the x402 version. */
const INT4_MAX = 2_147_483_647;

/** The prefix of a payer's tenant id. */
export const PAYER_PREFIX = 'x402:';

/**
 * A payment to record: a {@link PaymentRecord} whose id, time, usage link, transaction and
 * error may be left out (a fresh `py_` id, the current time and null are filled in).
 */
export type PaymentInput = Omit<PaymentRecord, 'id' | 'at' | 'usageId' | 'transaction' | 'error'> &
  Partial<Pick<PaymentRecord, 'id' | 'at' | 'usageId' | 'transaction' | 'error'>>;

/**
 * The caller for an x402 payer: metered as the tenant `x402:<lowercased address>`, with no
 * name and no key, admitted and settled like any other caller.
 *
 * @param address The payer's EVM address, `0x` and 40 hex digits, in any case.
 * @param limits What every payer may do. @default {} (unlimited)
 * @throws {TollgateError} `invalid_request` (400, param `payer`) when `address` is not an EVM
 * address.
 *
 * @example
 * ```ts
 * const address = '0xAbC0000000000000000000000000000000000001';
 * const caller = payerCaller(address, { requestsPerMinute: 30 });
 * caller.tenantId; // 'x402:0xabc0000000000000000000000000000000000001'
 * ```
 */
export function payerCaller(address: string, limits: TenantLimits = {}): Caller {
  if (typeof address !== 'string' || !EVM_ADDRESS.test(address)) {
    throw new TollgateError(
      'invalid_request',
      'The payer must be an EVM address: "0x" followed by 40 hexadecimal digits.',
      { param: 'payer' },
    );
  }
  return {
    kind: 'payer',
    tenantId: `${PAYER_PREFIX}${address.toLowerCase()}`,
    tenantName: null,
    keyId: null,
    limits,
  };
}

function fail(field: string, expected: string, value: unknown): never {
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : String(value);
  throw new TypeError(`Invalid payment record: ${field} must be ${expected}, got ${shown}.`);
}

function text(field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') fail(field, 'a non-empty string', value);
  return value;
}

function optionalText(field: string, value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') fail(field, 'a string or null', value);
  return value;
}

/**
 * Checks a payment and fills in what was left out, so that the record can always be written:
 * a record the database refused would hold up every record queued behind it.
 *
 * @param input The payment; `payer` is lowercased and `amount` loses leading zeros.
 * @param now The current time in ms since the epoch, for a missing `at`.
 * @returns The complete record.
 * @throws {TypeError} Naming the first field that is missing or malformed.
 *
 * @example
 * ```ts
 * const record = toPaymentRecord(
 *   {
 *     requestId: 'req_1',
 *     payer: '0xAbC0000000000000000000000000000000000001',
 *     network: 'eip155:84532',
 *     asset: '0x036CbD53842c5426634e7929541eC2318f3dCF7e',
 *     payTo: '0x2222222222222222222222222222222222222222',
 *     amount: '1000',
 *     scheme: 'exact',
 *     x402Version: 2,
 *     nonce: '0x01',
 *     status: 'verified',
 *   },
 *   Date.now(),
 * );
 * record.id; // 'py_...'; record.payer is lowercase
 * ```
 */
export function toPaymentRecord(input: PaymentInput, now: number): PaymentRecord {
  if (typeof input !== 'object' || input === null) fail('the payment', 'an object', input);
  const id = input.id ?? createId('py');
  if (typeof id !== 'string' || !PAYMENT_ID.test(id)) {
    fail('id', '"py_" and 16 lowercase base32 characters (createId("py"))', id);
  }
  const at = input.at ?? new Date(now);
  if (!(at instanceof Date) || Number.isNaN(at.getTime())) fail('at', 'a valid Date', at);
  if (typeof input.payer !== 'string' || !EVM_ADDRESS.test(input.payer)) {
    fail('payer', 'an EVM address ("0x" and 40 hex digits)', input.payer);
  }
  if (typeof input.amount !== 'string' || !DIGITS.test(input.amount)) {
    fail('amount', 'the atomic units as a string of at most 78 decimal digits', input.amount);
  }
  const version = input.x402Version;
  if (!Number.isInteger(version) || version < 1 || version > INT4_MAX) {
    fail('x402Version', 'a positive integer', version);
  }
  if (!STATUSES.has(input.status)) {
    fail('status', '"settled", "verified" or "failed"', input.status);
  }
  return {
    id,
    at,
    requestId: text('requestId', input.requestId),
    usageId: optionalText('usageId', input.usageId),
    payer: input.payer.toLowerCase(),
    network: text('network', input.network),
    asset: text('asset', input.asset),
    payTo: text('payTo', input.payTo),
    // As numeric(78, 0) will read it back.
    amount: BigInt(input.amount).toString(),
    scheme: text('scheme', input.scheme),
    x402Version: version,
    nonce: text('nonce', input.nonce),
    status: input.status,
    transaction: optionalText('transaction', input.transaction),
    error: optionalText('error', input.error),
  };
}
