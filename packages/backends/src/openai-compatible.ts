/**
 * The adapter for any OpenAI-compatible server: requests go upstream as they came (unknown
 * fields included), answers come back as they are, and streams always ask for usage.
 */
import type {
  ChatCompletionRequest,
  CompletionRequest,
  EmbeddingRequest,
} from '@tollgate/protocol';
import type {
  Backend,
  BackendCallOptions,
  BackendHealth,
  BackendKind,
  BackendModel,
} from './backend.js';
import {
  asRecord,
  createUpstreamClient,
  defaultBackendName,
  joinURL,
  passThroughResponse,
  type UpstreamClient,
  unhealthyFrom,
} from './http.js';

/** Options for {@link createOpenAICompatible}. */
export interface OpenAICompatibleOptions {
  /** The API base, including `/v1`, e.g. `http://127.0.0.1:8080/v1`. */
  baseURL: string;
  /** A unique name for logs and usage records. @default `<kind>@<host:port>` */
  name?: string;
  /** What kind of server it is. @default 'openai' */
  kind?: BackendKind;
  /** Sent as `authorization: Bearer <apiKey>`. @default undefined (no authorization header) */
  apiKey?: string;
  /** Extra headers sent with every request. @default {} */
  headers?: Record<string, string>;
  /** The fetch to use, for tests or proxies. @default globalThis.fetch */
  fetch?: typeof fetch;
  /**
   * Longest wait for the response headers (connection included), in milliseconds. Streams
   * are never cut once their headers came.
   * @default 600000
   */
  timeoutMs?: number;
}

/** Where an OpenAI-dialect backend sends its requests. @internal */
export interface OpenAIDialectSettings {
  name: string;
  kind: BackendKind;
  /** The API base including `/v1`. */
  baseURL: string;
  client: UpstreamClient;
}

/**
 * Streams ask the upstream for usage so it can be metered; the rest of the caller's
 * `stream_options` is kept. The usage chunk is the router's to remove for callers who did
 * not ask for it.
 */
function withUsageRequested<T extends { stream?: boolean | null; stream_options?: unknown }>(
  request: T,
): T {
  if (request.stream !== true) return request;
  return {
    ...request,
    stream_options: { ...asRecord(request.stream_options), include_usage: true },
  };
}

const contextLengthFields = [
  'max_model_len',
  'context_length',
  'max_context_length',
  'context_window',
];

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

/** The context length a model entry tells, from the fields servers use for it. @internal */
export function contextLengthOf(entry: Record<string, unknown>): number | undefined {
  for (const field of contextLengthFields) {
    const value = positiveInteger(entry[field]);
    if (value) return value;
  }
  const meta = asRecord(entry.meta);
  return positiveInteger(meta.n_ctx) ?? positiveInteger(meta.n_ctx_train);
}

/**
 * Reads a model list: OpenAI's `{data: [{id, owned_by, ...}]}`, or Ollama's
 * `{models: [{name | model}]}` that some servers answer instead. @internal
 */
export function parseModelList(body: unknown): BackendModel[] {
  const record = asRecord(body);
  const entries = Array.isArray(record.data)
    ? record.data
    : Array.isArray(record.models)
      ? record.models
      : [];
  const models: BackendModel[] = [];
  for (const item of entries) {
    const entry = asRecord(item);
    const id = [entry.id, entry.name, entry.model].find(
      (value) => typeof value === 'string' && value,
    );
    if (typeof id !== 'string') continue;
    const model: BackendModel = { id };
    if (typeof entry.owned_by === 'string') model.ownedBy = entry.owned_by;
    const contextLength = contextLengthOf(entry);
    if (contextLength) model.contextLength = contextLength;
    models.push(model);
  }
  return models;
}

/** A Backend over an OpenAI-compatible API, for the presets to build on. @internal */
export function createOpenAIDialectBackend(settings: OpenAIDialectSettings): Backend {
  const { client, baseURL } = settings;

  async function post(path: string, body: unknown, options: BackendCallOptions): Promise<Response> {
    const upstream = await client.send({
      url: joinURL(baseURL, path),
      method: 'POST',
      json: body,
      signal: options.signal,
      requestId: options.requestId,
    });
    return passThroughResponse(upstream);
  }

  return {
    name: settings.name,
    kind: settings.kind,
    async listModels(options = {}) {
      return parseModelList(await client.getJson(joinURL(baseURL, 'models'), options));
    },
    async health(options = {}): Promise<BackendHealth> {
      try {
        await client.getJson(joinURL(baseURL, 'models'), options);
        return { ok: true };
      } catch (error) {
        return unhealthyFrom(error);
      }
    },
    chatCompletions(request: ChatCompletionRequest, options: BackendCallOptions) {
      return post('chat/completions', withUsageRequested(request), options);
    },
    completions(request: CompletionRequest, options: BackendCallOptions) {
      return post('completions', withUsageRequested(request), options);
    },
    embeddings(request: EmbeddingRequest, options: BackendCallOptions) {
      return post('embeddings', request, options);
    },
  };
}

/**
 * Creates a backend for any OpenAI-compatible server. Requests are forwarded as JSON exactly
 * as given (fields the gateway does not know, such as `top_k` or `chat_template_kwargs`,
 * included); streamed requests also ask for usage (`stream_options.include_usage`). Answers,
 * error statuses and bodies come back untouched.
 *
 * @example
 * ```ts
 * const backend = createOpenAICompatible({ baseURL: 'http://127.0.0.1:8080/v1' });
 * const response = await backend.chatCompletions(
 *   { model: 'qwen3', messages: [{ role: 'user', content: 'Hi' }] },
 *   { signal: AbortSignal.timeout(60_000) },
 * );
 * ```
 */
export function createOpenAICompatible(options: OpenAICompatibleOptions): Backend {
  const kind = options.kind ?? 'openai';
  const baseURL = options.baseURL.replace(/\/+$/, '');
  const name = options.name ?? defaultBackendName(kind, baseURL);
  // The client takes what it knows of the options (fetch, apiKey, headers, timeoutMs).
  const client = createUpstreamClient({ ...options, backendName: name });
  return createOpenAIDialectBackend({ name, kind, baseURL, client });
}
