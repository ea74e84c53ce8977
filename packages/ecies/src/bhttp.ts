/**
 * Binary HTTP (RFC 9292): the `message/bhttp` encoding of requests and responses that Oblivious
 * HTTP encrypts. Known-length (framing indicators 0 and 1) and indeterminate-length (2 and 3)
 * messages, informational responses, trailers, padding and truncation, one-shot and streaming.
 *
 * Field names, values and the request's control data are byte strings: each character is one
 * byte (Latin-1, the `ByteString` of the Fetch `Headers` class), so every valid message round
 * trips byte for byte and a decoded field can go straight into `new Headers()`.
 */
import { EciesError, isEciesError } from './errors.js';
import { decodeVarint, encodeVarint } from './varint.js';

/** One field line, `[name, value]`. Names are lowercase once encoded or decoded. */
export type BhttpField = [name: string, value: string];

/** Field lines as given to an encoder: any case for names (they are lowercased), order kept. */
export type BhttpFieldsInput = ReadonlyArray<readonly [name: string, value: string]>;

/** Which of the two encodings of RFC 9292 section 3 a message uses. */
export type BhttpFraming = 'known-length' | 'indeterminate-length';

/** A decoded request. `authority` is empty when the request had none. */
export interface BhttpRequest {
  method: string;
  scheme: string;
  authority: string;
  path: string;
  headers: BhttpField[];
  body: Uint8Array;
  trailers: BhttpField[];
}

/** An informational (1xx) response that precedes the final one. */
export interface BhttpInformationalResponse {
  /** 100 to 199. */
  status: number;
  headers: BhttpField[];
}

/** A decoded response. */
export interface BhttpResponse {
  /** The final status, 200 to 599. */
  status: number;
  /** Informational responses, in the order they came. */
  informational: BhttpInformationalResponse[];
  headers: BhttpField[];
  body: Uint8Array;
  trailers: BhttpField[];
}

/** The control data and header section of a request, as given to an encoder. */
export interface BhttpRequestHeadInput {
  /** A token such as `GET` or `POST`; case is kept. */
  method: string;
  /** `https`, `http`, ... or empty (CONNECT). */
  scheme: string;
  /** Host and port; omitted or empty when the request has none (the Host header is not copied). @default '' */
  authority?: string;
  /** Path and query, e.g. `/v1/chat/completions`; not empty for http and https. */
  path: string;
  /** @default [] */
  headers?: BhttpFieldsInput;
}

/** A request as given to {@link encodeBhttpRequest}. */
export interface BhttpRequestInput extends BhttpRequestHeadInput {
  /** @default empty */
  body?: Uint8Array;
  /** @default [] */
  trailers?: BhttpFieldsInput;
}

/** An informational response, or the head of a final one, as given to an encoder. */
export interface BhttpResponseHeadInput {
  /** 100 to 199 for an informational response, 200 to 599 for the final one. */
  status: number;
  /** @default [] */
  headers?: BhttpFieldsInput;
}

/** A response as given to {@link encodeBhttpResponse}. */
export interface BhttpResponseInput extends BhttpResponseHeadInput {
  /** @default [] */
  informational?: ReadonlyArray<BhttpResponseHeadInput>;
  /** @default empty */
  body?: Uint8Array;
  /** @default [] */
  trailers?: BhttpFieldsInput;
}

/** Options of {@link encodeBhttpRequest} and {@link encodeBhttpResponse}. */
export interface BhttpEncodeOptions {
  /**
   * Known-length puts a length before each section; indeterminate-length ends each section with
   * a zero and carries the content as one chunk.
   * @default 'known-length'
   */
  framing?: BhttpFraming;
  /**
   * Omit the empty sections at the end of the message (RFC 9292 section 3.8): the trailers when
   * empty, then the content when it is also empty, then the header section when it is also empty.
   * @default false
   */
  truncate?: boolean;
  /** Zero bytes appended to hide the message's length. @default 0 */
  padding?: number;
}

/** What a streaming response decoder reports, in this order. */
export type BhttpResponseEvent =
  /** An informational (1xx) response, complete. */
  | { type: 'informational'; status: number; headers: BhttpField[] }
  /** The final status and header section, complete: the response can start. */
  | { type: 'head'; status: number; headers: BhttpField[] }
  /** Content bytes, as soon as they arrive (never empty). */
  | { type: 'body'; data: Uint8Array }
  /** The message is complete; its trailers (empty when none). */
  | { type: 'end'; trailers: BhttpField[] };

/** What a streaming request decoder reports, in this order. */
export type BhttpRequestEvent =
  /** The control data and header section, complete. */
  | {
      type: 'head';
      method: string;
      scheme: string;
      authority: string;
      path: string;
      headers: BhttpField[];
    }
  /** Content bytes, as soon as they arrive (never empty). */
  | { type: 'body'; data: Uint8Array }
  /** The message is complete; its trailers (empty when none). */
  | { type: 'end'; trailers: BhttpField[] };

/** A streaming decoder: feed it bytes as they arrive, read events as they complete. */
export interface BhttpDecoder<Event> {
  /**
   * Consumes the next bytes of the message (any split: a varint or a field line may straddle
   * two calls) and returns the events they completed.
   * @throws {EciesError} `malformed_message` as soon as the message is invalid; every later
   *   call throws the same error.
   */
  push(chunk: Uint8Array): Event[];
  /**
   * Declares the input finished. Returns the events still owed when the message stopped at a
   * point RFC 9292 allows (missing sections count as empty).
   * @throws {EciesError} `truncated` when the input stopped anywhere else.
   */
  end(): Event[];
  /** Whether the `end` event has been returned (only padding may follow). */
  readonly done: boolean;
}

/** A streaming decoder of `message/bhttp` responses. */
export type BhttpResponseDecoder = BhttpDecoder<BhttpResponseEvent>;
/** A streaming decoder of `message/bhttp` requests. */
export type BhttpRequestDecoder = BhttpDecoder<BhttpRequestEvent>;

/**
 * A streaming encoder of indeterminate-length messages. Each call returns bytes that can be sent
 * (or sealed as one chunked-OHTTP chunk) at once: the receiver's decoder reports them as soon
 * as it has them.
 */
export interface BhttpStreamEncoder<Head> {
  /** The control data and header section; the first bytes of the message. */
  head(head: Head): Uint8Array;
  /** One content chunk; an empty chunk encodes to nothing (a zero would end the content). */
  body(chunk: Uint8Array): Uint8Array;
  /** The end of the content, the trailer section and optional zero padding. */
  end(trailers?: BhttpFieldsInput, options?: { padding?: number }): Uint8Array;
}

/** A streaming encoder of indeterminate-length responses (framing indicator 3). */
export interface BhttpResponseEncoder extends BhttpStreamEncoder<BhttpResponseHeadInput> {
  /** An informational (1xx) response; only before {@link BhttpStreamEncoder.head}. */
  informational(response: BhttpResponseHeadInput): Uint8Array;
}

/** A streaming encoder of indeterminate-length requests (framing indicator 2). */
export type BhttpRequestEncoder = BhttpStreamEncoder<BhttpRequestHeadInput>;

// ---------------------------------------------------------------------------------------------
// Bytes, strings and the validity rules of RFC 9292 section 3.6 (RFC 9113 section 8.2.1).

const EMPTY = new Uint8Array(0);

const malformed = (message: string, options?: { cause?: unknown }) =>
  new EciesError('malformed_message', message, options);

// RFC 9110 token characters; uppercase letters are added separately because field names refuse them.
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
const UPPER_A = 0x41;
const UPPER_Z = 0x5a;

const RESERVED_PSEUDO = new Set([':method', ':scheme', ':authority', ':path', ':status']);

function latin1(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

function byteString(value: unknown, what: string, lowercase = false): Uint8Array {
  if (typeof value !== 'string') throw new EciesError('invalid_type', `${what} must be a string.`);
  const out = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) {
    let c = value.charCodeAt(i);
    if (c > 0xff) {
      throw malformed(
        `${what} has a character above U+00FF; binary HTTP carries bytes, so encode such text (percent-encoding, RFC 8187) first.`,
      );
    }
    if (lowercase && c >= UPPER_A && c <= UPPER_Z) c += 0x20;
    out[i] = c;
  }
  return out;
}

const show = (bytes: Uint8Array) => JSON.stringify(latin1(bytes.subarray(0, 64)));

function isToken(bytes: Uint8Array, from: number, allowUpper: boolean): boolean {
  if (bytes.length <= from) return false;
  for (let i = from; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (TCHAR[c] !== 1 && !(allowUpper && c >= UPPER_A && c <= UPPER_Z)) return false;
  }
  return true;
}

/** Pseudo-fields must come first in a section; this remembers whether a regular one was seen. */
interface SectionState {
  section: 'header' | 'trailer';
  regularSeen: boolean;
}

function checkField(name: Uint8Array, value: Uint8Array, state: SectionState): void {
  if (name[0] === 0x3a) {
    if (state.section === 'trailer')
      throw malformed(`The pseudo-field ${show(name)} is in trailers.`);
    if (state.regularSeen) {
      throw malformed(`The pseudo-field ${show(name)} follows a regular field.`);
    }
    if (!isToken(name, 1, false)) throw malformed(`The field name ${show(name)} is invalid.`);
    if (RESERVED_PSEUDO.has(latin1(name))) {
      throw malformed(
        `The field ${show(name)} belongs in the control data, not in a field section.`,
      );
    }
  } else {
    if (!isToken(name, 0, false)) {
      throw malformed(
        `The field name ${show(name)} is invalid: names are lowercase tokens (RFC 9110 section 5.1).`,
      );
    }
    state.regularSeen = true;
  }
  for (const c of value) {
    if (c === 0x00 || c === 0x0a || c === 0x0d) {
      throw malformed(`The value of field ${show(name)} contains NUL, CR or LF.`);
    }
  }
  const first = value[0];
  const last = value[value.length - 1];
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) {
    throw malformed(`The value of field ${show(name)} starts or ends with whitespace.`);
  }
}

interface RequestControl {
  method: string;
  scheme: string;
  authority: string;
  path: string;
}

function isUriText(bytes: Uint8Array): boolean {
  for (const c of bytes) if (c <= 0x20 || c >= 0x7f) return false;
  return true;
}

function checkRequestControl(
  method: Uint8Array,
  scheme: Uint8Array,
  authority: Uint8Array,
  path: Uint8Array,
): RequestControl {
  if (!isToken(method, 0, true)) throw malformed(`The method ${show(method)} is not a token.`);
  for (let i = 0; i < scheme.length; i++) {
    const c = scheme[i]! | 0x20;
    const alpha = c >= 0x61 && c <= 0x7a;
    const other =
      (scheme[i]! >= 0x30 && scheme[i]! <= 0x39) || [0x2b, 0x2d, 0x2e].includes(scheme[i]!);
    if (!alpha && !(i > 0 && other)) throw malformed(`The scheme ${show(scheme)} is invalid.`);
  }
  if (!isUriText(authority)) throw malformed(`The authority ${show(authority)} is invalid.`);
  if (!isUriText(path)) throw malformed(`The path ${show(path)} is invalid.`);
  const schemeText = latin1(scheme).toLowerCase();
  if (path.length === 0 && (schemeText === 'http' || schemeText === 'https')) {
    throw malformed(
      'The path of an http or https request cannot be empty (RFC 9113 section 8.3.1).',
    );
  }
  return {
    method: latin1(method),
    scheme: latin1(scheme),
    authority: latin1(authority),
    path: latin1(path),
  };
}

function checkStatus(status: unknown, informational: boolean): number {
  if (typeof status !== 'number' || !Number.isInteger(status)) {
    throw new EciesError('invalid_type', 'A status code is an integer.');
  }
  const [low, high] = informational ? [100, 199] : [200, 599];
  if (status < low || status > high) {
    throw malformed(
      `${status} is not ${informational ? 'an informational (100-199)' : 'a final (200-599)'} status code.`,
    );
  }
  return status;
}

// ---------------------------------------------------------------------------------------------
// Encoding.

class Writer {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  bytes(bytes: Uint8Array): this {
    this.parts.push(bytes);
    this.size += bytes.length;
    return this;
  }

  varint(value: number): this {
    return this.bytes(encodeVarint(value));
  }

  prefixed(bytes: Uint8Array): this {
    return this.varint(bytes.length).bytes(bytes);
  }

  get length(): number {
    return this.size;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const part of this.parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}

function fieldsOf(fields: unknown, what: string): BhttpFieldsInput {
  if (fields === undefined) return [];
  if (!Array.isArray(fields)) throw new EciesError('invalid_type', `${what} must be an array.`);
  for (const field of fields) {
    if (!Array.isArray(field) || field.length !== 2) {
      throw new EciesError('invalid_type', `Each of ${what} must be a [name, value] pair.`);
    }
  }
  return fields as BhttpFieldsInput;
}

/** Field lines without any prefix or terminator. */
function encodeFieldLines(
  fields: unknown,
  section: 'header' | 'trailer',
  what: string,
): Uint8Array {
  const writer = new Writer();
  const state: SectionState = { section, regularSeen: false };
  for (const [name, value] of fieldsOf(fields, what)) {
    const nameBytes = byteString(name, `A field name in ${what}`, true);
    const valueBytes = byteString(value, `The value of a field in ${what}`);
    if (nameBytes.length === 0) throw malformed(`A field name in ${what} is empty.`);
    checkField(nameBytes, valueBytes, state);
    writer.prefixed(nameBytes).prefixed(valueBytes);
  }
  return writer.finish();
}

function writeSection(writer: Writer, lines: Uint8Array, known: boolean): void {
  if (known) writer.prefixed(lines);
  else writer.bytes(lines).varint(0);
}

function bodyOf(body: unknown): Uint8Array {
  if (body === undefined) return EMPTY;
  if (!(body instanceof Uint8Array))
    throw new EciesError('invalid_type', 'The body must be a Uint8Array.');
  return body;
}

function paddingOf(padding: unknown): number {
  if (padding === undefined) return 0;
  if (typeof padding !== 'number' || !Number.isSafeInteger(padding) || padding < 0) {
    throw new EciesError(
      'invalid_length',
      'The padding is a number of bytes: a non-negative integer.',
    );
  }
  return padding;
}

function optionsOf(options: BhttpEncodeOptions | undefined) {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new EciesError('invalid_type', 'The options must be an object.');
  }
  const framing = options?.framing ?? 'known-length';
  if (framing !== 'known-length' && framing !== 'indeterminate-length') {
    throw new EciesError('invalid_type', `Unknown framing ${JSON.stringify(framing)}.`);
  }
  return {
    known: framing === 'known-length',
    truncate: options?.truncate === true,
    padding: paddingOf(options?.padding),
  };
}

function encodeRequestControl(writer: Writer, head: BhttpRequestHeadInput): void {
  if (typeof head !== 'object' || head === null) {
    throw new EciesError('invalid_type', 'The request must be an object.');
  }
  const method = byteString(head.method, 'The method');
  const scheme = byteString(head.scheme, 'The scheme');
  const authority = byteString(head.authority ?? '', 'The authority');
  const path = byteString(head.path, 'The path');
  checkRequestControl(method, scheme, authority, path);
  writer.prefixed(method).prefixed(scheme).prefixed(authority).prefixed(path);
}

function encodeResponseControl(
  writer: Writer,
  head: BhttpResponseHeadInput,
  informational: boolean,
  known: boolean,
): void {
  if (typeof head !== 'object' || head === null) {
    throw new EciesError('invalid_type', 'A response must be an object.');
  }
  writer.varint(checkStatus(head.status, informational));
  if (informational) {
    writeSection(
      writer,
      encodeFieldLines(head.headers, 'header', 'the informational headers'),
      known,
    );
  }
}

/** The sections after the control data, with the truncation and padding asked for. */
function encodeRest(
  writer: Writer,
  message: { headers?: unknown; body?: unknown; trailers?: unknown },
  options: ReturnType<typeof optionsOf>,
): Uint8Array {
  const headers = encodeFieldLines(message.headers, 'header', 'the headers');
  const body = bodyOf(message.body);
  const trailers = encodeFieldLines(message.trailers, 'trailer', 'the trailers');
  const { known, truncate } = options;
  const keepTrailers = !truncate || trailers.length > 0;
  const keepBody = keepTrailers || body.length > 0;
  const keepHeaders = keepBody || headers.length > 0;
  if (keepHeaders) writeSection(writer, headers, known);
  if (keepBody) {
    if (known) writer.prefixed(body);
    else {
      if (body.length > 0) writer.prefixed(body);
      writer.varint(0);
    }
  }
  if (keepTrailers) writeSection(writer, trailers, known);
  if (options.padding > 0) writer.bytes(new Uint8Array(options.padding));
  return writer.finish();
}

/**
 * Encodes a request as `message/bhttp` (framing indicator 0, or 2 for indeterminate length).
 *
 * @param request - control data, headers (names lowercased), body bytes and trailers.
 * @param options - framing, truncation of empty trailing sections, zero padding.
 * @returns the encoded message.
 * @throws {EciesError} `invalid_type` for a value of the wrong type; `malformed_message` for a
 *   field, method, scheme, authority or path that RFC 9292 forbids (uppercase names are
 *   lowercased, not refused); `invalid_length` for a negative padding.
 *
 * @example
 * ```ts
 * const bytes = encodeBhttpRequest(
 *   { method: 'GET', scheme: 'https', authority: 'example.com', path: '/' },
 *   { truncate: true },
 * ); // 00 03 'GET' 05 'https' 0b 'example.com' 01 '/'
 * ```
 */
export function encodeBhttpRequest(
  request: BhttpRequestInput,
  options?: BhttpEncodeOptions,
): Uint8Array {
  const settings = optionsOf(options);
  const writer = new Writer().varint(settings.known ? 0 : 2);
  encodeRequestControl(writer, request);
  return encodeRest(writer, request, settings);
}

/**
 * Encodes a response as `message/bhttp` (framing indicator 1, or 3 for indeterminate length),
 * informational responses first.
 *
 * @param response - final status, informational responses, headers (names lowercased), body
 *   bytes and trailers.
 * @param options - framing, truncation of empty trailing sections, zero padding.
 * @returns the encoded message.
 * @throws {EciesError} `invalid_type` for a value of the wrong type; `malformed_message` for a
 *   status out of range or a field RFC 9292 forbids; `invalid_length` for a negative padding.
 *
 * @example
 * ```ts
 * encodeBhttpResponse({ status: 200 }, { truncate: true }); // Uint8Array [0x01, 0x40, 0xc8]
 * ```
 */
export function encodeBhttpResponse(
  response: BhttpResponseInput,
  options?: BhttpEncodeOptions,
): Uint8Array {
  const settings = optionsOf(options);
  if (typeof response !== 'object' || response === null) {
    throw new EciesError('invalid_type', 'The response must be an object.');
  }
  const writer = new Writer().varint(settings.known ? 1 : 3);
  const informational = response.informational ?? [];
  if (!Array.isArray(informational)) {
    throw new EciesError('invalid_type', 'The informational responses must be an array.');
  }
  for (const interim of informational) encodeResponseControl(writer, interim, true, settings.known);
  encodeResponseControl(writer, response, false, settings.known);
  return encodeRest(writer, response, settings);
}

function createStreamEncoder<Head>(
  framing: 2 | 3,
  writeHead: (writer: Writer, head: Head) => void,
): BhttpStreamEncoder<Head> & { informational(response: BhttpResponseHeadInput): Uint8Array } {
  let state: 'start' | 'interim' | 'body' | 'ended' = 'start';
  const started = (writer: Writer) => (state === 'start' ? writer.varint(framing) : writer);
  const misuse = (message: string) => malformed(`This encoder cannot do that now: ${message}`);
  return {
    informational(response) {
      if (state !== 'start' && state !== 'interim') {
        throw misuse('informational responses go before head().');
      }
      const writer = started(new Writer());
      encodeResponseControl(writer, response, true, false);
      state = 'interim';
      return writer.finish();
    },
    head(head) {
      if (state !== 'start' && state !== 'interim') throw misuse('head() was already called.');
      const writer = started(new Writer());
      writeHead(writer, head);
      state = 'body';
      return writer.finish();
    },
    body(chunk) {
      if (state !== 'body') throw misuse('body() goes after head() and before end().');
      const data = bodyOf(chunk);
      return data.length === 0 ? EMPTY : new Writer().prefixed(data).finish();
    },
    end(trailers, options) {
      if (state !== 'body') throw misuse('end() goes once, after head().');
      const writer = new Writer().varint(0);
      writeSection(writer, encodeFieldLines(trailers, 'trailer', 'the trailers'), false);
      const padding = paddingOf(options?.padding);
      if (padding > 0) writer.bytes(new Uint8Array(padding));
      state = 'ended';
      return writer.finish();
    },
  };
}

/**
 * A streaming encoder of indeterminate-length responses: the head as soon as the status and
 * headers are known, then each content chunk as it is produced (an SSE token becomes one chunk,
 * ready to be sealed as one chunked-OHTTP chunk), then the end with optional trailers.
 *
 * @returns an encoder whose `informational`, `head`, `body` and `end` each return the bytes to
 *   send now. Calling them out of order throws `malformed_message`.
 *
 * @example
 * ```ts
 * const encoder = createBhttpResponseEncoder();
 * send(encoder.head({ status: 200, headers: [['content-type', 'text/event-stream']] }));
 * for await (const token of tokens) send(encoder.body(new TextEncoder().encode(token)));
 * send(encoder.end());
 * ```
 */
export function createBhttpResponseEncoder(): BhttpResponseEncoder {
  return createStreamEncoder<BhttpResponseHeadInput>(3, (writer, head) => {
    encodeResponseControl(writer, head, false, false);
    writeSection(writer, encodeFieldLines(head.headers, 'header', 'the headers'), false);
  });
}

/**
 * A streaming encoder of indeterminate-length requests: the head, then content chunks as they
 * are produced, then the end with optional trailers.
 *
 * @example
 * ```ts
 * const encoder = createBhttpRequestEncoder();
 * const head = encoder.head({ method: 'POST', scheme: 'https', authority: 'api.example', path: '/v1/upload' });
 * const part = encoder.body(new Uint8Array([1, 2, 3]));
 * const tail = encoder.end();
 * ```
 */
export function createBhttpRequestEncoder(): BhttpRequestEncoder {
  const encoder = createStreamEncoder<BhttpRequestHeadInput>(2, (writer, head) => {
    encodeRequestControl(writer, head);
    writeSection(writer, encodeFieldLines(head.headers, 'header', 'the headers'), false);
  });
  return { head: encoder.head, body: encoder.body, end: encoder.end };
}

// ---------------------------------------------------------------------------------------------
// Decoding: one state machine, fed by the streaming decoders and, in one piece, by the one-shot
// functions, so both read every message the same way.

type Phase =
  | 'framing'
  | 'control'
  | 'headers'
  | 'content'
  | 'content-data'
  | 'trailers'
  | 'padding';

type AnyEvent = BhttpResponseEvent | BhttpRequestEvent;

class Decoder {
  private phase: Phase = 'framing';
  private known = false;
  private buffer: Uint8Array = EMPTY;
  private pos = 0;
  /** The status of the informational response whose header section is being read. */
  private interim: number | undefined;
  private control: RequestControl | number = 0;
  private fields: BhttpField[] = [];
  private section: SectionState = { section: 'header', regularSeen: false };
  private remaining = 0;
  private chunkSeen = false;
  private events: AnyEvent[] = [];
  private error: EciesError | undefined;
  private closed = false;
  done = false;

  constructor(private readonly expect: 'request' | 'response') {}

  push(chunk: Uint8Array): AnyEvent[] {
    if (this.error) throw this.error;
    if (!(chunk instanceof Uint8Array)) {
      throw new EciesError('invalid_type', 'The decoder is fed Uint8Array chunks.');
    }
    if (this.closed) throw malformed('Bytes arrived after end() was called.');
    if (chunk.length === 0) return [];
    return this.guard(() => {
      if (this.pos < this.buffer.length) {
        const joined = new Uint8Array(this.buffer.length - this.pos + chunk.length);
        joined.set(this.buffer.subarray(this.pos));
        joined.set(chunk, this.buffer.length - this.pos);
        this.buffer = joined;
      } else {
        this.buffer = chunk;
      }
      this.pos = 0;
      while (this.step()) {}
      // Keep a private copy of the unread tail: the caller may reuse its chunk.
      this.buffer = this.pos < this.buffer.length ? this.buffer.slice(this.pos) : EMPTY;
      this.pos = 0;
    });
  }

  end(): AnyEvent[] {
    if (this.error) throw this.error;
    if (this.closed) return [];
    this.closed = true;
    return this.guard(() => {
      if (!this.canEnd()) {
        throw new EciesError(
          'truncated',
          `The binary HTTP message ended inside its ${this.where()}; it may only stop after its control data or at the end of a section (RFC 9292 section 3.8).`,
        );
      }
      if (this.phase === 'headers') this.emitHead([]);
      if (this.phase !== 'padding') this.finish([]);
    });
  }

  private guard(run: () => void): AnyEvent[] {
    try {
      run();
    } catch (error) {
      this.error = isEciesError(error)
        ? error
        : new EciesError('malformed_message', 'The binary HTTP message could not be read.', {
            cause: error,
          });
      throw this.error;
    }
    const events = this.events;
    this.events = [];
    return events;
  }

  private where(): string {
    if (this.phase === 'headers' && this.interim !== undefined) return 'informational response';
    return {
      framing: 'framing indicator',
      control: 'control data',
      headers: 'header section',
      content: 'content',
      'content-data': 'content',
      trailers: 'trailer section',
      padding: 'padding',
    }[this.phase];
  }

  private canEnd(): boolean {
    if (this.pos < this.buffer.length) return false;
    switch (this.phase) {
      case 'headers':
        return this.interim === undefined && this.fields.length === 0;
      case 'content':
        return this.known || !this.chunkSeen;
      case 'trailers':
        return this.fields.length === 0;
      case 'padding':
        return true;
      default:
        return false;
    }
  }

  /** A varint that lies wholly before `limit`, or undefined when it does not (yet). */
  private varint(at: number, limit = this.buffer.length) {
    if (at >= limit) return undefined;
    const length = 1 << (this.buffer[at]! >> 6);
    if (at + length > limit) return undefined;
    try {
      return decodeVarint(this.buffer, at);
    } catch (error) {
      throw malformed('A length in the message is above 2^53 - 1, beyond any real message.', {
        cause: error,
      });
    }
  }

  private step(): boolean {
    switch (this.phase) {
      case 'framing':
        return this.readFraming();
      case 'control':
        return this.expect === 'request' ? this.readRequestControl() : this.readStatus();
      case 'headers':
      case 'trailers':
        return this.known ? this.readKnownSection() : this.readIndeterminateField();
      case 'content':
        return this.readContentLength();
      case 'content-data':
        return this.readContent();
      case 'padding':
        for (let i = this.pos; i < this.buffer.length; i++) {
          if (this.buffer[i] !== 0)
            throw malformed('The padding after the message is not all zeros.');
        }
        this.pos = this.buffer.length;
        return false;
    }
  }

  private readFraming(): boolean {
    const framing = this.varint(this.pos);
    if (!framing) return false;
    const value = framing.value;
    if (value > 3) throw malformed(`${value} is not a binary HTTP framing indicator (0 to 3).`);
    const isRequest = value % 2 === 0;
    if (isRequest !== (this.expect === 'request')) {
      throw malformed(
        `The framing indicator ${value} announces a ${isRequest ? 'request' : 'response'}; a ${this.expect} was expected.`,
      );
    }
    this.known = value < 2;
    this.pos += framing.length;
    this.phase = 'control';
    return true;
  }

  private readRequestControl(): boolean {
    let at = this.pos;
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 4; i++) {
      const length = this.varint(at);
      if (!length) return false;
      at += length.length;
      if (at + length.value > this.buffer.length) return false;
      parts.push(this.buffer.subarray(at, at + length.value));
      at += length.value;
    }
    this.control = checkRequestControl(parts[0]!, parts[1]!, parts[2]!, parts[3]!);
    this.pos = at;
    this.startSection('headers');
    return true;
  }

  private readStatus(): boolean {
    const status = this.varint(this.pos);
    if (!status) return false;
    if (status.value >= 100 && status.value <= 199) this.interim = status.value;
    else this.control = checkStatus(status.value, false);
    this.pos += status.length;
    this.startSection('headers');
    return true;
  }

  private startSection(phase: 'headers' | 'trailers'): void {
    this.phase = phase;
    this.fields = [];
    this.section = { section: phase === 'headers' ? 'header' : 'trailer', regularSeen: false };
  }

  /** One field line from `at`, all of it before `limit`; its end, or undefined if it is not all there. */
  private readField(at: number, limit: number): number | undefined {
    const nameLength = this.varint(at, limit);
    if (!nameLength) return undefined;
    if (nameLength.value === 0) throw malformed('A field name is empty.');
    let next = at + nameLength.length;
    if (next + nameLength.value > limit) return undefined;
    const name = this.buffer.subarray(next, next + nameLength.value);
    next += nameLength.value;
    const valueLength = this.varint(next, limit);
    if (!valueLength) return undefined;
    next += valueLength.length;
    if (next + valueLength.value > limit) return undefined;
    const value = this.buffer.subarray(next, next + valueLength.value);
    next += valueLength.value;
    checkField(name, value, this.section);
    this.fields.push([latin1(name), latin1(value)]);
    return next;
  }

  private readKnownSection(): boolean {
    const length = this.varint(this.pos);
    if (!length) return false;
    const start = this.pos + length.length;
    const end = start + length.value;
    if (end > this.buffer.length) return false;
    let at = start;
    while (at < end) {
      const next = this.readField(at, end);
      if (next === undefined) throw malformed('A field line runs past the end of its section.');
      at = next;
    }
    this.pos = end;
    this.completeSection();
    return true;
  }

  private readIndeterminateField(): boolean {
    const nameLength = this.varint(this.pos);
    if (!nameLength) return false;
    if (nameLength.value === 0) {
      this.pos += nameLength.length;
      this.completeSection();
      return true;
    }
    const next = this.readField(this.pos, this.buffer.length);
    if (next === undefined) return false;
    this.pos = next;
    return true;
  }

  private completeSection(): void {
    const fields = this.fields;
    if (this.phase === 'trailers') {
      this.finish(fields);
    } else if (this.interim !== undefined) {
      this.events.push({ type: 'informational', status: this.interim, headers: fields });
      this.interim = undefined;
      this.phase = 'control';
    } else {
      this.emitHead(fields);
    }
  }

  private emitHead(headers: BhttpField[]): void {
    const control = this.control;
    this.events.push(
      typeof control === 'number'
        ? { type: 'head', status: control, headers }
        : { type: 'head', ...control, headers },
    );
    this.phase = 'content';
    this.chunkSeen = false;
  }

  private finish(trailers: BhttpField[]): void {
    this.events.push({ type: 'end', trailers });
    this.phase = 'padding';
    this.done = true;
  }

  private readContentLength(): boolean {
    const length = this.varint(this.pos);
    if (!length) return false;
    this.pos += length.length;
    if (length.value === 0) {
      this.startSection('trailers');
    } else {
      this.remaining = length.value;
      this.chunkSeen = true;
      this.phase = 'content-data';
    }
    return true;
  }

  private readContent(): boolean {
    const available = this.buffer.length - this.pos;
    if (available === 0) return false;
    const take = Math.min(available, this.remaining);
    this.events.push({ type: 'body', data: this.buffer.slice(this.pos, this.pos + take) });
    this.pos += take;
    this.remaining -= take;
    if (this.remaining === 0) {
      if (this.known) this.startSection('trailers');
      else this.phase = 'content';
    }
    return true;
  }
}

function streamDecoder<Event>(expect: 'request' | 'response'): BhttpDecoder<Event> {
  const decoder = new Decoder(expect);
  return {
    push: (chunk) => decoder.push(chunk) as Event[],
    end: () => decoder.end() as Event[],
    get done() {
      return decoder.done;
    },
  };
}

/**
 * A streaming decoder of `message/bhttp` responses, known- or indeterminate-length: the head is
 * reported as soon as the final status and headers are in, content as it arrives (an SSE stream
 * inside chunked OHTTP is read token by token), then the end with the trailers.
 *
 * @returns a decoder; `push()` throws `malformed_message` on an invalid message, `end()` throws
 *   `truncated` when the input stopped before the message could end.
 *
 * @example
 * ```ts
 * const decoder = createBhttpResponseDecoder();
 * for await (const chunk of plaintextChunks) {
 *   for (const event of decoder.push(chunk)) {
 *     if (event.type === 'head') console.log(event.status, event.headers);
 *     if (event.type === 'body') write(event.data);
 *   }
 * }
 * decoder.end(); // throws EciesError 'truncated' if the response was cut
 * ```
 */
export function createBhttpResponseDecoder(): BhttpResponseDecoder {
  return streamDecoder<BhttpResponseEvent>('response');
}

/**
 * A streaming decoder of `message/bhttp` requests, known- or indeterminate-length.
 *
 * @example
 * ```ts
 * const decoder = createBhttpRequestDecoder();
 * const events = [...decoder.push(bytes), ...decoder.end()];
 * ```
 */
export function createBhttpRequestDecoder(): BhttpRequestDecoder {
  return streamDecoder<BhttpRequestEvent>('request');
}

function decodeAll(expect: 'request' | 'response', bytes: Uint8Array): AnyEvent[] {
  if (!(bytes instanceof Uint8Array)) {
    throw new EciesError('invalid_type', 'A binary HTTP message is decoded from a Uint8Array.');
  }
  const decoder = new Decoder(expect);
  return [...decoder.push(bytes), ...decoder.end()];
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const writer = new Writer();
  for (const part of parts) writer.bytes(part);
  return writer.finish();
}

/**
 * Decodes a `message/bhttp` request of either framing. Sections missing at the end count as
 * empty; trailing zero padding is accepted.
 *
 * @param bytes - the whole message.
 * @throws {EciesError} `invalid_type` if `bytes` is not a Uint8Array; `malformed_message` for a
 *   response, an unknown framing indicator, an invalid field or control data, a field line
 *   running past its section, non-zero padding; `truncated` when the bytes stop where RFC 9292
 *   does not allow a message to end.
 *
 * @example
 * ```ts
 * const request = decodeBhttpRequest(bytes);
 * request.method; // 'GET'
 * ```
 */
export function decodeBhttpRequest(bytes: Uint8Array): BhttpRequest {
  const request: BhttpRequest = {
    method: '',
    scheme: '',
    authority: '',
    path: '',
    headers: [],
    body: EMPTY,
    trailers: [],
  };
  const body: Uint8Array[] = [];
  for (const event of decodeAll('request', bytes) as BhttpRequestEvent[]) {
    if (event.type === 'head') {
      const { type: _, ...head } = event;
      Object.assign(request, head);
    } else if (event.type === 'body') body.push(event.data);
    else request.trailers = event.trailers;
  }
  request.body = body.length === 0 ? new Uint8Array(0) : concat(body);
  return request;
}

/**
 * Decodes a `message/bhttp` response of either framing, informational responses included.
 *
 * @param bytes - the whole message.
 * @throws {EciesError} `invalid_type` if `bytes` is not a Uint8Array; `malformed_message` for a
 *   request, an unknown framing indicator, a status out of range, an invalid field, a field line
 *   running past its section, non-zero padding; `truncated` when the bytes stop where RFC 9292
 *   does not allow a message to end.
 *
 * @example
 * ```ts
 * decodeBhttpResponse(Uint8Array.of(0x01, 0x40, 0xc8)).status; // 200
 * ```
 */
export function decodeBhttpResponse(bytes: Uint8Array): BhttpResponse {
  const response: BhttpResponse = {
    status: 0,
    informational: [],
    headers: [],
    body: EMPTY,
    trailers: [],
  };
  const body: Uint8Array[] = [];
  for (const event of decodeAll('response', bytes) as BhttpResponseEvent[]) {
    if (event.type === 'informational') {
      response.informational.push({ status: event.status, headers: event.headers });
    } else if (event.type === 'head') {
      response.status = event.status;
      response.headers = event.headers;
    } else if (event.type === 'body') body.push(event.data);
    else response.trailers = event.trailers;
  }
  response.body = body.length === 0 ? new Uint8Array(0) : concat(body);
  return response;
}
