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
 * Multi-line data is split into several `data:` lines, as the format requires.
 *
 * @example
 * ```ts
 * encodeSseEvent({ data: JSON.stringify(chunk) }); // 'data: {...}\n\n'
 * ```
 */
export function encodeSseEvent(event: { data: string; event?: string; id?: string }): string {
  let out = '';
  if (event.event !== undefined) out += `event: ${event.event}\n`;
  if (event.id !== undefined) out += `id: ${event.id}\n`;
  for (const line of event.data.split(/\r\n|\r|\n/)) out += `data: ${line}\n`;
  return `${out}\n`;
}

/**
 * A TransformStream from the bytes of an SSE body to its events. Bytes are decoded as UTF-8
 * across chunk boundaries; comments and `retry:` fields are dropped.
 *
 * @example
 * ```ts
 * for await (const event of response.body.pipeThrough(createSseDecoder())) console.log(event.data);
 * ```
 */
export function createSseDecoder(): TransformStream<Uint8Array, SseEvent> {
  const decoder = new TextDecoder();
  let enqueue: (event: SseEvent) => void = () => {};
  const parser = createParser({ onEvent: (event) => enqueue(event) });
  return new TransformStream<Uint8Array, SseEvent>({
    transform(chunk, controller) {
      enqueue = (event) => controller.enqueue(event);
      parser.feed(decoder.decode(chunk, { stream: true }));
    },
    flush(controller) {
      enqueue = (event) => controller.enqueue(event);
      const rest = decoder.decode();
      if (rest) parser.feed(rest);
      // A final event without its blank line is still an event the server meant to send.
      parser.reset({ consume: true });
    },
  });
}
