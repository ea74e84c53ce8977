/**
 * The `fetch` the gateway gives its backends. Node's global fetch stops waiting for response
 * headers after 300 s and for the next body chunk after 300 s; a large prompt on slow
 * hardware takes longer than that before its first token, and a model may pause mid-stream.
 * The router's own first-byte timeout decides instead, and a started stream is never cut.
 */
import { Agent, fetch as undiciFetch } from 'undici';

/** Options for {@link createUpstreamFetch}. */
export interface UpstreamFetchOptions {
  /** How long an idle keep-alive connection to an upstream is kept, in ms. @default 30000 */
  keepAliveTimeoutMs?: number;
}

/** An upstream fetch and the connection pool behind it. */
export interface UpstreamFetch {
  fetch: typeof fetch;
  /** Closes the pooled connections; anything still under way (a health probe) is aborted. */
  close(): Promise<void>;
}

/** Creates a fetch with no headers or body timeout, over its own keep-alive pool. */
export function createUpstreamFetch(options: UpstreamFetchOptions = {}): UpstreamFetch {
  const agent = new Agent({
    headersTimeout: 0,
    bodyTimeout: 0,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 30_000,
  });
  const upstreamFetch = ((input: Parameters<typeof fetch>[0], init?: RequestInit) =>
    undiciFetch(input as Parameters<typeof undiciFetch>[0], {
      ...(init as Parameters<typeof undiciFetch>[1]),
      dispatcher: agent,
    })) as unknown as typeof fetch;
  return { fetch: upstreamFetch, close: () => agent.destroy() };
}
