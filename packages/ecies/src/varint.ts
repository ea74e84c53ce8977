/**
 * QUIC variable-length integers (RFC 9000 section 16): the length prefixes of Binary HTTP
 * (RFC 9292) and of chunked Oblivious HTTP. The two high bits of the first byte give the
 * encoded length (1, 2, 4 or 8 bytes), the remaining 6, 14, 30 or 62 bits the value, big-endian.
 */
import { EciesError } from './errors.js';

/** The largest value a QUIC variable-length integer can carry: 2^62 - 1. */
export const MAX_VARINT = (1n << 62n) - 1n;

/** A decoded variable-length integer and how many bytes it took. */
export interface Varint<T extends number | bigint = number> {
  /** The integer. */
  value: T;
  /** Its encoded length in bytes: 1, 2, 4 or 8 (encodings need not be minimal). */
  length: 1 | 2 | 4 | 8;
}

function assertBytes(bytes: unknown, offset: unknown): asserts bytes is Uint8Array {
  if (!(bytes instanceof Uint8Array)) {
    throw new EciesError('invalid_type', 'A variable-length integer is read from a Uint8Array.');
  }
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new EciesError('invalid_type', 'The offset must be a non-negative integer.');
  }
}

function encodedLength(bytes: Uint8Array, offset: number): 1 | 2 | 4 | 8 {
  if (offset >= bytes.length) {
    throw new EciesError(
      'truncated',
      `No variable-length integer at offset ${offset}: the input ends.`,
    );
  }
  const length = (1 << (bytes[offset]! >> 6)) as 1 | 2 | 4 | 8;
  if (offset + length > bytes.length) {
    throw new EciesError(
      'truncated',
      `The variable-length integer at offset ${offset} needs ${length} bytes; only ${bytes.length - offset} remain.`,
    );
  }
  return length;
}

/**
 * Encodes an integer as a QUIC variable-length integer on the fewest bytes.
 *
 * @param value - an integer from 0 to 2^62 - 1 (a `number` up to 2^53 - 1, or a `bigint`).
 * @returns 1, 2, 4 or 8 bytes.
 * @throws {EciesError} `invalid_type` if `value` is not an integer; `invalid_length` if it is
 *   negative or above 2^62 - 1.
 *
 * @example
 * ```ts
 * encodeVarint(15293); // Uint8Array [0x7b, 0xbd]
 * ```
 */
export function encodeVarint(value: number | bigint): Uint8Array {
  let big: bigint;
  if (typeof value === 'bigint') {
    big = value;
  } else if (typeof value === 'number' && Number.isInteger(value)) {
    if (!Number.isSafeInteger(value)) {
      throw new EciesError(
        'invalid_type',
        `${value} is above 2^53 - 1 and cannot be exact as a number; pass a bigint.`,
      );
    }
    big = BigInt(value);
  } else {
    throw new EciesError('invalid_type', 'A variable-length integer encodes an integer.');
  }
  if (big < 0n || big > MAX_VARINT) {
    throw new EciesError(
      'invalid_length',
      `${big} is outside the range of a variable-length integer (0 to 2^62 - 1).`,
    );
  }
  if (big < 0x40n) return Uint8Array.of(Number(big));
  if (big < 0x4000n) {
    const n = Number(big);
    return Uint8Array.of(0x40 | (n >> 8), n & 0xff);
  }
  if (big < 0x4000_0000n) {
    const n = Number(big);
    return Uint8Array.of(0x80 | (n >>> 24), (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, big | (3n << 62n));
  return out;
}

/**
 * Reads a QUIC variable-length integer as a `number`. Every length and status code of Binary
 * HTTP fits; a value above 2^53 - 1 is refused rather than rounded (use
 * {@link decodeVarintBigInt} for the full range).
 *
 * @param bytes - the input.
 * @param offset - where the integer starts. @default 0
 * @returns the value and its encoded length (1, 2, 4 or 8 bytes; non-minimal encodings accepted).
 * @throws {EciesError} `truncated` if the input ends inside the integer; `invalid_length` if the
 *   value is above 2^53 - 1; `invalid_type` for a wrong argument.
 *
 * @example
 * ```ts
 * decodeVarint(Uint8Array.of(0x40, 0x25)); // { value: 37, length: 2 }
 * ```
 */
export function decodeVarint(bytes: Uint8Array, offset = 0): Varint<number> {
  assertBytes(bytes, offset);
  const length = encodedLength(bytes, offset);
  const first = bytes[offset]! & 0x3f;
  if (length === 1) return { value: first, length };
  if (length === 2) return { value: (first << 8) | bytes[offset + 1]!, length };
  if (length === 4) {
    const value =
      first * 0x100_0000 +
      ((bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!);
    return { value, length };
  }
  const { value } = decodeVarintBigInt(bytes, offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new EciesError(
      'invalid_length',
      `The variable-length integer at offset ${offset} is above 2^53 - 1; read it with decodeVarintBigInt.`,
    );
  }
  return { value: Number(value), length };
}

/**
 * Reads a QUIC variable-length integer as a `bigint`, over its full range (0 to 2^62 - 1).
 *
 * @param bytes - the input.
 * @param offset - where the integer starts. @default 0
 * @throws {EciesError} `truncated` if the input ends inside the integer; `invalid_type` for a
 *   wrong argument.
 *
 * @example
 * ```ts
 * decodeVarintBigInt(Uint8Array.of(0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c));
 * // { value: 151288809941952652n, length: 8 }
 * ```
 */
export function decodeVarintBigInt(bytes: Uint8Array, offset = 0): Varint<bigint> {
  assertBytes(bytes, offset);
  const length = encodedLength(bytes, offset);
  let value = BigInt(bytes[offset]! & 0x3f);
  for (let i = 1; i < length; i++) value = (value << 8n) | BigInt(bytes[offset + i]!);
  return { value, length };
}
