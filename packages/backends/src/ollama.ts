/**
 * The Ollama adapter: OpenAI requests are translated to Ollama's native API (/api/chat,
 * /api/generate, /api/embed) and its answers — JSON, or NDJSON streams — back to OpenAI's
 * format, so usage, tool calls and finish reasons come out as OpenAI clients expect.
 *
 * Why the native API and not Ollama's /v1: it reports token counts on every stream, takes
 * `options` (num_ctx, keep_alive, ...) that /v1 cannot express, and its errors are plain.
 */
import {
  type ChatCompletionRequest,
  type CompletionRequest,
  type EmbeddingRequest,
  encodeSseEvent,
  errorTypeForStatus,
  isTollgateError,
  readUpstreamErrorMessage,
  SSE_DONE,
  TollgateError,
} from '@tollgate/protocol';
import type { Backend, BackendCallOptions, BackendHealth, BackendModel } from './backend.js';
import {
  asRecord,
  createUpstreamClient,
  defaultBackendName,
  joinURL,
  jsonResponse,
  rootURL,
  unhealthyFrom,
} from './http.js';

/** Options for {@link createOllama}. */
export interface OllamaOptions {
  /** Ollama's root URL (its API lives under /api). @default 'http://127.0.0.1:11434' */
  url?: string;
  /** A unique name for logs and usage records. @default `ollama@<host:port>` */
  name?: string;
  /** Extra headers sent with every request (e.g. for a proxy in front of Ollama). @default {} */
  headers?: Record<string, string>;
  /** The fetch to use, for tests or proxies. @default globalThis.fetch */
  fetch?: typeof fetch;
  /**
   * Longest wait for the response headers, in milliseconds. Ollama sends them only once the
   * model is loaded, so a cold start counts against it. Streams are never cut once started.
   * @default 600000
   */
  timeoutMs?: number;
}

/** Ollama's default address. */
const DEFAULT_OLLAMA_URL = 'http://127.0.0.1:11434';

/** Model parameters Ollama takes in `options` (its Modelfile parameters). */
export const OLLAMA_OPTION_NAMES: ReadonlySet<string> = new Set([
  'num_keep',
  'seed',
  'num_predict',
  'top_k',
  'top_p',
  'min_p',
  'typical_p',
  'tfs_z',
  'repeat_last_n',
  'temperature',
  'repeat_penalty',
  'presence_penalty',
  'frequency_penalty',
  'penalize_newline',
  'mirostat',
  'mirostat_tau',
  'mirostat_eta',
  'stop',
  'numa',
  'num_ctx',
  'num_batch',
  'num_gpu',
  'main_gpu',
  'low_vram',
  'use_mmap',
  'use_mlock',
  'num_thread',
]);

/**
 * OpenAI fields the translation consumes, or that have no meaning for Ollama's native API.
 * Every other field is sent on at the top level as it came, so native fields a newer Ollama
 * understands (e.g. `truncate`) still reach it.
 */
const OPENAI_FIELDS = new Set([
  'model',
  'messages',
  'prompt',
  'input',
  'stream',
  'stream_options',
  'max_tokens',
  'max_completion_tokens',
  'n',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'functions',
  'function_call',
  'response_format',
  'reasoning_effort',
  'encoding_format',
  'user',
  'logit_bias',
  'logprobs',
  'top_logprobs',
  'echo',
  'best_of',
  'service_tier',
  'store',
  'metadata',
  'modalities',
  'audio',
  'prediction',
  'web_search_options',
  'options',
]);

function invalid(message: string, param: string): TollgateError {
  return new TollgateError('invalid_request', message, { param });
}

function newId(prefix: string): string {
  return `${prefix}-${globalThis.crypto.randomUUID().replaceAll('-', '').slice(0, 24)}`;
}

function unixSeconds(createdAt: unknown): number {
  const parsed = typeof createdAt === 'string' ? Date.parse(createdAt) : Number.NaN;
  return Math.floor((Number.isNaN(parsed) ? Date.now() : parsed) / 1000);
}

// ---------------------------------------------------------------------------------------------
// Requests: OpenAI -> Ollama

/** `options` from the sampling fields, the Ollama option names found among unknown fields, and an explicit `options`. */
function ollamaOptions(request: Record<string, unknown>): Record<string, unknown> | undefined {
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(request)) {
    if (value !== undefined && value !== null && OLLAMA_OPTION_NAMES.has(key)) options[key] = value;
  }
  if (typeof options.stop === 'string') options.stop = [options.stop];
  const maxTokens = request.max_completion_tokens ?? request.max_tokens;
  if (typeof maxTokens === 'number') options.num_predict = maxTokens;
  Object.assign(options, asRecord(request.options));
  return Object.keys(options).length > 0 ? options : undefined;
}

/** The top-level fields every Ollama request shares: passthrough, options, think. */
function commonFields(request: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(request)) {
    if (!OPENAI_FIELDS.has(key) && !OLLAMA_OPTION_NAMES.has(key) && value !== undefined)
      body[key] = value;
  }
  const options = ollamaOptions(request);
  if (options) body.options = options;
  if (body.think === undefined && typeof request.reasoning_effort === 'string') {
    // Ollama's think levels are OpenAI's effort names; "none" turns thinking off.
    body.think = request.reasoning_effort === 'none' ? false : request.reasoning_effort;
  }
  return body;
}

function refuseSeveralChoices(request: { n?: number | null }): void {
  if (typeof request.n === 'number' && request.n > 1) {
    throw invalid('Ollama returns one choice per request: set "n" to 1 or leave it out.', 'n');
  }
}

/** The base64 payload of a `data:` URL image; other URLs cannot reach Ollama. */
function imageData(part: Record<string, unknown>, param: string): string {
  const imageUrl = part.image_url;
  const url = typeof imageUrl === 'string' ? imageUrl : asRecord(imageUrl).url;
  if (typeof url !== 'string') throw invalid('An image_url part needs a "url".', param);
  const match = /^data:[^,]*;base64,(.*)$/s.exec(url);
  if (!match) {
    throw invalid(
      'Ollama takes images inline: send the image as a base64 data: URL (data:image/png;base64,...).',
      param,
    );
  }
  return match[1]!;
}

function parseToolArguments(text: unknown, param: string): unknown {
  if (text === undefined || text === null || text === '') return {};
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text);
  } catch {
    throw invalid('Tool call arguments must be a JSON string.', param);
  }
}

function translateMessages(messages: ChatCompletionRequest['messages']): Record<string, unknown>[] {
  const toolNames = new Map<string, string>();
  return messages.map((message, index) => {
    const param = `messages[${index}]`;
    const role =
      message.role === 'developer' ? 'system' : message.role === 'function' ? 'tool' : message.role;
    const out: Record<string, unknown> = { role };
    const texts: string[] = [];
    const images: string[] = [];
    if (typeof message.content === 'string') texts.push(message.content);
    else if (Array.isArray(message.content)) {
      message.content.forEach((part, partIndex) => {
        const partParam = `${param}.content[${partIndex}]`;
        if (part.type === 'text' && typeof part.text === 'string') texts.push(part.text);
        else if (part.type === 'image_url') images.push(imageData(part, partParam));
        else
          throw invalid(`Ollama cannot take a "${part.type}" content part.`, `${partParam}.type`);
      });
    }
    out.content = texts.join('\n');
    if (images.length > 0) out.images = images;
    const thinking = (message as Record<string, unknown>).reasoning_content;
    if (typeof thinking === 'string' && thinking) out.thinking = thinking;
    if (message.tool_calls?.length) {
      out.tool_calls = message.tool_calls.map((call, callIndex) => {
        if (call.id) toolNames.set(call.id, call.function.name);
        return {
          function: {
            name: call.function.name,
            arguments: parseToolArguments(
              call.function.arguments,
              `${param}.tool_calls[${callIndex}].function.arguments`,
            ),
          },
        };
      });
    }
    if (role === 'tool') {
      const name =
        message.name ?? (message.tool_call_id ? toolNames.get(message.tool_call_id) : undefined);
      if (name) out.tool_name = name;
    }
    return out;
  });
}

function translateFormat(request: Record<string, unknown>): unknown {
  const format = asRecord(request.response_format);
  if (format.type === 'json_object') return 'json';
  if (format.type === 'json_schema') {
    const schema = asRecord(format.json_schema).schema;
    return schema && typeof schema === 'object' ? schema : 'json';
  }
  return undefined;
}

function chatBody(request: ChatCompletionRequest): Record<string, unknown> {
  refuseSeveralChoices(request);
  const record = request as Record<string, unknown>;
  const body: Record<string, unknown> = {
    model: request.model,
    messages: translateMessages(request.messages),
    stream: request.stream === true,
    ...commonFields(record),
  };
  if (request.tools?.length) body.tools = request.tools;
  const format = translateFormat(record);
  if (format !== undefined) body.format = format;
  return body;
}

function generateBody(request: CompletionRequest): Record<string, unknown> {
  refuseSeveralChoices(request);
  let prompt: string;
  if (typeof request.prompt === 'string') prompt = request.prompt;
  else if (request.prompt.length === 1 && typeof request.prompt[0] === 'string')
    prompt = request.prompt[0];
  else {
    throw invalid(
      'Ollama completes one text prompt per request: send "prompt" as a string (or an array of one string).',
      'prompt',
    );
  }
  return {
    model: request.model,
    prompt,
    stream: request.stream === true,
    ...commonFields(request),
  };
}

function embedBody(request: EmbeddingRequest): Record<string, unknown> {
  const { input } = request;
  const texts = typeof input === 'string' ? [input] : input;
  if (!texts.every((item) => typeof item === 'string')) {
    throw invalid(
      'Ollama embeds text: send "input" as a string or an array of strings, not tokens.',
      'input',
    );
  }
  return { model: request.model, input, ...commonFields(request) };
}

// ---------------------------------------------------------------------------------------------
// Answers: Ollama -> OpenAI

type OllamaToolCall = { id?: unknown; function?: { name?: unknown; arguments?: unknown } };

function toolCallsOf(message: Record<string, unknown>): OllamaToolCall[] {
  return Array.isArray(message.tool_calls) ? (message.tool_calls as OllamaToolCall[]) : [];
}

function openAIToolCall(call: OllamaToolCall): {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
} {
  const args = call.function?.arguments;
  return {
    id: typeof call.id === 'string' && call.id ? call.id : newId('call'),
    type: 'function',
    function: {
      name: String(call.function?.name ?? ''),
      arguments: typeof args === 'string' ? args : JSON.stringify(args ?? {}),
    },
  };
}

function finishReason(doneReason: unknown, hadToolCalls: boolean): string {
  if (hadToolCalls) return 'tool_calls';
  return doneReason === 'length' ? 'length' : 'stop';
}

/** OpenAI usage from Ollama's counts; Ollama leaves out a zero `prompt_eval_count` (cached prompt). */
function usageOf(final: Record<string, unknown>) {
  const prompt = final.prompt_eval_count;
  const completion = final.eval_count;
  if (typeof prompt !== 'number' && typeof completion !== 'number') return undefined;
  const promptTokens = typeof prompt === 'number' ? prompt : 0;
  const completionTokens = typeof completion === 'number' ? completion : 0;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

function chatCompletionFrom(
  answer: Record<string, unknown>,
  model: string,
): Record<string, unknown> {
  const message = asRecord(answer.message);
  const calls = toolCallsOf(message);
  const content = typeof message.content === 'string' ? message.content : '';
  const out: Record<string, unknown> = {
    role: 'assistant',
    content: calls.length > 0 && !content ? null : content,
  };
  if (typeof message.thinking === 'string' && message.thinking)
    out.reasoning_content = message.thinking;
  if (calls.length > 0) out.tool_calls = calls.map(openAIToolCall);
  const completion: Record<string, unknown> = {
    id: newId('chatcmpl'),
    object: 'chat.completion',
    created: unixSeconds(answer.created_at),
    model: typeof answer.model === 'string' ? answer.model : model,
    choices: [
      {
        index: 0,
        message: out,
        logprobs: null,
        finish_reason: finishReason(answer.done_reason, calls.length > 0),
      },
    ],
  };
  const usage = usageOf(answer);
  if (usage) completion.usage = usage;
  return completion;
}

function textCompletionFrom(
  answer: Record<string, unknown>,
  model: string,
): Record<string, unknown> {
  const completion: Record<string, unknown> = {
    id: newId('cmpl'),
    object: 'text_completion',
    created: unixSeconds(answer.created_at),
    model: typeof answer.model === 'string' ? answer.model : model,
    choices: [
      {
        index: 0,
        text: typeof answer.response === 'string' ? answer.response : '',
        logprobs: null,
        finish_reason: finishReason(answer.done_reason, false),
      },
    ],
  };
  const usage = usageOf(answer);
  if (usage) completion.usage = usage;
  return completion;
}

/** A float vector as OpenAI's base64 encoding: little-endian float32 bytes. */
function base64Floats(vector: number[]): string {
  const bytes = new Uint8Array(new Float32Array(vector).buffer);
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function embeddingListFrom(
  answer: Record<string, unknown>,
  request: EmbeddingRequest,
): Record<string, unknown> {
  const vectors = Array.isArray(answer.embeddings) ? (answer.embeddings as number[][]) : [];
  const base64 = request.encoding_format === 'base64';
  const list: Record<string, unknown> = {
    object: 'list',
    data: vectors.map((embedding, index) => ({
      object: 'embedding',
      index,
      embedding: base64 ? base64Floats(embedding) : embedding,
    })),
    model: typeof answer.model === 'string' ? answer.model : request.model,
  };
  if (typeof answer.prompt_eval_count === 'number') {
    list.usage = {
      prompt_tokens: answer.prompt_eval_count,
      total_tokens: answer.prompt_eval_count,
    };
  }
  return list;
}

/** Ollama's `{"error": "..."}` (or any body) as the OpenAI envelope, same status. */
async function translateError(upstream: Response): Promise<Response> {
  let text = '';
  try {
    text = await upstream.text();
  } catch {
    // A body that breaks leaves only the status to tell.
  }
  const message =
    readUpstreamErrorMessage(text) ??
    `Ollama answered ${upstream.status} ${upstream.statusText}`.trim();
  const modelNotFound =
    upstream.status === 404 && /model/i.test(message) && /not found/i.test(message);
  return jsonResponse(
    {
      error: {
        message,
        type: errorTypeForStatus(upstream.status),
        param: modelNotFound ? 'model' : null,
        code: modelNotFound ? 'model_not_found' : null,
      },
    },
    upstream.status,
  );
}

// ---------------------------------------------------------------------------------------------
// Streams: NDJSON -> SSE

/** Turns each Ollama stream line into the SSE text to send. Returns true at the final line. */
type LineTranslator = (line: Record<string, unknown>, emit: (data: unknown) => void) => boolean;

function chatStreamTranslator(model: string): LineTranslator {
  const id = newId('chatcmpl');
  let started = false;
  let toolIndex = 0;
  let created = 0;
  const chunk = (
    line: Record<string, unknown>,
    delta: Record<string, unknown>,
    finish: string | null = null,
  ) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model: typeof line.model === 'string' ? line.model : model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });
  return (line, emit) => {
    if (!started) {
      started = true;
      created = unixSeconds(line.created_at);
      emit(chunk(line, { role: 'assistant', content: '' }));
    }
    const message = asRecord(line.message);
    if (typeof message.thinking === 'string' && message.thinking) {
      emit(chunk(line, { reasoning_content: message.thinking }));
    }
    if (typeof message.content === 'string' && message.content)
      emit(chunk(line, { content: message.content }));
    for (const call of toolCallsOf(message)) {
      const { id: callId, type, function: fn } = openAIToolCall(call);
      emit(chunk(line, { tool_calls: [{ index: toolIndex++, id: callId, type, function: fn }] }));
    }
    if (line.done !== true) return false;
    emit(chunk(line, {}, finishReason(line.done_reason, toolIndex > 0)));
    const usage = usageOf(line);
    if (usage) emit({ ...chunk(line, {}), choices: [], usage });
    return true;
  };
}

function generateStreamTranslator(model: string): LineTranslator {
  const id = newId('cmpl');
  let created = 0;
  const chunk = (line: Record<string, unknown>, text: string, finish: string | null = null) => ({
    id,
    object: 'text_completion',
    created,
    model: typeof line.model === 'string' ? line.model : model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
  });
  return (line, emit) => {
    if (!created) created = unixSeconds(line.created_at);
    if (typeof line.response === 'string' && line.response) emit(chunk(line, line.response));
    if (line.done !== true) return false;
    emit(chunk(line, '', finishReason(line.done_reason, false)));
    const usage = usageOf(line);
    if (usage) emit({ ...chunk(line, ''), choices: [], usage });
    return true;
  };
}

/**
 * Translates an NDJSON body to an OpenAI SSE body. Lines may be split across chunks. The
 * output errors — never ends cleanly — when the upstream breaks, sends an `{"error"}` line, or
 * ends before its final line; cancelling the output cancels the upstream body.
 */
function ndjsonToSse(
  body: ReadableStream<Uint8Array>,
  translate: LineTranslator,
  signal: AbortSignal,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let buffer = '';
  let finished = false;

  const failure = (error: unknown): unknown => {
    if (signal.aborted) return signal.reason;
    if (isTollgateError(error)) return error;
    return new TollgateError(
      'upstream_stream_error',
      'The connection to Ollama broke during the stream.',
      { cause: error },
    );
  };

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let out = '';
      const emit = (data: unknown) => {
        out += encodeSseEvent({ data: JSON.stringify(data) });
      };
      const handleLine = (text: string) => {
        const trimmed = text.trim();
        if (!trimmed || finished) return;
        let line: Record<string, unknown>;
        try {
          line = asRecord(JSON.parse(trimmed));
        } catch (error) {
          throw new TollgateError(
            'upstream_stream_error',
            'Ollama sent a stream line that is not JSON.',
            { cause: error },
          );
        }
        if (line.error !== undefined) {
          const message = typeof line.error === 'string' ? line.error : JSON.stringify(line.error);
          throw new TollgateError(
            'upstream_stream_error',
            `Ollama failed during the stream: ${message}`,
          );
        }
        if (translate(line, emit)) {
          finished = true;
          out += encodeSseEvent({ data: SSE_DONE });
        }
      };
      try {
        // Read until there is something to hand on, so each pull makes progress.
        while (!out && !finished) {
          const { done, value } = await reader.read();
          if (done) {
            handleLine(buffer + decoder.decode());
            buffer = '';
            if (!finished) {
              throw new TollgateError(
                'upstream_stream_error',
                'Ollama ended the stream before its final message.',
              );
            }
            break;
          }
          buffer += decoder.decode(value, { stream: true });
          const lines = buffer.split('\n');
          buffer = lines.pop() ?? '';
          for (const line of lines) handleLine(line);
        }
      } catch (error) {
        controller.error(failure(error));
        reader.cancel(error).catch(() => {});
        return;
      }
      if (out) controller.enqueue(encoder.encode(out));
      if (finished) {
        controller.close();
        // Read the (empty) rest so the connection is released for reuse, not torn down.
        void drain(reader);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

async function drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  try {
    while (!(await reader.read()).done) {
      // Nothing comes after Ollama's final line; this only waits for the end of the body.
    }
  } catch {
    // The answer is already complete.
  }
}

function sseResponse(body: ReadableStream<Uint8Array>): Response {
  return new Response(body, {
    status: 200,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
  });
}

// ---------------------------------------------------------------------------------------------
// The backend

/**
 * Creates a backend for Ollama, speaking its native API.
 *
 * Translation, in short: chat goes to /api/chat (images from `data:` URLs, tools and tool
 * calls with arguments as objects, `response_format` as `format`, sampling fields and Ollama
 * option names such as `top_k` or `num_ctx` into `options`, `keep_alive`/`think` at the top
 * level); completions go to /api/generate with one text prompt (an array of one string is
 * accepted, more are refused with 400 before any upstream call); embeddings go to /api/embed.
 * Answers come back as OpenAI JSON or SSE with usage from Ollama's token counts. Ollama's
 * errors come back with their status in the OpenAI envelope.
 *
 * @throws {TollgateError} `invalid_request` (400) from a handler for a request Ollama cannot
 *   express: `n` > 1, several prompts, token inputs, image URLs that are not `data:` URLs.
 * @example
 * ```ts
 * const backend = createOllama({ url: 'http://127.0.0.1:11434' });
 * const response = await backend.chatCompletions(
 *   { model: 'llama3.2', messages: [{ role: 'user', content: 'Hi' }], stream: true },
 *   { signal: AbortSignal.timeout(60_000) },
 * );
 * ```
 */
export function createOllama(options: OllamaOptions = {}): Backend {
  const root = rootURL(options.url ?? DEFAULT_OLLAMA_URL);
  const name = options.name ?? defaultBackendName('ollama', root);
  const client = createUpstreamClient({
    backendName: name,
    fetch: options.fetch,
    headers: options.headers,
    timeoutMs: options.timeoutMs,
  });

  async function call(
    path: string,
    body: Record<string, unknown>,
    callOptions: BackendCallOptions,
    answer: {
      json: (value: Record<string, unknown>) => Record<string, unknown>;
      stream?: LineTranslator;
    },
  ): Promise<Response> {
    const upstream = await client.send({
      url: joinURL(root, path),
      method: 'POST',
      json: body,
      signal: callOptions.signal,
      requestId: callOptions.requestId,
    });
    if (!upstream.ok) return translateError(upstream);
    if (answer.stream && body.stream === true && upstream.body) {
      return sseResponse(ndjsonToSse(upstream.body, answer.stream, callOptions.signal));
    }
    let parsed: unknown;
    try {
      parsed = await upstream.json();
    } catch (error) {
      if (callOptions.signal.aborted) throw callOptions.signal.reason;
      throw new TollgateError(
        'upstream_error',
        `Backend "${name}" (Ollama) sent an answer that is not JSON.`,
        {
          cause: error,
        },
      );
    }
    return jsonResponse(answer.json(asRecord(parsed)));
  }

  return {
    name,
    kind: 'ollama',
    async listModels(listOptions = {}): Promise<BackendModel[]> {
      // /api/ps tells the context length of loaded models (newer Ollama); it is a bonus.
      const running = client
        .getJson(joinURL(root, 'api/ps'), listOptions)
        .catch(() => undefined)
        .then((body) => {
          const lengths = new Map<string, number>();
          for (const item of (asRecord(body).models as unknown[] | undefined) ?? []) {
            const entry = asRecord(item);
            if (typeof entry.name === 'string' && typeof entry.context_length === 'number') {
              lengths.set(entry.name, entry.context_length);
            }
          }
          return lengths;
        });
      const tags = asRecord(await client.getJson(joinURL(root, 'api/tags'), listOptions));
      const contextLengths = await running;
      const models: BackendModel[] = [];
      for (const item of Array.isArray(tags.models) ? tags.models : []) {
        const entry = asRecord(item);
        const id = typeof entry.name === 'string' ? entry.name : entry.model;
        if (typeof id !== 'string' || !id) continue;
        const contextLength = contextLengths.get(id);
        models.push(contextLength ? { id, contextLength } : { id });
      }
      return models;
    },
    async health(healthOptions = {}): Promise<BackendHealth> {
      try {
        const version = asRecord(
          await client.getJson(joinURL(root, 'api/version'), healthOptions),
        ).version;
        return typeof version === 'string' ? { ok: true, version } : { ok: true };
      } catch (error) {
        return unhealthyFrom(error);
      }
    },
    async chatCompletions(request, callOptions) {
      const body = chatBody(request);
      return call('api/chat', body, callOptions, {
        json: (answer) => chatCompletionFrom(answer, request.model),
        stream: chatStreamTranslator(request.model),
      });
    },
    async completions(request, callOptions) {
      const body = generateBody(request);
      return call('api/generate', body, callOptions, {
        json: (answer) => textCompletionFrom(answer, request.model),
        stream: generateStreamTranslator(request.model),
      });
    },
    async embeddings(request, callOptions) {
      const body = embedBody(request);
      return call('api/embed', body, callOptions, {
        json: (answer) => embeddingListFrom(answer, request),
      });
    },
  };
}
