import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createBodyRelay, createSseSplitter, type RelayEnd } from './stream-finisher.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const contentEvent = (text: string) =>
  JSON.stringify({
    id: 'c',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content: text } }],
  });
const usageEvent = JSON.stringify({
  id: 'c',
  object: 'chat.completion.chunk',
  choices: [],
  usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
});

function runSplitter(strip: boolean, pieces: string[]): string {
  const splitter = createSseSplitter(strip);
  let out = '';
  for (const piece of pieces) {
    const bytes = splitter.push(encoder.encode(piece));
    if (bytes) out += decoder.decode(bytes);
  }
  const rest = splitter.end();
  if (rest) out += decoder.decode(rest);
  return out;
}

function cut(text: string, positions: number[]): string[] {
  const sorted = [...new Set(positions.map((position) => position % (text.length + 1)))].sort(
    (a, b) => a - b,
  );
  const pieces: string[] = [];
  let from = 0;
  for (const position of sorted) {
    if (position > from) pieces.push(text.slice(from, position));
    from = Math.max(from, position);
  }
  if (from < text.length) pieces.push(text.slice(from));
  return pieces;
}

describe('createSseSplitter', () => {
  it('behavior: drops only the usage-only event, wherever chunks are cut, for LF, CRLF and CR', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc
              .string({ maxLength: 12 })
              .map((text) => ({ usage: false, data: contentEvent(text) })),
            fc.constant({ usage: true, data: usageEvent }),
            // A chunk that mentions usage but has choices: it must stay.
            fc.constant({
              usage: false,
              data: JSON.stringify({ choices: [{ index: 0 }], usage: null }),
            }),
            fc.constant({ usage: false, data: '[DONE]' }),
          ),
          { maxLength: 6 },
        ),
        fc.constantFrom('\n', '\r\n', '\r'),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.boolean(),
        (events, eol, positions, withComment) => {
          const encode = (event: { data: string }) =>
            `${withComment ? `: keep-alive${eol}` : ''}data: ${event.data}${eol}${eol}`;
          const whole = events.map(encode).join('');
          const pieces = cut(whole, positions);
          expect(runSplitter(false, pieces)).toBe(whole);
          expect(runSplitter(true, pieces)).toBe(
            events
              .filter((event) => !event.usage)
              .map(encode)
              .join(''),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it('behavior: a whole-event chunk without usage comes back as the same object (no copy)', () => {
    const splitter = createSseSplitter(true);
    const chunk = encoder.encode(`data: ${contentEvent('x')}\n\n`);
    expect(splitter.push(chunk)).toBe(chunk);
  });

  it('behavior: an unfinished event is held until its blank line', () => {
    const splitter = createSseSplitter(false);
    expect(splitter.push(encoder.encode('data: {"a":'))).toBeUndefined();
    expect(decoder.decode(splitter.push(encoder.encode('1}\n\ndata: {"b"'))!)).toBe(
      'data: {"a":1}\n\n',
    );
    expect(decoder.decode(splitter.end()!)).toBe('data: {"b"');
  });

  it('behavior: a huge unterminated event is let through instead of held without bound', () => {
    const splitter = createSseSplitter(false);
    const big = new Uint8Array(1024 * 1024 + 1).fill(120);
    expect(splitter.push(big)?.byteLength).toBe(big.byteLength);
  });
});

function streamOf(parts: Array<string | Error>): ReadableStream<Uint8Array> {
  let index = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const part = parts[index++];
      if (part === undefined) controller.close();
      else if (part instanceof Error) controller.error(part);
      else controller.enqueue(encoder.encode(part));
    },
  });
}

async function collect(
  body: ReadableStream<Uint8Array>,
): Promise<{ text: string; error?: unknown }> {
  const reader = body.getReader();
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { text };
      text += decoder.decode(value);
    }
  } catch (error) {
    return { text, error };
  }
}

describe('createBodyRelay', () => {
  it('behavior: a break after [DONE] still counts as complete', async () => {
    const ends: RelayEnd[] = [];
    const relay = createBodyRelay({
      reader: streamOf([
        `data: ${contentEvent('x')}\n\n`,
        'data: [DONE]\n\n',
        new Error('reset'),
      ]).getReader(),
      format: 'sse',
      onEnd: (end) => ends.push(end),
    });
    const { text, error } = await collect(relay.body);
    expect(error).toBeUndefined();
    expect(text).toBe(`data: ${contentEvent('x')}\n\ndata: [DONE]\n\n`);
    expect(ends).toEqual([{ status: 'completed', usage: undefined }]);
  });

  it('behavior: raw bodies pass through and report no usage', async () => {
    const ends: RelayEnd[] = [];
    const relay = createBodyRelay({
      reader: streamOf(['{"error":', '{"message":"bad"}}']).getReader(),
      format: 'raw',
      onEnd: (end) => ends.push(end),
    });
    expect((await collect(relay.body)).text).toBe('{"error":{"message":"bad"}}');
    expect(ends).toEqual([{ status: 'completed', usage: undefined }]);
  });

  it('behavior: a JSON body that breaks fails the stream with the upstream error', async () => {
    const ends: RelayEnd[] = [];
    const failure = new Error('reset');
    const relay = createBodyRelay({
      reader: streamOf(['{"id":', failure]).getReader(),
      format: 'json',
      onEnd: (end) => ends.push(end),
    });
    const { text, error } = await collect(relay.body);
    expect(text).toBe('{"id":');
    expect(error).toBe(failure);
    expect(ends).toEqual([{ status: 'failed', usage: undefined, error: failure }]);
  });

  it('behavior: abort() cancels the upstream, ends once as aborted, and errors the body with the reason', async () => {
    const ends: RelayEnd[] = [];
    let cancelledWith: unknown;
    const upstream = new ReadableStream<Uint8Array>({
      cancel(reason) {
        cancelledWith = reason;
      },
    });
    const relay = createBodyRelay({
      reader: upstream.getReader(),
      format: 'sse',
      onEnd: (end) => ends.push(end),
    });
    const reading = collect(relay.body);
    const reason = new Error('client left');
    relay.abort(reason);
    relay.abort(reason);
    expect((await reading).error).toBe(reason);
    expect(cancelledWith).toBe(reason);
    expect(ends).toEqual([{ status: 'aborted', usage: undefined }]);
  });
  it('behavior: onError taking the failure over keeps the body pending; cancelling it still works', async () => {
    const ends: RelayEnd[] = [];
    const seen: unknown[] = [];
    const failure = new Error('reset');
    const relay = createBodyRelay({
      reader: streamOf(['{"id":', failure]).getReader(),
      format: 'json',
      onEnd: (end) => ends.push(end),
      onError: (error) => {
        seen.push(error);
        return true;
      },
    });
    const reader = relay.body.getReader();
    expect(decoder.decode((await reader.read()).value)).toBe('{"id":');
    let settled = false;
    const next = reader.read().then(
      (result) => {
        settled = true;
        return result;
      },
      () => {
        settled = true;
      },
    );
    for (let round = 0; round < 100 && seen.length === 0; round++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    expect(seen).toEqual([failure]);
    expect(ends).toEqual([{ status: 'failed', usage: undefined, error: failure }]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(settled).toBe(false);
    await reader.cancel(new Error('server noticed the cut'));
    expect(await next).toEqual({ done: true, value: undefined });
    expect(ends).toHaveLength(1);
  });

  it('behavior: onError sees the finisher error after the error event went out; false errors the body', async () => {
    const seen: unknown[] = [];
    const relay = createBodyRelay({
      reader: streamOf([`data: ${contentEvent('x')}\n\n`, new Error('reset')]).getReader(),
      format: 'sse',
      onEnd: () => {},
      onError: (error) => {
        seen.push(error);
        return false;
      },
    });
    const { text, error } = await collect(relay.body);
    expect(text).toContain('"code":"upstream_stream_error"');
    expect(error).toBe(seen[0]);
    expect((error as { code?: string }).code).toBe('upstream_stream_error');
  });
});
