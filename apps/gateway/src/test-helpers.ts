/**
 * Helpers shared by the gateway's tests (not exported from the package).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  type FakeUpstream,
  type StartFakeUpstreamOptions,
  startFakeUpstream,
} from '@tollgate/backends/testing';
import type { PaymentSigner } from '@tollgate/client';
import { createPgliteStore, type Tenancy, type TenancyStore } from '@tollgate/tenancy';
import { authorizationTypedData, encodeHeader, type PaymentRequirements } from '@tollgate/x402';
import { APIError } from 'openai';
import type { DestinationStream } from 'pino';
import { expect, vi } from 'vitest';
import { loadConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { type Gateway, startGateway } from './server.js';

/** A logger whose lines are kept in memory, parsed. */
export function captureLogger(level: 'info' | 'debug' | 'warn' = 'info'): {
  logger: Logger;
  lines: Array<Record<string, unknown>>;
  raw: () => string;
  /** Resolves when a line matching `predicate` has been written. */
  waitFor(
    predicate: (line: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
} {
  const chunks: string[] = [];
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{
    predicate: (line: Record<string, unknown>) => boolean;
    resolve: (line: Record<string, unknown>) => void;
  }> = [];
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      const text = String(chunk);
      chunks.push(text);
      for (const piece of text.split('\n')) {
        if (!piece.trim()) continue;
        const line = JSON.parse(piece) as Record<string, unknown>;
        lines.push(line);
        for (const waiter of [...waiters]) {
          if (waiter.predicate(line)) {
            waiters.splice(waiters.indexOf(waiter), 1);
            waiter.resolve(line);
          }
        }
      }
      callback();
    },
  });
  const logger = createLogger({ level, destination: destination as unknown as DestinationStream });
  return {
    logger,
    lines,
    raw: () => chunks.join(''),
    waitFor(predicate, timeoutMs = 10_000) {
      const found = lines.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error('timed out waiting for a log line')),
          timeoutMs,
        );
        waiters.push({
          predicate,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
  };
}

/** Awaits a call of the `openai` SDK that must fail, and returns its APIError. */
export async function apiError(promise: Promise<unknown>): Promise<APIError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof APIError) return error;
    throw error;
  }
  throw new Error('expected the SDK to throw an APIError');
}

/** A promise with its resolve function outside. */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

let sharedStore: Promise<TenancyStore> | undefined;

/**
 * One in-memory PGlite tenancy store for a whole test file: opening one takes seconds, and
 * gateways given a store leave it open. Tests tell their records apart by request id.
 */
export function testStore(): Promise<TenancyStore> {
  sharedStore ??= createPgliteStore({});
  return sharedStore;
}

/** A fresh data directory under the OS temp dir; `cleanup` removes it. */
export function tempDataDir(): { path: string; cleanup: () => Promise<void> } {
  const path = mkdtempSync(join(tmpdir(), 'tollgate-data-'));
  return { path, cleanup: async () => rmSync(path, { recursive: true, force: true }) };
}

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, 'cli.ts');
// Loading tsx with --import keeps the gateway in this one process, so signals reach it.
const tsxLoader = pathToFileURL(
  join(resolve(here, '../../..'), 'node_modules/tsx/dist/loader.mjs'),
).href;

/** A `tollgate` process started by {@link runCli}. */
export interface CliRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
  /** Resolves with the first stderr match. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/**
 * Runs `tollgate <args>` as a real process (the TypeScript sources through tsx), without the
 * runner's own TOLLGATE_* variables; `onCleanup` receives its SIGKILL for after the test.
 */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; cwd: string },
  onCleanup: (cleanup: () => unknown) => void,
): CliRun {
  // The runner's own TOLLGATE_* variables must not leak into the child.
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('TOLLGATE_') && value !== undefined) env[name] = value;
  }
  const child = spawn(process.execPath, ['--import', tsxLoader, cli, ...args], {
    cwd: options.cwd,
    env: { ...env, TOLLGATE_LOG_LEVEL: 'warn', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers: Array<() => void> = [];
  child.stdout!.on('data', (chunk) => {
    stdout += String(chunk);
  });
  child.stderr!.on('data', (chunk) => {
    stderr += String(chunk);
    for (const watcher of [...watchers]) watcher();
  });
  const exit = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    exit,
    waitForStderr(pattern, timeoutMs = 30_000) {
      return new Promise((done, fail) => {
        const check = () => {
          const match = stderr.match(pattern);
          if (!match) return;
          watchers.splice(watchers.indexOf(check), 1);
          clearTimeout(timer);
          done(match);
        };
        const timer = setTimeout(() => {
          watchers.splice(watchers.indexOf(check), 1);
          fail(new Error(`stderr never matched ${pattern}:\n${stderr}`));
        }, timeoutMs);
        watchers.push(check);
        check();
        void exit.then(() => {
          if (watchers.includes(check)) {
            watchers.splice(watchers.indexOf(check), 1);
            clearTimeout(timer);
            fail(new Error(`exited before stderr matched ${pattern}:\n${stderr}`));
          }
        });
      });
    },
  };
}

/**
 * A gateway on a fresh data dir and the file's shared tenancy store, in front of a fake
 * OpenAI-compatible upstream serving `fake-model`; both are stopped by `onCleanup`.
 */
export async function startTestGateway(
  options: {
    /** Config values (snake_case) added to the defaults: the data dir and the backend. */
    values?: Record<string, unknown>;
    upstream?: Partial<StartFakeUpstreamOptions>;
    logger?: Logger;
    /** A store of its own instead of the file's shared one (not closed here). */
    store?: TenancyStore;
    /** More backends (config entries) after the fake upstream. */
    extraBackends?: Array<Record<string, unknown>>;
  },
  onCleanup: (cleanup: () => Promise<unknown>) => void,
): Promise<{ gateway: Gateway; upstream: FakeUpstream }> {
  const upstream = await startFakeUpstream({
    kind: 'openai',
    models: ['fake-model'],
    ...options.upstream,
  });
  onCleanup(() => upstream.close());
  const data = tempDataDir();
  onCleanup(data.cleanup);
  const gateway = await startGateway(
    loadConfig({
      env: {},
      argv: { port: 0 },
      values: {
        data_dir: data.path,
        backends: [{ url: upstream.baseURL }, ...(options.extraBackends ?? [])],
        ...options.values,
      },
    }),
    {
      logger: options.logger ?? captureLogger().logger,
      store: options.store ?? (await testStore()),
    },
  );
  onCleanup(() => gateway.close());
  return { gateway, upstream };
}

let nonceCounter = 0;

/**
 * A `PAYMENT-SIGNATURE` header paying `terms` the way an x402 client does (v2, EIP-3009),
 * with a fresh nonce; `change` alters what is signed or sent, to make wrong payments.
 */
export async function signPayment(
  account: PaymentSigner,
  terms: PaymentRequirements,
  change: {
    value?: string;
    validBefore?: number;
    domainName?: string;
    accepted?: Partial<PaymentRequirements>;
  } = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const nonce = `0x${(++nonceCounter).toString(16).padStart(8, '0')}${crypto.randomUUID().replaceAll('-', '').padEnd(56, '0')}`;
  const authorization = {
    from: account.address,
    to: terms.payTo,
    value: change.value ?? terms.amount,
    validAfter: String(now - 600),
    validBefore: String(change.validBefore ?? now + terms.maxTimeoutSeconds),
    nonce: nonce as `0x${string}`,
  };
  const typed = authorizationTypedData(terms, authorization);
  const signature = await account.signTypedData({
    ...typed,
    domain: { ...typed.domain, name: change.domainName ?? typed.domain.name },
  });
  return encodeHeader({
    x402Version: 2,
    accepted: { ...terms, ...change.accepted },
    payload: { signature, authorization },
  });
}

/** A TCP proxy on 127.0.0.1 that a test cuts and restores, to make a server vanish and return. */
export interface CuttableProxy {
  /** The port it listens on, the same after a restore. */
  port: number;
  /** Connections through it now (each counted once, client side). */
  connections(): number;
  /** Stops listening and drops every connection: the target looks stopped. */
  cut(): Promise<void>;
  /** Listens again on the same port. */
  restore(): Promise<void>;
}

/**
 * Starts a {@link CuttableProxy} to `target` (e.g. PostgreSQL or Redis, which a test must never
 * stop itself: other suites use them at the same time). `onCleanup` receives its cut.
 */
export async function startCuttableProxy(
  target: { hostname: string; port: number },
  onCleanup: (cleanup: () => Promise<unknown>) => void,
): Promise<CuttableProxy> {
  const clients = new Set<Socket>();
  const upstreams = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((done, fail) => {
      const listening = createServer((client) => {
        const upstream = connect(target.port, target.hostname);
        clients.add(client);
        upstreams.add(upstream);
        client.pipe(upstream).pipe(client);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          clients.delete(client);
          upstreams.delete(upstream);
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
      });
      listening.once('error', fail);
      listening.listen(port, '127.0.0.1', () => {
        server = listening;
        port = (listening.address() as AddressInfo).port;
        done();
      });
    });
  await listen();
  const proxy: CuttableProxy = {
    port,
    connections: () => clients.size,
    async cut() {
      const closing = server;
      server = undefined;
      for (const socket of [...clients, ...upstreams]) socket.destroy();
      if (closing) await new Promise<void>((done) => closing.close(() => done()));
    },
    restore: () => (server ? Promise.resolve() : listen()),
  };
  onCleanup(() => proxy.cut());
  return proxy;
}

/** `url` with its host and port replaced by those of a {@link CuttableProxy} on 127.0.0.1. */
export function throughProxy(url: string, proxy: CuttableProxy): string {
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String(proxy.port);
  return proxied.href;
}

/** One inference request as a {@link ScriptedUpstream} hands it to the test's answer. */
export interface ScriptedExchange {
  /** The parsed JSON body. */
  body: Record<string, unknown>;
  request: IncomingMessage;
  response: ServerResponse;
}

/** An OpenAI-compatible upstream whose inference answers the test writes itself. */
export interface ScriptedUpstream {
  /** `http://127.0.0.1:<port>/v1`. */
  baseURL: string;
  /** Inference requests whose connection has not closed yet. */
  open(): number;
  /** Inference requests received so far. */
  received(): number;
  close(): Promise<void>;
}

/**
 * Starts an upstream that lists `models` on GET /v1/models and hands every POST (its JSON
 * body read) to `answer`; `onCleanup` receives its close.
 */
export async function startScriptedUpstream(
  answer: (exchange: ScriptedExchange) => void | Promise<void>,
  onCleanup: (cleanup: () => Promise<unknown>) => void,
  models: string[] = ['fake-model'],
): Promise<ScriptedUpstream> {
  let open = 0;
  let received = 0;
  const server = createHttpServer(async (request, response) => {
    if (request.method !== 'POST') {
      const list = JSON.stringify({
        object: 'list',
        data: models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'test' })),
      });
      response.writeHead(200, { 'content-type': 'application/json' }).end(list);
      return;
    }
    open++;
    received++;
    response.once('close', () => open--);
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    try {
      await answer({ body, request, response });
    } catch {
      response.destroy();
    }
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  const { port } = server.address() as AddressInfo;
  const upstream: ScriptedUpstream = {
    baseURL: `http://127.0.0.1:${port}/v1`,
    open: () => open,
    received: () => received,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
  onCleanup(() => upstream.close());
  return upstream;
}

/** SSE events of an OpenAI chat completion stream, for scripted upstreams. */
export const sse = {
  /** A chunk carrying `content`. */
  chunk(content: string, model = 'fake-model'): string {
    const chunk = {
      id: 'chatcmpl-scripted',
      object: 'chat.completion.chunk',
      created: 1,
      model,
      choices: [{ index: 0, delta: { content }, finish_reason: null }],
    };
    return `data: ${JSON.stringify(chunk)}\n\n`;
  },
  /** The last chunk (finish_reason stop), then the usage-only chunk. */
  finish(promptTokens: number, completionTokens: number, model = 'fake-model'): string {
    const base = { id: 'chatcmpl-scripted', object: 'chat.completion.chunk', created: 1, model };
    const stop = { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] };
    const usage = {
      ...base,
      choices: [],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: completionTokens,
        total_tokens: promptTokens + completionTokens,
      },
    };
    return `data: ${JSON.stringify(stop)}\n\ndata: ${JSON.stringify(usage)}\n\n`;
  },
  done: 'data: [DONE]\n\n',
  headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
};

/** How a streamed answer ended for the client. */
export interface StreamEnd {
  text: string;
  /** `done`: ended cleanly after `data: [DONE]`; `error`: the body failed; `truncated`: ended cleanly without [DONE]. */
  end: 'done' | 'error' | 'truncated';
}

/** Reads a streamed answer to its end and says how it ended. */
export async function readStream(response: Response): Promise<StreamEnd> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    return { text, end: 'error' };
  }
  return { text, end: text.trimEnd().endsWith('data: [DONE]') ? 'done' : 'truncated' };
}

let tenantCounter = 0;

/** A new tenant with `limits` and a key of its own. */
export async function tenantWith(
  tenancy: Tenancy,
  limits: Record<string, unknown>,
): Promise<{ id: string; key: string }> {
  const tenant = await tenancy.createTenant(
    { name: `test-${++tenantCounter}-${Date.now()}`, limits },
    { actor: 'test' },
  );
  const { key } = await tenancy.issueKey(tenant.id, {}, { actor: 'test' });
  return { id: tenant.id, key };
}

/** Waits until nothing is under way in the gateway or towards its backends. */
export async function settledDown(gateway: Gateway): Promise<void> {
  await vi.waitFor(
    () => {
      expect(gateway.inFlight()).toBe(0);
      for (const backend of gateway.router.status()) expect(backend.inFlight).toBe(0);
    },
    { timeout: 10_000, interval: 50 },
  );
}
