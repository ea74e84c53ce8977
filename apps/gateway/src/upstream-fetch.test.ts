import { once } from 'node:events';
import {
  createServer,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { createUpstreamFetch, type UpstreamFetch } from './upstream-fetch.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

const open: Array<{ server: Server; upstream: UpstreamFetch }> = [];

afterEach(async () => {
  for (const { server, upstream } of open.splice(0)) {
    await upstream.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** A local server; every request is recorded with its body before `handle` answers it. */
async function serve(handle: (request: Seen, response: ServerResponse) => void) {
  const seen: Seen[] = [];
  const closed: Seen[] = [];
  const listener: RequestListener = (request, response) => {
    const parts: Buffer[] = [];
    request.on('data', (part: Buffer) => parts.push(part));
    request.on('end', () => {
      const entry = {
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(parts).toString('utf8'),
      };
      seen.push(entry);
      response.on('close', () => closed.push(entry));
      handle(entry, response);
    });
  };
  const server = createServer(listener);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const upstream = createUpstreamFetch();
  open.push({ server, upstream });
  return { base, seen, closed, fetch: upstream.fetch };
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let round = 0; round < 2000; round++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('createUpstreamFetch', () => {
  it('behavior: sends method, headers and body; returns status, status text, headers and body', async () => {
    const { base, seen, fetch } = await serve((_request, response) => {
      response.statusMessage = 'Created Here';
      response.setHeader('set-cookie', ['a=1', 'b=2']);
      response.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      response.end('{"ok":true}');
    });
    const headers = new Headers({ 'content-type': 'application/json', 'x-request-id': 'r-1' });
    const response = await fetch(`${base}/v1/chat/completions?x=1`, {
      method: 'post',
      headers,
      body: '{"model":"m"}',
    });
    expect(response.status).toBe(201);
    expect(response.statusText).toBe('Created Here');
    expect(response.ok).toBe(true);
    expect(response.headers.get('x-upstream')).toBe('yes');
    expect(response.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(await response.json()).toEqual({ ok: true });
    expect(seen[0]).toMatchObject({
      method: 'POST',
      url: '/v1/chat/completions?x=1',
      body: '{"model":"m"}',
    });
    expect(seen[0]!.headers['x-request-id']).toBe('r-1');
    expect(seen[0]!.headers['content-type']).toBe('application/json');
  });

  it('behavior: a plain header record is read as Headers reads it (names lower-cased, repeats joined)', async () => {
    const { base, seen, fetch } = await serve((_request, response) => response.end('ok'));
    const response = await fetch(`${base}/h`, {
      headers: { 'X-Custom': 'a', 'x-custom': 'b', Accept: 'text/plain' },
    });
    expect(await response.text()).toBe('ok');
    expect(seen[0]!.headers['x-custom']).toBe('a, b');
    expect(seen[0]!.headers.accept).toBe('text/plain');
  });

  it('error: a header value with a line break is refused with a TypeError and nothing is sent', async () => {
    const { base, seen, fetch } = await serve((_request, response) => response.end('ok'));
    const error = await rejection(
      fetch(`${base}/h`, { headers: { 'x-bad': 'a\r\nx-injected: 1' } }),
    );
    expect(error).toBeInstanceOf(TypeError);
    expect(seen).toHaveLength(0);
  });

  it('behavior: a 204 has a null body; a GET sends no body', async () => {
    const { base, seen, fetch } = await serve((_request, response) => {
      response.writeHead(204).end();
    });
    const response = await fetch(`${base}/health`);
    expect(response.status).toBe(204);
    expect(response.body).toBeNull();
    expect(seen[0]).toMatchObject({ method: 'GET', body: '' });
  });

  it('behavior: a streamed body arrives chunk by chunk, before the server has finished', async () => {
    let finish!: () => void;
    const { base, fetch } = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: one\n\n');
      finish = () => response.end('data: [DONE]\n\n');
    });
    const response = await fetch(`${base}/stream`, { method: 'POST', body: '{}' });
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe('data: one\n\n');
    expect(first.value).toBeInstanceOf(Uint8Array);
    finish();
    let rest = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe('data: [DONE]\n\n');
  });

  it('behavior: redirects are followed as fetch does (303 becomes a GET; cross-origin drops authorization)', async () => {
    const other = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('moved here');
    });
    const { base, seen, fetch } = await serve((request, response) => {
      if (request.url === '/start') {
        response.writeHead(307, { location: '/same-origin' }).end('redirect body');
      } else if (request.url === '/same-origin') {
        response.writeHead(303, { location: `${other.base}/final` }).end();
      } else {
        response.writeHead(404).end();
      }
    });
    const response = await fetch(`${base}/start`, {
      method: 'POST',
      headers: { authorization: 'Bearer upstream-key', 'content-type': 'application/json' },
      body: '{"a":1}',
    });
    expect(await response.text()).toBe('moved here');
    // 307 keeps the method, body and credentials on the same origin.
    expect(seen[1]).toMatchObject({ method: 'POST', url: '/same-origin', body: '{"a":1}' });
    expect(seen[1]!.headers.authorization).toBe('Bearer upstream-key');
    // 303 turns it into a GET without a body; another origin never sees the key.
    expect(other.seen[0]).toMatchObject({ method: 'GET', url: '/final', body: '' });
    expect(other.seen[0]!.headers.authorization).toBeUndefined();
    expect(other.seen[0]!.headers['content-type']).toBeUndefined();
  });

  it('behavior: a gzip body is decoded, as fetch decodes it', async () => {
    const { base, fetch } = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      response.end(gzipSync('{"packed":true}'));
    });
    const response = await fetch(`${base}/gz`);
    expect(await response.json()).toEqual({ packed: true });
  });

  it('error: a refused connection rejects with TypeError("fetch failed") carrying the code', async () => {
    const { base, fetch } = await serve(() => {});
    const port = new URL(base).port;
    await open[0]!.upstream.close();
    open[0]!.server.close();
    await once(open[0]!.server, 'close');
    const error = (await rejection(fetch(`http://127.0.0.1:${port}/x`))) as TypeError;
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toBe('fetch failed');
    expect((error.cause as { code?: string }).code).toMatch(/ECONNREFUSED|UND_ERR/);
  });

  it('error: aborting before the answer rejects with the reason and closes the upstream request', async () => {
    const { base, seen, closed, fetch } = await serve(() => {
      // Never answers.
    });
    const controller = new AbortController();
    const pending = fetch(`${base}/slow`, {
      method: 'POST',
      body: '{}',
      signal: controller.signal,
    });
    await waitFor(() => seen.length === 1, 'the request to arrive');
    const reason = new Error('caller left');
    controller.abort(reason);
    expect(await rejection(pending)).toBe(reason);
    await waitFor(() => closed.length === 1, 'the upstream to see the close');
  });

  it('error: an already aborted signal rejects at once with its reason', async () => {
    const { base, seen, fetch } = await serve((_request, response) => response.end());
    const reason = new Error('already gone');
    const error = await rejection(fetch(`${base}/x`, { signal: AbortSignal.abort(reason) }));
    expect(error).toBe(reason);
    expect(seen).toHaveLength(0);
  });

  it('error: aborting mid-body errors the body with the reason and closes the upstream request', async () => {
    const { base, closed, fetch } = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: one\n\n');
    });
    const controller = new AbortController();
    const response = await fetch(`${base}/stream`, { signal: controller.signal });
    const reader = response.body!.getReader();
    await reader.read();
    const reason = new Error('caller left mid-stream');
    controller.abort(reason);
    expect(await rejection(reader.read())).toBe(reason);
    await waitFor(() => closed.length === 1, 'the upstream to see the close');
  });

  it('behavior: cancelling the body closes the upstream request', async () => {
    const { base, closed, fetch } = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: one\n\n');
    });
    const response = await fetch(`${base}/stream`);
    await response.body!.cancel(new Error('not interested'));
    await waitFor(() => closed.length === 1, 'the upstream to see the close');
  });

  it('error: a server dying mid-body errors the body with TypeError("terminated")', async () => {
    const { base, fetch } = await serve((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: one\n\n', () => response.socket?.destroy());
    });
    const response = await fetch(`${base}/stream`);
    const reader = response.body!.getReader();
    let error: unknown;
    try {
      for (;;) if ((await reader.read()).done) break;
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(TypeError);
    expect((error as TypeError).message).toBe('terminated');
  });

  it('behavior: what the fast path does not cover still works through fetch (a form body)', async () => {
    const { base, seen, fetch } = await serve((_request, response) => response.end('ok'));
    const response = await fetch(`${base}/form`, {
      method: 'PUT',
      body: new URLSearchParams({ a: '1' }),
    });
    expect(await response.text()).toBe('ok');
    expect(seen[0]).toMatchObject({ method: 'PUT', url: '/form', body: 'a=1' });
    expect(seen[0]!.headers['content-type']).toContain('application/x-www-form-urlencoded');
  });
});
