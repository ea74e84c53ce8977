/**
 * PGlite in a worker thread. The embedded database runs PostgreSQL compiled to WebAssembly on
 * whichever thread opens it; in the gateway that would be the thread serving requests, which
 * every batch of usage records would then stall for milliseconds. Here the store lives in a
 * worker and each call crosses as a message (records are plain data: dates and byte arrays
 * survive the structured clone).
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { TollgateError, type TollgateErrorCode } from '@tollgate/protocol';
import type { StoreAnswer, StoreCall } from './store-worker.js';
import type { TenancyStore } from './types.js';

/**
 * The calls forwarded to the worker, written as an object so the compiler insists on every
 * method of {@link TenancyStore} (a list would let a new method be forgotten and be missing at
 * run time).
 */
const FORWARDED = {
  createTenant: true,
  getTenant: true,
  getTenantByName: true,
  listTenants: true,
  updateTenant: true,
  deleteTenant: true,
  insertKey: true,
  getKey: true,
  listKeys: true,
  updateKey: true,
  writeRecords: true,
  openReservations: true,
  usageSince: true,
  queryUsage: true,
  queryAudit: true,
  queryPayments: true,
  ping: true,
} as const satisfies Record<Exclude<keyof TenancyStore, 'kind' | 'close'>, true>;

const METHODS = Object.keys(FORWARDED) as Array<keyof typeof FORWARDED>;

const STANDARD_ERRORS: Partial<Record<string, ErrorConstructor>> = { RangeError, TypeError };

function rebuild(error: Extract<StoreAnswer, { ok: false }>['error']): Error {
  if (error.tollgate) {
    return new TollgateError(error.tollgate.code as TollgateErrorCode, error.message, {
      param: error.tollgate.param,
      status: error.tollgate.status,
    });
  }
  // The store's own argument errors keep their class, as they would without the thread.
  const rebuilt = new (STANDARD_ERRORS[error.name] ?? Error)(error.message);
  rebuilt.name = error.name;
  if (error.code !== undefined) (rebuilt as Error & { code?: unknown }).code = error.code;
  return rebuilt;
}

/**
 * The worker's module: the compiled JavaScript next to this file; in the workspace, where this
 * file is TypeScript, a bootstrap that loads the worker's TypeScript source through tsx (a
 * worker does not inherit the loader hooks of the thread that starts it).
 */
function workerEntry(): URL {
  if (!import.meta.url.endsWith('.ts')) return new URL('./store-worker.js', import.meta.url);
  const source = new URL('./store-worker.ts', import.meta.url).href;
  const tsx = createRequire(import.meta.url)
    .resolve('tsx/package.json')
    .replace(/package\.json$/, 'dist/esm/api/index.mjs');
  const bootstrap = `const { tsImport } = await import(${JSON.stringify(pathToFileURL(tsx).href)});
await tsImport(${JSON.stringify(source)}, ${JSON.stringify(source)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(bootstrap)}`);
}

/**
 * Opens a PGlite store (persisted in `dataDir`, or in memory) in a worker thread; the same
 * {@link TenancyStore} as {@link createPgliteStore}, with the database's work off the calling
 * thread.
 *
 * @example
 * ```ts
 * const store = await createPgliteStoreInWorker({ dataDir: '.tollgate/db' });
 * await store.ping();
 * await store.close();
 * ```
 */
export async function createPgliteStoreInWorker(
  options: { dataDir?: string } = {},
): Promise<TenancyStore> {
  const worker = new Worker(workerEntry(), { workerData: { dataDir: options.dataDir } });
  const pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  let nextId = 0;
  let failure: Error | undefined;
  const failAll = (error: Error) => {
    failure ??= error;
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  };
  worker.on('message', (answer: StoreAnswer) => {
    const call = pending.get(answer.id);
    if (!call) return;
    pending.delete(answer.id);
    if (answer.ok) call.resolve(answer.value);
    else call.reject(rebuild(answer.error));
  });
  worker.on('error', failAll);
  worker.on('exit', (code) =>
    failAll(new Error(`The database worker stopped (exit code ${code}).`)),
  );

  const call = (method: StoreCall['method'], args: unknown[]): Promise<unknown> => {
    if (failure) return Promise.reject(failure);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, method, args } satisfies StoreCall);
    });
  };

  const store = { kind: 'pglite' } as TenancyStore;
  const methods = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const method of METHODS) methods[method] = (...args) => call(method, args);
  let closed: Promise<void> | undefined;
  store.close = () => {
    closed ??= (async () => {
      try {
        if (!failure) await call('close', []);
      } finally {
        await worker.terminate();
      }
    })();
    return closed;
  };
  try {
    // Resolves once the database is open and migrated (or rejects with why it is not).
    await call('ping', []);
  } catch (error) {
    await worker.terminate();
    throw error;
  }
  return store;
}
