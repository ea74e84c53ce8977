/**
 * Header codecs: x402 headers carry standard base64 (not base64url) of UTF-8 JSON. Payments
 * arrive as `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1); the decoded `x402Version` decides
 * the shape, since some clients send a v2 payload in `X-PAYMENT`.
 */
import { z } from 'zod';
import { X402Error } from './errors.js';
import { type Address, toCaip2 } from './networks.js';
import type {
  Authorization,
  ExactEvmPayload,
  PaymentPayloadV1,
  PaymentPayloadV2,
  PaymentRequired,
  PaymentRequirements,
  PaymentRequirementsV1,
  SettleResponse,
} from './types.js';

/** Header names, lowercase (HTTP headers are case-insensitive). */
export const HEADERS = Object.freeze({
  /** v2 terms, on a 402. */
  paymentRequired: 'payment-required',
  /** v2 payment, from the client. */
  paymentSignature: 'payment-signature',
  /** v1 payment, from the client. */
  xPayment: 'x-payment',
  /** v2 settlement receipt. */
  paymentResponse: 'payment-response',
  /** v1 settlement receipt. */
  xPaymentResponse: 'x-payment-response',
});

/** Longest payment header read, in characters (a payment is well under 2 KiB). */
const MAX_HEADER_LENGTH = 16 * 1024;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * Encodes a value as an x402 header: standard base64 of its UTF-8 JSON.
 *
 * @example
 * encodeHeader({ success: true }); // 'eyJzdWNjZXNzIjp0cnVlfQ=='
 */
export function encodeHeader(value: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  let binary = '';
  // Chunked: String.fromCharCode takes its arguments on the stack.
  for (let offset = 0; offset < bytes.length; offset += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(offset, offset + 0x8000));
  }
  return btoa(binary);
}

/**
 * Decodes an x402 header to the JSON value it carries.
 *
 * @throws {X402Error} `invalid_payment` when it is not base64 of UTF-8 JSON.
 */
export function decodeHeader(header: string): unknown {
  const text = header.trim();
  if (text.length > MAX_HEADER_LENGTH) {
    throw new X402Error(
      'invalid_payment',
      `The payment header is longer than ${MAX_HEADER_LENGTH} characters.`,
    );
  }
  if (text === '' || text.length % 4 !== 0 || !BASE64.test(text)) {
    throw new X402Error(
      'invalid_payment',
      'The payment header is not standard base64 (x402 headers are base64 of UTF-8 JSON, with padding).',
    );
  }
  let json: string;
  try {
    json = new TextDecoder('utf-8', { fatal: true }).decode(
      Uint8Array.from(atob(text), (char) => char.charCodeAt(0)),
    );
  } catch (cause) {
    throw new X402Error('invalid_payment', 'The payment header does not decode to UTF-8 text.', {
      cause,
    });
  }
  try {
    return JSON.parse(json) as unknown;
  } catch (cause) {
    throw new X402Error('invalid_payment', 'The payment header does not decode to JSON.', {
      cause,
    });
  }
}

const address = z
  .string()
  .regex(
    /^0x[0-9a-fA-F]{40}$/,
    'an address: 0x and 40 hex digits',
  ) as unknown as z.ZodType<Address>;
const uint = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,77})$/, 'a non-negative integer as a decimal string');
const hex32 = z
  .string()
  .regex(/^0x[0-9a-fA-F]{64}$/, '32 bytes as 0x hex') as unknown as z.ZodType<`0x${string}`>;
const signature = z
  .string()
  .regex(
    /^0x([0-9a-fA-F]{2}){65,}$/,
    'a signature: 0x hex of 65 bytes or more',
  ) as unknown as z.ZodType<`0x${string}`>;

const authorizationSchema: z.ZodType<Authorization> = z.object({
  from: address,
  to: address,
  value: uint,
  validAfter: uint,
  validBefore: uint,
  nonce: hex32,
});

const exactEvmPayloadSchema: z.ZodType<ExactEvmPayload> = z.object({
  signature,
  authorization: authorizationSchema,
});

const requirementsSchema = z.looseObject({
  scheme: z.string(),
  network: z.string(),
  amount: uint,
  asset: address,
  payTo: address,
  maxTimeoutSeconds: z.number().int().nonnegative(),
  extra: z.looseObject({ name: z.string(), version: z.string() }),
});

const resourceSchema = z.looseObject({
  url: z.string(),
  description: z.string().optional(),
  mimeType: z.string().optional(),
});

const v2Schema = z.looseObject({
  x402Version: z.literal(2),
  resource: resourceSchema.optional(),
  accepted: requirementsSchema,
  payload: exactEvmPayloadSchema,
  extensions: z.record(z.string(), z.unknown()).optional(),
});

const v1Schema = z.looseObject({
  x402Version: z.literal(1),
  scheme: z.string(),
  network: z.string(),
  payload: exactEvmPayloadSchema,
});

/** A payment read from a request, in one shape whatever its version. */
export interface DecodedPayment {
  x402Version: 1 | 2;
  /** The header it came in. */
  header: 'payment-signature' | 'x-payment';
  scheme: string;
  /** The network the client names, as CAIP-2 when known (v1 names are translated). */
  network: string;
  /** v2 only: the terms the client says it accepted. */
  accepted?: PaymentRequirements;
  payload: ExactEvmPayload;
  /** The decoded object as the client sent it, for the facilitator. */
  raw: PaymentPayloadV1 | PaymentPayloadV2;
}

/**
 * Reads the payment of a request: `PAYMENT-SIGNATURE`, else `X-PAYMENT`. Undefined when
 * there is none.
 *
 * @throws {X402Error} `invalid_payment` for an undecodable or malformed payment,
 *   `unsupported_payment` for an x402 version other than 1 and 2.
 */
export function readPayment(headers: Headers): DecodedPayment | undefined {
  const signatureHeader = headers.get(HEADERS.paymentSignature);
  const header: DecodedPayment['header'] =
    signatureHeader !== null && signatureHeader.trim() !== '' ? 'payment-signature' : 'x-payment';
  const value = header === 'payment-signature' ? signatureHeader : headers.get(HEADERS.xPayment);
  if (value === null || value.trim() === '') return undefined;
  return parsePayment(decodeHeader(value), header);
}

/**
 * Validates a decoded payment object.
 *
 * @throws {X402Error} as {@link readPayment}.
 */
export function parsePayment(value: unknown, header: DecodedPayment['header']): DecodedPayment {
  const version = (value as { x402Version?: unknown } | null)?.x402Version;
  if (version !== 1 && version !== 2) {
    throw new X402Error(
      typeof version === 'number' ? 'unsupported_payment' : 'invalid_payment',
      typeof version === 'number'
        ? `x402Version ${version} is not supported here; send version 2 (or 1).`
        : 'The payment has no x402Version.',
    );
  }
  if (version === 2) {
    const parsed = v2Schema.safeParse(value);
    if (!parsed.success) throw malformed(parsed.error);
    const raw = parsed.data as unknown as PaymentPayloadV2;
    return {
      x402Version: 2,
      header,
      scheme: raw.accepted.scheme,
      network: toCaip2(raw.accepted.network) ?? raw.accepted.network,
      accepted: raw.accepted,
      payload: raw.payload,
      raw,
    };
  }
  const parsed = v1Schema.safeParse(value);
  if (!parsed.success) throw malformed(parsed.error);
  const raw = parsed.data as unknown as PaymentPayloadV1;
  return {
    x402Version: 1,
    header,
    scheme: raw.scheme,
    network: toCaip2(raw.network) ?? raw.network,
    payload: raw.payload,
    raw,
  };
}

function malformed(error: z.ZodError): X402Error {
  const issue = error.issues[0];
  const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
  return new X402Error(
    'invalid_payment',
    `The payment is malformed${where}: ${issue?.message ?? 'unexpected shape'}.`,
  );
}

/**
 * Reads the terms of a 402 answer: the `PAYMENT-REQUIRED` header (v2), else the JSON body
 * (v1 servers send terms only there). Undefined when neither holds terms.
 */
export async function readPaymentRequired(
  response: Response,
): Promise<PaymentRequired | PaymentRequiredV1 | undefined> {
  const header = response.headers.get(HEADERS.paymentRequired);
  if (header !== null) {
    try {
      const value = decodeHeader(header) as PaymentRequired;
      if (value && Array.isArray(value.accepts)) return value;
    } catch {
      // Fall back to the body.
    }
  }
  try {
    const value = (await response.clone().json()) as PaymentRequired | PaymentRequiredV1;
    if (
      value &&
      (value.x402Version === 1 || value.x402Version === 2) &&
      Array.isArray(value.accepts)
    ) {
      return value;
    }
  } catch {
    // Not JSON.
  }
  return undefined;
}

/** v1 terms (the JSON body of a v1 402). */
export interface PaymentRequiredV1 {
  x402Version: 1;
  error?: string;
  accepts: PaymentRequirementsV1[];
}

/** The v1 form of v2 terms, for a v1 payment's facilitator call. */
export function toRequirementsV1(
  requirements: PaymentRequirements,
  resource: { url: string; description?: string; mimeType?: string },
  v1Network: string,
): PaymentRequirementsV1 {
  return {
    scheme: requirements.scheme,
    network: v1Network,
    maxAmountRequired: requirements.amount,
    resource: resource.url,
    description: resource.description ?? '',
    mimeType: resource.mimeType ?? '',
    payTo: requirements.payTo,
    maxTimeoutSeconds: requirements.maxTimeoutSeconds,
    asset: requirements.asset,
    extra: requirements.extra,
  };
}

/** The receipt header(s) for a settled payment: by version, and v1's name too if it came that way. */
export function receiptHeaders(
  receipt: SettleResponse,
  payment: Pick<DecodedPayment, 'x402Version' | 'header'>,
): Record<string, string> {
  const value = encodeHeader(receipt);
  const headers: Record<string, string> = {};
  if (payment.x402Version === 2) headers[HEADERS.paymentResponse] = value;
  if (payment.x402Version === 1 || payment.header === 'x-payment') {
    headers[HEADERS.xPaymentResponse] = value;
  }
  return headers;
}
