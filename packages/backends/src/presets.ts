/**
 * Presets for the OpenAI-compatible servers people run locally. Each takes the server's root
 * URL, serves inference through its /v1 API, and probes health and models the way that
 * server tells them best.
 */
import { readUpstreamErrorMessage } from '@tollgate/protocol';
import type { Backend, BackendHealth, BackendKind, BackendModel } from './backend.js';
import {
  asRecord,
  createUpstreamClient,
  defaultBackendName,
  joinURL,
  rootURL,
  type UpstreamClient,
  unhealthyFrom,
} from './http.js';
import { createOpenAIDialectBackend, parseModelList } from './openai-compatible.js';

/** Options shared by the server presets. */
export interface ServerPresetOptions {
  /**
   * The server's root URL, e.g. `http://127.0.0.1:8080` (a trailing `/v1` is tolerated).
   */
  url: string;
  /** A unique name for logs and usage records. @default `<kind>@<host:port>` */
  name?: string;
  /** Sent as `authorization: Bearer <apiKey>` (llama-server `--api-key`, vLLM `--api-key`). @default undefined */
  apiKey?: string;
  /** Extra headers sent with every request. @default {} */
  headers?: Record<string, string>;
  /** The fetch to use, for tests or proxies. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Longest wait for response headers, in milliseconds. @default 600000 */
  timeoutMs?: number;
}

interface Preset {
  root: string;
  client: UpstreamClient;
  backend: Backend;
}

function preset(kind: BackendKind, options: ServerPresetOptions): Preset {
  const root = rootURL(options.url);
  const name = options.name ?? defaultBackendName(kind, root);
  // The client takes what it knows of the options (fetch, apiKey, headers, timeoutMs).
  const client = createUpstreamClient({ ...options, backendName: name });
  const backend = createOpenAIDialectBackend({ name, kind, baseURL: joinURL(root, 'v1'), client });
  return { root, client, backend };
}

function statusDetail(path: string, status: number, text: string): string {
  const message = readUpstreamErrorMessage(text);
  return `GET ${path} answered ${status}${message ? `: ${message}` : ''}`;
}

/**
 * A backend for llama.cpp's `llama-server` (default port 8080). Health comes from GET
 * /health: 200 `{"status":"ok"}` is healthy, 503 means the model is still loading.
 *
 * @example
 * ```ts
 * const backend = createLlamaServer({ url: 'http://127.0.0.1:8080' });
 * ```
 */
export function createLlamaServer(options: ServerPresetOptions): Backend {
  const { root, client, backend } = preset('llama-server', options);
  return {
    ...backend,
    async health(healthOptions = {}): Promise<BackendHealth> {
      try {
        const { status, text } = await client.getText(joinURL(root, 'health'), healthOptions);
        if (status === 200) return { ok: true };
        if (status === 503) {
          const message = readUpstreamErrorMessage(text);
          return {
            ok: false,
            detail: `loading model${message && !/^loading model$/i.test(message) ? ` (${message})` : ''}`,
          };
        }
        return { ok: false, detail: statusDetail('/health', status, text) };
      } catch (error) {
        return unhealthyFrom(error);
      }
    },
  };
}

/**
 * A backend for vLLM's OpenAI-compatible server (default port 8000). Health comes from GET
 * /health (200 with an empty body) and the version from GET /version; models list their
 * `max_model_len` as context length.
 *
 * @example
 * ```ts
 * const backend = createVllm({ url: 'http://127.0.0.1:8000' });
 * ```
 */
export function createVllm(options: ServerPresetOptions): Backend {
  const { root, client, backend } = preset('vllm', options);
  return {
    ...backend,
    async health(healthOptions = {}): Promise<BackendHealth> {
      const version = client
        .getJson(joinURL(root, 'version'), healthOptions)
        .then((body) => asRecord(body).version)
        .catch(() => undefined);
      try {
        const { status, text } = await client.getText(joinURL(root, 'health'), healthOptions);
        if (status !== 200) return { ok: false, detail: statusDetail('/health', status, text) };
        const found = await version;
        return typeof found === 'string' ? { ok: true, version: found } : { ok: true };
      } catch (error) {
        return unhealthyFrom(error);
      }
    },
  };
}

/**
 * A backend for LM Studio's server (default port 1234). Models come from /v1/models, with
 * the context length taken from LM Studio's own GET /api/v0/models when it answers.
 *
 * @example
 * ```ts
 * const backend = createLmStudio({ url: 'http://127.0.0.1:1234' });
 * ```
 */
export function createLmStudio(options: ServerPresetOptions): Backend {
  const { root, client, backend } = preset('lm-studio', options);
  return {
    ...backend,
    async listModels(listOptions = {}): Promise<BackendModel[]> {
      // The native listing is a bonus (older versions lack it); never let it fail the listing.
      const native = client
        .getJson(joinURL(root, 'api/v0/models'), listOptions)
        .then(parseModelList)
        .catch(() => [] as BackendModel[]);
      const models = await backend.listModels(listOptions);
      const contextLengths = new Map(
        (await native).map((model) => [model.id, model.contextLength]),
      );
      return models.map((model) => {
        const contextLength = model.contextLength ?? contextLengths.get(model.id);
        return contextLength ? { ...model, contextLength } : model;
      });
    },
  };
}

/**
 * A backend for MLX servers (`mlx_lm.server`, default port 8080) and other plain
 * OpenAI-compatible servers given by their root URL.
 *
 * @example
 * ```ts
 * const backend = createMlx({ url: 'http://127.0.0.1:8080' });
 * ```
 */
export function createMlx(options: ServerPresetOptions): Backend {
  return preset('mlx', options).backend;
}
