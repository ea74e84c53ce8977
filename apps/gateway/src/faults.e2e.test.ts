/**
 * Upstream faults through a real gateway socket: an upstream process killed mid-stream, one
 * that accepts and never answers, one that answers a byte at a time, and a client that reads
 * a long stream very slowly. After each: the stream's end is honest (complete, or an error,
 * never a clean end of a cut answer), the request is metered, and no concurrency slot,
 * request or upstream connection is left behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FAKE_LLAMA_SERVER_PATH } from '@tollgate/backends/testing';
import type { Tenancy } from '@tollgate/tenancy';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Gateway } from './server.js';
import {
  captureLogger,
  readStream,
  type ScriptedExchange,
  settledDown,
  sse,
  startScriptedUpstream,
  startTestGateway,
  tenantWith,
} from './test-helpers.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 30_000 });

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
const onCleanup = (cleanup: () => unknown) => cleanups.push(cleanup);

const MODEL = 'fake-model';
const PROMPT = [{ role: 'user', content: 'Say hello please' }];
/** A failing test leaves streams open: its gateway must not wait the default 30 s on them. */
const QUICK_SHUTDOWN = { shutdown: { grace_seconds: 1 } };

/** The tenant's usage totals, once what is queued has been written. */
async function usageOf(tenancy: Tenancy, tenantId: string) {
  await tenancy.flush();
  return (await tenancy.usage({ tenantId }))[0];
}

function chat(
  gateway: Gateway,
  key: string,
  body: Record<string, unknown> = {},
  requestId?: string,
): Promise<Response> {
  return fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(requestId ? { 'x-request-id': requestId } : {}),
    },
    body: JSON.stringify({ model: MODEL, messages: PROMPT, ...body }),
  });
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  const { port } = server.address() as AddressInfo;
  await new Promise((done) => server.close(done));
  return port;
}

/** Runs the fake llama-server program as a real process on `port`, ready to serve. */
async function startLlamaServer(port: number, flags: string[] = []): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [FAKE_LLAMA_SERVER_PATH, '--port', String(port), ...flags],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  await new Promise<void>((ready, fail) => {
    child.stderr!.on('data', (chunk) => {
      stderr += String(chunk);
      if (stderr.includes('server is listening')) ready();
    });
    child.once('exit', (code) => fail(new Error(`fake llama-server exited (${code}): ${stderr}`)));
  });
  return child;
}

describe('an upstream process killed mid-stream', () => {
  it('error: the client stream errors after an error event, the request is metered as failed, and its slot is free again', async () => {
    const port = await freePort();
    const reply = 'one two three four five six seven eight nine ten';
    const crashing = await startLlamaServer(port, [
      '--crash-after-chunks',
      '3',
      '--chunk-delay-ms',
      '20',
      '--reply',
      reply,
    ]);
    const log = captureLogger();
    const { gateway } = await startTestGateway(
      {
        logger: log.logger,
        values: {
          ...QUICK_SHUTDOWN,
          backends: [{ name: 'llama', type: 'llama-server', url: `http://127.0.0.1:${port}` }],
        },
      },
      onCleanup,
    );
    const tenancy = gateway.tenancy;
    const { id: tenantId, key } = await tenantWith(tenancy, { max_concurrent: 1 });

    const exited = once(crashing, 'exit');
    const cut = await chat(gateway, key, { stream: true }, 'killed-mid-stream');
    expect(cut.status).toBe(200);
    const { text, end } = await readStream(cut);
    expect(end).toBe('error');
    // The chunks before the crash came through, then the gateway's error event, no [DONE].
    expect(text).toContain('"one"');
    expect(text).toContain('upstream_stream_error');
    expect(text).not.toContain('[DONE]');
    expect((await exited)[0]).toBe(1);
    const line = await log.waitFor(
      (entry) => entry.msg === 'request' && entry.requestId === 'killed-mid-stream',
    );
    expect(line).toMatchObject({ status: 200, outcome: 'failed', streamed: true });
    await settledDown(gateway);
    // Nothing reached the caller whole: nothing is charged, but the request is on record.
    expect(await usageOf(tenancy, tenantId)).toMatchObject({ requests: 1, totalTokens: 0 });

    // The server comes back on the same port; the tenant's one slot was released.
    await startLlamaServer(port, ['--reply', reply]);
    const next = await chat(gateway, key, { stream: true });
    expect(next.status).toBe(200);
    const whole = await readStream(next);
    expect(whole.end).toBe('done');
    expect(whole.text).toContain('" ten"');
    await settledDown(gateway);
    expect(await usageOf(tenancy, tenantId)).toMatchObject({
      requests: 2,
      completionTokens: 10,
      estimatedRequests: 1,
    });
  });
});

describe('an upstream that accepts and never answers', () => {
  it('error: 504 upstream_timeout after first_byte_timeout_seconds, the upstream connection closed by the gateway, the slot released', async () => {
    let mode: 'silent' | 'headers-only' | 'answer' = 'silent';
    const upstream = await startScriptedUpstream(({ response }: ScriptedExchange) => {
      // Silent: the request was read, and nothing ever comes back.
      if (mode === 'silent') return;
      response.writeHead(200, sse.headers);
      // Headers only: a stream that never sends its first event.
      if (mode === 'headers-only') response.flushHeaders();
      else response.end(sse.chunk('Hello') + sse.finish(3, 1) + sse.done);
    }, onCleanup);
    const { gateway } = await startTestGateway(
      {
        values: {
          ...QUICK_SHUTDOWN,
          upstream: { first_byte_timeout_seconds: 1 },
          backends: [{ name: 'silent', url: upstream.baseURL, models: [MODEL] }],
        },
      },
      onCleanup,
    );
    const { id, key } = await tenantWith(gateway.tenancy, { max_concurrent: 1 });

    for (const [silence, body] of [
      ['silent', {}],
      ['headers-only', { stream: true }],
    ] as const) {
      mode = silence;
      const response = await chat(gateway, key, body);
      expect(response.status, silence).toBe(504);
      const error = ((await response.json()) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('upstream_timeout');
      expect(error.message).toContain('timed out');
      // The gateway hung up on the upstream rather than leave the request running there.
      await vi.waitFor(() => expect(upstream.open()).toBe(0), { timeout: 10_000, interval: 50 });
      await settledDown(gateway);
    }

    // The tenant's one slot is free: the next request is admitted and served.
    mode = 'answer';
    const served = await chat(gateway, key, { stream: true });
    expect(served.status).toBe(200);
    expect((await readStream(served)).end).toBe('done');
    expect(upstream.received()).toBe(3);
    await settledDown(gateway);
    expect(await usageOf(gateway.tenancy, id)).toMatchObject({
      requests: 3,
      promptTokens: 3,
      completionTokens: 1,
    });
  });
});

/**
 * An upstream on a raw socket that writes each answer, status line and headers included, one
 * byte at a time (`byteDelayMs` apart, no Nagle), then closes the connection. GET requests get
 * the model list at once.
 */
async function startDribblingUpstream(
  answer: (body: Record<string, unknown>) => { contentType: string; body: string; length: boolean },
  byteDelayMs: number,
): Promise<{ baseURL: string }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setNoDelay(true);
    let received = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const headEnd = received.indexOf('\r\n\r\n');
      if (headEnd === -1) return;
      const head = received.subarray(0, headEnd).toString('latin1');
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
      if (received.length < headEnd + 4 + length) return;
      socket.off('data', onData);
      if (head.startsWith('GET')) {
        const list = JSON.stringify({ object: 'list', data: [{ id: MODEL, object: 'model' }] });
        socket.end(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${list.length}\r\nconnection: close\r\n\r\n${list}`,
        );
        return;
      }
      const body = JSON.parse(received.subarray(headEnd + 4).toString('utf8'));
      const reply = answer(body);
      // An SSE answer is delimited by the end of the connection, a JSON one by its length.
      const bytes = Buffer.from(
        `HTTP/1.1 200 OK\r\ncontent-type: ${reply.contentType}\r\n${
          reply.length ? `content-length: ${Buffer.byteLength(reply.body)}\r\n` : ''
        }connection: close\r\n\r\n${reply.body}`,
      );
      void (async () => {
        for (let index = 0; index < bytes.length && !socket.destroyed; index++) {
          socket.write(bytes.subarray(index, index + 1));
          await new Promise((done) => setTimeout(done, byteDelayMs));
        }
        socket.end();
      })();
    };
    socket.on('data', onData);
    socket.on('error', () => {});
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  onCleanup(
    () =>
      new Promise((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(done);
      }),
  );
  return { baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` };
}

describe('an upstream answering byte by byte', () => {
  it('behavior: a stream and a JSON answer written one byte at a time reach the client whole and exact, and are metered', async () => {
    const words = ['Slowly', ' but', ' surely', ' done'];
    const streamed = `${words.map((word) => sse.chunk(word)).join('')}${sse.finish(3, 4)}${sse.done}`;
    const json = JSON.stringify({
      id: 'chatcmpl-dribble',
      object: 'chat.completion',
      created: 1,
      model: MODEL,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Slowly but surely done' },
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
    });
    const upstream = await startDribblingUpstream(
      (body) =>
        body.stream === true
          ? { contentType: 'text/event-stream', body: streamed, length: false }
          : { contentType: 'application/json', body: json, length: true },
      1,
    );
    const { gateway } = await startTestGateway(
      {
        values: {
          ...QUICK_SHUTDOWN,
          backends: [{ name: 'dribbling', url: upstream.baseURL, models: [MODEL] }],
        },
      },
      onCleanup,
    );
    const { id, key } = await tenantWith(gateway.tenancy, { max_concurrent: 1 });

    // Asking for usage: the gateway then passes every byte of the stream as it came.
    const stream = await chat(gateway, key, {
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(stream.status).toBe(200);
    expect(await readStream(stream)).toEqual({ text: streamed, end: 'done' });
    const whole = await chat(gateway, key);
    expect(whole.status).toBe(200);
    expect(await whole.text()).toBe(json);
    await settledDown(gateway);
    expect(await usageOf(gateway.tenancy, id)).toMatchObject({
      requests: 2,
      promptTokens: 6,
      completionTokens: 8,
      estimatedRequests: 0,
    });
  });
});

/** Forces a full garbage collection (the flag is set at run time: the test needs no CLI flag). */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

describe('a client that reads a long stream very slowly', () => {
  it('behavior: backpressure reaches the upstream (it blocks on write) and the gateway holds a bounded part of the stream, then the whole stream arrives', async () => {
    const event = Buffer.from(sse.chunk('x'.repeat(16 * 1024 - 120)));
    const events = Math.ceil((64 * 1024 * 1024) / event.length);
    const tail = Buffer.from(sse.finish(3, events) + sse.done);
    const total = events * event.length + tail.length;
    let written = 0;
    let blocked = false;
    let finished = false;
    const upstream = await startScriptedUpstream(async ({ body, response }) => {
      if (body.max_tokens === 1) {
        response.writeHead(200, sse.headers).end(sse.chunk('warm') + sse.finish(3, 1) + sse.done);
        return;
      }
      response.writeHead(200, sse.headers);
      for (let index = 0; index < events && !response.destroyed; index++) {
        written += event.length;
        if (!response.write(event)) {
          blocked = true;
          await once(response, 'drain');
          blocked = false;
        }
      }
      written += tail.length;
      response.end(tail);
      finished = true;
    }, onCleanup);
    const { gateway } = await startTestGateway(
      {
        values: {
          ...QUICK_SHUTDOWN,
          backends: [{ name: 'fast', url: upstream.baseURL, models: [MODEL] }],
        },
      },
      onCleanup,
    );
    const { id, key } = await tenantWith(gateway.tenancy, { max_concurrent: 1 });

    // A first request, so that what the gateway allocates once is not counted below.
    const warm = await chat(gateway, key, { stream: true, max_tokens: 1 });
    await readStream(warm);
    await settledDown(gateway);
    await new Promise((done) => setImmediate(done));
    collectGarbage();
    const before = process.memoryUsage();
    const body = JSON.stringify({
      model: MODEL,
      messages: PROMPT,
      stream: true,
      stream_options: { include_usage: true },
    });
    const client = httpRequest(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      },
    });
    client.on('error', () => {});
    client.end(body);
    onCleanup(() => client.destroy());
    const [response] = (await once(client, 'response')) as [IncomingMessage];
    expect(response.statusCode).toBe(200);
    let received = 0;
    let last = '';
    let target = 0;
    response.on('data', (chunk: Buffer) => {
      received += chunk.length;
      last = (last + chunk.toString('latin1')).slice(-64);
      if (received >= target) response.pause();
    });
    const ended = once(response, 'end');
    // A failing test destroys the client: the rejection is then expected.
    ended.catch(() => {});

    const leads: number[] = [];
    // Read 2 MiB at a time; between reads, wait until the upstream itself is held back.
    for (let step = 1; step <= 4; step++) {
      target = step * 2 * 1024 * 1024;
      response.resume();
      await vi.waitFor(() => expect(received).toBeGreaterThanOrEqual(target), {
        timeout: 20_000,
        interval: 10,
      });
      // Until the upstream is blocked on a write and has written nothing more since the
      // previous look, or has written everything (what a buffering gateway would let it do).
      let seen = -1;
      await vi.waitFor(
        () => {
          const stalled = blocked && written === seen;
          seen = written;
          expect(stalled || finished).toBe(true);
        },
        { timeout: 20_000, interval: 100 },
      );
      expect(finished, 'the upstream wrote the whole stream to a client that was not reading').toBe(
        false,
      );
      leads.push(written - received);
      collectGarbage();
      const now = process.memoryUsage();
      // The gateway holds a few of the 64 MiB at most (what the upstream wrote beyond what the
      // client read sits in the kernel's socket buffers).
      expect(now.arrayBuffers - before.arrayBuffers).toBeLessThan(total / 4);
    }
    // What the upstream got ahead of the reader stays bounded by buffers, not the stream size.
    for (const lead of leads) expect(lead).toBeLessThan(total / 2);

    target = Number.POSITIVE_INFINITY;
    response.resume();
    await ended;
    expect(received).toBe(total);
    expect(last.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(finished).toBe(true);
    await settledDown(gateway);
    expect(await usageOf(gateway.tenancy, id)).toMatchObject({
      requests: 2,
      completionTokens: events + 1,
      estimatedRequests: 0,
    });
  });
});
