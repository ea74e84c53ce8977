import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createSseDecoder, encodeSseEvent, SSE_DONE, type SseEvent } from './index.js';
import { bytewise, collect, concatBytes, splitAt, streamOf, utf8 } from './test-streams.js';

async function decode(chunks: Uint8Array[]): Promise<SseEvent[]> {
  return collect(streamOf(chunks).pipeThrough(createSseDecoder()));
}

/** Drops undefined fields, so decoded events compare with what was encoded. */
function plain(event: SseEvent): { data: string; event?: string; id?: string } {
  const out: { data: string; event?: string; id?: string } = { data: event.data };
  if (event.event !== undefined) out.event = event.event;
  if (event.id !== undefined) out.id = event.id;
  return out;
}

describe('encodeSseEvent', () => {
  it('behavior: one data line and the blank line that dispatches it', () => {
    expect(encodeSseEvent({ data: '{"a":1}' })).toBe('data: {"a":1}\n\n');
    expect(encodeSseEvent({ data: SSE_DONE })).toBe('data: [DONE]\n\n');
  });

  it('behavior: event and id come before the data', () => {
    expect(encodeSseEvent({ event: 'ping', id: '42', data: 'x' })).toBe(
      'event: ping\nid: 42\ndata: x\n\n',
    );
  });

  it('behavior: multi-line data becomes several data lines, whatever the line ending', () => {
    expect(encodeSseEvent({ data: 'a\nb\r\nc\rd' })).toBe('data: a\ndata: b\ndata: c\ndata: d\n\n');
    expect(encodeSseEvent({ data: '' })).toBe('data: \n\n');
    expect(encodeSseEvent({ data: '\n' })).toBe('data: \ndata: \n\n');
  });

  it('error: a line break in event or id would forge fields, so it throws', () => {
    expect(() => encodeSseEvent({ event: 'a\ndata: forged', data: 'x' })).toThrow(TypeError);
    expect(() => encodeSseEvent({ id: '1\r', data: 'x' })).toThrow(TypeError);
    expect(() => encodeSseEvent({ id: 'a\0b', data: 'x' })).toThrow(TypeError);
  });
});

describe('createSseDecoder', () => {
  it('behavior: decodes events with data, event and id; comments and retry are dropped', async () => {
    const text =
      ': keep-alive\nretry: 1000\nevent: message\nid: 7\ndata: hello\n\ndata: {"a":1}\n\ndata: [DONE]\n\n';
    expect((await decode([utf8(text)])).map(plain)).toEqual([
      { event: 'message', id: '7', data: 'hello' },
      { data: '{"a":1}' },
      { data: '[DONE]' },
    ]);
  });

  it('behavior: joins multi-line data with \\n', async () => {
    const events = await decode([utf8(encodeSseEvent({ data: 'line 1\nline 2\n\nline 4' }))]);
    expect(events.map((event) => event.data)).toEqual(['line 1\nline 2\n\nline 4']);
  });

  it('behavior: the same events whatever the chunking, down to single bytes', async () => {
    const text = 'event: a\ndata: one\n\ndata: two\ndata: lines\n\nid: x\ndata: three\n\n';
    const whole = (await decode([utf8(text)])).map(plain);
    expect(whole).toHaveLength(3);
    expect((await decode(bytewise(utf8(text)))).map(plain)).toEqual(whole);
    for (let cut = 0; cut <= text.length; cut++) {
      expect((await decode(splitAt(utf8(text), [cut]))).map(plain)).toEqual(whole);
    }
  });

  it('behavior: a UTF-8 character split between chunks comes out whole', async () => {
    const data = 'naïve 日本語 🎉 Ω';
    const bytes = utf8(encodeSseEvent({ data }));
    for (let cut = 1; cut < bytes.byteLength; cut++) {
      const events = await decode(splitAt(bytes, [cut]));
      expect(events.map((event) => event.data)).toEqual([data]);
    }
    expect((await decode(bytewise(bytes))).map((event) => event.data)).toEqual([data]);
  });

  it('behavior: CRLF and CR line endings, also with CR and LF in different chunks', async () => {
    const text = 'event: e\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\rdata: d\n\n';
    const expected = [{ event: 'e', data: 'a\nb' }, { data: 'c' }, { data: 'd' }];
    expect((await decode([utf8(text)])).map(plain)).toEqual(expected);
    expect((await decode(bytewise(utf8(text)))).map(plain)).toEqual(expected);
    for (let cut = 0; cut <= text.length; cut++) {
      expect((await decode(splitAt(utf8(text), [cut]))).map(plain), `cut at ${cut}`).toEqual(
        expected,
      );
    }
  });

  it('behavior: a byte order mark at the start is ignored', async () => {
    const bytes = concatBytes([Uint8Array.of(0xef, 0xbb, 0xbf), utf8('data: x\n\n')]);
    expect((await decode(bytewise(bytes))).map(plain)).toEqual([{ data: 'x' }]);
  });

  it('behavior: a last event missing only its blank line is delivered', async () => {
    expect((await decode([utf8('data: a\n\ndata: [DONE]\n')])).map((event) => event.data)).toEqual([
      'a',
      '[DONE]',
    ]);
    expect((await decode([utf8('data: a\r\n\r\ndata: b\r')])).map((event) => event.data)).toEqual([
      'a',
      'b',
    ]);
    expect((await decode([utf8('data: a\r\n\r\ndata: b\r\n')])).map((event) => event.data)).toEqual(
      ['a', 'b'],
    );
  });

  it('behavior: a last line cut short (a broken connection) drops its event', async () => {
    expect(
      (await decode([utf8('data: a\n\ndata: {"choices":[{"del')])).map((event) => event.data),
    ).toEqual(['a']);
    expect(
      (await decode([utf8('data: a\n\ndata: b\ndata: c')])).map((event) => event.data),
    ).toEqual(['a']);
  });

  it('behavior: an empty body gives no events', async () => {
    expect(await decode([])).toEqual([]);
    expect(await decode([new Uint8Array(0), utf8('\n\n')])).toEqual([]);
  });

  it('behavior: (property) encode, cut the bytes anywhere, decode -> the same events', async () => {
    // No CR in data (a decoder turns CRLF into LF), no line breaks in event and id (encode
    // refuses them), no empty event name (the format reads it as no name).
    const line = fc
      .string({ unit: 'grapheme', maxLength: 12 })
      .map((text) => text.replace(/[\r\n\0]/g, ''));
    const data = fc.array(line, { minLength: 1, maxLength: 4 }).map((lines) => lines.join('\n'));
    const event = fc.record(
      {
        data,
        event: line.filter((text) => text.length > 0),
        id: line,
      },
      { requiredKeys: ['data'] },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(event, { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (events, cuts) => {
          const bytes = utf8(events.map(encodeSseEvent).join(''));
          const decoded = await decode(splitAt(bytes, cuts));
          expect(decoded.map(plain)).toEqual(events.map((item) => plain(item as SseEvent)));
        },
      ),
      { numRuns: 300 },
    );
  });
});
