/**
 * Fake inference servers for this package's tests: real `node:http` servers on 127.0.0.1 and
 * random ports that answer discovery's GETs the way each real server does, error bodies and
 * unknown paths included (shapes checked against each server's source; see the README).
 * Test-only: not exported from the package.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Socket } from 'node:net';

/** What a fake imitates. The last three are not inference servers at all. */
export type FakeServerKind =
  | 'ollama'
  | 'llama-server'
  | 'vllm'
  | 'lm-studio'
  | 'openai'
  | 'html'
  | 'invalid-json'
  | 'catch-all';

/** How a fake behaves. */
export interface FakeServerOptions {
  kind: FakeServerKind;
  /** The models it serves. @default ['fake-model'] */
  models?: string[];
  /** llama-server still loading its model: 503 `Loading model` on every path. @default false */
  loading?: boolean;
  /** llama-server started with `--api-key`: /props needs it, /health and /v1/models stay public. */
  apiKey?: string;
  /** vLLM whose engine died: /health answers 503. @default false */
  engineDead?: boolean;
}

/** A running fake. */
export interface FakeServer {
  /** Root URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  port: number;
  /** `METHOD /path` of every request received, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** The versions the fakes report. */
export const FAKE_VERSIONS = {
  ollama: '0.12.6',
  'llama-server': 'b6700-3df2244d',
  vllm: '0.11.0',
} as const;

const CREATED = 1_735_689_600;
const CONTEXT_LENGTH = 4096;

type Reply = { status: number; body?: unknown; text?: string; contentType?: string };
type Headers = Record<string, string>;

function send(response: ServerResponse, reply: Reply, headers: Headers): void {
  const text = reply.text ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
  response.writeHead(reply.status, {
    ...headers,
    ...(text ? { 'content-type': reply.contentType ?? 'application/json; charset=utf-8' } : {}),
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

function ollama(path: string, models: string[]): Reply {
  switch (path) {
    case '/':
      return { status: 200, text: 'Ollama is running', contentType: 'text/plain; charset=utf-8' };
    case '/api/version':
      return { status: 200, body: { version: FAKE_VERSIONS.ollama } };
    case '/api/tags':
      return {
        status: 200,
        body: {
          models: models.map((name, index) => ({
            name,
            model: name,
            modified_at: '2025-01-01T00:00:00.000000000Z',
            size: 2_019_393_189,
            digest: `${index}`.padStart(64, 'a'),
            details: {
              parent_model: '',
              format: 'gguf',
              family: 'llama',
              families: ['llama'],
              parameter_size: '3.2B',
              quantization_level: 'Q4_K_M',
            },
          })),
        },
      };
    case '/api/ps':
      return { status: 200, body: { models: [] } };
    case '/v1/models':
      return {
        status: 200,
        body: {
          object: 'list',
          data: models.map((id) => ({
            id,
            object: 'model',
            created: CREATED,
            owned_by: 'library',
          })),
        },
      };
    default:
      // gin's default 404.
      return { status: 404, text: '404 page not found', contentType: 'text/plain' };
  }
}

function llamaServerError(status: number, message: string, type: string): Reply {
  return { status, body: { error: { message, type, code: status } } };
}

function llamaServer(
  path: string,
  models: string[],
  options: FakeServerOptions,
  auth?: string,
): Reply {
  // Until the model is loaded, a middleware answers every path with this.
  if (options.loading) return llamaServerError(503, 'Loading model', 'unavailable_error');
  const model = models[0] ?? 'fake-model';
  switch (path) {
    case '/health':
    case '/v1/health':
      return { status: 200, body: { status: 'ok' } };
    case '/props':
      if (options.apiKey && auth !== `Bearer ${options.apiKey}`) {
        return llamaServerError(401, 'Invalid API Key', 'authentication_error');
      }
      return {
        status: 200,
        body: {
          default_generation_settings: {
            params: { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, n_predict: -1 },
            n_ctx: CONTEXT_LENGTH,
          },
          total_slots: 1,
          model_alias: model,
          model_path: `/models/${model}.gguf`,
          modalities: { vision: false, video: false, audio: false },
          endpoint_slots: true,
          endpoint_props: false,
          endpoint_metrics: false,
          chat_template: "{% for message in messages %}{{ message['content'] }}{% endfor %}",
          bos_token: '<s>',
          eos_token: '</s>',
          build_info: FAKE_VERSIONS['llama-server'],
          is_sleeping: false,
        },
      };
    case '/models':
    case '/v1/models':
      // Both list shapes at once, as llama-server sends them.
      return {
        status: 200,
        body: {
          models: models.map((name) => ({
            name,
            model: name,
            modified_at: '',
            size: '',
            digest: '',
            type: 'model',
            description: '',
            tags: [''],
            capabilities: ['completion'],
            parameters: '',
            details: { parent_model: '', format: 'gguf', family: '', families: [''] },
          })),
          object: 'list',
          data: models.map((id) => ({
            id,
            aliases: [],
            tags: [],
            object: 'model',
            created: CREATED,
            owned_by: 'llamacpp',
            meta: {
              vocab_type: 2,
              n_vocab: 32_000,
              n_ctx: CONTEXT_LENGTH,
              n_ctx_train: CONTEXT_LENGTH,
            },
          })),
        },
      };
    default:
      return llamaServerError(404, 'File Not Found', 'not_found_error');
  }
}

function vllm(path: string, models: string[], options: FakeServerOptions): Reply {
  switch (path) {
    case '/health':
      // 200 with an empty body; 503 (also empty) once the engine is dead.
      return { status: options.engineDead ? 503 : 200 };
    case '/version':
      return { status: 200, body: { version: FAKE_VERSIONS.vllm } };
    case '/v1/models':
      return {
        status: 200,
        body: {
          object: 'list',
          data: models.map((id) => ({
            id,
            object: 'model',
            created: CREATED,
            owned_by: 'vllm',
            root: id,
            parent: null,
            max_model_len: CONTEXT_LENGTH,
            permission: [],
          })),
        },
      };
    default:
      // FastAPI's default 404.
      return { status: 404, body: { detail: 'Not Found' } };
  }
}

function lmStudio(method: string, path: string, models: string[]): Reply {
  switch (path) {
    case '/v1/models':
      return {
        status: 200,
        body: {
          object: 'list',
          data: models.map((id) => ({ id, object: 'model', owned_by: 'organization_owner' })),
        },
      };
    case '/api/v0/models':
      return {
        status: 200,
        body: {
          object: 'list',
          data: models.map((id) => ({
            id,
            object: 'model',
            type: 'llm',
            publisher: 'lmstudio-community',
            arch: 'llama',
            compatibility_type: 'gguf',
            quantization: 'Q4_K_M',
            state: 'loaded',
            max_context_length: CONTEXT_LENGTH,
          })),
        },
      };
    default:
      // LM Studio answers any path it does not know with 200 and this body.
      return { status: 200, body: { error: `Unexpected endpoint or method. (${method} ${path})` } };
  }
}

function openAICompatible(path: string, models: string[]): Reply {
  switch (path) {
    case '/v1/models':
      return {
        status: 200,
        body: {
          object: 'list',
          data: models.map((id) => ({ id, object: 'model', created: CREATED, owned_by: 'openai' })),
        },
      };
    // Answers that prove nothing alone: llama-server's /health body, a vLLM-like /version.
    case '/health':
      return { status: 200, body: { status: 'ok' } };
    case '/version':
      return { status: 200, body: { version: '1.2.3' } };
    default:
      return {
        status: 404,
        body: { error: { message: 'Not Found', type: 'invalid_request_error', code: 404 } },
      };
  }
}

function reply(options: FakeServerOptions, request: IncomingMessage, path: string): Reply {
  const models = options.models ?? ['fake-model'];
  const method = request.method ?? 'GET';
  switch (options.kind) {
    case 'ollama':
      return ollama(path, models);
    case 'llama-server':
      return llamaServer(path, models, options, request.headers.authorization);
    case 'vllm':
      return vllm(path, models, options);
    case 'lm-studio':
      return lmStudio(method, path, models);
    case 'openai':
      return openAICompatible(path, models);
    case 'html':
      return {
        status: 200,
        text: '<!doctype html><html><body><h1>Router login</h1></body></html>',
        contentType: 'text/html; charset=utf-8',
      };
    case 'invalid-json':
      return {
        status: 200,
        text: '{"object": "list", "data": [{"id": "fake-',
        contentType: 'application/json',
      };
    case 'catch-all':
      return { status: 200, body: { status: 'ok', version: '1.0.0' } };
  }
}

function headersFor(kind: FakeServerKind): Headers {
  if (kind === 'llama-server') return { server: 'llama.cpp' };
  if (kind === 'lm-studio') return { 'x-powered-by': 'Express' };
  if (kind === 'vllm') return { server: 'uvicorn' };
  return {};
}

/**
 * Starts a fake server on 127.0.0.1 and a random port.
 *
 * @example
 * ```ts
 * const vllm = await startFakeServer({ kind: 'vllm', models: ['Qwen/Qwen3-8B'] });
 * await vllm.close();
 * ```
 */
export async function startFakeServer(options: FakeServerOptions): Promise<FakeServer> {
  const requests: string[] = [];
  const headers = headersFor(options.kind);
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://fake').pathname;
    requests.push(`${request.method} ${path}`);
    send(response, reply(options, request, path), headers);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port that accepts TCP connections and never answers. */
export interface SilentServer {
  port: number;
  /** Resolves at the first connection. */
  connected: Promise<void>;
  close(): Promise<void>;
}

/** Starts a TCP server on 127.0.0.1 that accepts connections and never writes a byte. */
export async function startSilentServer(): Promise<SilentServer> {
  const sockets = new Set<Socket>();
  let onConnection: () => void = () => undefined;
  const connected = new Promise<void>((resolve) => {
    onConnection = resolve;
  });
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    connected,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nothing listens on (one just released by the system). */
export async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A fake that redirects every request to `location`. */
export async function startRedirectServer(location: string): Promise<FakeServer> {
  const requests: string[] = [];
  const server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    response.writeHead(302, { location: `${location}${request.url ?? '/'}`, 'content-length': 0 });
    response.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
