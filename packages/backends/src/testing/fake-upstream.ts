/**
 * Fake inference servers for tests: real `node:http` servers on 127.0.0.1 that speak the
 * protocol of each server Tollgate fronts (status codes, error bodies, SSE or NDJSON framing,
 * kind-specific endpoints), with knobs for the failures adapters and the router must survive.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { handleOllamaNative } from './fake-ollama.js';
import { handleOpenAIDialect } from './fake-openai.js';

/** The server kinds a fake can imitate. */
export type FakeUpstreamKind = 'openai' | 'ollama' | 'llama-server' | 'vllm' | 'lm-studio';

/** How a fake upstream behaves. Change it at any time with `setBehavior`. */
export interface FakeUpstreamBehavior {
  /** Models the server serves; any other model gets a 404 in the kind's error shape. @default ['fake-model'] */
  models: string[];
  /**
   * The assistant's text. Streams send one word (with its leading whitespace) per chunk.
   * @default 'Hello from the fake upstream.'
   */
  reply: string;
  /** Whether the server reports token usage; false means never, even when asked. @default true */
  reportUsage: boolean;
  /** When set and the request carries `tools`, the answer is this tool call (finish_reason `tool_calls`). */
  toolCall?: { name: string; arguments: string };
  /** Delay between stream chunks, in milliseconds. @default 0 */
  chunkDelayMs: number;
  /** Destroy the socket after sending this many stream chunks (SSE events or NDJSON lines). */
  failAfterChunks?: number;
  /** Answer every inference request with this status and the kind's error body. */
  errorStatus?: number;
  /** The message of `errorStatus` answers. @default 'Simulated upstream error' */
  errorMessage?: string;
  /**
   * After this many stream chunks, send the kind's in-stream error (an SSE event carrying the
   * error envelope, or Ollama's `{"error": "..."}` line) and end the response normally.
   */
  errorAfterChunks?: number;
  /** Accept inference requests and never answer them (until the client goes away). */
  hang?: boolean;
  /**
   * The server is still loading its model: llama-server answers /health with 503, every kind
   * answers inference requests with 503 in its error shape.
   * @default false
   */
  loading?: boolean;
  /** Length of the fake embedding vectors. @default 8 */
  embeddingDimensions: number;
}

/** One request the fake received. */
export interface FakeUpstreamRequest {
  method: string;
  /** Path and query, e.g. `/v1/chat/completions`. */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** The parsed JSON body; the raw text when it is not JSON; undefined when empty. */
  body: unknown;
}

/** A running fake upstream. */
export interface FakeUpstream {
  kind: FakeUpstreamKind;
  /** Root URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** `url + '/v1'`. */
  baseURL: string;
  /** Every request received, in order. */
  requests: FakeUpstreamRequest[];
  /** Requests whose client disconnected before the response ended. */
  clientAborts: number;
  /**
   * Resolves at the next client abort, or at once for one already counted and not yet awaited.
   * Rejects after `timeoutMs` (default 10000).
   */
  waitForClientAbort(timeoutMs?: number): Promise<void>;
  /** Changes the behavior for the following requests. */
  setBehavior(patch: Partial<FakeUpstreamBehavior>): void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Options for {@link startFakeUpstream}: the kind plus any behavior. */
export type StartFakeUpstreamOptions = { kind?: FakeUpstreamKind } & Partial<FakeUpstreamBehavior>;

/** What a route handler gets. @internal */
export interface FakeExchange {
  kind: FakeUpstreamKind;
  behavior: FakeUpstreamBehavior;
  method: string;
  /** Path without the query. */
  pathname: string;
  body: unknown;
  /** Whether the body was present and not valid JSON. */
  invalidJson: boolean;
  response: ServerResponse;
  /** A new id for a response. */
  nextId(prefix: string): string;
}

const defaultBehavior: FakeUpstreamBehavior = {
  models: ['fake-model'],
  reply: 'Hello from the fake upstream.',
  reportUsage: true,
  chunkDelayMs: 0,
  embeddingDimensions: 8,
};

/** Responses the fake cut on purpose, so their close is not counted as a client abort. */
const killedResponses = new WeakSet<ServerResponse>();

/** Sends a JSON body. @internal */
export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  contentType = 'application/json',
): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

/** Sends a plain text body. @internal */
export function sendText(
  response: ServerResponse,
  status: number,
  text: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  response.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Writes a stream of pieces (already framed: SSE events or NDJSON lines), honoring
 * `chunkDelayMs` and `failAfterChunks`, and stops quietly when the client leaves. @internal
 */
export async function writeStream(
  exchange: FakeExchange,
  contentType: string,
  pieces: string[],
): Promise<void> {
  const { response, behavior } = exchange;
  response.writeHead(200, {
    'content-type': contentType,
    'cache-control': 'no-cache',
    connection: 'keep-alive',
  });
  // Real servers send the headers as soon as generation starts, before the first token.
  response.flushHeaders();
  for (let index = 0; index <= pieces.length; index++) {
    if (response.destroyed) return;
    if (behavior.failAfterChunks !== undefined && index >= behavior.failAfterChunks) {
      killedResponses.add(response);
      response.socket?.destroy();
      return;
    }
    if (index === pieces.length) break;
    if (index > 0 && behavior.chunkDelayMs > 0) await delay(behavior.chunkDelayMs);
    if (response.destroyed) return;
    await new Promise<void>((resolve) => response.write(pieces[index], () => resolve()));
  }
  if (!response.destroyed) response.end();
}

/** Applies `errorAfterChunks`: the first N pieces, then the error piece. @internal */
export function withStreamError(
  exchange: FakeExchange,
  pieces: string[],
  errorPiece: (message: string) => string,
): string[] {
  const after = exchange.behavior.errorAfterChunks;
  if (after === undefined) return pieces;
  return [
    ...pieces.slice(0, after),
    errorPiece(exchange.behavior.errorMessage ?? 'Simulated stream error'),
  ];
}

async function readBody(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Starts a fake upstream on 127.0.0.1 on a free port.
 *
 * @example
 * ```ts
 * const fake = await startFakeUpstream({ kind: 'ollama', reply: 'Hi there' });
 * const backend = createOllama({ url: fake.url });
 * // ...
 * await fake.close();
 * ```
 */
export async function startFakeUpstream(
  options: StartFakeUpstreamOptions = {},
): Promise<FakeUpstream> {
  const { kind = 'openai', ...patch } = options;
  let behavior: FakeUpstreamBehavior = { ...defaultBehavior, ...stripUndefined(patch) };
  let closing = false;
  let idCounter = 0;
  let awaitedAborts = 0;
  const abortWaiters: Array<() => void> = [];

  const server = createServer((request, response) => {
    response.on('close', () => {
      if (closing || response.writableEnded || killedResponses.has(response)) return;
      fake.clientAborts++;
      const waiter = abortWaiters.shift();
      if (waiter) {
        awaitedAborts++;
        waiter();
      }
    });
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) {
        sendText(response, 500, `fake upstream failed: ${String(error)}`);
      } else {
        response.destroy();
      }
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const text = await readBody(request);
    let body: unknown;
    let invalidJson = false;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
        invalidJson = true;
      }
    }
    const path = request.url ?? '/';
    fake.requests.push({
      method: request.method ?? 'GET',
      path,
      headers: { ...request.headers },
      body,
    });
    const exchange: FakeExchange = {
      kind,
      // A snapshot, so a behavior change mid-stream does not alter a response under way.
      behavior: { ...behavior },
      method: request.method ?? 'GET',
      pathname: new URL(path, 'http://fake').pathname,
      body,
      invalidJson,
      response,
      nextId: (prefix) => `${prefix}-fake-${++idCounter}`,
    };
    if (kind === 'ollama' && (exchange.pathname.startsWith('/api/') || exchange.pathname === '/')) {
      await handleOllamaNative(exchange);
      return;
    }
    await handleOpenAIDialect(exchange);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  const fake: FakeUpstream = {
    kind,
    url,
    baseURL: `${url}/v1`,
    requests: [],
    clientAborts: 0,
    waitForClientAbort(timeoutMs = 10_000) {
      if (fake.clientAborts > awaitedAborts) {
        awaitedAborts++;
        return Promise.resolve();
      }
      return new Promise<void>((resolve, reject) => {
        const waiter = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          const position = abortWaiters.indexOf(waiter);
          if (position >= 0) abortWaiters.splice(position, 1);
          reject(
            new Error(`No client abort reached the fake ${kind} upstream within ${timeoutMs} ms.`),
          );
        }, timeoutMs);
        abortWaiters.push(waiter);
      });
    },
    setBehavior(update) {
      behavior = applyPatch(behavior, update);
    },
    close() {
      closing = true;
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
  return fake;
}

/** Drops keys whose value is undefined, so they do not override the defaults. */
function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(value).filter(([, item]) => item !== undefined),
  ) as Partial<T>;
}

/**
 * In `setBehavior`, an explicit `undefined` clears an optional knob (e.g. `errorStatus`) and
 * puts a required one back to its default.
 */
function applyPatch(
  current: FakeUpstreamBehavior,
  patch: Partial<FakeUpstreamBehavior>,
): FakeUpstreamBehavior {
  const next: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(patch)) {
    next[key] =
      value === undefined && key in defaultBehavior
        ? defaultBehavior[key as keyof FakeUpstreamBehavior]
        : value;
  }
  return next as unknown as FakeUpstreamBehavior;
}
