/**
 * Translation between Ollama's native API and the OpenAI shapes the inference pipeline
 * speaks: Ollama request bodies become OpenAI ones, and OpenAI answers (whole, or one stream
 * chunk at a time) become Ollama's objects. Pure functions; the routes live in `ollama-api.ts`.
 */
import { createHash } from 'node:crypto';
import { OLLAMA_OPTION_NAMES, type RouterModel } from '@tollgate/backends';
import { TollgateError, type Usage } from '@tollgate/protocol';

/** A parsed JSON object. */
export type JsonObject = Record<string, unknown>;

/** Which Ollama answer an OpenAI answer becomes: `message` (/api/chat) or `response` (/api/generate). */
export type AnswerShape = 'chat' | 'generate';

// Model parameters Ollama takes in `options` (OLLAMA_OPTION_NAMES, shared with the Ollama
// adapter): others are ignored, as Ollama ignores them; none may overwrite a field the
// translation sets itself.

/** Nanoseconds in a millisecond: Ollama reports durations in ns. */
const NS_PER_MS = 1_000_000;

function invalid(message: string, param?: string): TollgateError {
  return new TollgateError('invalid_request', message, param ? { param } : {});
}

/** The value as a plain object, or undefined. */
export function asObject(value: unknown): JsonObject | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as JsonObject)
    : undefined;
}

function requireModel(body: JsonObject): string {
  const model = body.model;
  if (typeof model !== 'string' || model === '') {
    throw invalid('"model" is required: name a model, e.g. {"model": "llama3.2", ...}.', 'model');
  }
  return model;
}

function streamFlag(body: JsonObject): boolean {
  const stream = body.stream;
  if (stream === undefined || stream === null) return true;
  if (typeof stream !== 'boolean') throw invalid('"stream" must be true or false.', 'stream');
  return stream;
}

/**
 * Ollama's `options` as OpenAI request fields: `num_predict` > 0 becomes `max_tokens`, `stop`
 * is always a list, every other Ollama parameter goes through under its own name (OpenAI's
 * temperature, top_p, seed, presence/frequency_penalty share them; llama-server and vLLM read
 * top_k, min_p and others; the Ollama adapter puts them back into `options`).
 */
function optionFields(options: unknown): JsonObject {
  if (options === undefined || options === null) return {};
  const record = asObject(options);
  if (!record) throw invalid('"options" must be an object, e.g. {"temperature": 0.2}.', 'options');
  const fields: JsonObject = {};
  for (const [name, value] of Object.entries(record)) {
    if (value === undefined || value === null || !OLLAMA_OPTION_NAMES.has(name)) continue;
    if (name === 'num_predict') {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        throw invalid('"options.num_predict" must be a number of tokens.', 'options.num_predict');
      }
      // 0 is Ollama's "unset"; -1 (no limit) and -2 (fill the context) name no limit either.
      if (value > 0) fields.max_tokens = Math.floor(value);
    } else if (name === 'stop') {
      fields.stop = typeof value === 'string' ? [value] : value;
    } else {
      fields[name] = value;
    }
  }
  return fields;
}

/** `format`: "json" or a JSON schema, as OpenAI's `response_format`. */
function responseFormat(format: unknown): JsonObject | undefined {
  if (format === undefined || format === null || format === '') return undefined;
  if (format === 'json') return { type: 'json_object' };
  const schema = asObject(format);
  if (!schema) {
    throw invalid('"format" must be "json" or a JSON schema object.', 'format');
  }
  return { type: 'json_schema', json_schema: { name: 'response', schema } };
}

/** Fields every generating request shares: options, format, think. */
function generationFields(body: JsonObject): JsonObject {
  const fields = optionFields(body.options);
  const format = responseFormat(body.format);
  if (format) fields.response_format = format;
  // Ollama's thinking switch; the Ollama adapter honours it, other servers ignore it.
  if (body.think !== undefined && body.think !== null) fields.think = body.think;
  return fields;
}

// Base64 openings of the image formats vision models take (PNG, JPEG, GIF, WebP).
const IMAGE_SIGNATURES: Array<[string, string]> = [
  ['iVBORw0KGgo', 'image/png'],
  ['/9j/', 'image/jpeg'],
  ['R0lGOD', 'image/gif'],
  ['UklGR', 'image/webp'],
];

/** An Ollama image (base64, no media type) as an OpenAI image part with a data: URL. */
function imagePart(image: unknown, param: string): JsonObject {
  if (typeof image !== 'string' || image === '') {
    throw invalid('Each image must be a base64-encoded string.', param);
  }
  if (image.startsWith('data:')) return { type: 'image_url', image_url: { url: image } };
  const type = IMAGE_SIGNATURES.find(([opening]) => image.startsWith(opening))?.[1] ?? 'image/png';
  return { type: 'image_url', image_url: { url: `data:${type};base64,${image}` } };
}

/** Message content: the text alone, or text and image parts when there are images. */
function messageContent(text: string, images: unknown, param: string): string | JsonObject[] {
  if (images === undefined || images === null) return text;
  if (!Array.isArray(images)) throw invalid('"images" must be a list of base64 strings.', param);
  if (images.length === 0) return text;
  const parts: JsonObject[] = text ? [{ type: 'text', text }] : [];
  images.forEach((image, index) => {
    parts.push(imagePart(image, `${param}[${index}]`));
  });
  return parts;
}

/** Tool call arguments as OpenAI's JSON string. */
function argumentsText(value: unknown): string {
  if (typeof value === 'string') return value;
  return JSON.stringify(value ?? {});
}

/**
 * Ollama chat messages as OpenAI ones. Tool calls get ids (`call_<message>_<call>`) unless
 * they carry one, and each `tool` message answers the earliest open call of its `tool_name`
 * (or simply the earliest open call), which is how OpenAI servers link results to calls.
 */
function chatMessages(messages: unknown[]): JsonObject[] {
  const open: Array<{ id: string; name: string }> = [];
  return messages.map((entry, index) => {
    const param = `messages[${index}]`;
    const message = asObject(entry);
    if (!message) throw invalid('Each message must be an object with "role" and "content".', param);
    if (typeof message.role !== 'string') {
      throw invalid(
        'Each message needs a "role": system, user, assistant or tool.',
        `${param}.role`,
      );
    }
    const role = message.role.toLowerCase();
    const content = message.content ?? '';
    if (typeof content !== 'string') {
      throw invalid('A message "content" must be a string.', `${param}.content`);
    }
    const out: JsonObject = {
      role,
      content: messageContent(content, message.images, `${param}.images`),
    };
    if (role === 'assistant' && typeof message.thinking === 'string' && message.thinking) {
      out.reasoning_content = message.thinking;
    }
    if (message.tool_calls !== undefined && message.tool_calls !== null) {
      if (!Array.isArray(message.tool_calls)) {
        throw invalid('"tool_calls" must be a list.', `${param}.tool_calls`);
      }
      out.tool_calls = message.tool_calls.map((call, callIndex) => {
        const fn = asObject(asObject(call)?.function);
        if (!fn || typeof fn.name !== 'string') {
          throw invalid(
            'Each tool call needs {"function": {"name", "arguments"}}.',
            `${param}.tool_calls[${callIndex}]`,
          );
        }
        const given = asObject(call)?.id;
        const id = typeof given === 'string' && given ? given : `call_${index}_${callIndex}`;
        open.push({ id, name: fn.name });
        return {
          id,
          type: 'function',
          function: { name: fn.name, arguments: argumentsText(fn.arguments) },
        };
      });
      if (content === '') out.content = null;
    }
    if (role === 'tool') {
      const given = message.tool_call_id;
      const position =
        typeof given === 'string'
          ? open.findIndex((call) => call.id === given)
          : typeof message.tool_name === 'string'
            ? open.findIndex((call) => call.name === message.tool_name)
            : 0;
      const answered = position >= 0 ? open.splice(position, 1)[0] : undefined;
      if (answered) out.tool_call_id = answered.id;
      else if (typeof given === 'string') out.tool_call_id = given;
    }
    return out;
  });
}

/** What an Ollama generating request became. */
export interface TranslatedGeneration {
  model: string;
  stream: boolean;
  /** Which OpenAI operation serves it. */
  operation: 'chat.completions' | 'completions';
  /** The OpenAI body; undefined when the request only loads (or unloads) the model. */
  body: JsonObject | undefined;
  /** `keep_alive`, for telling a load from an unload; never sent on. */
  keepAlive: unknown;
}

/** OpenAI's stream flags: usage is always asked for, so the last chunk carries the counts. */
function streamFields(stream: boolean): JsonObject {
  return stream ? { stream: true, stream_options: { include_usage: true } } : { stream: false };
}

/**
 * An /api/chat body as an OpenAI chat completion request. No messages at all is Ollama's way
 * to load a model: `body` is then undefined.
 *
 * @throws {TollgateError} `invalid_request` (400) for a field of the wrong shape.
 */
export function translateChat(body: JsonObject): TranslatedGeneration {
  const model = requireModel(body);
  const stream = streamFlag(body);
  const base = {
    model,
    stream,
    operation: 'chat.completions' as const,
    keepAlive: body.keep_alive,
  };
  if (body.messages === undefined || body.messages === null) return { ...base, body: undefined };
  if (!Array.isArray(body.messages)) {
    throw invalid('"messages" must be a list of {"role", "content"} objects.', 'messages');
  }
  if (body.messages.length === 0) return { ...base, body: undefined };
  const openai: JsonObject = {
    ...generationFields(body),
    model,
    messages: chatMessages(body.messages),
    ...streamFields(stream),
  };
  if (body.tools !== undefined && body.tools !== null) {
    if (!Array.isArray(body.tools)) {
      throw invalid('"tools" must be a list of {"type": "function", "function": {...}}.', 'tools');
    }
    // Ollama's tools are OpenAI's, field for field.
    if (body.tools.length > 0) openai.tools = body.tools;
  }
  return { ...base, body: openai };
}

/**
 * An /api/generate body as an OpenAI request. Ollama applies the model's template to the
 * prompt, so a plain prompt becomes a chat completion (`system`, then the prompt and its
 * images as the user's message): chat templates live with the model on every server. `raw`
 * (the caller templated the prompt itself) and `suffix` (fill-in-the-middle) go to
 * /v1/completions with the text as it is. An empty prompt only loads the model.
 *
 * @throws {TollgateError} `invalid_request` (400) for a field of the wrong shape, or images
 *   in a raw prompt.
 */
export function translateGenerate(body: JsonObject): TranslatedGeneration {
  const model = requireModel(body);
  const stream = streamFlag(body);
  const prompt = body.prompt ?? '';
  if (typeof prompt !== 'string') throw invalid('"prompt" must be a string.', 'prompt');
  const system = body.system ?? '';
  if (typeof system !== 'string') throw invalid('"system" must be a string.', 'system');
  const suffix = body.suffix ?? '';
  if (typeof suffix !== 'string') throw invalid('"suffix" must be a string.', 'suffix');
  const raw = body.raw === true;
  const hasImages = Array.isArray(body.images) && body.images.length > 0;
  const base = { model, stream, keepAlive: body.keep_alive };
  if (prompt === '' && system === '' && suffix === '' && !hasImages) {
    return { ...base, operation: 'chat.completions', body: undefined };
  }
  if (raw || suffix !== '') {
    if (hasImages) {
      throw invalid(
        'Images need the model template: send them without "raw" or "suffix".',
        'images',
      );
    }
    const openai: JsonObject = {
      ...generationFields(body),
      model,
      prompt,
      ...streamFields(stream),
    };
    if (suffix !== '') openai.suffix = suffix;
    return { ...base, operation: 'completions', body: openai };
  }
  const messages: JsonObject[] = [];
  if (system !== '') messages.push({ role: 'system', content: system });
  messages.push({ role: 'user', content: messageContent(prompt, body.images, 'images') });
  return {
    ...base,
    operation: 'chat.completions',
    body: { ...generationFields(body), model, messages, ...streamFields(stream) },
  };
}

/** What an /api/embed (or /api/embeddings) body became. */
export interface TranslatedEmbedding {
  model: string;
  /** The OpenAI body; undefined when there is nothing to embed. */
  body: JsonObject | undefined;
}

/**
 * An /api/embed body (`input`: a string or strings) or a legacy /api/embeddings one
 * (`prompt`: one string) as an OpenAI embeddings request. Empty input embeds nothing (Ollama
 * answers with no vectors). `truncate` and `dimensions` go through.
 *
 * @throws {TollgateError} `invalid_request` (400) for input that is not text.
 */
export function translateEmbed(body: JsonObject, field: 'input' | 'prompt'): TranslatedEmbedding {
  const model = requireModel(body);
  const value = body[field] ?? '';
  let input: string | string[];
  if (typeof value === 'string') input = value;
  else if (Array.isArray(value) && value.every((item) => typeof item === 'string')) {
    input = value as string[];
  } else {
    throw invalid(
      field === 'input'
        ? '"input" must be a string or a list of strings.'
        : '"prompt" must be a string.',
      field,
    );
  }
  const texts = typeof input === 'string' ? [input] : input;
  if (texts.every((text) => text === '')) return { model, body: undefined };
  const openai: JsonObject = { model, input, encoding_format: 'float' };
  const options = optionFields(body.options);
  delete options.max_tokens;
  Object.assign(openai, options);
  if (typeof body.truncate === 'boolean') openai.truncate = body.truncate;
  if (typeof body.dimensions === 'number') openai.dimensions = body.dimensions;
  return { model, body: openai };
}

/** Whether `keep_alive` asks for the model to be unloaded (0, "0", "0s", ...). */
export function asksToUnload(keepAlive: unknown): boolean {
  if (keepAlive === 0) return true;
  return typeof keepAlive === 'string' && /^\s*0+(\.0*)?\s*[a-z]*\s*$/i.test(keepAlive);
}

// ---------------------------------------------------------------------------------------------
// Answers

/** Timings of one answer, in ms; what is unknown is 0 (Ollama's own "absent"). */
export interface AnswerTimings {
  total: number;
  promptEval: number;
  eval: number;
}

/**
 * Ollama's metrics: durations in ns from the gateway's own timings (`load_duration` is always
 * 0: loading, if any, is part of the prompt time), counts from the OpenAI usage (0 when the
 * backend reported none, which is what Ollama's omitted fields mean).
 */
export function metrics(usage: Usage | undefined, timings: AnswerTimings): JsonObject {
  return {
    total_duration: Math.round(timings.total * NS_PER_MS),
    load_duration: 0,
    prompt_eval_count: usage?.prompt_tokens ?? 0,
    prompt_eval_duration: Math.round(timings.promptEval * NS_PER_MS),
    eval_count: usage?.completion_tokens ?? 0,
    eval_duration: Math.round(timings.eval * NS_PER_MS),
  };
}

/** Ollama's `done_reason` for an OpenAI `finish_reason` (a tool call is a "stop" to Ollama). */
export function doneReason(finishReason: unknown): 'stop' | 'length' {
  return finishReason === 'length' ? 'length' : 'stop';
}

/** Parses tool call arguments into the object Ollama sends; text that is not JSON stays text. */
function parseArguments(text: string): unknown {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** OpenAI tool calls (complete) as Ollama's `{function: {name, arguments: object}}`. */
export function ollamaToolCalls(calls: unknown): JsonObject[] {
  if (!Array.isArray(calls)) return [];
  return calls.map((call, index) => {
    const record = asObject(call) ?? {};
    const fn = asObject(record.function) ?? {};
    const out: JsonObject = {
      function: {
        index,
        name: typeof fn.name === 'string' ? fn.name : '',
        arguments: typeof fn.arguments === 'string' ? parseArguments(fn.arguments) : {},
      },
    };
    if (typeof record.id === 'string' && record.id) out.id = record.id;
    return out;
  });
}

/** The reasoning text of an OpenAI message or delta (servers name it either way). */
function reasoningOf(record: JsonObject): string {
  const text = record.reasoning_content ?? record.reasoning;
  return typeof text === 'string' ? text : '';
}

/** One Ollama answer line (not the last): the text, thinking and tool calls it carries. */
export function answerLine(
  shape: AnswerShape,
  model: string,
  createdAt: string,
  piece: { content: string; thinking?: string; toolCalls?: JsonObject[] },
): JsonObject {
  if (shape === 'chat') {
    const message: JsonObject = { role: 'assistant', content: piece.content };
    if (piece.thinking) message.thinking = piece.thinking;
    if (piece.toolCalls?.length) message.tool_calls = piece.toolCalls;
    return { model, created_at: createdAt, message, done: false };
  }
  const line: JsonObject = { model, created_at: createdAt, response: piece.content };
  if (piece.thinking) line.thinking = piece.thinking;
  return { ...line, done: false };
}

/** Ollama's last line of an answer: done, why, and the metrics. */
export function finalLine(
  shape: AnswerShape,
  model: string,
  createdAt: string,
  reason: string,
  counts: JsonObject,
): JsonObject {
  const body =
    shape === 'chat'
      ? { message: { role: 'assistant', content: '' } }
      : // `context` is deprecated in Ollama and means nothing here: it is left out.
        { response: '' };
  return { model, created_at: createdAt, ...body, done: true, done_reason: reason, ...counts };
}

/**
 * A whole OpenAI answer (chat completion or text completion) as one Ollama answer object.
 */
export function wholeAnswer(
  shape: AnswerShape,
  answer: JsonObject,
  model: string,
  createdAt: string,
  timings: AnswerTimings,
): JsonObject {
  const choice = asObject(Array.isArray(answer.choices) ? answer.choices[0] : undefined) ?? {};
  const message = asObject(choice.message);
  const content = message
    ? typeof message.content === 'string'
      ? message.content
      : ''
    : typeof choice.text === 'string'
      ? choice.text
      : '';
  const piece = {
    content,
    thinking: message ? reasoningOf(message) : '',
    toolCalls: message ? ollamaToolCalls(message.tool_calls) : [],
  };
  const usage = asObject(answer.usage) as Usage | undefined;
  const line = answerLine(shape, model, createdAt, piece);
  return {
    ...line,
    done: true,
    done_reason: doneReason(choice.finish_reason),
    ...metrics(usage, timings),
  };
}

/** Decodes OpenAI's base64 embedding (little-endian float32) to numbers. */
function base64Vector(text: string): number[] {
  const bytes = Buffer.from(text, 'base64');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const vector: number[] = [];
  for (let offset = 0; offset + 4 <= bytes.byteLength; offset += 4) {
    vector.push(view.getFloat32(offset, true));
  }
  return vector;
}

/** The vectors of an OpenAI embedding list, in input order. */
export function embeddingVectors(list: JsonObject): number[][] {
  const data = Array.isArray(list.data) ? list.data.map((item) => asObject(item) ?? {}) : [];
  return data
    .map((item, position) => ({
      index: typeof item.index === 'number' ? item.index : position,
      embedding: item.embedding,
    }))
    .sort((a, b) => a.index - b.index)
    .map(({ embedding }) =>
      typeof embedding === 'string'
        ? base64Vector(embedding)
        : Array.isArray(embedding)
          ? (embedding as number[])
          : [],
    );
}

// ---------------------------------------------------------------------------------------------
// Streams

/** What one stream event turned into. */
export interface StreamStep {
  /** Ollama objects to send, in order. */
  lines: JsonObject[];
  /** `done`: the answer is complete; `error`: the last line is the error. */
  end?: 'done' | 'error';
}

/** Turns OpenAI stream events into Ollama answer lines. */
export interface StreamTranslator {
  /** One SSE event's data (a chunk, an error envelope, or `[DONE]`). */
  push(data: string): StreamStep;
  /** The stream ended without `[DONE]` or an error: the error line to send. */
  cutShort(): JsonObject;
  /** The line to send when the stream broke with `message`. */
  failure(message: string): JsonObject;
}

/** Options for {@link createStreamTranslator}. */
export interface StreamTranslatorOptions {
  shape: AnswerShape;
  /** The model as the caller named it. */
  model: string;
  /** `created_at` of each line, as an ISO 8601 timestamp. */
  createdAt: () => string;
  /** Milliseconds since the request arrived, on a monotonic clock. */
  elapsed: () => number;
}

interface PendingToolCall {
  id?: string;
  name: string;
  arguments: string;
}

/**
 * Translates a streamed OpenAI answer, event by event: text and thinking go out as they come;
 * tool calls, which OpenAI streams in fragments and Ollama sends whole, go out together before
 * the last line; the last line carries `done_reason` and the metrics (the usage chunk that the
 * request asked for comes before `[DONE]`). The prompt's time is until the first generated
 * piece, the generation's from there to the end.
 */
export function createStreamTranslator(options: StreamTranslatorOptions): StreamTranslator {
  const { shape, model, createdAt, elapsed } = options;
  let usage: Usage | undefined;
  let finishReason: unknown;
  let firstPieceAt: number | undefined;
  const toolCalls = new Map<number, PendingToolCall>();

  const errorLine = (message: string): JsonObject => ({ error: message });

  function collectToolCalls(fragments: unknown): void {
    if (!Array.isArray(fragments)) return;
    for (const [position, fragment] of fragments.entries()) {
      const record = asObject(fragment) ?? {};
      const index = typeof record.index === 'number' ? record.index : position;
      const fn = asObject(record.function) ?? {};
      const pending = toolCalls.get(index) ?? { name: '', arguments: '' };
      if (typeof record.id === 'string' && record.id) pending.id = record.id;
      if (typeof fn.name === 'string') pending.name += fn.name;
      if (typeof fn.arguments === 'string') pending.arguments += fn.arguments;
      toolCalls.set(index, pending);
    }
  }

  function finish(): JsonObject[] {
    const end = elapsed();
    const lines: JsonObject[] = [];
    if (toolCalls.size > 0) {
      const calls = [...toolCalls.entries()]
        .sort(([a], [b]) => a - b)
        .map(([, call]) => ({
          id: call.id,
          type: 'function',
          function: { name: call.name, arguments: call.arguments },
        }));
      lines.push(
        answerLine(shape, model, createdAt(), { content: '', toolCalls: ollamaToolCalls(calls) }),
      );
    }
    const firstAt = firstPieceAt ?? end;
    lines.push(
      finalLine(
        shape,
        model,
        createdAt(),
        doneReason(finishReason),
        metrics(usage, { total: end, promptEval: firstAt, eval: end - firstAt }),
      ),
    );
    return lines;
  }

  return {
    push(data) {
      if (data.trim() === '[DONE]') return { lines: finish(), end: 'done' };
      let event: JsonObject | undefined;
      try {
        event = asObject(JSON.parse(data));
      } catch {
        event = undefined;
      }
      if (!event) {
        return {
          lines: [
            errorLine(
              'The backend sent a stream event that is not JSON; the answer is incomplete.',
            ),
          ],
          end: 'error',
        };
      }
      if (event.error !== undefined) {
        const error = event.error;
        const message =
          typeof error === 'string'
            ? error
            : typeof asObject(error)?.message === 'string'
              ? (asObject(error)!.message as string)
              : 'The backend failed during the stream; the answer is incomplete.';
        return { lines: [errorLine(message)], end: 'error' };
      }
      const reported = asObject(event.usage);
      if (reported && typeof reported.prompt_tokens === 'number') usage = reported as Usage;
      const choice = asObject(Array.isArray(event.choices) ? event.choices[0] : undefined);
      if (!choice) return { lines: [] };
      if (choice.finish_reason !== undefined && choice.finish_reason !== null) {
        finishReason = choice.finish_reason;
      }
      const delta = asObject(choice.delta);
      const content = delta
        ? typeof delta.content === 'string'
          ? delta.content
          : ''
        : typeof choice.text === 'string'
          ? choice.text
          : '';
      const thinking = delta ? reasoningOf(delta) : '';
      if (delta && Array.isArray(delta.tool_calls) && delta.tool_calls.length > 0) {
        firstPieceAt ??= elapsed();
        collectToolCalls(delta.tool_calls);
      }
      if (!content && !thinking) return { lines: [] };
      firstPieceAt ??= elapsed();
      return { lines: [answerLine(shape, model, createdAt(), { content, thinking })] };
    },
    cutShort() {
      return errorLine(
        'The backend ended the stream before it finished; the answer is incomplete. Retry the request.',
      );
    },
    failure(message) {
      return errorLine(message);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Model lists

/** Ollama's `details` of a model the gateway knows nothing about beyond its name. */
function details(model: RouterModel): JsonObject {
  return {
    parent_model: model.aliasOf ?? '',
    format: '',
    family: '',
    families: [],
    parameter_size: '',
    quantization_level: '',
  };
}

/** A stable stand-in digest: the SHA-256 of the model's name, hex. */
function digestOf(name: string): string {
  return createHash('sha256').update(name).digest('hex');
}

/**
 * One /api/tags entry. The gateway knows names only: `size` is 0, `digest` is the SHA-256 of
 * the name, `modified_at` is when the gateway started, `details` are empty strings (an
 * alias's `parent_model` is its target).
 */
export function tagEntry(model: RouterModel, modifiedAt: string): JsonObject {
  return {
    name: model.id,
    model: model.id,
    modified_at: modifiedAt,
    size: 0,
    digest: digestOf(model.id),
    details: details(model),
  };
}

/**
 * One /api/ps entry: a model a healthy backend serves, reported as loaded until `expiresAt`
 * (the gateway does not know what its backends hold in memory), `size_vram` 0, and
 * `context_length` when the backends report one.
 */
export function runningEntry(model: RouterModel, expiresAt: string): JsonObject {
  const entry: JsonObject = {
    name: model.id,
    model: model.id,
    size: 0,
    digest: digestOf(model.id),
    details: details(model),
    expires_at: expiresAt,
    size_vram: 0,
  };
  if (model.contextLength !== undefined) entry.context_length = model.contextLength;
  return entry;
}
