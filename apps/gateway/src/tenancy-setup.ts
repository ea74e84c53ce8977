/**
 * Opens tenancy as the configuration says: PGlite in the data dir or PostgreSQL, the limiter
 * in memory or Redis. Shared by `tollgate serve` and the admin commands of the CLI.
 */
import { join } from 'node:path';
import {
  createMemoryLimiter,
  createRedisLimiter,
  createStore,
  createTenancy,
  type Tenancy,
  type TenancyStore,
} from '@tollgate/tenancy';
import { describeError } from './app.js';
import type { Config } from './config.js';
import { ensureDataDir, instanceId, lockEmbeddedDatabase } from './data-dir.js';
import type { Logger } from './logger.js';

/** Tenancy with what it was opened on. */
export interface OpenedTenancy {
  tenancy: Tenancy;
  store: TenancyStore;
  /** Closes tenancy, then the store and the lock if they were opened here. */
  close(): Promise<void>;
}

/** Options for {@link openTenancy}. */
export interface OpenTenancyOptions {
  logger?: Logger;
  /**
   * `serve`: the gateway (journal, recovery, limiter as configured); `admin`: a CLI command
   * (no journal, which belongs to the gateway; an in-memory limiter, never used).
   */
  role: 'serve' | 'admin';
  /** An already open store to use instead of the configured one (not closed here). */
  store?: TenancyStore;
}

/**
 * Opens the store (applying migrations), the limiter and tenancy.
 *
 * @throws {ConfigError} when the embedded database is held by another process.
 */
export async function openTenancy(
  config: Config,
  options: OpenTenancyOptions,
): Promise<OpenedTenancy> {
  const { logger, role } = options;
  ensureDataDir(config.dataDir);
  let release: (() => void) | undefined;
  let store = options.store;
  const ownStore = store === undefined;
  if (!store) {
    if (config.databaseUrl === undefined) {
      release = lockEmbeddedDatabase(
        config.dataDir,
        role === 'serve' ? 'The gateway cannot start on it.' : 'This command cannot open it.',
      );
    }
    try {
      // The embedded database's work runs in a worker thread, off the request thread.
      store = await createStore({
        databaseUrl: config.databaseUrl,
        dataDir: config.dataDir,
        worker: role === 'serve',
      });
    } catch (error) {
      release?.();
      throw error;
    }
  }
  const limiter =
    role === 'serve' && config.redisUrl !== undefined
      ? createRedisLimiter({ redis: config.redisUrl })
      : createMemoryLimiter();
  const tenancy = createTenancy({
    store,
    limiter,
    ...(role === 'serve'
      ? { journalDir: join(config.dataDir, 'journal'), instanceId: instanceId(config.dataDir) }
      : {}),
    prices: config.tenancy.prices,
    defaultMaxTokens: config.tenancy.defaultMaxTokens,
    staticKeys: config.apiKeys,
    keyCacheMs: config.tenancy.keyCacheMs,
    ...(config.payments ? { payerLimits: config.payments.payerLimits } : {}),
    onHealthChange: (healthy, error) => {
      if (healthy) logger?.info('usage records are being written again');
      else {
        logger?.error(
          { error: describeError(error) },
          'usage records cannot be written (database unreachable): metered requests get 503 until it is back; records already accepted are kept in the journal',
        );
      }
    },
    limiterUnreachable: config.tenancy.limiterUnreachable,
    onLimiterHealthChange: (healthy, error) => {
      if (healthy) logger?.info('limits can be checked again: the limiter state (Redis) answers');
      else {
        logger?.error(
          { error: describeError(error) },
          config.tenancy.limiterUnreachable === 'serve'
            ? 'limits cannot be checked (the limiter state in Redis is unreachable): tenants with limits are served without their limits until it is back (tenancy.limiter_unreachable: serve), and still metered'
            : 'limits cannot be checked (the limiter state in Redis is unreachable): tenants with limits get 503 until it is back, static keys are still served; slots of requests that end meanwhile are released once it is back',
        );
      }
    },
    onError: (message, error) => logger?.error({ error: describeError(error) }, message),
  });
  return {
    tenancy,
    store,
    async close() {
      try {
        await tenancy.close();
      } finally {
        if (ownStore) await store.close();
        release?.();
      }
    },
  };
}
