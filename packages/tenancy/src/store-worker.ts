/**
 * The worker side of {@link createPgliteStoreInWorker}: opens the PGlite store in this thread
 * and answers the calls posted by the main thread, one message per call.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isTollgateError } from '@tollgate/protocol';
import { createPgliteStore } from './store.js';
import type { TenancyStore } from './types.js';

/** A call from the main thread. */
export interface StoreCall {
  id: number;
  method: keyof TenancyStore;
  args: unknown[];
}

/** An answer to a {@link StoreCall}; errors travel as plain data and are rebuilt there. */
export type StoreAnswer =
  | { id: number; ok: true; value: unknown }
  | {
      id: number;
      ok: false;
      error: {
        name: string;
        message: string;
        code?: unknown;
        tollgate?: { code: string; param: string | null; status: number };
      };
    };

function describe(error: unknown): Extract<StoreAnswer, { ok: false }>['error'] {
  if (isTollgateError(error)) {
    return {
      name: error.name,
      message: error.message,
      tollgate: { code: error.code, param: error.param, status: error.status },
    };
  }
  if (error instanceof Error) {
    return { name: error.name, message: error.message, code: (error as { code?: unknown }).code };
  }
  return { name: 'Error', message: String(error) };
}

const port = parentPort;
if (port) {
  const { dataDir } = workerData as { dataDir?: string };
  const opening: Promise<TenancyStore> = createPgliteStore(
    dataDir === undefined ? {} : { dataDir },
  );
  // Calls run one after another, in the order they were posted, as on one connection.
  let queue: Promise<unknown> = opening;
  port.on('message', (call: StoreCall) => {
    queue = queue.then(async () => {
      let answer: StoreAnswer;
      try {
        const store = await opening;
        const method = store[call.method] as (...args: unknown[]) => Promise<unknown>;
        answer = { id: call.id, ok: true, value: await method.apply(store, call.args) };
      } catch (error) {
        answer = { id: call.id, ok: false, error: describe(error) };
      }
      port.postMessage(answer);
    });
  });
}
