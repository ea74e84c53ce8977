import { TollgateError } from '@tollgate/protocol';
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
  it('behavior: cut() mid-event ends an SSE body on an event boundary with one error event of its code, then errors it; the upstream is cancelled; the end is aborted', async () => {
    const ends: RelayEnd[] = [];
    let cancelledWith: unknown;
    let pulls = 0;
    const upstream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulls++;
        // A whole event, then half of one; then nothing more until cancelled.
        if (pulls === 1) controller.enqueue(encoder.encode(`data: ${contentEvent('a')}\n\n`));
        if (pulls === 2) controller.enqueue(encoder.encode('data: {"half'));
        if (pulls >= 3) return new Promise<void>(() => {});
      },
      cancel(reason) {
        cancelledWith = reason;
      },
    });
    const relay = createBodyRelay({
      reader: upstream.getReader(),
      format: 'sse',
      onEnd: (end) => ends.push(end),
    });
    const reader = relay.body.getReader();
    expect(decoder.decode((await reader.read()).value)).toBe(`data: ${contentEvent('a')}\n\n`);
    // The next read waits on the upstream (the half event is held back).
    const next = reader.read();
    for (let round = 0; round < 100 && pulls < 3; round++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const reason = new TollgateError('service_unavailable', 'Shutting down.');
    relay.cut(reason);
    relay.cut(reason);
    const event = decoder.decode((await next).value);
    expect(event.startsWith('data: ')).toBe(true);
    expect(event.endsWith('\n\n')).toBe(true);
    expect(JSON.parse(event.slice(6))).toEqual({
      error: {
        message: 'Shutting down.',
        type: 'server_error',
        param: null,
        code: 'service_unavailable',
      },
    });
    await expect(reader.read()).rejects.toBe(reason);
    expect(cancelledWith).toBe(reason);
    expect(ends).toEqual([{ status: 'aborted', usage: undefined, error: reason }]);
  });

  it('behavior: cut() before the caller reads again still delivers the event first; after [DONE] it just ends the body; on a JSON body it errors; after the end it does nothing', async () => {
    const reason = new TollgateError('service_unavailable', 'Shutting down.');

    const pendingEnds: RelayEnd[] = [];
    const pending = createBodyRelay({
      reader: streamOf([
        `data: ${contentEvent('a')}\n\n`,
        `data: ${contentEvent('b')}\n\n`,
      ]).getReader(),
      format: 'sse',
      onEnd: (end) => pendingEnds.push(end),
    });
    pending.cut(reason);
    const cutText = await collect(pending.body);
    expect(cutText.text).toContain('"code":"service_unavailable"');
    expect(cutText.text).not.toContain(contentEvent('b'));
    expect(cutText.error).toBe(reason);
    expect(pendingEnds).toEqual([{ status: 'aborted', usage: undefined, error: reason }]);

    const doneEnds: RelayEnd[] = [];
    const whole = createBodyRelay({
      reader: streamOf([
        `data: ${contentEvent('a')}\n\ndata: [DONE]\n\n`,
        'data: late\n\n',
      ]).getReader(),
      format: 'sse',
      onEnd: (end) => doneEnds.push(end),
    });
    const wholeReader = whole.body.getReader();
    await wholeReader.read();
    whole.cut(reason);
    expect(await wholeReader.read()).toEqual({ done: true, value: undefined });
    expect(doneEnds).toEqual([{ status: 'completed', usage: undefined }]);

    const jsonEnds: RelayEnd[] = [];
    const json = createBodyRelay({
      reader: streamOf(['{"id":', '"x"}']).getReader(),
      format: 'json',
      onEnd: (end) => jsonEnds.push(end),
    });
    json.cut(reason);
    expect(await collect(json.body)).toEqual({ text: '', error: reason });
    expect(jsonEnds).toEqual([{ status: 'aborted', usage: undefined, error: reason }]);

    const endedEnds: RelayEnd[] = [];
    const ended = createBodyRelay({
      reader: streamOf([`data: ${contentEvent('a')}\n\ndata: [DONE]\n\n`]).getReader(),
      format: 'sse',
      onEnd: (end) => endedEnds.push(end),
    });
    expect((await collect(ended.body)).error).toBeUndefined();
    ended.cut(reason);
    expect(endedEnds).toEqual([{ status: 'completed', usage: undefined }]);
  });
});
