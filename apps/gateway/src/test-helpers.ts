/**
 * Helpers shared by the gateway's tests (not exported from the package).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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
import { createPgliteStore, type TenancyStore } from '@tollgate/tenancy';
import { authorizationTypedData, encodeHeader, type PaymentRequirements } from '@tollgate/x402';
import { APIError } from 'openai';
import type { DestinationStream } from 'pino';
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
