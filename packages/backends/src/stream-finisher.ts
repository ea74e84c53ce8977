/**
 * Delivery of an upstream body to the caller: a usage tap on every 2xx body, removal of the
 * usage-only SSE chunk for callers who did not ask for it, and a finisher that turns a broken
 * or unfinished SSE stream into one OpenAI error event followed by a stream error — so a
 * client always learns that the answer is incomplete instead of taking it for a whole one.
 *
 * SSE bytes pass through untouched, one whole event at a time: at most the one unfinished
 * event is held back, which is what lets the finisher's error event start on a clean event
 * boundary.
 */
import {
  createUsageScanner,
  encodeSseEvent,
  errorEnvelope,
  isTollgateError,
  TollgateError,
  type Usage,
} from '@tollgate/protocol';

const LF = 10;
const CR = 13;
const QUOTE = 34;
const encoder = new TextEncoder();
const noop = () => {};
// `usage"` rather than `"usage"`: a quote is in nearly every JSON byte run, `u` far less often,
// so the native indexOf skips more.
const USAGE_NEEDLE = encoder.encode('usage"');
/** Longest unfinished SSE event held back, in bytes. */
const MAX_HELD_BYTES = 1024 * 1024;

/** How a delivered body ended. */
export interface RelayEnd {
  /** `completed`: delivered whole; `failed`: the upstream broke; `aborted`: the caller left. */
  status: 'completed' | 'failed' | 'aborted';
  /** The last usage the tap saw, if any. */
  usage: Usage | undefined;
  /** What broke, when failed. */
  error?: unknown;
}

/** Options for {@link createBodyRelay}. */
export interface BodyRelayOptions {
  /** The upstream body, locked by this reader; the relay owns it from now on. */
  reader: ReadableStreamDefaultReader<Uint8Array>;
  /** A chunk already read from `reader`, delivered before anything else. */
  first?: Uint8Array;
  /**
   * `sse`: tap, strip (see `stripUsage`) and finish; `json`: tap only; `raw`: bytes as they
   * are (error responses).
   */
  format: 'sse' | 'json' | 'raw';
  /** For `sse`: drop the usage-only chunk (`choices: []` with `usage`). @default false */
  stripUsage?: boolean;
  /** Called once, when the first non-empty chunk arrives. */
  onFirstByte?: () => void;
  /** Called exactly once, when delivery ends in any way. */
  onEnd: (end: RelayEnd) => void;
  /**
   * Called with the error `body` is about to fail with (the upstream broke, or the caller went
   * away). Returning true says the caller has cut its connection itself: `body` then stays
   * pending instead of erroring, and the runtime cancels it once it notices. Lets a server
   * end a broken response its own way without wrapping the body in another stream.
   * @default undefined (the body errors)
   */
  onError?: (error: unknown) => boolean;
}

/** A body on its way to the caller. */
export interface BodyRelay {
  /** The stream to hand to the caller. Cancelling it cancels the upstream body. */
  readonly body: ReadableStream<Uint8Array>;
  /**
   * The caller went away (its signal aborted): cancels the upstream body, ends with
   * `aborted`, and errors `body` with `reason`.
   */
  abort(reason: unknown): void;
  /**
   * The server ends delivery early (it is shutting down): cancels the upstream body and ends
   * with `aborted`. An unfinished SSE body gets one error event carrying `error`'s code and
   * message, on an event boundary, and then errors; any other body errors with `error`. A
   * stream whose [DONE] already went out just ends. No-op once delivery has ended.
   */
  cut(error: TollgateError): void;
}

/**
 * Wraps an upstream body for delivery. The returned body is pull-driven (nothing is read
 * from the upstream before the caller asks), so backpressure reaches the upstream server.
 *
 * @example
 * ```ts
 * const relay = createBodyRelay({ reader: upstream.body.getReader(), format: 'sse', onEnd: record });
 * return new Response(relay.body, upstream);
 * ```
 */
export function createBodyRelay(options: BodyRelayOptions): BodyRelay {
  const { reader, format, onEnd } = options;
  let first = options.first;
  // Usage is read by plain calls as chunks pass, not by a TransformStream: a web stream costs
  // tens of µs to create on Node, more than the rest of the relay per request.
  const tap = format === 'raw' ? undefined : createUsageScanner({ format });
  const splitter = format === 'sse' ? createSseSplitter(options.stripUsage === true) : undefined;

  let ended = false;
  let aborted = false;
  let abortReason: unknown;
  let cutError: TollgateError | undefined;
  // The finisher's error waits for the pull after its error event, so the event is read
  // before the stream errors (erroring a stream drops whatever is still queued in it).
  let deferredError: { error: unknown } | undefined;
  let sawFirstByte = false;

  /** Errors `body`, unless the caller's onError took the failure over. */
  function fail(
    controller: ReadableStreamDefaultController<Uint8Array>,
    error: unknown,
  ): Promise<void> | undefined {
    if (options.onError?.(error)) return new Promise<void>(noop);
    controller.error(error);
    return undefined;
  }

  function end(status: RelayEnd['status'], error?: unknown): void {
    if (ended) return;
    ended = true;
    const usage = tap?.result().usage;
    onEnd(error === undefined ? { status, usage } : { status, usage, error });
  }

  function cancelUpstream(reason: unknown): void {
    if (aborted) return;
    aborted = true;
    abortReason = reason;
    reader.cancel(reason).catch(noop);
    end('aborted');
  }

  function finishWithErrorEvent(
    controller: ReadableStreamDefaultController<Uint8Array>,
    error: TollgateError,
    status: 'failed' | 'aborted' = 'failed',
  ): void {
    controller.enqueue(encodeStreamErrorEvent(error.message, error.code));
    deferredError = { error };
    end(status, error);
  }

  /** Delivery after {@link BodyRelay.cut}: the error event (or error), never more bytes. */
  function cutOff(
    controller: ReadableStreamDefaultController<Uint8Array>,
    error: TollgateError,
  ): Promise<void> | undefined {
    if (splitter) {
      if (tap?.result().complete) {
        controller.close();
        end('completed');
      } else {
        finishWithErrorEvent(controller, error, 'aborted');
      }
      return undefined;
    }
    end('aborted', error);
    return fail(controller, error);
  }

  function upstreamEnded(controller: ReadableStreamDefaultController<Uint8Array>): void {
    tap?.end();
    if (splitter) {
      const rest = splitter.end();
      if (!tap?.result().complete) {
        // Whatever unfinished event was held back is dropped: it cannot be trusted whole.
        finishWithErrorEvent(
          controller,
          new TollgateError(
            'upstream_stream_error',
            'The upstream server ended the stream before [DONE]; the response is incomplete. Retry the request.',
          ),
        );
        return;
      }
      if (rest) controller.enqueue(rest);
    }
    controller.close();
    end('completed');
  }

  function upstreamFailed(
    controller: ReadableStreamDefaultController<Uint8Array>,
    error: unknown,
  ): Promise<void> | undefined {
    if (aborted) return fail(controller, abortReason);
    if (cutError) return cutOff(controller, cutError);
    if (!splitter) {
      const failed = fail(controller, error);
      end('failed', error);
      return failed;
    }
    if (tap?.result().complete) {
      // [DONE] already went out: the caller has the whole answer.
      controller.close();
      end('completed');
    } else {
      // Only our own errors' text is shown: a network error's may name internal hosts.
      const detail = isTollgateError(error) ? ` (${error.message})` : '';
      finishWithErrorEvent(
        controller,
        new TollgateError(
          'upstream_stream_error',
          `The upstream stream broke before it finished${detail}; the response is incomplete. Retry the request.`,
          { cause: error },
        ),
      );
    }
  }

  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (deferredError) {
          // One macrotask first: Node's HTTP server writes the error event through a corked
          // socket that flushes on the next tick, and errors the response (destroying the
          // socket) as soon as this rejects — without the wait the event would be lost.
          await new Promise((resolve) => setTimeout(resolve, 0));
          return fail(controller, deferredError.error);
        }
        if (aborted) return fail(controller, abortReason);
        if (cutError) return cutOff(controller, cutError);
        for (;;) {
          let chunk: Uint8Array;
          if (first) {
            chunk = first;
            first = undefined;
          } else {
            let result: ReadableStreamReadResult<Uint8Array>;
            try {
              result = await reader.read();
            } catch (error) {
              return upstreamFailed(controller, error);
            }
            // A cancel resolves the pending read as done; tell it apart from a real end.
            if (aborted) return fail(controller, abortReason);
            if (cutError) return cutOff(controller, cutError);
            if (result.done) return upstreamEnded(controller);
            chunk = result.value;
          }
          if (chunk.byteLength === 0) continue;
          if (!sawFirstByte) {
            sawFirstByte = true;
            options.onFirstByte?.();
          }
          tap?.push(chunk);
          const out = splitter ? splitter.push(chunk) : chunk;
          if (out) return controller.enqueue(out);
        }
      },
      cancel(reason) {
        cancelUpstream(reason);
      },
    },
    { highWaterMark: 0 },
  );

  return {
    body,
    abort: cancelUpstream,
    cut(error) {
      if (ended || aborted || cutError) return;
      cutError = error;
      // A pending read resolves as done; the pull then delivers the cut.
      reader.cancel(error).catch(noop);
    },
  };
}

/** The SSE event the finisher writes before erroring a broken stream (the OpenAI envelope). */
export function encodeStreamErrorEvent(
  message: string,
  code: string = 'upstream_stream_error',
): Uint8Array {
  const envelope = errorEnvelope(message, { type: 'server_error', code });
  return encoder.encode(encodeSseEvent({ data: JSON.stringify(envelope) }));
}

/** Splits SSE bytes into whole events, optionally dropping the usage-only chunk. */
export interface SseSplitter {
  /** Takes a chunk; returns the bytes of every event it completed (minus dropped ones). */
  push(chunk: Uint8Array): Uint8Array | undefined;
  /** The stream ended: returns the held, unterminated last event, if any. */
  end(): Uint8Array | undefined;
}

/**
 * Creates an SSE splitter. Event boundaries follow the SSE grammar (a blank line; lines end
 * with LF, CR or CRLF). Bytes are never decoded except for an event that contains `usage"`.
 */
export function createSseSplitter(stripUsage: boolean): SseSplitter {
  const decoder = new TextDecoder();
  // The unfinished event, as the chunks it came in (joined only when it completes).
  const held: Uint8Array[] = [];
  let heldBytes = 0;
  // Scanner state carried across chunks.
  let lineEmpty = true;
  let afterCR = false;
  let blankLineCR = false;
  const ends: number[] = [];

  function takeHeld(): Uint8Array | undefined {
    if (held.length === 0) return undefined;
    const out = held.length === 1 ? held[0]! : concat(held);
    held.length = 0;
    heldBytes = 0;
    return out;
  }

  function hold(rest: Uint8Array | undefined): void {
    if (!rest) return;
    held.push(rest);
    heldBytes = rest.byteLength;
  }

  function scan(chunk: Uint8Array): void {
    ends.length = 0;
    if (!afterCR && chunk.indexOf(CR) === -1) {
      // LF-only text (nearly every server): jump between line feeds natively.
      let index = chunk.indexOf(LF);
      while (index !== -1) {
        if (index === 0 ? lineEmpty : chunk[index - 1] === LF) ends.push(index + 1);
        index = chunk.indexOf(LF, index + 1);
      }
      lineEmpty = chunk[chunk.length - 1] === LF;
      return;
    }
    for (let index = 0; index < chunk.length; index++) {
      const byte = chunk[index];
      if (afterCR) {
        afterCR = false;
        if (byte === LF) {
          // The LF of a CRLF: the line already ended at the CR.
          if (blankLineCR) {
            blankLineCR = false;
            ends.push(index + 1);
          }
          continue;
        }
        if (blankLineCR) {
          blankLineCR = false;
          ends.push(index);
        }
      }
      if (byte === LF) {
        if (lineEmpty) ends.push(index + 1);
        else lineEmpty = true;
      } else if (byte === CR) {
        afterCR = true;
        if (lineEmpty) blankLineCR = true;
        else lineEmpty = true;
      } else {
        lineEmpty = false;
      }
    }
  }

  return {
    push(chunk) {
      scan(chunk);
      if (ends.length === 0) {
        held.push(chunk);
        heldBytes += chunk.byteLength;
        if (heldBytes <= MAX_HELD_BYTES) return undefined;
        // A server that never ends its event must not grow memory without bound: let the
        // bytes through (a usage-only chunk is never this large).
        const out = takeHeld();
        return out;
      }
      const pending = takeHeld();
      const last = ends[ends.length - 1]!;
      const rest = last === chunk.length ? undefined : chunk.subarray(last);
      if (!stripUsage || (!pending && indexOfUsage(chunk, 0, last) === -1)) {
        // The common case: whole events, nothing to drop, the chunk itself goes out.
        const out = pending
          ? concat([pending, chunk.subarray(0, last)])
          : last === chunk.length
            ? chunk
            : chunk.subarray(0, last);
        hold(rest);
        return out;
      }
      const keep: Uint8Array[] = [];
      let start = 0;
      let keepFrom = 0;
      if (pending) {
        const firstEvent = concat([pending, chunk.subarray(0, ends[0]!)]);
        if (!isUsageOnlyEvent(firstEvent, decoder)) keep.push(firstEvent);
        start = ends[0]!;
        keepFrom = start;
      }
      for (const eventEnd of ends) {
        if (eventEnd <= start) continue;
        if (isUsageOnlyEvent(chunk.subarray(start, eventEnd), decoder)) {
          if (start > keepFrom) keep.push(chunk.subarray(keepFrom, start));
          keepFrom = eventEnd;
        }
        start = eventEnd;
      }
      if (last > keepFrom) keep.push(chunk.subarray(keepFrom, last));
      hold(rest);
      return keep.length === 0 ? undefined : keep.length === 1 ? keep[0] : concat(keep);
    },
    end() {
      const rest = takeHeld();
      if (!rest || (stripUsage && isUsageOnlyEvent(rest, decoder))) return undefined;
      return rest;
    },
  };
}

/** Position of `"usage"` in `bytes[from, to)`, or -1. */
function indexOfUsage(bytes: Uint8Array, from: number, to: number): number {
  const lastStart = to - USAGE_NEEDLE.length;
  let index = bytes.indexOf(USAGE_NEEDLE[0]!, from + 1);
  while (index !== -1 && index <= lastStart) {
    if (bytes[index - 1] === QUOTE) {
      let matched = 1;
      while (matched < USAGE_NEEDLE.length && bytes[index + matched] === USAGE_NEEDLE[matched])
        matched++;
      if (matched === USAGE_NEEDLE.length) return index - 1;
    }
    index = bytes.indexOf(USAGE_NEEDLE[0]!, index + 1);
  }
  return -1;
}

/** Whether one whole SSE event is the usage-only chunk: `choices: []` and a `usage` object. */
function isUsageOnlyEvent(event: Uint8Array, decoder: TextDecoder): boolean {
  if (indexOfUsage(event, 0, event.length) === -1) return false;
  let data: string | undefined;
  for (const line of decoder.decode(event).split(/\r\n|\r|\n/)) {
    if (!line.startsWith('data:')) continue;
    const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
    data = data === undefined ? value : `${data}\n${value}`;
  }
  if (data === undefined) return false;
  try {
    const parsed = JSON.parse(data) as { choices?: unknown; usage?: unknown } | null;
    return (
      typeof parsed === 'object' &&
      parsed !== null &&
      Array.isArray(parsed.choices) &&
      parsed.choices.length === 0 &&
      typeof parsed.usage === 'object' &&
      parsed.usage !== null
    );
  } catch {
    return false;
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let size = 0;
  for (const part of parts) size += part.byteLength;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.byteLength;
  }
  return out;
}
