/**
 * The `Backend` contract: what every adapter for an inference server implements.
 *
 * A backend turns a parsed OpenAI request into a web `Response` in OpenAI's format, whatever
 * the server speaks underneath. The router decides which backend serves a request; the
 * backend only talks to its server.
 */
import type {
  ChatCompletionRequest,
  CompletionRequest,
  EmbeddingRequest,
} from '@tollgate/protocol';

/** The kinds of server Tollgate knows. `openai` is any OpenAI-compatible server. */
export type BackendKind =
  | 'openai'
  | 'ollama'
  | 'llama-server'
  | 'vllm'
  | 'lm-studio'
  | 'mlx'
  | 'llamacpp';

/** A model a backend serves. */
export interface BackendModel {
  /** The name callers use in `model`. */
  id: string;
  /** Who the server says owns it (`owned_by`). */
  ownedBy?: string;
  /** Context length in tokens, when the server tells. */
  contextLength?: number;
}

/** The result of one health probe. */
export interface BackendHealth {
  /** Whether the server can take requests now. */
  ok: boolean;
  /** A short human-readable reason when not ok (e.g. "connection refused", "loading model"). */
  detail?: string;
  /** The server's version, when it tells. */
  version?: string;
}

/** Per-call options every backend handler takes. */
export interface BackendCallOptions {
  /** Aborted when the caller goes away or the gateway gives up; the upstream call must stop. */
  signal: AbortSignal;
  /** The gateway's request id, forwarded upstream as `x-request-id`. */
  requestId?: string;
}

/**
 * What every adapter implements.
 *
 * Handlers resolve with the upstream's answer as a `Response` in OpenAI's format:
 * - 2xx non-streamed: an OpenAI JSON body, with `usage` when the server reports it.
 * - 2xx streamed: `text/event-stream` of OpenAI chunks ending with `data: [DONE]`, and a
 *   final usage chunk (`choices: []`, `usage: {...}`) whenever the server can report usage,
 *   whether or not the caller asked for it; the router removes it for callers who did not.
 *   The body errors (rather than ends) if the server's stream breaks.
 * - any other status: the server's own status, with its error body (in the OpenAI envelope
 *   when the server speaks another dialect).
 * They reject with a `TollgateError` only when no HTTP answer came: `upstream_unreachable`
 * (connection refused or reset), `upstream_timeout`, or the caller's abort.
 */
export interface Backend {
  /** A unique name, used in logs, metrics and usage records. */
  readonly name: string;
  /** What kind of server it talks to. */
  readonly kind: BackendKind;
  /** The models the server has now. */
  listModels(options?: { signal?: AbortSignal }): Promise<BackendModel[]>;
  /** One health probe. Never rejects: failures come back as `{ ok: false, detail }`. */
  health(options?: { signal?: AbortSignal }): Promise<BackendHealth>;
  /** POST /v1/chat/completions */
  chatCompletions(request: ChatCompletionRequest, options: BackendCallOptions): Promise<Response>;
  /** POST /v1/completions */
  completions(request: CompletionRequest, options: BackendCallOptions): Promise<Response>;
  /** POST /v1/embeddings */
  embeddings(request: EmbeddingRequest, options: BackendCallOptions): Promise<Response>;
}
