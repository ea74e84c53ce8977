/**
 * A reader for the header of GGUF model files (llama.cpp's format): metadata, tensor infos and
 * where the tensor data starts, read in chunks from the start of the file so a model of many
 * gigabytes costs a few reads. And a memory estimate for serving the model: its weights from
 * the tensor sizes plus a KV cache from the attention shape and the context length.
 *
 * Layout (GGUF v2 and v3, little-endian unless the file says otherwise): magic `GGUF`, version
 * (u32), tensor count (u64), metadata count (u64), the metadata key-value pairs, the tensor
 * infos, padding to `general.alignment` (32 when absent), then the tensor data.
 */
import { open } from 'node:fs/promises';

/** Why a file could not be read as GGUF. */
export type GgufErrorCode = 'not_gguf' | 'unsupported_version' | 'truncated' | 'malformed';

/** A file that is not a GGUF model this reader understands; the message says which part. */
export class GgufError extends Error {
  override name = 'GgufError';
  /** `not_gguf` (wrong magic), `unsupported_version`, `truncated`, or `malformed`. */
  readonly code: GgufErrorCode;

  constructor(code: GgufErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** The name of each GGUF metadata value type, by its number in the file. */
const valueTypeNames = [
  'uint8',
  'int8',
  'uint16',
  'int16',
  'uint32',
  'int32',
  'float32',
  'bool',
  'string',
  'array',
  'uint64',
  'int64',
  'float64',
] as const;

/** A GGUF metadata value type. */
export type GgufValueType = (typeof valueTypeNames)[number];

/** Byte size of the fixed-size value types. */
const fixedSizes: Partial<Record<GgufValueType, number>> = {
  uint8: 1,
  int8: 1,
  bool: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  uint64: 8,
  int64: 8,
  float64: 8,
};

/**
 * An array in the metadata. `values` holds the items when the array has at most
 * `maxArrayLength` of them; longer arrays (a tokenizer's vocabulary, its scores) are skipped
 * without being read into memory and have `values: undefined`.
 */
export interface GgufArray {
  type: 'array';
  /** The type of the items. */
  itemType: GgufValueType;
  /** Number of items. */
  length: number;
  /** The items, or undefined when the array was skipped for its length. */
  values: GgufValue[] | undefined;
}

/**
 * A metadata value. Integers of up to 32 bits and floats are numbers; 64-bit integers are
 * numbers when they fit in `Number.MAX_SAFE_INTEGER`, bigints otherwise.
 */
export type GgufValue = number | bigint | boolean | string | GgufArray;

/** One tensor as the header describes it. */
export interface GgufTensorInfo {
  name: string;
  /** Dimensions, innermost first (GGML's `ne` order). */
  dimensions: number[];
  /** The GGML type number. */
  type: number;
  /** The GGML type's name (`F16`, `Q4_K`, ...), when this reader knows the type. */
  typeName: string | undefined;
  /** Where its data starts, in bytes from {@link GgufHeader.dataOffset}. */
  offset: number;
  /** Size of its data in bytes, when this reader knows the type. */
  byteSize: number | undefined;
}

/** What {@link readGgufHeader} and {@link parseGgufHeader} return. */
export interface GgufHeader {
  /** Format version: 2 or 3. */
  version: 2 | 3;
  /** Whether the file is little-endian (almost all are). */
  littleEndian: boolean;
  /** Metadata by key, in file order. */
  metadata: Map<string, GgufValue>;
  /** Tensor infos, in file order. */
  tensors: GgufTensorInfo[];
  /** `general.architecture`, e.g. `llama`, when present. */
  architecture: string | undefined;
  /** Alignment of the tensor data, in bytes (`general.alignment`, 32 when absent). */
  alignment: number;
  /** Where the tensor data starts, in bytes from the start of the file. */
  dataOffset: number;
}

/** Options for {@link readGgufHeader} and {@link parseGgufHeader}. */
export interface GgufReadOptions {
  /**
   * Arrays longer than this are skipped (their `values` are undefined) instead of being read
   * into memory: a vocabulary of 150 000 strings is not needed to estimate memory.
   * @default 1024
   */
  maxArrayLength?: number;
}

/** Block geometry of a GGML tensor type: elements per block and bytes per block. */
interface GgmlTypeInfo {
  name: string;
  blockSize: number;
  typeSize: number;
}

/** The GGML tensor types, by number (block sizes of the quantized formats as GGML defines them). */
const ggmlTypes: ReadonlyMap<number, GgmlTypeInfo> = new Map(
  (
    [
      [0, 'F32', 1, 4],
      [1, 'F16', 1, 2],
      [2, 'Q4_0', 32, 18],
      [3, 'Q4_1', 32, 20],
      [6, 'Q5_0', 32, 22],
      [7, 'Q5_1', 32, 24],
      [8, 'Q8_0', 32, 34],
      [9, 'Q8_1', 32, 36],
      [10, 'Q2_K', 256, 84],
      [11, 'Q3_K', 256, 110],
      [12, 'Q4_K', 256, 144],
      [13, 'Q5_K', 256, 176],
      [14, 'Q6_K', 256, 210],
      [15, 'Q8_K', 256, 292],
      [16, 'IQ2_XXS', 256, 66],
      [17, 'IQ2_XS', 256, 74],
      [18, 'IQ3_XXS', 256, 98],
      [19, 'IQ1_S', 256, 50],
      [20, 'IQ4_NL', 32, 18],
      [21, 'IQ3_S', 256, 110],
      [22, 'IQ2_S', 256, 82],
      [23, 'IQ4_XS', 256, 136],
      [24, 'I8', 1, 1],
      [25, 'I16', 1, 2],
      [26, 'I32', 1, 4],
      [27, 'I64', 1, 8],
      [28, 'F64', 1, 8],
      [29, 'IQ1_M', 256, 56],
      [30, 'BF16', 1, 2],
      [34, 'TQ1_0', 256, 54],
      [35, 'TQ2_0', 256, 66],
      [39, 'MXFP4', 32, 17],
    ] as const
  ).map(([id, name, blockSize, typeSize]) => [id, { name, blockSize, typeSize }]),
);

/**
 * Bytes taken by `elements` values of a GGML type, or undefined for a type this reader does
 * not know.
 *
 * @throws {RangeError} when `elements` is not a whole number of the type's blocks.
 * @example
 * ```ts
 * ggmlTypeBytes(12, 4096 * 4096); // Q4_K: 9437184
 * ```
 */
export function ggmlTypeBytes(type: number, elements: number): number | undefined {
  const info = ggmlTypes.get(type);
  if (!info) return undefined;
  if (elements % info.blockSize !== 0) {
    throw new RangeError(
      `${elements} elements of ${info.name} are not a whole number of its ${info.blockSize}-element blocks.`,
    );
  }
  return (elements / info.blockSize) * info.typeSize;
}

/** The name of a GGML type number (`F16`, `Q4_K`, ...), or undefined when unknown. */
export function ggmlTypeName(type: number): string | undefined {
  return ggmlTypes.get(type)?.name;
}

const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"
const DEFAULT_ALIGNMENT = 32;
const MAX_KEY_LENGTH = 65_535;
/** Strings longer than this in a header are surely corruption (chat templates are < 1 MiB). */
const MAX_STRING_LENGTH = 64 * 1024 * 1024;
const MAX_DIMENSIONS = 8;
const MAX_ARRAY_DEPTH = 8;
const CHUNK_SIZE = 1024 * 1024;

/** Where bytes come from: a file read at positions, or bytes in memory. */
interface ByteSource {
  readonly size: number;
  /** Reads up to `length` bytes at `position`. */
  read(position: number, length: number): Promise<Uint8Array> | Uint8Array;
}

/** A forward-only cursor over a byte source that keeps one chunk buffered. */
class Cursor {
  position = 0;
  littleEndian = true;
  private buffer: Uint8Array = new Uint8Array(0);
  private view: DataView = new DataView(this.buffer.buffer);
  private bufferStart = 0;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(
    private readonly source: ByteSource,
    private readonly what: string,
  ) {}

  /** Makes `length` bytes from the position available in the buffer. */
  private async need(length: number, field: string): Promise<number> {
    const start = this.position - this.bufferStart;
    if (start >= 0 && start + length <= this.buffer.byteLength) return start;
    if (this.position + length > this.source.size) {
      throw new GgufError(
        'truncated',
        `${this.what} ends at byte ${this.source.size} while reading ${field} at byte ${this.position}: the file is truncated (an incomplete download?).`,
      );
    }
    const bytes = await this.source.read(this.position, Math.max(length, CHUNK_SIZE));
    if (bytes.byteLength < length) {
      throw new GgufError(
        'truncated',
        `${this.what} could not be read past byte ${this.position + bytes.byteLength} while reading ${field}: the file is truncated.`,
      );
    }
    this.buffer = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.bufferStart = this.position;
    return 0;
  }

  async bytes(length: number, field: string): Promise<Uint8Array> {
    const at = await this.need(length, field);
    this.position += length;
    return this.buffer.subarray(at, at + length);
  }

  async u8(field: string): Promise<number> {
    const at = await this.need(1, field);
    this.position += 1;
    return this.view.getUint8(at);
  }

  async u32(field: string): Promise<number> {
    const at = await this.need(4, field);
    this.position += 4;
    return this.view.getUint32(at, this.littleEndian);
  }

  async u64(field: string): Promise<bigint> {
    const at = await this.need(8, field);
    this.position += 8;
    return this.view.getBigUint64(at, this.littleEndian);
  }

  /** A u64 that must fit in a JS number (a count, a length, an offset). */
  async count(field: string): Promise<number> {
    const value = await this.u64(field);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new GgufError(
        'malformed',
        `${this.what} has an impossible ${field} (${value}) at byte ${this.position - 8}.`,
      );
    }
    return Number(value);
  }

  async scalar(type: GgufValueType, field: string): Promise<number | bigint | boolean> {
    const size = fixedSizes[type]!;
    const at = await this.need(size, field);
    this.position += size;
    const view = this.view;
    const le = this.littleEndian;
    switch (type) {
      case 'uint8':
        return view.getUint8(at);
      case 'int8':
        return view.getInt8(at);
      case 'uint16':
        return view.getUint16(at, le);
      case 'int16':
        return view.getInt16(at, le);
      case 'uint32':
        return view.getUint32(at, le);
      case 'int32':
        return view.getInt32(at, le);
      case 'float32':
        return view.getFloat32(at, le);
      case 'float64':
        return view.getFloat64(at, le);
      case 'uint64':
        return smallest(view.getBigUint64(at, le));
      case 'int64':
        return smallest(view.getBigInt64(at, le));
      default: {
        const byte = view.getUint8(at);
        if (byte > 1) {
          throw new GgufError(
            'malformed',
            `${this.what} has a boolean ${field} with the value ${byte} at byte ${this.position - 1}.`,
          );
        }
        return byte === 1;
      }
    }
  }

  /** The length of a string, checked against the file and a sanity limit. */
  async stringLength(field: string, limit = MAX_STRING_LENGTH): Promise<number> {
    const length = await this.count(`the length of ${field}`);
    if (length > limit) {
      throw new GgufError(
        'malformed',
        `${this.what} has a ${length}-byte ${field} at byte ${this.position - 8}, longer than the ${limit} bytes allowed.`,
      );
    }
    return length;
  }

  async string(field: string, limit?: number): Promise<string> {
    const length = await this.stringLength(field, limit);
    return this.decoder.decode(await this.bytes(length, field));
  }

  /** Moves past `length` bytes without reading them. */
  skip(length: number, field: string): void {
    if (this.position + length > this.source.size) {
      throw new GgufError(
        'truncated',
        `${this.what} ends at byte ${this.source.size} inside ${field} (which needs bytes up to ${this.position + length}): the file is truncated.`,
      );
    }
    this.position += length;
  }
}

function smallest(value: bigint): number | bigint {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
    ? Number(value)
    : value;
}

async function readValueType(cursor: Cursor, field: string): Promise<GgufValueType> {
  const at = cursor.position;
  const number = await cursor.u32(`the type of ${field}`);
  const type = valueTypeNames[number];
  if (!type) {
    throw new GgufError(
      'malformed',
      `The type of ${field} at byte ${at} is ${number}, which is not a GGUF value type (0 to 12).`,
    );
  }
  return type;
}

async function readValue(
  cursor: Cursor,
  type: GgufValueType,
  field: string,
  maxArrayLength: number,
  depth = 0,
): Promise<GgufValue> {
  if (type === 'string') return cursor.string(field);
  if (type !== 'array') return cursor.scalar(type, field);
  if (depth >= MAX_ARRAY_DEPTH) {
    throw new GgufError('malformed', `${field} nests arrays more than ${MAX_ARRAY_DEPTH} deep.`);
  }
  const itemType = await readValueType(cursor, `the items of ${field}`);
  const length = await cursor.count(`the length of ${field}`);
  if (length > maxArrayLength) {
    await skipArray(cursor, itemType, length, field, depth);
    return { type: 'array', itemType, length, values: undefined };
  }
  const values: GgufValue[] = [];
  for (let index = 0; index < length; index++) {
    values.push(await readValue(cursor, itemType, `${field}[${index}]`, maxArrayLength, depth + 1));
  }
  return { type: 'array', itemType, length, values };
}

/** Moves past an array: in one jump for fixed-size items, one length at a time for strings. */
async function skipArray(
  cursor: Cursor,
  itemType: GgufValueType,
  length: number,
  field: string,
  depth: number,
): Promise<void> {
  const size = fixedSizes[itemType];
  if (size !== undefined) {
    cursor.skip(length * size, field);
    return;
  }
  for (let index = 0; index < length; index++) {
    if (itemType === 'string') {
      cursor.skip(await cursor.stringLength(`${field}[${index}]`), `${field}[${index}]`);
    } else {
      const innerType = await readValueType(cursor, `the items of ${field}[${index}]`);
      const innerLength = await cursor.count(`the length of ${field}[${index}]`);
      if (depth + 1 >= MAX_ARRAY_DEPTH) {
        throw new GgufError(
          'malformed',
          `${field} nests arrays more than ${MAX_ARRAY_DEPTH} deep.`,
        );
      }
      await skipArray(cursor, innerType, innerLength, `${field}[${index}]`, depth + 1);
    }
  }
}

async function parse(
  source: ByteSource,
  what: string,
  options: GgufReadOptions,
): Promise<GgufHeader> {
  const maxArrayLength = options.maxArrayLength ?? 1024;
  const cursor = new Cursor(source, what);
  if (source.size < 4) {
    throw new GgufError(
      'not_gguf',
      `${what} is not a GGUF model: it has only ${source.size} bytes. Point to a .gguf file.`,
    );
  }
  const magic = await cursor.bytes(4, 'the magic number');
  if (!GGUF_MAGIC.every((byte, index) => magic[index] === byte)) {
    throw new GgufError(
      'not_gguf',
      `${what} is not a GGUF model: it does not start with "GGUF". Point to a .gguf file (older GGML/GGJT files must be converted).`,
    );
  }
  let version = await cursor.u32('the version');
  if (version > 0xffff) {
    // Big-endian files carry the same structure with every number byte-swapped.
    const swapped = new DataView(new ArrayBuffer(4));
    swapped.setUint32(0, version, true);
    const bigEndianVersion = swapped.getUint32(0, false);
    if (bigEndianVersion === 2 || bigEndianVersion === 3) {
      cursor.littleEndian = false;
      version = bigEndianVersion;
    }
  }
  if (version !== 2 && version !== 3) {
    throw new GgufError(
      'unsupported_version',
      version === 1
        ? `${what} is GGUF version 1 (2023), which this reader does not support. Convert the model again with a current llama.cpp.`
        : `${what} is GGUF version ${version}; this reader knows versions 2 and 3.`,
    );
  }
  const tensorCount = await cursor.count('the tensor count');
  const metadataCount = await cursor.count('the metadata count');
  // Each tensor info takes at least 24 bytes and each key-value at least 13: say so at once
  // rather than after reading what is there.
  if (tensorCount * 24 + metadataCount * 13 > source.size - cursor.position) {
    throw new GgufError(
      'truncated',
      `${what} claims ${tensorCount} tensors and ${metadataCount} metadata entries, more than its ${source.size} bytes can hold: the file is truncated or corrupt.`,
    );
  }

  const metadata = new Map<string, GgufValue>();
  for (let index = 0; index < metadataCount; index++) {
    const key = await cursor.string(`metadata key #${index}`, MAX_KEY_LENGTH);
    const type = await readValueType(cursor, `metadata "${key}"`);
    metadata.set(key, await readValue(cursor, type, `metadata "${key}"`, maxArrayLength));
  }

  const alignmentValue = metadata.get('general.alignment');
  const alignment = alignmentValue === undefined ? DEFAULT_ALIGNMENT : alignmentValue;
  if (typeof alignment !== 'number' || !Number.isInteger(alignment) || alignment <= 0) {
    throw new GgufError(
      'malformed',
      `${what} has general.alignment ${String(alignment)}; it must be a positive integer.`,
    );
  }

  const tensors: GgufTensorInfo[] = [];
  for (let index = 0; index < tensorCount; index++) {
    const name = await cursor.string(`the name of tensor #${index}`, MAX_KEY_LENGTH);
    const dimensionCount = await cursor.u32(`the dimension count of tensor "${name}"`);
    if (dimensionCount > MAX_DIMENSIONS) {
      throw new GgufError(
        'malformed',
        `${what} gives tensor "${name}" ${dimensionCount} dimensions (at most ${MAX_DIMENSIONS} make sense).`,
      );
    }
    const dimensions: number[] = [];
    for (let axis = 0; axis < dimensionCount; axis++) {
      dimensions.push(await cursor.count(`dimension ${axis} of tensor "${name}"`));
    }
    const type = await cursor.u32(`the type of tensor "${name}"`);
    const offset = await cursor.count(`the offset of tensor "${name}"`);
    const elements = dimensions.reduce((product, size) => product * size, 1);
    let byteSize: number | undefined;
    try {
      byteSize = ggmlTypeBytes(type, elements);
    } catch (error) {
      throw new GgufError(
        'malformed',
        `${what} gives tensor "${name}" a shape (${dimensions.join(' x ')}) that does not fit its type: ${(error as Error).message}`,
      );
    }
    tensors.push({ name, dimensions, type, typeName: ggmlTypeName(type), offset, byteSize });
  }

  const dataOffset = Math.ceil(cursor.position / alignment) * alignment;
  const architecture = metadata.get('general.architecture');
  return {
    version,
    littleEndian: cursor.littleEndian,
    metadata,
    tensors,
    architecture: typeof architecture === 'string' ? architecture : undefined,
    alignment,
    dataOffset,
  };
}

/**
 * Reads the header of a GGUF file: only the bytes before the tensor data, in 1 MiB chunks,
 * never the weights.
 *
 * @param path The `.gguf` file.
 * @throws {GgufError} `not_gguf`, `unsupported_version`, `truncated` or `malformed`, with the
 *   byte position where reading stopped.
 * @throws the file system's error (e.g. `ENOENT`) when the file cannot be opened.
 * @example
 * ```ts
 * const header = await readGgufHeader('/models/qwen2.5-7b-instruct-q4_k_m.gguf');
 * header.architecture; // 'qwen2'
 * header.metadata.get('qwen2.block_count'); // 28
 * ```
 */
export async function readGgufHeader(
  path: string,
  options: GgufReadOptions = {},
): Promise<GgufHeader> {
  const handle = await open(path, 'r');
  try {
    const { size } = await handle.stat();
    const source: ByteSource = {
      size,
      async read(position, length) {
        const buffer = new Uint8Array(Math.min(length, size - position));
        let filled = 0;
        while (filled < buffer.byteLength) {
          const { bytesRead } = await handle.read(
            buffer,
            filled,
            buffer.byteLength - filled,
            position + filled,
          );
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
        return buffer.subarray(0, filled);
      },
    };
    return await parse(source, `The file ${path}`, options);
  } finally {
    await handle.close();
  }
}

/**
 * Parses a GGUF header from bytes in memory (the start of a file is enough: the bytes up to
 * the tensor data).
 *
 * @throws {GgufError} as {@link readGgufHeader}.
 * @example
 * ```ts
 * const header = await parseGgufHeader(new Uint8Array(await blob.slice(0, 8 << 20).arrayBuffer()));
 * ```
 */
export function parseGgufHeader(
  bytes: Uint8Array,
  options: GgufReadOptions = {},
): Promise<GgufHeader> {
  const source: ByteSource = {
    size: bytes.byteLength,
    read: (position, length) => bytes.subarray(position, position + length),
  };
  return parse(source, 'The GGUF data', options);
}

/** KV cache element types llama.cpp accepts (`--cache-type-k` / `--cache-type-v`). */
export type KvCacheType =
  | 'f32'
  | 'f16'
  | 'bf16'
  | 'q8_0'
  | 'q4_0'
  | 'q4_1'
  | 'iq4_nl'
  | 'q5_0'
  | 'q5_1';

const kvCacheTypes: Record<KvCacheType, number> = {
  f32: 0,
  f16: 1,
  bf16: 30,
  q8_0: 8,
  q4_0: 2,
  q4_1: 3,
  iq4_nl: 20,
  q5_0: 6,
  q5_1: 7,
};

/** Whether a string names a KV cache type llama.cpp accepts. */
export function isKvCacheType(value: string): value is KvCacheType {
  return Object.hasOwn(kvCacheTypes, value);
}

/** Options for {@link estimateModelMemory}. */
export interface EstimateModelMemoryOptions {
  /**
   * Context length the server allocates, in tokens (llama-server's `--ctx-size`; for several
   * slots, the total).
   * @default the model's trained context length (`<arch>.context_length`)
   */
  contextSize?: number;
  /** Element type of the KV cache. @default 'f16' */
  kvCacheType?: KvCacheType;
}

/** What {@link estimateModelMemory} returns. All sizes in bytes. */
export interface ModelMemoryEstimate {
  /** The tensors' data: the sum of every tensor's size. */
  weightsBytes: number;
  /** Keys and values for `contextSize` tokens in every layer. 0 when the model has no attention keys. */
  kvCacheBytes: number;
  /** A rough allowance for compute buffers and the runtime: 5% of the rest plus 64 MiB. */
  overheadBytes: number;
  /** The sum of the three. */
  totalBytes: number;
  /** The context length the KV cache was sized for, when known. */
  contextSize: number | undefined;
  /** `general.architecture`, when present. */
  architecture: string | undefined;
}

const OVERHEAD_FIXED_BYTES = 64 * 1024 * 1024;
const OVERHEAD_FRACTION = 0.05;

function positiveNumber(value: GgufValue | undefined): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : undefined;
}

/** A per-layer value that may be one number for every layer or an array with one per layer. */
function perLayer(value: GgufValue | undefined, layers: number): number[] | undefined {
  const single = positiveNumber(value);
  if (single !== undefined) return new Array<number>(layers).fill(single);
  if (typeof value === 'object' && value.values && value.values.length === layers) {
    return value.values.map((item) => (typeof item === 'number' && item >= 0 ? item : 0));
  }
  return undefined;
}

/**
 * Estimates the memory a server needs to serve a model: the weights (every tensor's size from
 * its GGML type's block size) plus the KV cache, `contextSize` tokens x layers x (keys + values)
 * per token, where keys per token are `key_length x head_count_kv` (key length defaulting to
 * `embedding_length / head_count`, KV heads to `head_count`), plus a rough allowance for compute
 * buffers. An estimate to budget with, not a measurement: real servers add buffers that depend
 * on batch size, offloading and backend.
 *
 * @throws {RangeError} when a tensor has a GGML type this reader does not know (set the
 *   model's memory by hand instead), or `contextSize` is not a positive integer.
 * @example
 * ```ts
 * const header = await readGgufHeader('/models/llama-3.1-8b-q4_k_m.gguf');
 * const { totalBytes } = estimateModelMemory(header, { contextSize: 8192 });
 * ```
 */
export function estimateModelMemory(
  header: GgufHeader,
  options: EstimateModelMemoryOptions = {},
): ModelMemoryEstimate {
  let weightsBytes = 0;
  for (const tensor of header.tensors) {
    if (tensor.byteSize === undefined) {
      throw new RangeError(
        `Tensor "${tensor.name}" has GGML type ${tensor.type}, which this estimate does not know. Give the model's memory by hand.`,
      );
    }
    weightsBytes += tensor.byteSize;
  }
  if (
    options.contextSize !== undefined &&
    (!Number.isInteger(options.contextSize) || options.contextSize <= 0)
  ) {
    throw new RangeError(`contextSize must be a positive integer, not ${options.contextSize}.`);
  }

  const { architecture, metadata } = header;
  const key = (name: string) => metadata.get(`${architecture}.${name}`);
  const contextSize = options.contextSize ?? positiveNumber(key('context_length'));
  const layers = positiveNumber(key('block_count'));
  const embedding = positiveNumber(key('embedding_length'));
  let kvCacheBytes = 0;
  if (architecture && contextSize && layers && embedding) {
    const heads = perLayer(key('attention.head_count'), layers);
    const kvHeads = perLayer(key('attention.head_count_kv'), layers) ?? heads;
    if (heads && kvHeads) {
      const maxHeads = Math.max(...heads);
      const keyLength = positiveNumber(key('attention.key_length')) ?? embedding / maxHeads;
      const valueLength = positiveNumber(key('attention.value_length')) ?? embedding / maxHeads;
      const elementsPerToken = kvHeads.reduce((sum, kv) => sum + kv * (keyLength + valueLength), 0);
      const type = kvCacheTypes[options.kvCacheType ?? 'f16'];
      const info = ggmlTypes.get(type)!;
      kvCacheBytes = Math.ceil((contextSize * elementsPerToken * info.typeSize) / info.blockSize);
    }
  }
  const overheadBytes =
    Math.round((weightsBytes + kvCacheBytes) * OVERHEAD_FRACTION) + OVERHEAD_FIXED_BYTES;
  return {
    weightsBytes,
    kvCacheBytes,
    overheadBytes,
    totalBytes: weightsBytes + kvCacheBytes + overheadBytes,
    contextSize,
    architecture,
  };
}
