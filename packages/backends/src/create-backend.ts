/**
 * One factory from configuration (the gateway's YAML and environment) to an adapter.
 */
import type { Backend, BackendKind } from './backend.js';
import { rootURL } from './http.js';
import { createOllama } from './ollama.js';
import { createOpenAICompatible } from './openai-compatible.js';
import { createLlamaServer, createLmStudio, createMlx, createVllm } from './presets.js';

/** A backend as configuration describes it. */
export interface BackendConfig {
  /** The server kind. */
  type: BackendKind;
  /**
   * Where the server is. For `openai`: the API base including `/v1`
   * (e.g. `http://127.0.0.1:4000/v1`). For every other type: the server's root URL
   * (e.g. `http://127.0.0.1:11434`); a trailing `/v1` is tolerated and removed.
   */
  url: string;
  /** A unique name for logs and usage records. @default `<type>@<host:port>` */
  name?: string;
  /** Sent as `authorization: Bearer <apiKey>` (not used by Ollama). @default undefined */
  apiKey?: string;
  /** Extra headers sent with every request. @default {} */
  headers?: Record<string, string>;
  /** Models are the router's business (`RouterBackendEntry.models`), not the adapter's. */
  models?: never;
  /** Longest wait for response headers, in milliseconds. @default 600000 */
  timeoutMs?: number;
  /** The fetch to use, for tests or proxies. @default globalThis.fetch */
  fetch?: typeof fetch;
}

/**
 * Creates the adapter for a configured backend.
 *
 * @throws {Error} for `llamacpp` (the in-process GGUF backend lives in its own package) and
 *   for an unknown type.
 * @example
 * ```ts
 * const backend = createBackend({ type: 'ollama', url: 'http://127.0.0.1:11434' });
 * ```
 */
export function createBackend(config: BackendConfig): Backend {
  const { type, url, name, apiKey, headers, timeoutMs, fetch } = config;
  const common = { name, headers, timeoutMs, fetch };
  switch (type) {
    case 'openai':
      return createOpenAICompatible({ ...common, baseURL: url, apiKey });
    case 'ollama':
      return createOllama({ ...common, url: rootURL(url) });
    case 'llama-server':
      return createLlamaServer({ ...common, url: rootURL(url), apiKey });
    case 'vllm':
      return createVllm({ ...common, url: rootURL(url), apiKey });
    case 'lm-studio':
      return createLmStudio({ ...common, url: rootURL(url), apiKey });
    case 'mlx':
      return createMlx({ ...common, url: rootURL(url), apiKey });
    case 'llamacpp':
      throw new Error(
        'Backend type "llamacpp" runs a GGUF file in-process: it lives in the separate package @tollgate/backend-llamacpp (npm install @tollgate/backend-llamacpp), whose createLlamaCppBackend({ modelPath }) makes it.',
      );
    default:
      throw new Error(
        `Unknown backend type "${String(type)}". Use one of: openai, ollama, llama-server, vllm, lm-studio, mlx, llamacpp.`,
      );
  }
}
