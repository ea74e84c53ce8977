/**
 * GGUF header reader and memory estimate: against the real tiny model in ../shared/models,
 * and against files written here byte by byte for every value type, both versions, big-endian,
 * alignment, tensor types and the ways a file can be broken.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  estimateModelMemory,
  GgufError,
  type GgufHeader,
  ggmlTypeBytes,
  parseGgufHeader,
  readGgufHeader,
} from './index.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const TINY_MODEL = resolve(here, '../../../../shared/models/llama-2-tiny-random.gguf');
const hasTinyModel = existsSync(TINY_MODEL);
if (!hasTinyModel) {
  console.warn(`Skipping the real-GGUF tests: ${TINY_MODEL} is absent.`);
}

// ---------------------------------------------------------------------------------------------
// A GGUF writer for tests

type Entry =
  | { type: 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32'; value: number }
  | { type: 'float32' | 'float64'; value: number }
  | { type: 'uint64' | 'int64'; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: Entry['type']; items: Entry[] };

const typeNumbers: Record<Entry['type'], number> = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
};

interface TensorSpec {
  name: string;
  dimensions: number[];
  type: number;
}

interface WriteOptions {
  version?: number;
  bigEndian?: boolean;
  metadata?: Array<[string, Entry]>;
  tensors?: TensorSpec[];
  /** Bytes of tensor data to append after the header (zeros). @default what the tensors need */
  dataBytes?: number;
}

class Writer {
  private chunks: Uint8Array[] = [];
  size = 0;
  constructor(private readonly littleEndian: boolean) {}

  private put(bytes: number, fill: (view: DataView) => void) {
    const buffer = new Uint8Array(bytes);
    fill(new DataView(buffer.buffer));
    this.chunks.push(buffer);
    this.size += bytes;
  }
  raw(bytes: Uint8Array) {
    this.chunks.push(bytes);
    this.size += bytes.byteLength;
  }
  u8 = (value: number) => this.put(1, (view) => view.setUint8(0, value));
  i8 = (value: number) => this.put(1, (view) => view.setInt8(0, value));
  u16 = (value: number) => this.put(2, (view) => view.setUint16(0, value, this.littleEndian));
  i16 = (value: number) => this.put(2, (view) => view.setInt16(0, value, this.littleEndian));
  u32 = (value: number) => this.put(4, (view) => view.setUint32(0, value, this.littleEndian));
  i32 = (value: number) => this.put(4, (view) => view.setInt32(0, value, this.littleEndian));
  f32 = (value: number) => this.put(4, (view) => view.setFloat32(0, value, this.littleEndian));
  f64 = (value: number) => this.put(8, (view) => view.setFloat64(0, value, this.littleEndian));
  u64 = (value: bigint | number) =>
    this.put(8, (view) => view.setBigUint64(0, BigInt(value), this.littleEndian));
  i64 = (value: bigint) => this.put(8, (view) => view.setBigInt64(0, value, this.littleEndian));
  string(value: string) {
    const bytes = new TextEncoder().encode(value);
    this.u64(bytes.byteLength);
    this.raw(bytes);
  }
  value(entry: Entry) {
    switch (entry.type) {
      case 'uint8':
        return this.u8(entry.value);
      case 'int8':
        return this.i8(entry.value);
      case 'uint16':
        return this.u16(entry.value);
      case 'int16':
        return this.i16(entry.value);
      case 'uint32':
        return this.u32(entry.value);
      case 'int32':
        return this.i32(entry.value);
      case 'float32':
        return this.f32(entry.value);
      case 'float64':
        return this.f64(entry.value);
      case 'uint64':
        return this.u64(entry.value);
      case 'int64':
        return this.i64(entry.value);
      case 'bool':
        return this.u8(entry.value ? 1 : 0);
      case 'string':
        return this.string(entry.value);
      default:
        this.u32(typeNumbers[entry.itemType]);
        this.u64(entry.items.length);
        for (const item of entry.items) this.value(item);
    }
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.byteLength;
    }
    return out;
  }
}

/** Writes a GGUF file: header, metadata, tensor infos, padding, zeroed tensor data. */
function writeGguf(options: WriteOptions = {}): { bytes: Uint8Array; headerEnd: number } {
  const writer = new Writer(!options.bigEndian);
  const metadata = options.metadata ?? [];
  const tensors = options.tensors ?? [];
  writer.raw(new TextEncoder().encode('GGUF'));
  writer.u32(options.version ?? 3);
  writer.u64(tensors.length);
  writer.u64(metadata.length);
  for (const [key, entry] of metadata) {
    writer.string(key);
    writer.u32(typeNumbers[entry.type]);
    writer.value(entry);
  }
  const alignmentEntry = metadata.find(([key]) => key === 'general.alignment')?.[1];
  const alignment = alignmentEntry && alignmentEntry.type === 'uint32' ? alignmentEntry.value : 32;
  let offset = 0;
  for (const tensor of tensors) {
    writer.string(tensor.name);
    writer.u32(tensor.dimensions.length);
    for (const size of tensor.dimensions) writer.u64(size);
    writer.u32(tensor.type);
    writer.u64(offset);
    const elements = tensor.dimensions.reduce((product, size) => product * size, 1);
    let size = 0;
    try {
      size = ggmlTypeBytes(tensor.type, elements) ?? 0;
    } catch {
      // A shape that does not fit its type, written on purpose: no data for it.
    }
    offset += Math.ceil(size / alignment) * alignment;
  }
  const headerEnd = writer.size;
  const padding = (alignment - (headerEnd % alignment)) % alignment;
  writer.raw(new Uint8Array(padding));
  writer.raw(new Uint8Array(options.dataBytes ?? offset));
  return { bytes: writer.bytes(), headerEnd };
}

const u32 = (value: number): Entry => ({ type: 'uint32', value });
const str = (value: string): Entry => ({ type: 'string', value });

function llamaMetadata(overrides: Record<string, Entry> = {}): Array<[string, Entry]> {
  const base: Record<string, Entry> = {
    'general.architecture': str('llama'),
    'llama.context_length': u32(8192),
    'llama.embedding_length': u32(4096),
    'llama.block_count': u32(32),
    'llama.attention.head_count': u32(32),
    'llama.attention.head_count_kv': u32(8),
    ...overrides,
  };
  return Object.entries(base);
}

async function parseError(bytes: Uint8Array): Promise<GgufError> {
  try {
    await parseGgufHeader(bytes);
  } catch (error) {
    if (error instanceof GgufError) return error;
    throw error;
  }
  throw new Error('expected the parse to fail');
}

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'tollgate-gguf-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe.skipIf(!hasTinyModel)('the real tiny model (llama-2-tiny-random.gguf)', () => {
  let header: GgufHeader;
  beforeAll(async () => {
    header = await readGgufHeader(TINY_MODEL);
  });

  it('behavior: reads version, architecture and the llama hyperparameters', () => {
    expect(header.version).toBe(3);
    expect(header.littleEndian).toBe(true);
    expect(header.architecture).toBe('llama');
    expect(header.metadata.get('general.name')).toBe('LLaMA v2');
    expect(header.metadata.get('llama.context_length')).toBe(4096);
    expect(header.metadata.get('llama.embedding_length')).toBe(8);
    expect(header.metadata.get('llama.block_count')).toBe(1);
    expect(header.metadata.get('llama.feed_forward_length')).toBe(32);
    expect(header.metadata.get('llama.attention.head_count')).toBe(2);
    expect(header.metadata.get('llama.attention.head_count_kv')).toBe(2);
    expect(header.metadata.get('tokenizer.ggml.model')).toBe('llama');
    expect(header.metadata.get('tokenizer.ggml.bos_token_id')).toBe(1);
  });

  it('behavior: skips the 32000-token vocabulary without reading it into memory', () => {
    expect(header.metadata.get('tokenizer.ggml.tokens')).toEqual({
      type: 'array',
      itemType: 'string',
      length: 32000,
      values: undefined,
    });
    expect(header.metadata.get('tokenizer.ggml.scores')).toMatchObject({
      itemType: 'float32',
      length: 32000,
      values: undefined,
    });
  });

  it('behavior: lists the tensors and finds where their data starts', async () => {
    expect(header.tensors).toHaveLength(12);
    expect(header.tensors[0]).toEqual({
      name: 'token_embd.weight',
      dimensions: [8, 32000],
      type: 1,
      typeName: 'F16',
      offset: 0,
      byteSize: 8 * 32000 * 2,
    });
    expect(header.alignment).toBe(32);
    expect(header.dataOffset % 32).toBe(0);
    const { size } = await stat(TINY_MODEL);
    // The last tensor ends exactly at the end of the file.
    const last = header.tensors.reduce((a, b) => (a.offset > b.offset ? a : b));
    expect(header.dataOffset + last.offset + last.byteSize!).toBe(size);
  });

  it('behavior: weights are the sum of the tensor sizes, close to the data section', async () => {
    const estimate = estimateModelMemory(header);
    const sum = header.tensors.reduce((total, tensor) => total + tensor.byteSize!, 0);
    expect(estimate.weightsBytes).toBe(sum);
    const { size } = await stat(TINY_MODEL);
    const dataSection = size - header.dataOffset;
    expect(estimate.weightsBytes).toBeLessThanOrEqual(dataSection);
    expect(dataSection - estimate.weightsBytes).toBeLessThan(header.tensors.length * 32);
  });

  it('behavior: the KV cache follows layers, KV heads, head size and context', () => {
    // 1 layer x 2 KV heads x (4 + 4) per head x 4096 tokens x 2 bytes (f16).
    const estimate = estimateModelMemory(header);
    expect(estimate).toMatchObject({
      kvCacheBytes: 4096 * 1 * 2 * 8 * 2,
      contextSize: 4096,
      architecture: 'llama',
    });
    expect(estimate.totalBytes).toBe(
      estimate.weightsBytes + estimate.kvCacheBytes + estimate.overheadBytes,
    );
    const smaller = estimateModelMemory(header, { contextSize: 512, kvCacheType: 'q8_0' });
    expect(smaller.kvCacheBytes).toBe((512 * 16 * 34) / 32);
    expect(smaller.contextSize).toBe(512);
  });
});

describe('readGgufHeader', () => {
  it('behavior: reads the header of a 3 GiB file without reading its data', async () => {
    const threeGiB = 3 * 1024 ** 3;
    const { bytes } = writeGguf({
      metadata: llamaMetadata(),
      tensors: [{ name: 'huge', dimensions: [threeGiB / 4 - 1024], type: 0 }],
      dataBytes: 0,
    });
    const path = join(directory, 'sparse.gguf');
    await writeFile(path, bytes);
    const handle = await open(path, 'r+');
    // Sparse: no disk space is used, and a reader that loads the whole file fails (over 2 GiB).
    await handle.truncate(threeGiB);
    await handle.close();
    const header = await readGgufHeader(path);
    expect(header.tensors[0]?.byteSize).toBe(threeGiB - 4096);
    expect(header.architecture).toBe('llama');
  });

  it('behavior: a file parses the same as its bytes', async () => {
    const { bytes } = writeGguf({
      metadata: llamaMetadata(),
      tensors: [{ name: 'a', dimensions: [64], type: 8 }],
    });
    const path = join(directory, 'same.gguf');
    await writeFile(path, bytes);
    expect(await readGgufHeader(path)).toEqual(await parseGgufHeader(bytes));
  });

  it('error: a missing file rejects with the file system error', async () => {
    await expect(readGgufHeader(join(directory, 'missing.gguf'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });

  it('error: a text file is not GGUF, and the message names the file', async () => {
    const path = join(directory, 'readme.txt');
    await writeFile(path, 'This is not a model.');
    const error = await readGgufHeader(path).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(GgufError);
    expect(error).toMatchObject({ code: 'not_gguf' });
    expect((error as Error).message).toContain(path);
  });
});

describe('parseGgufHeader', () => {
  const everyType: Array<[string, Entry]> = [
    ['t.u8', { type: 'uint8', value: 250 }],
    ['t.i8', { type: 'int8', value: -100 }],
    ['t.u16', { type: 'uint16', value: 65000 }],
    ['t.i16', { type: 'int16', value: -32000 }],
    ['t.u32', { type: 'uint32', value: 4_000_000_000 }],
    ['t.i32', { type: 'int32', value: -2_000_000_000 }],
    ['t.f32', { type: 'float32', value: 0.5 }],
    ['t.f64', { type: 'float64', value: Math.PI }],
    ['t.u64', { type: 'uint64', value: 123n }],
    ['t.u64.big', { type: 'uint64', value: 2n ** 60n }],
    ['t.i64', { type: 'int64', value: -5n }],
    ['t.bool', { type: 'bool', value: true }],
    ['t.string', { type: 'string', value: 'héllo ✓' }],
    [
      't.array',
      {
        type: 'array',
        itemType: 'int32',
        items: [
          { type: 'int32', value: 1 },
          { type: 'int32', value: -2 },
        ],
      },
    ],
    [
      't.nested',
      {
        type: 'array',
        itemType: 'array',
        items: [{ type: 'array', itemType: 'string', items: [str('a'), str('b')] }],
      },
    ],
  ];
  const expected = new Map<string, unknown>([
    ['t.u8', 250],
    ['t.i8', -100],
    ['t.u16', 65000],
    ['t.i16', -32000],
    ['t.u32', 4_000_000_000],
    ['t.i32', -2_000_000_000],
    ['t.f32', 0.5],
    ['t.f64', Math.PI],
    ['t.u64', 123],
    ['t.u64.big', 2n ** 60n],
    ['t.i64', -5],
    ['t.bool', true],
    ['t.string', 'héllo ✓'],
    ['t.array', { type: 'array', itemType: 'int32', length: 2, values: [1, -2] }],
    [
      't.nested',
      {
        type: 'array',
        itemType: 'array',
        length: 1,
        values: [{ type: 'array', itemType: 'string', length: 2, values: ['a', 'b'] }],
      },
    ],
  ]);

  for (const version of [2, 3]) {
    it(`behavior: reads every metadata value type (version ${version})`, async () => {
      const header = await parseGgufHeader(writeGguf({ version, metadata: everyType }).bytes);
      expect(header.version).toBe(version);
      expect(header.metadata).toEqual(expected);
      expect(header.tensors).toEqual([]);
    });
  }

  it('behavior: reads a big-endian file', async () => {
    const { bytes } = writeGguf({
      bigEndian: true,
      metadata: [...llamaMetadata(), ...everyType],
      tensors: [{ name: 'w', dimensions: [256, 2], type: 12 }],
    });
    const header = await parseGgufHeader(bytes);
    expect(header.littleEndian).toBe(false);
    expect(header.metadata.get('t.u32')).toBe(4_000_000_000);
    expect(header.metadata.get('t.u64.big')).toBe(2n ** 60n);
    expect(header.tensors[0]).toMatchObject({ dimensions: [256, 2], typeName: 'Q4_K' });
  });

  it('behavior: arrays longer than maxArrayLength are skipped, strings and numbers alike', async () => {
    const strings: Entry = {
      type: 'array',
      itemType: 'string',
      items: Array.from({ length: 5 }, (_, index) => str(`token-${index}`)),
    };
    const numbers: Entry = {
      type: 'array',
      itemType: 'float32',
      items: Array.from({ length: 5 }, (_, index) => ({ type: 'float32', value: index })),
    };
    const { bytes } = writeGguf({
      metadata: [
        ['tokens', strings],
        ['scores', numbers],
        ['after', str('still read')],
      ],
    });
    const header = await parseGgufHeader(bytes, { maxArrayLength: 4 });
    expect(header.metadata.get('tokens')).toEqual({
      type: 'array',
      itemType: 'string',
      length: 5,
      values: undefined,
    });
    expect(header.metadata.get('scores')).toMatchObject({ length: 5, values: undefined });
    expect(header.metadata.get('after')).toBe('still read');
    const full = await parseGgufHeader(bytes, { maxArrayLength: 5 });
    expect(full.metadata.get('tokens')).toMatchObject({
      values: strings.items.map((item) => item.type === 'string' && item.value),
    });
  });

  it('behavior: general.alignment places the tensor data', async () => {
    const { bytes } = writeGguf({
      metadata: [['general.alignment', u32(256)]],
      tensors: [{ name: 'x', dimensions: [3], type: 0 }],
    });
    const header = await parseGgufHeader(bytes);
    expect(header.alignment).toBe(256);
    expect(header.dataOffset % 256).toBe(0);
    expect(header.dataOffset).toBeGreaterThan(0);
  });

  it('behavior: tensor sizes follow each GGML type block size', async () => {
    const { bytes } = writeGguf({
      tensors: [
        { name: 'f32', dimensions: [10, 3], type: 0 },
        { name: 'f16', dimensions: [10], type: 1 },
        { name: 'q4_0', dimensions: [64], type: 2 },
        { name: 'q8_0', dimensions: [32, 2], type: 8 },
        { name: 'q4_k', dimensions: [256, 4], type: 12 },
        { name: 'q6_k', dimensions: [512], type: 14 },
        { name: 'bf16', dimensions: [7], type: 30 },
        { name: 'mxfp4', dimensions: [32], type: 39 },
      ],
    });
    const header = await parseGgufHeader(bytes);
    expect(header.tensors.map((tensor) => [tensor.typeName, tensor.byteSize])).toEqual([
      ['F32', 120],
      ['F16', 20],
      ['Q4_0', 36],
      ['Q8_0', 68],
      ['Q4_K', 576],
      ['Q6_K', 420],
      ['BF16', 14],
      ['MXFP4', 17],
    ]);
    expect(estimateModelMemory(header).weightsBytes).toBe(120 + 20 + 36 + 68 + 576 + 420 + 14 + 17);
  });

  it('behavior: an unknown tensor type parses, but the estimate asks for the memory by hand', async () => {
    const { bytes } = writeGguf({ tensors: [{ name: 'new', dimensions: [8], type: 99 }] });
    const header = await parseGgufHeader(bytes);
    expect(header.tensors[0]).toMatchObject({ type: 99, typeName: undefined, byteSize: undefined });
    expect(() => estimateModelMemory(header)).toThrow(/GGML type 99.*by hand/);
  });

  it('error: every cut of a file before its tensor data is reported as truncated', async () => {
    const { bytes, headerEnd } = writeGguf({
      metadata: [...llamaMetadata(), ...everyType],
      tensors: [{ name: 'w', dimensions: [32], type: 8 }],
    });
    for (let length = 4; length < headerEnd; length++) {
      const error = await parseError(bytes.subarray(0, length));
      expect(error.code, `cut at ${length}`).toBe('truncated');
    }
    for (let length = 0; length < 4; length++) {
      expect((await parseError(bytes.subarray(0, length))).code).toBe('not_gguf');
    }
  });

  it('error: other magic numbers are not GGUF', async () => {
    const error = await parseError(new TextEncoder().encode('GGJT\u0003\u0000\u0000\u0000rest'));
    expect(error.code).toBe('not_gguf');
    expect(error.message).toMatch(/does not start with "GGUF"/);
  });

  it('error: versions other than 2 and 3 are refused by number', async () => {
    const v1 = await parseError(writeGguf({ version: 1 }).bytes);
    expect(v1).toMatchObject({ code: 'unsupported_version' });
    expect(v1.message).toMatch(/version 1.*Convert the model again/);
    const v4 = await parseError(writeGguf({ version: 4 }).bytes);
    expect(v4.message).toMatch(/version 4; this reader knows versions 2 and 3/);
  });

  it('error: malformed values are named with their key', async () => {
    const badType = writeGguf({ metadata: [['k', u32(1)]] }).bytes;
    // The value type of the first key sits after magic, version, counts and the key "k".
    new DataView(badType.buffer).setUint32(4 + 4 + 8 + 8 + 8 + 1, 13, true);
    const typeError = await parseError(badType);
    expect(typeError.code).toBe('malformed');
    expect(typeError.message).toMatch(/metadata "k".*not a GGUF value type/);

    const badBool = writeGguf({ metadata: [['flag', { type: 'bool', value: true }]] }).bytes;
    badBool[4 + 4 + 8 + 8 + 8 + 4 + 4] = 2;
    expect((await parseError(badBool)).message).toMatch(/boolean metadata "flag" with the value 2/);
  });

  it('error: counts the file cannot hold are refused before any loop', async () => {
    const bytes = writeGguf().bytes;
    new DataView(bytes.buffer).setBigUint64(8, 10n ** 12n, true);
    expect((await parseError(bytes)).message).toMatch(/claims 1000000000000 tensors/);
  });

  it('error: a shape that does not fit its type is malformed', async () => {
    const bytes = writeGguf({ tensors: [{ name: 'odd', dimensions: [33], type: 2 }] }).bytes;
    const error = await parseError(bytes);
    expect(error.code).toBe('malformed');
    expect(error.message).toMatch(/tensor "odd".*33 elements of Q4_0/);
  });
});

describe('estimateModelMemory', () => {
  it('behavior: a Llama-3-8B shape needs 1 GiB of f16 KV cache for 8192 tokens', async () => {
    const header = await parseGgufHeader(writeGguf({ metadata: llamaMetadata() }).bytes);
    // 32 layers x 8 KV heads x 128 (key) + 128 (value) x 8192 tokens x 2 bytes.
    expect(estimateModelMemory(header).kvCacheBytes).toBe(1024 ** 3);
    expect(estimateModelMemory(header, { contextSize: 2048 }).kvCacheBytes).toBe(1024 ** 3 / 4);
    expect(estimateModelMemory(header, { kvCacheType: 'f32' }).kvCacheBytes).toBe(2 * 1024 ** 3);
  });

  it('behavior: key and value lengths and per-layer KV heads are honoured', async () => {
    const header = await parseGgufHeader(
      writeGguf({
        metadata: llamaMetadata({
          'llama.block_count': u32(2),
          'llama.attention.key_length': u32(192),
          'llama.attention.value_length': u32(128),
          'llama.attention.head_count_kv': {
            type: 'array',
            itemType: 'int32',
            items: [
              { type: 'int32', value: 4 },
              { type: 'int32', value: 0 },
            ],
          },
        }),
      }).bytes,
    );
    expect(estimateModelMemory(header, { contextSize: 100 }).kvCacheBytes).toBe(
      100 * 4 * (192 + 128) * 2,
    );
  });

  it('behavior: without attention metadata there is no KV cache to count', async () => {
    const header = await parseGgufHeader(
      writeGguf({ tensors: [{ name: 'w', dimensions: [4], type: 0 }] }).bytes,
    );
    expect(estimateModelMemory(header)).toMatchObject({
      weightsBytes: 16,
      kvCacheBytes: 0,
      contextSize: undefined,
      architecture: undefined,
    });
  });

  it('error: a context size that is not a positive integer', async () => {
    const header = await parseGgufHeader(writeGguf({ metadata: llamaMetadata() }).bytes);
    expect(() => estimateModelMemory(header, { contextSize: 0 })).toThrow(RangeError);
    expect(() => estimateModelMemory(header, { contextSize: 1.5 })).toThrow(/positive integer/);
  });
});
