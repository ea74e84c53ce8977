/**
 * A usage tap: a TransformStream that hands bytes on untouched, at once, and reads the
 * `usage` object out of them as they pass — from an SSE stream (the last event that carries
 * one) or from a JSON body (kept only as a bounded head and tail, where `usage` sits).
 */
import { type Usage, UsageSchema } from './schemas.js';
import { createSseByteReader, SSE_DONE } from './sse.js';

/** How the body is framed. */
export type UsageTapFormat = 'sse' | 'json';

/** Options for {@link createUsageTap}. */
export interface UsageTapOptions {
  /** The body's framing. */
  format: UsageTapFormat;
  /** Called with each usage object seen (for SSE, possibly more than once; the last wins). */
  onUsage?: (usage: Usage) => void;
  /**
   * For JSON bodies: bytes kept from each end of a large body. `usage` is a top-level field
   * that servers write last (or first), so a bounded window finds it without holding the body.
   * @default 65536
   */
  windowBytes?: number;
}

/** What the tap saw once the stream has ended. */
export interface UsageTapResult {
  /** The last usage object seen, if any. */
  usage: Usage | undefined;
  /**
   * For SSE: whether the `[DONE]` event arrived. For JSON: whether the body ended and parsed as
   * JSON; a body larger than both windows together is never held whole, so for it this only
   * says that it ended.
   */
  complete: boolean;
  /** Bytes that passed through. */
  bytes: number;
}

/** A TransformStream with a view of what it has seen. */
export interface UsageTap extends TransformStream<Uint8Array, Uint8Array> {
  /** What was seen so far; final once the readable side has closed. */
  result(): UsageTapResult;
}

/** Decodes whole bodies (no streaming state, so one decoder serves every tap). */
const wholeDecoder = new TextDecoder();

function toUsage(value: unknown): Usage | undefined {
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    // Some servers send `"completion_tokens": null` (embeddings); read that as absent rather
    // than losing the whole usage. Copied only then: the parsed body is not ours to edit.
    const found = value as Record<string, unknown>;
    if (found.completion_tokens === null || found.total_tokens === null) {
      const record = { ...found };
      for (const key of ['completion_tokens', 'total_tokens'])
        if (record[key] === null) delete record[key];
      value = record;
    }
  }
  const parsed = UsageSchema.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/**
 * What a usage tap does, without the stream around it: push each chunk of the body as it
 * passes, call `end()` when the body has ended, then read `result()`. For code that already
 * owns the loop over a body (a relay that reads the upstream itself) and would otherwise pay
 * for a TransformStream per body.
 */
export interface UsageScanner {
  /** Looks at one chunk of the body. The chunk is not kept beyond what the JSON window needs. */
  push(chunk: Uint8Array): void;
  /** The body has ended: reads what was held back. Call once; pushes after it are ignored. */
  end(): void;
  /** What was seen so far; final once `end()` has been called. */
  result(): UsageTapResult;
}

/**
 * Creates a usage scanner: the logic of {@link createUsageTap} as plain calls.
 *
 * @throws {RangeError} when `windowBytes` is not a positive integer.
 * @example
 * ```ts
 * const scanner = createUsageScanner({ format: 'json' });
 * scanner.push(new TextEncoder().encode('{"usage":{"prompt_tokens":3,"total_tokens":3}}'));
 * scanner.end();
 * scanner.result().usage; // { prompt_tokens: 3, total_tokens: 3 }
 * ```
 */
export function createUsageScanner(options: UsageTapOptions): UsageScanner {
  const windowBytes = options.windowBytes ?? 65536;
  if (!Number.isSafeInteger(windowBytes) || windowBytes < 1) {
    throw new RangeError(`windowBytes must be a positive integer, got ${String(windowBytes)}.`);
  }
  const state: UsageTapResult = { usage: undefined, complete: false, bytes: 0 };
  const found = (usage: Usage | undefined) => {
    if (!usage) return;
    state.usage = usage;
    options.onUsage?.(usage);
  };
  const scanner =
    options.format === 'sse' ? sseScanner(state, found) : jsonScanner(state, found, windowBytes);
  let ended = false;
  return {
    push(chunk) {
      if (ended) return;
      state.bytes += chunk.byteLength;
      scanner.push(chunk);
    },
    end() {
      if (ended) return;
      ended = true;
      scanner.end();
    },
    result: () => ({ ...state }),
  };
}

/**
 * Creates a usage tap.
 *
 * @throws {RangeError} when `windowBytes` is not a positive integer.
 * @example
 * ```ts
 * const tap = createUsageTap({ format: 'sse', onUsage: (usage) => console.log(usage.total_tokens) });
 * const body = new Response('data: {"usage":{"prompt_tokens":3,"total_tokens":3}}\n\ndata: [DONE]\n\n').body!;
 * await new Response(body.pipeThrough(tap)).text(); // the bytes, untouched
 * tap.result(); // { usage: { prompt_tokens: 3, total_tokens: 3 }, complete: true, bytes: 68 }
 * ```
 */
export function createUsageTap(options: UsageTapOptions): UsageTap {
  const scanner = createUsageScanner(options);
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      controller.enqueue(chunk);
      scanner.push(chunk);
    },
    flush() {
      scanner.end();
    },
  }) as UsageTap;
  stream.result = scanner.result;
  return stream;
}

interface ChunkScanner {
  push(chunk: Uint8Array): void;
  end(): void;
}

function sseScanner(
  state: UsageTapResult,
  found: (usage: Usage | undefined) => void,
): ChunkScanner {
  return createSseByteReader((event) => {
    if (event.data === SSE_DONE) {
      state.complete = true;
      return;
    }
    // Most chunks carry no usage; skip the JSON parse for them.
    if (!event.data.includes('"usage"')) return;
    try {
      const parsed = JSON.parse(event.data) as { usage?: unknown };
      if (parsed && typeof parsed === 'object' && parsed.usage) found(toUsage(parsed.usage));
    } catch {
      // Not JSON: not ours to judge; the bytes pass on regardless.
    }
  });
}

function jsonScanner(
  state: UsageTapResult,
  found: (usage: Usage | undefined) => void,
  windowBytes: number,
): ChunkScanner {
  // The head is copied, not viewed: a view would keep the whole (possibly huge) chunk it came
  // from alive. The tail holds views only until it is compacted into one copy.
  const head: Uint8Array[] = [];
  let headBytes = 0;
  let tail: Uint8Array[] = [];
  let tailBytes = 0;
  return {
    push(chunk) {
      if (headBytes < windowBytes) {
        const take = chunk.slice(0, windowBytes - headBytes);
        head.push(take);
        headBytes += take.byteLength;
        chunk = chunk.subarray(take.byteLength);
        if (chunk.byteLength === 0) return;
      }
      tail.push(chunk);
      tailBytes += chunk.byteLength;
      // Keep at least the last windowBytes, in at most twice that.
      if (tailBytes >= 2 * windowBytes) {
        tail = [concat(tail).slice(tailBytes - windowBytes)];
        tailBytes = windowBytes;
      }
    },
    end() {
      const decoder = wholeDecoder;
      if (headBytes + tailBytes === state.bytes) {
        // Nothing was dropped between head and tail: the whole body is here, so parse it
        // properly (a usage object may straddle the two windows).
        try {
          const parsed = JSON.parse(decoder.decode(concat([...head, ...tail]))) as {
            usage?: unknown;
          };
          state.complete = true;
          if (parsed && typeof parsed === 'object') found(toUsage(parsed.usage));
        } catch {
          // Not a JSON body; there is no usage to read.
        }
        return;
      }
      state.complete = true;
      found(
        usageFromFragment(decoder.decode(concat(tail))) ??
          usageFromFragment(decoder.decode(concat(head))),
      );
      tail = [];
    },
  };
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}

/** Finds the last `"usage": {...}` object in a fragment of JSON text and parses it. */
function usageFromFragment(text: string): Usage | undefined {
  let at = text.lastIndexOf('"usage"');
  while (at !== -1) {
    const open = text.indexOf('{', at);
    const between = open === -1 ? '' : text.slice(at + 7, open);
    if (open !== -1 && /^\s*:\s*$/.test(between)) {
      const close = matchBrace(text, open);
      if (close !== -1) {
        try {
          return toUsage(JSON.parse(text.slice(open, close + 1)));
        } catch {
          // Fall through to an earlier occurrence.
        }
      }
    }
    at = at === 0 ? -1 : text.lastIndexOf('"usage"', at - 1);
  }
  return undefined;
}

function matchBrace(text: string, open: number): number {
  let depth = 0;
  let inString = false;
  for (let index = open; index < text.length; index++) {
    const char = text[index];
    if (inString) {
      if (char === '\\') index++;
      else if (char === '"') inString = false;
    } else if (char === '"') inString = true;
    else if (char === '{') depth++;
    else if (char === '}' && --depth === 0) return index;
  }
  return -1;
}
