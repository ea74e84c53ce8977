/**
 * Header codecs: x402 headers carry standard base64 (not base64url) of UTF-8 JSON. Payments
 * arrive as `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1); the decoded `x402Version` decides
 * the shape, since some clients send a v2 payload in `X-PAYMENT`.
 */
import { X402Error } from './errors.js';
import { toCaip2 } from './networks.js';
import type {
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

// Hand-written checks rather than a schema library: this module is in every browser bundle
// of the paying client, and the shapes are small.
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
const UINT = /^(0|[1-9][0-9]{0,77})$/;
const HEX32 = /^0x[0-9a-fA-F]{64}$/;
const SIGNATURE = /^0x([0-9a-fA-F]{2}){65,}$/;

function malformed(path: string, what: string): never {
  throw new X402Error('invalid_payment', `The payment is malformed at ${path}: expected ${what}.`);
}

function object(value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    malformed(path, 'an object');
  }
  return value as Record<string, unknown>;
}

function text(value: unknown, path: string, pattern?: RegExp, what = 'a string'): string {
  if (typeof value !== 'string' || (pattern !== undefined && !pattern.test(value))) {
    malformed(path, what);
  }
  return value;
}

function optionalObject(value: unknown, path: string): void {
  if (value !== undefined) object(value, path);
}

function checkExactEvmPayload(value: unknown, path: string): ExactEvmPayload {
  const payload = object(value, path);
  text(
    payload.signature,
    `${path}.signature`,
    SIGNATURE,
    'a signature: 0x hex of 65 bytes or more',
  );
  const authorization = object(payload.authorization, `${path}.authorization`);
  for (const field of ['from', 'to'] as const) {
    text(
      authorization[field],
      `${path}.authorization.${field}`,
      ADDRESS,
      'an address: 0x and 40 hex digits',
    );
  }
  for (const field of ['value', 'validAfter', 'validBefore'] as const) {
    text(
      authorization[field],
      `${path}.authorization.${field}`,
      UINT,
      'a non-negative integer as a decimal string',
    );
  }
  text(authorization.nonce, `${path}.authorization.nonce`, HEX32, '32 bytes as 0x hex');
  return payload as unknown as ExactEvmPayload;
}

function checkRequirements(value: unknown, path: string): PaymentRequirements {
  const requirements = object(value, path);
  text(requirements.scheme, `${path}.scheme`);
  text(requirements.network, `${path}.network`);
  text(requirements.amount, `${path}.amount`, UINT, 'a non-negative integer as a decimal string');
  text(requirements.asset, `${path}.asset`, ADDRESS, 'an address: 0x and 40 hex digits');
  text(requirements.payTo, `${path}.payTo`, ADDRESS, 'an address: 0x and 40 hex digits');
  const timeout = requirements.maxTimeoutSeconds;
  if (typeof timeout !== 'number' || !Number.isSafeInteger(timeout) || timeout < 0) {
    malformed(`${path}.maxTimeoutSeconds`, 'a whole number of seconds');
  }
  const extra = object(requirements.extra, `${path}.extra`);
  text(extra.name, `${path}.extra.name`);
  text(extra.version, `${path}.extra.version`);
  return requirements as unknown as PaymentRequirements;
}

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
  const payment = value as Record<string, unknown>;
  if (version === 2) {
    if (payment.resource !== undefined) {
      text(object(payment.resource, 'resource').url, 'resource.url');
    }
    optionalObject(payment.extensions, 'extensions');
    const accepted = checkRequirements(payment.accepted, 'accepted');
    const raw = payment as unknown as PaymentPayloadV2;
    return {
      x402Version: 2,
      header,
      scheme: accepted.scheme,
      network: toCaip2(accepted.network) ?? accepted.network,
      accepted,
      payload: checkExactEvmPayload(payment.payload, 'payload'),
      raw,
    };
  }
  const scheme = text(payment.scheme, 'scheme');
  const network = text(payment.network, 'network');
  return {
    x402Version: 1,
    header,
    scheme,
    network: toCaip2(network) ?? network,
    payload: checkExactEvmPayload(payment.payload, 'payload'),
    raw: payment as unknown as PaymentPayloadV1,
  };
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
