/**
 * Stream helpers for this package's tests (not exported from the entry).
 */

/** A readable stream that yields the given chunks, one per pull. */
export function streamOf<T>(chunks: readonly T[]): ReadableStream<T> {
  let index = 0;
  return new ReadableStream<T>({
    pull(controller) {
      if (index < chunks.length) controller.enqueue(chunks[index++]!);
      else controller.close();
    },
  });
}

/** Reads a stream to its end. */
export async function collect<T>(stream: ReadableStream<T>): Promise<T[]> {
  const out: T[] = [];
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    out.push(value);
  }
}

/** Cuts bytes at the given offsets (unsorted, out of range and repeated offsets allowed). */
export function splitAt(bytes: Uint8Array, offsets: readonly number[]): Uint8Array[] {
  const cuts = [...new Set(offsets.map((offset) => offset % (bytes.byteLength + 1)))].sort(
    (a, b) => a - b,
  );
  const parts: Uint8Array[] = [];
  let start = 0;
  for (const cut of cuts) {
    if (cut <= start) continue;
    parts.push(bytes.slice(start, cut));
    start = cut;
  }
  parts.push(bytes.slice(start));
  return parts;
}

/** Joins byte chunks. */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** UTF-8 bytes of a string. */
export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/** Splits into single bytes. */
export const bytewise = (bytes: Uint8Array): Uint8Array[] =>
  Array.from(bytes, (byte) => Uint8Array.of(byte));
