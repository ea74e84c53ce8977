/** Byte helpers shared by the gateway's modules. */

/**
 * Joins chunks into one array (the chunk itself when there is one). `size` is their total
 * length when the caller already counted it.
 */
export function concatBytes(
  chunks: readonly Uint8Array[],
  size = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0),
): Uint8Array<ArrayBuffer> {
  // Body chunks are never views of a SharedArrayBuffer.
  if (chunks.length === 1) return chunks[0] as Uint8Array<ArrayBuffer>;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
