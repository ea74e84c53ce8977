/**
 * Helpers shared by the gateway's tests (not exported from the package).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createPgliteStore, type TenancyStore } from '@tollgate/tenancy';
import type { DestinationStream } from 'pino';
import { createLogger, type Logger } from './logger.js';

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
