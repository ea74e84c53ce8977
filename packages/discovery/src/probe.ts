/**
 * Probing one server: a few GETs with a short timeout each, then the type from the most
 * specific signature among the answers.
 */
import { DiscoveryError } from './errors.js';
import { type Answer, type Answers, identifyServer, PROBE_PATHS } from './signatures.js';
import type { DiscoveredServer } from './types.js';

/** The default longest wait for one answer (headers and body), in milliseconds. */
export const DEFAULT_PROBE_TIMEOUT_MS = 500;

/** Bodies larger than this are not read (a model list is a few kilobytes). */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Options for {@link probe}. */
export interface ProbeOptions {
  /**
   * Longest wait for each answer, headers and body, in milliseconds. A closed port fails at
   * once whatever this is; it bounds ports that accept connections and never answer.
   * @default 500
   */
  timeoutMs?: number;
  /** The fetch to use, for tests or proxies. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Stops the probe; `probe` then rejects with the signal's reason. @default undefined */
  signal?: AbortSignal;
  /** Reported as the server's `label`. @default undefined */
  label?: string;
}

/** Checks a timeout option. @internal */
export function checkTimeout(timeoutMs: unknown): number {
  if (timeoutMs === undefined) return DEFAULT_PROBE_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new DiscoveryError(
      'invalid_option',
      `timeoutMs must be a positive number of milliseconds, not ${String(timeoutMs)}.`,
    );
  }
  return timeoutMs;
}

interface Root {
  /** The root URL without a trailing slash, e.g. `http://127.0.0.1:8080`. */
  url: string;
  host: string;
  port: number;
}

function parseRoot(url: string): Root {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error) {
    throw new DiscoveryError(
      'invalid_url',
      `"${String(url)}" is not a URL: give a server's root URL, e.g. http://127.0.0.1:8080.`,
      { cause: error },
    );
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new DiscoveryError(
      'invalid_url',
      `"${url}" is not an http(s) URL: give a server's root URL, e.g. http://127.0.0.1:8080.`,
    );
  }
  // A server behind a path prefix keeps it; a pasted trailing /v1 is dropped.
  const path = parsed.pathname.replace(/\/+$/, '').replace(/\/v1$/, '');
  const port = parsed.port ? Number(parsed.port) : parsed.protocol === 'https:' ? 443 : 80;
  return {
    url: `${parsed.origin}${path}`,
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
  };
}

/** Reads a body as text, giving up (undefined) past `limit` bytes. */
async function readText(response: Response, limit: number): Promise<string | undefined> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let size = 0;
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text + decoder.decode();
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    text += decoder.decode(value, { stream: true });
  }
}

function parseJson(text: string | undefined): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One GET; undefined when no complete HTTP answer came (refused, reset, timeout, not HTTP). */
async function get(
  fetchImpl: typeof fetch,
  url: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<Answer | undefined> {
  const timeout = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetchImpl(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      // A redirect is not a signature, and following it could lead off the scanned hosts.
      redirect: 'manual',
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    const text = await readText(response, MAX_BODY_BYTES);
    return { status: response.status, body: parseJson(text) };
  } catch {
    return undefined;
  }
}

/**
 * Probes one server and tells what it is. Never rejects for what the server does: a closed
 * port, a timeout, HTML or invalid JSON give `undefined`.
 *
 * It first asks for /v1/models; only a server that answers HTTP is asked the rest
 * (/api/version, /api/tags, /props, /health, /version, /api/v0/models), in parallel.
 *
 * @param url - the server's root URL, e.g. `http://127.0.0.1:8080` (a trailing `/v1` is
 *   dropped; a path prefix is kept).
 * @returns The server, or undefined when nothing there lists models.
 * @throws {DiscoveryError} `invalid_url` for a URL that is not http(s); `invalid_option` for a
 *   bad `timeoutMs`. Rejects with the signal's reason when `signal` aborts.
 * @example
 * ```ts
 * const server = await probe('http://127.0.0.1:11434');
 * if (server) console.log(server.type, server.models); // 'ollama' ['llama3.2:latest']
 * ```
 */
export async function probe(
  url: string,
  options: ProbeOptions = {},
): Promise<DiscoveredServer | undefined> {
  const root = parseRoot(url);
  const timeoutMs = checkTimeout(options.timeoutMs);
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const { signal } = options;
  signal?.throwIfAborted();

  const ask = (path: string) => get(fetchImpl, `${root.url}/${path}`, timeoutMs, signal);
  const models = await ask(PROBE_PATHS.models);
  signal?.throwIfAborted();
  if (!models) return undefined;

  const [ollamaVersion, ollamaTags, props, health, version, lmStudioModels] = await Promise.all([
    ask(PROBE_PATHS.ollamaVersion),
    ask(PROBE_PATHS.ollamaTags),
    ask(PROBE_PATHS.props),
    ask(PROBE_PATHS.health),
    ask(PROBE_PATHS.version),
    ask(PROBE_PATHS.lmStudioModels),
  ]);
  signal?.throwIfAborted();
  const answers: Answers = {
    models,
    ollamaVersion,
    ollamaTags,
    props,
    health,
    version,
    lmStudioModels,
  };
  const identity = identifyServer(answers);
  if (!identity) return undefined;

  // Keys in the order `tollgate discover --json` prints them.
  return {
    url: identity.type === 'openai' ? `${root.url}/v1` : root.url,
    host: root.host,
    port: root.port,
    type: identity.type,
    ...(identity.version ? { version: identity.version } : {}),
    models: identity.models,
    healthy: identity.healthy,
    ...(options.label ? { label: options.label } : {}),
  };
}
