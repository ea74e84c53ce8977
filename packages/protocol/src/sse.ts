/**
 * Server-sent events: encoding one event, and decoding a byte stream into events with
 * eventsource-parser (the parser the `openai` and `ai` SDKs build on).
 */
import { createParser, type EventSourceMessage } from 'eventsource-parser';

/** One server-sent event. `data` is the joined data lines. */
export type SseEvent = EventSourceMessage;

/** The data of the event that ends an OpenAI stream. */
export const SSE_DONE = '[DONE]';

/**
 * Encodes one event in the wire format, ending with the blank line that dispatches it.
 * Multi-line data is split into several `data:` lines, as the format requires; a decoder joins
 * them back with `\n` (so `\r\n` inside data comes back as `\n`).
 *
 * @throws {TypeError} when `event` or `id` holds a line break (it would end the field early and
 * let the rest be read as other fields), or `id` holds a NUL (decoders ignore such an id).
 * @example
 * ```ts
 * encodeSseEvent({ data: JSON.stringify({ ok: true }) }); // 'data: {"ok":true}\n\n'
 * encodeSseEvent({ event: 'ping', id: '7', data: 'a\nb' }); // 'event: ping\nid: 7\ndata: a\ndata: b\n\n'
 * ```
 */
export function encodeSseEvent(event: { data: string; event?: string; id?: string }): string {
  let out = '';
  if (event.event !== undefined) {
    if (/[\r\n]/.test(event.event))
      throw new TypeError('An SSE event name must not contain a line break.');
    out += `event: ${event.event}\n`;
  }
  if (event.id !== undefined) {
    if (/[\r\n\0]/.test(event.id))
      throw new TypeError('An SSE event id must not contain a line break or NUL.');
    out += `id: ${event.id}\n`;
  }
  for (const line of event.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/**
 * Feeds UTF-8 bytes to an SSE parser and ends the stream the way Tollgate reads upstreams: an
 * event whose lines all arrived but whose closing blank line did not (the server closed right
 * after it) is still dispatched, while a trailing line cut short is dropped with its event, since
 * a broken connection produces exactly that. Internal: shared by the decoder and the usage tap.
 */
export function createSseByteReader(onEvent: (event: SseEvent) => void): {
  push(chunk: Uint8Array): void;
  end(): void;
} {
  const decoder = new TextDecoder();
  const parser = createParser({ onEvent });
  let lastChar = '';
  const feed = (text: string) => {
    if (!text) return;
    lastChar = text[text.length - 1]!;
    parser.feed(text);
  };
  return {
    push(chunk) {
      feed(decoder.decode(chunk, { stream: true }));
    },
    end() {
      feed(decoder.decode());
      // After a line break, two more end any pending line (a lone CR may still await its LF)
      // and then the event; a blank line with no data dispatches nothing.
      if (lastChar === '\n' || lastChar === '\r') parser.feed('\n\n');
      parser.reset();
    },
  };
}

/**
 * A TransformStream from the bytes of an SSE body to its events. Bytes are decoded as UTF-8
 * across chunk boundaries (a character split between chunks is kept whole); lines may end in
 * LF, CR or CRLF, also split between chunks; comments and `retry:` fields are dropped. Each
 * event carries only its own `id` and `event` (undefined when it has none).
 *
 * @example
 * ```ts
 * for await (const event of response.body.pipeThrough(createSseDecoder())) console.log(event.data);
 * ```
 */
export function createSseDecoder(): TransformStream<Uint8Array, SseEvent> {
  let controller: TransformStreamDefaultController<SseEvent> | undefined;
  const reader = createSseByteReader((event) => controller?.enqueue(event));
  return new TransformStream<Uint8Array, SseEvent>({
    start(streamController) {
      controller = streamController;
    },
    transform(chunk) {
      reader.push(chunk);
    },
    flush() {
      reader.end();
    },
  });
}
