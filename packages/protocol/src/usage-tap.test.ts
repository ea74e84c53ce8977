import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createUsageScanner,
  createUsageTap,
  encodeSseEvent,
  type Usage,
  type UsageTapOptions,
} from './index.js';
import { bytewise, collect, concatBytes, splitAt, streamOf, utf8 } from './test-streams.js';

/** Pipes chunks through a new tap; returns the bytes out, the result, and every onUsage call. */
async function tap(options: Omit<UsageTapOptions, 'onUsage'>, chunks: Uint8Array[]) {
  const seen: Usage[] = [];
  const usageTap = createUsageTap({ ...options, onUsage: (usage) => seen.push(usage) });
  const out = await collect(streamOf(chunks).pipeThrough(usageTap));
  return { out, bytes: concatBytes(out), result: usageTap.result(), seen };
}

const usage = { prompt_tokens: 12, completion_tokens: 34, total_tokens: 46 };

function chunk(content: string | null, extra: Record<string, unknown> = {}) {
  return JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: content === null ? [] : [{ index: 0, delta: { content }, finish_reason: null }],
    usage: null,
    ...extra,
  });
}

/** An OpenAI-style stream with include_usage: content chunks, a usage chunk, then [DONE]. */
const sseBody = [
  encodeSseEvent({ data: chunk('Hel') }),
  encodeSseEvent({ data: chunk('lo — ünïcode 🎉') }),
  encodeSseEvent({ data: chunk(null, { usage }) }),
  encodeSseEvent({ data: '[DONE]' }),
].join('');

/** An embeddings response with many vectors: far larger than two windows. */
function embeddingsBody(vectors: number, usageFirst: boolean): string {
  const data = Array.from({ length: vectors }, (_, index) => ({
    object: 'embedding',
    index,
    embedding: Array.from({ length: 64 }, (_, position) => Math.sin(index * 64 + position)),
  }));
  const embeddingsUsage = { prompt_tokens: vectors * 3, total_tokens: vectors * 3 };
  return usageFirst
    ? JSON.stringify({ usage: embeddingsUsage, object: 'list', model: 'nomic-embed-text', data })
    : JSON.stringify({ object: 'list', model: 'nomic-embed-text', data, usage: embeddingsUsage });
}

describe('createUsageTap: bytes', () => {
  it('behavior: (property) bytes out are the bytes in, for any chunking, in both formats', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 600 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.constantFrom<'sse' | 'json'>('sse', 'json'),
        fc.integer({ min: 1, max: 64 }),
        async (input, cuts, format, windowBytes) => {
          const chunks = splitAt(input, cuts).filter((part) => part.byteLength > 0);
          const { out, bytes, result } = await tap({ format, windowBytes }, chunks);
          expect(bytes).toEqual(input);
          // Handed on as they came: one chunk out per chunk in.
          expect(out).toHaveLength(chunks.length);
          expect(result.bytes).toBe(input.byteLength);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('behavior: chunks pass on at once, before the stream ends', async () => {
    const usageTap = createUsageTap({ format: 'sse' });
    const writer = usageTap.writable.getWriter();
    const reader = usageTap.readable.getReader();
    void writer.write(utf8('data: {"a":1}\n\n'));
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('data: {"a":1}\n\n');
    expect(usageTap.result()).toEqual({ usage: undefined, complete: false, bytes: 15 });
    void writer.close();
    expect((await reader.read()).done).toBe(true);
  });

  it('error: a windowBytes that is not a positive integer', () => {
    for (const windowBytes of [0, -1, 1.5, Number.NaN]) {
      expect(() => createUsageTap({ format: 'json', windowBytes })).toThrow(RangeError);
    }
  });
});

describe('createUsageTap: SSE', () => {
  it('behavior: reads usage from the final usage chunk; complete after [DONE]', async () => {
    const { bytes, result, seen } = await tap({ format: 'sse' }, [utf8(sseBody)]);
    expect(new TextDecoder().decode(bytes)).toBe(sseBody);
    expect(result).toEqual({ usage, complete: true, bytes: utf8(sseBody).byteLength });
    expect(seen).toEqual([usage]);
  });

  it('behavior: the same result for every single cut point and byte by byte', async () => {
    const bytes = utf8(sseBody);
    for (let cut = 0; cut <= bytes.byteLength; cut += 7) {
      const { result } = await tap({ format: 'sse' }, splitAt(bytes, [cut]));
      expect(result, `cut at ${cut}`).toEqual({ usage, complete: true, bytes: bytes.byteLength });
    }
    expect((await tap({ format: 'sse' }, bytewise(bytes))).result.usage).toEqual(usage);
  });

  it('behavior: usage without [DONE] is read, but the stream is not complete', async () => {
    const body =
      encodeSseEvent({ data: chunk('a') }) + encodeSseEvent({ data: chunk(null, { usage }) });
    const { result } = await tap({ format: 'sse' }, [utf8(body)]);
    expect(result.usage).toEqual(usage);
    expect(result.complete).toBe(false);
  });

  it('behavior: complete only once [DONE] has passed', async () => {
    const usageTap = createUsageTap({ format: 'sse' });
    const writer = usageTap.writable.getWriter();
    const reader = usageTap.readable.getReader();
    const usageEvent = encodeSseEvent({ data: chunk(null, { usage }) });
    void writer.write(utf8(usageEvent));
    await reader.read();
    expect(usageTap.result()).toMatchObject({ usage, complete: false });
    void writer.write(utf8('data: [DO'));
    await reader.read();
    expect(usageTap.result().complete).toBe(false);
    void writer.write(utf8('NE]\n\n'));
    await reader.read();
    expect(usageTap.result().complete).toBe(true);
    void writer.close();
    await reader.read();
  });

  it('behavior: a stream cut inside [DONE] or inside the usage chunk', async () => {
    const cutDone = encodeSseEvent({ data: chunk(null, { usage }) }) + 'data: [DO';
    expect((await tap({ format: 'sse' }, [utf8(cutDone)])).result).toMatchObject({
      usage,
      complete: false,
    });
    const cutUsage =
      encodeSseEvent({ data: chunk('a') }) +
      encodeSseEvent({ data: chunk(null, { usage }) }).slice(0, 60);
    expect((await tap({ format: 'sse' }, [utf8(cutUsage)])).result).toMatchObject({
      usage: undefined,
      complete: false,
    });
  });

  it('behavior: [DONE] that misses only its blank line still completes', async () => {
    const body = encodeSseEvent({ data: chunk(null, { usage }) }) + 'data: [DONE]\n';
    expect((await tap({ format: 'sse' }, [utf8(body)])).result).toMatchObject({
      usage,
      complete: true,
    });
  });

  it('behavior: the last usage wins (continuous usage stats)', async () => {
    const later = { prompt_tokens: 12, completion_tokens: 40, total_tokens: 52 };
    const body =
      encodeSseEvent({ data: chunk('a', { usage }) }) +
      encodeSseEvent({ data: chunk('b', { usage: later }) }) +
      encodeSseEvent({ data: '[DONE]' });
    const { result, seen } = await tap({ format: 'sse' }, [utf8(body)]);
    expect(result.usage).toEqual(later);
    expect(seen).toEqual([usage, later]);
  });

  it('behavior: no usage gives undefined and no callback', async () => {
    const body = encodeSseEvent({ data: chunk('a') }) + encodeSseEvent({ data: '[DONE]' });
    const { result, seen } = await tap({ format: 'sse' }, [utf8(body)]);
    expect(result).toMatchObject({ usage: undefined, complete: true });
    expect(seen).toEqual([]);
  });

  it('error: junk, invalid JSON and a malformed usage do not throw', async () => {
    const body =
      ': comment\n\nevent: weird\ndata: not json "usage"\n\ndata: {"usage": {"prompt_tokens": "many"}}\n\n' +
      'data: {"usage": [1,2]}\n\ndata: {"usage":\n\nbogus line\n\ndata: [DONE]\n\n';
    const { result, bytes } = await tap({ format: 'sse' }, bytewise(utf8(body)));
    expect(new TextDecoder().decode(bytes)).toBe(body);
    expect(result).toMatchObject({ usage: undefined, complete: true });
  });
});

describe('createUsageTap: JSON', () => {
  const completion = JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: 'Hi "usage": {} there' },
        finish_reason: 'stop',
      },
    ],
    usage,
  });

  it('behavior: reads usage from a small body, whatever the chunking', async () => {
    const bytes = utf8(completion);
    expect((await tap({ format: 'json' }, [bytes])).result).toEqual({
      usage,
      complete: true,
      bytes: bytes.byteLength,
    });
    expect((await tap({ format: 'json' }, bytewise(bytes))).result.usage).toEqual(usage);
  });

  it('behavior: a body just over the head window, usage straddling head and tail', async () => {
    const bytes = utf8(completion);
    const usageAt = completion.lastIndexOf('"usage"');
    // Put the head/tail boundary inside the usage object, at every position.
    for (let windowBytes = usageAt; windowBytes < bytes.byteLength; windowBytes++) {
      const { result } = await tap(
        { format: 'json', windowBytes },
        splitAt(bytes, [windowBytes - 3, windowBytes + 5]),
      );
      expect(result, `window ${windowBytes}`).toEqual({
        usage,
        complete: true,
        bytes: bytes.byteLength,
      });
    }
  });

  it('behavior: a large embeddings response (> 2 windows) with usage at the end', async () => {
    const body = embeddingsBody(400, false);
    const bytes = utf8(body);
    const windowBytes = 4096;
    expect(bytes.byteLength).toBeGreaterThan(20 * windowBytes);
    const expected = { prompt_tokens: 1200, total_tokens: 1200 };
    const chunks = splitAt(
      bytes,
      Array.from({ length: 60 }, (_, index) => index * 3001),
    );
    const { result, seen, bytes: out } = await tap({ format: 'json', windowBytes }, chunks);
    expect(Buffer.from(out).equals(Buffer.from(bytes))).toBe(true);
    expect(result).toEqual({ usage: expected, complete: true, bytes: bytes.byteLength });
    expect(seen).toEqual([expected]);
    // One huge chunk, and tiny chunks, too.
    expect((await tap({ format: 'json', windowBytes }, [bytes])).result.usage).toEqual(expected);
    expect(
      (
        await tap(
          { format: 'json', windowBytes: 64 },
          splitAt(
            bytes,
            Array.from({ length: 500 }, (_, i) => i * 97),
          ),
        )
      ).result.usage,
    ).toEqual(expected);
  });

  it('behavior: a large embeddings response with usage at the start', async () => {
    const bytes = utf8(embeddingsBody(400, true));
    const expected = { prompt_tokens: 1200, total_tokens: 1200 };
    const { result } = await tap(
      { format: 'json', windowBytes: 4096 },
      splitAt(bytes, [100, 5000, 9000, 50_000]),
    );
    expect(result).toEqual({ usage: expected, complete: true, bytes: bytes.byteLength });
  });

  it('behavior: with the default window, a multi-megabyte body still yields its usage', async () => {
    const bytes = utf8(embeddingsBody(3000, false));
    expect(bytes.byteLength).toBeGreaterThan(2 * 65536);
    const chunks = splitAt(
      bytes,
      Array.from({ length: 200 }, (_, index) => index * 16_384),
    );
    const { result } = await tap({ format: 'json' }, chunks);
    expect(result.usage).toEqual({ prompt_tokens: 9000, total_tokens: 9000 });
  });

  it('behavior: no usage gives undefined', async () => {
    const small = await tap({ format: 'json' }, [utf8('{"object":"list","data":[]}')]);
    expect(small.result).toMatchObject({ usage: undefined, complete: true });
    expect(small.seen).toEqual([]);
    const large = JSON.stringify({ data: 'x'.repeat(10_000) });
    expect(
      (await tap({ format: 'json', windowBytes: 1000 }, [utf8(large)])).result.usage,
    ).toBeUndefined();
  });

  it('error: invalid JSON does not throw and is not complete', async () => {
    for (const body of ['{"usage": {"prompt_tokens": 1', 'not json', '', '<html>502</html>']) {
      const { result, bytes } = await tap({ format: 'json' }, [utf8(body)]);
      expect(new TextDecoder().decode(bytes)).toBe(body);
      expect(result).toMatchObject({ usage: undefined, complete: false });
    }
    // A large, truncated body: the usage in it is cut, so there is none to read.
    const truncated = embeddingsBody(200, false).slice(0, -20);
    expect(
      (await tap({ format: 'json', windowBytes: 512 }, [utf8(truncated)])).result.usage,
    ).toBeUndefined();
  });

  it('behavior: null completion_tokens or total_tokens read as absent', async () => {
    const body =
      '{"object":"list","data":[],"usage":{"prompt_tokens":4,"completion_tokens":null,"total_tokens":null}}';
    expect((await tap({ format: 'json' }, [utf8(body)])).result.usage).toEqual({
      prompt_tokens: 4,
    });
    const sse = `data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":null,"total_tokens":4}}\n\n`;
    expect((await tap({ format: 'sse' }, [utf8(sse)])).result.usage).toEqual({
      prompt_tokens: 4,
      total_tokens: 4,
    });
  });

  it('behavior: a usage of the wrong shape is ignored', async () => {
    const { result } = await tap({ format: 'json' }, [utf8('{"usage":{"prompt_tokens":-1}}')]);
    expect(result.usage).toBeUndefined();
  });
});

describe('createUsageScanner', () => {
  it('behavior: (property) the same result as the tap, for any chunking of usage bodies', async () => {
    const bodies = [utf8(sseBody), utf8(JSON.stringify({ id: 'x', usage })), utf8('junk')];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...bodies),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.constantFrom<'sse' | 'json'>('sse', 'json'),
        fc.integer({ min: 1, max: 64 }),
        async (body, cuts, format, windowBytes) => {
          const chunks = splitAt(body, cuts).filter((part) => part.byteLength > 0);
          const seen: Usage[] = [];
          const scanner = createUsageScanner({
            format,
            windowBytes,
            onUsage: (found) => seen.push(found),
          });
          for (const part of chunks) scanner.push(part);
          scanner.end();
          const viaTap = await tap({ format, windowBytes }, chunks);
          expect(scanner.result()).toEqual(viaTap.result);
          expect(seen).toEqual(viaTap.seen);
        },
      ),
    );
  });

  it('behavior: reads SSE usage and [DONE] without any stream', () => {
    const scanner = createUsageScanner({ format: 'sse' });
    for (const part of bytewise(utf8(sseBody))) scanner.push(part);
    expect(scanner.result().complete).toBe(true);
    scanner.end();
    expect(scanner.result()).toEqual({ usage, complete: true, bytes: utf8(sseBody).byteLength });
  });

  it('behavior: pushes after end are ignored', () => {
    const scanner = createUsageScanner({ format: 'json' });
    scanner.push(utf8(JSON.stringify({ usage })));
    scanner.end();
    scanner.push(utf8('more'));
    scanner.end();
    expect(scanner.result()).toMatchObject({ usage, complete: true });
  });

  it('error: a windowBytes that is not a positive integer', () => {
    expect(() => createUsageScanner({ format: 'json', windowBytes: 0 })).toThrow(RangeError);
  });
});
