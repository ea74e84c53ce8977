/**
 * Runs the gateway on a Node HTTP server: builds the backends, the router, access control
 * and the app from a {@link Config}, listens, and shuts down gracefully.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { serve } from '@hono/node-server';
import {
  type Backend,
  createBackend,
  createRouter,
  type ModelConcurrency,
  type Router,
} from '@tollgate/backends';
import type { DiscoveredServer, discover } from '@tollgate/discovery';
import type { KeySet } from '@tollgate/ecies';
import { TollgateError } from '@tollgate/protocol';
import type { Tenancy, TenancyStore } from '@tollgate/tenancy';
import type { Hono } from 'hono';
import { type AccessControl, resolveAccess } from './access.js';
import { createAdminApp } from './admin.js';
import { createApp, describeError, type GatewayEnv } from './app.js';
import { createStubAttestor, createTsmAttestor } from './attestation.js';
import { type Config, ConfigError } from './config.js';
import { keySetPath, loadOrCreateKeySet } from './encryption.js';
import { type LocalBackends, openLocalBackends, type RouterEntry } from './local-backends.js';
import { createLogger, type Logger } from './logger.js';
import { createGatewayMetrics } from './metrics.js';
import { createGatewayPayments } from './payments.js';
import { createMemoryReplayGuard, createRedisReplayGuard } from './replay.js';
import { openTenancy } from './tenancy-setup.js';
import { gatewayTracer } from './tracing.js';
import { createUpstreamFetch } from './upstream-fetch.js';

/** Options for {@link startGateway}. */
export interface StartGatewayOptions {
  /** @default a JSON logger on standard output at `config.logLevel` */
  logger?: Logger;
  /** Overrides the access control that the configuration implies (for embedding and tests). */
  access?: AccessControl;
  /** Overrides the router built from `config.backends` (for embedding and tests). */
  router?: Router;
  /**
   * An open tenancy store to use instead of the configured database (for embedding and tests,
   * e.g. one in-memory PGlite shared by many gateways); it is not closed with the gateway.
   */
  store?: TenancyStore;
  /** Replaces the scan of this machine when no backend is configured (tests). */
  discover?: typeof discover;
}

/** Why a gateway that looked for servers and found none is not ready, and what to do. */
const NOTHING_FOUND =
  'no backend configured and discovery found no inference server on this machine: start one (e.g. "ollama serve" or llama-server) and restart the gateway, add ports with TOLLGATE_DISCOVERY_PORTS, or set TOLLGATE_BACKEND_URL';

/** Why a gateway whose limiter state does not answer is not ready. */
const LIMITER_UNREACHABLE =
  'limits cannot be checked: the limiter state (Redis) is unreachable; tenants with limits get 503 until it answers';

/** How long streams cut at the end of the shutdown grace period get to send their error event. */
const CUT_FLUSH_MS = 1000;

/** A running gateway. */
export interface Gateway {
  /** Base URL, e.g. `http://127.0.0.1:8402` (without `/v1`). */
  url: string;
  /** The port actually bound (useful with port 0). */
  port: number;
  app: Hono<GatewayEnv>;
  router: Router;
  tenancy: Tenancy;
  /** Whether callers without a key were let in at start (no keys and no tenants existed). */
  openAccess: boolean;
  /** The servers discovery found and serves, when nothing was configured (else empty). */
  discovered: DiscoveredServer[];
  /** Whether discovery ran (no backend was configured and discovery is enabled). */
  discoveryRan: boolean;
  /** The Node server. */
  server: Server;
  /** Requests being served now. */
  inFlight(): number;
  /**
   * Reads `encryption-keys.json` again (after `tollgate encryption rotate`) and serves the
   * keys it holds from the next request on; the CLI calls it on SIGHUP.
   * @throws {ConfigError} when the file cannot be read as a key set (the keys in use stay).
   */
  reloadEncryptionKeys(): KeySet;
  /**
   * Stops taking new connections, lets in-flight requests and streams finish for up to
   * `config.shutdown.graceMs`, then cuts what is left and closes the router. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Starts the gateway.
 *
 * @throws {ConfigError} when the configuration cannot be served: no API keys on a
 *   non-loopback host, or the address cannot be bound (port in use, not a local address).
 * @example
 * ```ts
 * const gateway = await startGateway(loadConfig({ env: { TOLLGATE_PORT: '0' } }));
 * console.log(gateway.url);
 * await gateway.close();
 * ```
 */
export async function startGateway(
  config: Config,
  options: StartGatewayOptions = {},
): Promise<Gateway> {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  for (const notice of config.notices) logger.warn(notice);

  const opened = await openTenancy(config, {
    logger,
    role: 'serve',
    ...(options.store ? { store: options.store } : {}),
  });
  const { tenancy } = opened;
  let onTenantCreated: (() => void) | undefined;
  let access = options.access;
  let openAccess = false;
  try {
    const recovered = await tenancy.start();
    if (recovered.replayed > 0 || recovered.interrupted > 0) {
      logger.warn(
        recovered,
        'recorded what the previous run left: journaled records replayed, requests cut by its end recorded as interrupted at their reserved estimate',
      );
    }
    if (!access) {
      const tenantCount = (await tenancy.listTenants()).length;
      const resolved = resolveAccess(config, tenancy, tenantCount);
      access = resolved.access;
      onTenantCreated = () => resolved.access.closeAnonymous();
      openAccess = resolved.mode === 'open';
      if (resolved.warning) logger.warn(resolved.warning);
    }
  } catch (error) {
    await opened.close();
    throw error;
  }

  let encryptionKeys: KeySet;
  try {
    const loaded = loadOrCreateKeySet(config.dataDir);
    encryptionKeys = loaded.set;
    if (loaded.created) {
      logger.info(
        { file: keySetPath(config.dataDir) },
        'encryption keys created (keep the file private; tollgate encryption show lists the public keys)',
      );
    }
  } catch (error) {
    await opened.close();
    throw error;
  }

  // Several gateways share one memory of seen encrypted requests through Redis.
  const replayGuard = config.redisUrl
    ? createRedisReplayGuard({ url: config.redisUrl, windowMs: 60_000 })
    : createMemoryReplayGuard(60_000);

  const paid = config.payments
    ? createGatewayPayments(config.payments, {
        ...(config.redisUrl ? { redisUrl: config.redisUrl } : {}),
        defaultMaxTokens: config.tenancy.defaultMaxTokens,
        record: (payment) => {
          try {
            return tenancy.recordPayment(payment).id;
          } catch (error) {
            // The money may have moved: the answer still goes out, and the log keeps the facts.
            logger.error({ error: describeError(error), payment }, 'recording a payment failed');
            return undefined;
          }
        },
      })
    : undefined;
  if (paid) {
    logger.info(paid.summary, 'payments on: callers without an API key pay per request with x402');
    if (paid.summary.testnet === false) {
      logger.warn(
        { network: paid.summary.network },
        'payments are on a main network: callers pay with real money',
      );
    }
  }

  // Backends built here share one keep-alive pool with no headers or body timeout.
  const upstream = options.router ? undefined : createUpstreamFetch();
  let local: LocalBackends | undefined;
  if (!options.router) {
    try {
      local = await openLocalBackends(config, {
        logger,
        ...(upstream ? { upstreamFetch: upstream.fetch } : {}),
        ...(options.discover ? { discover: options.discover } : {}),
      });
    } catch (error) {
      await upstream?.close();
      await replayGuard.close();
      await paid?.close();
      await opened.close();
      throw error;
    }
  }
  const router =
    options.router ?? buildRouter(config, logger, upstream?.fetch, local?.entries ?? []);
  const admin =
    config.adminKey === undefined
      ? undefined
      : createAdminApp({
          tenancy,
          adminKey: config.adminKey,
          ...(onTenantCreated ? { onTenantCreated } : {}),
          ...(local?.supervisor ? { supervisor: local.supervisor } : {}),
        });
  const metrics = config.metrics.enabled ? createGatewayMetrics({ router, tenancy }) : undefined;
  const app = createApp({
    config,
    router,
    ...(metrics
      ? { metrics, metricsAccess: config.metrics.token ? { token: config.metrics.token } : {} }
      : {}),
    ...(config.tracing.enabled ? { tracer: gatewayTracer() } : {}),
    access,
    logger,
    ...(admin ? { admin } : {}),
    encryptionKeys: () => encryptionKeys,
    replayGuard,
    ...(paid ? { payments: paid.payments } : {}),
    attestation: {
      ...(config.attestation.attestor === 'tsm'
        ? {
            attestor: createTsmAttestor(
              config.attestation.tsmRoot ? { root: config.attestation.tsmRoot } : {},
            ),
          }
        : config.attestation.attestor === 'stub'
          ? { attestor: createStubAttestor() }
          : {}),
      ...(config.attestation.modelHash
        ? { modelHash: new Uint8Array(Buffer.from(config.attestation.modelHash, 'hex')) }
        : {}),
    },
    notReady: async () => {
      if (!tenancy.healthy) return 'usage records cannot be written: the database is unreachable';
      // Failing open, a gateway without Redis still serves everyone.
      if (config.tenancy.limiterUnreachable === 'refuse' && !(await tenancy.checkLimiter()))
        return LIMITER_UNREACHABLE;
      if (local?.discoveryRan && local.discovered.length === 0) return NOTHING_FOUND;
      return undefined;
    },
  });

  let closing = false;
  let inFlight = 0;
  /** Resolves the wait of a shutdown for the last request to end. */
  let onLastRequestEnded: (() => void) | undefined;
  // Requests under way per connection, so shutdown can drop idle keep-alive connections (and
  // connections that never sent a request) at once and the others as soon as they finish.
  const connections = new Map<Socket, number>();
  const server = serve({
    fetch: app.fetch,
    hostname: config.host,
    port: config.port,
    serverOptions: {
      // The request timeout covers receiving a request, not sending the answer, but a slow
      // caller uploading a large body must not be cut either; streams are never timed out.
      requestTimeout: 0,
      // Still bound how long a connection may take to send its headers (slowloris): Node
      // checks every connectionsCheckingInterval, so one is closed within 35 s.
      headersTimeout: 30_000,
      connectionsCheckingInterval: 5_000,
      keepAliveTimeout: 5_000,
    },
  }) as Server;
  server.on('connection', (socket: Socket) => {
    connections.set(socket, 0);
    socket.once('close', () => connections.delete(socket));
  });
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket;
    inFlight += 1;
    connections.set(socket, (connections.get(socket) ?? 0) + 1);
    // While shutting down, answers tell the caller not to reuse the connection.
    if (closing) response.setHeader('connection', 'close');
    response.once('close', () => {
      inFlight -= 1;
      if (inFlight === 0) onLastRequestEnded?.();
      const remaining = Math.max(0, (connections.get(socket) ?? 1) - 1);
      if (connections.has(socket)) connections.set(socket, remaining);
      // Ends the connection after the answer has been flushed.
      if (closing && remaining === 0) socket.end();
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(listenError(error, config));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
  }).catch(async (error: unknown) => {
    await router.close();
    await local?.close();
    await upstream?.close();
    await replayGuard.close();
    await paid?.close();
    await opened.close();
    throw error;
  });
  server.on('error', (error) => logger.error({ error: describeError(error) }, 'server error'));

  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  router.start();

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      logger.info(
        { inFlight, graceMs: config.shutdown.graceMs },
        'shutting down: no new connections, letting requests finish',
      );
      const allClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const [socket, requests] of connections) if (requests === 0) socket.destroy();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((resolve) => {
        timer = setTimeout(() => resolve('deadline'), config.shutdown.graceMs);
      });
      const result = await Promise.race([allClosed.then(() => 'drained' as const), deadline]);
      clearTimeout(timer);
      if (result === 'deadline') {
        // Streams still going end with an error event, so a client can tell the answer is
        // incomplete; each takes its cut on its next read, hence the short wait before the
        // remaining connections (and any stream whose caller stopped reading) are closed.
        const cut = router.cutStreams(
          new TollgateError(
            'service_unavailable',
            'The gateway is shutting down and its grace period is over; the response is incomplete. Retry the request.',
          ),
        );
        logger.warn(
          { inFlight, streamsCut: cut },
          'shutdown grace period over: ending the remaining streams with an error event and closing the remaining connections',
        );
        if (cut > 0) {
          let flushTimer: NodeJS.Timeout | undefined;
          await Promise.race([
            allClosed,
            new Promise<void>((resolve) => {
              flushTimer = setTimeout(resolve, CUT_FLUSH_MS);
            }),
          ]);
          clearTimeout(flushTimer);
        }
        server.closeAllConnections();
        await allClosed;
      }
      // The server may report its connections closed before each answer on them has ended
      // (and cancelled its upstream body): closing the upstream connections first would settle
      // a stream cut here as broken by its upstream, charged nothing, instead of as cut.
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          onLastRequestEnded = resolve;
        });
      }
      await router.close();
      await local?.close();
      await upstream?.close();
      await replayGuard.close();
      await paid?.close();
      // After the last settlement: what is queued is written, the rest stays in the journal.
      await opened
        .close()
        .catch((error: unknown) =>
          logger.error(
            { error: describeError(error) },
            'writing the last usage records failed; they are kept in the journal for the next start',
          ),
        );
      logger.info('gateway stopped');
    })();
    return closed;
  };

  return {
    url,
    port: address.port,
    app,
    router,
    tenancy,
    openAccess,
    discovered: local?.discovered ?? [],
    discoveryRan: local?.discoveryRan ?? false,
    server,
    inFlight: () => inFlight,
    reloadEncryptionKeys() {
      encryptionKeys = loadOrCreateKeySet(config.dataDir).set;
      return encryptionKeys;
    },
    close,
  };
}

/**
 * Builds the backends and the router from the configuration; router events go to `logger`.
 * `upstreamFetch` is the fetch every backend uses (default: the global one).
 */
export function buildRouter(
  config: Config,
  logger?: Logger,
  upstreamFetch?: typeof fetch,
  extra: RouterEntry[] = [],
): Router {
  // Type llamacpp is no server: openLocalBackends builds it (with the optional package).
  const servers = config.backends.filter((entry) => entry.type !== 'llamacpp');
  const backends: RouterEntry[] = servers.map((entry) => {
    const backend: Backend = createBackend({
      type: entry.type,
      url: entry.url,
      name: entry.name,
      ...(entry.apiKey !== undefined ? { apiKey: entry.apiKey } : {}),
      ...(entry.headers !== undefined ? { headers: entry.headers } : {}),
      ...(entry.timeoutMs !== undefined ? { timeoutMs: entry.timeoutMs } : {}),
      ...(upstreamFetch ? { fetch: upstreamFetch } : {}),
    });
    return entry.models ? { backend, models: entry.models } : { backend };
  });
  backends.push(...extra);
  const concurrency: Record<string, ModelConcurrency> = {};
  for (const [model, limit] of Object.entries(config.models)) concurrency[model] = { ...limit };
  return createRouter({
    backends,
    aliases: config.aliases,
    concurrency,
    health: {
      intervalMs: config.health.intervalMs,
      failureThreshold: config.health.failureThreshold,
    },
    firstByteTimeoutMs: config.upstream.firstByteTimeoutMs,
    onEvent: (event) => {
      if (!logger) return;
      if (event.type === 'backend_degraded') {
        logger.warn(
          { backend: event.backend, detail: event.detail },
          'backend degraded: no longer routed to until a probe succeeds',
        );
      } else if (event.type === 'backend_recovered') {
        logger.info({ backend: event.backend }, 'backend healthy again');
      } else {
        logger.warn(
          { backend: event.backend, error: describeError(event.error) },
          'listing the models of a backend failed',
        );
      }
    },
  });
}

function listenError(error: NodeJS.ErrnoException, config: Config): Error {
  const where = `${config.host}:${config.port}`;
  if (error.code === 'EADDRINUSE') {
    return new ConfigError([
      `port: ${where} is already in use. Stop the other process or pick another port with --port or TOLLGATE_PORT.`,
    ]);
  }
  if (error.code === 'EACCES') {
    return new ConfigError([
      `port: not allowed to listen on ${where} (ports below 1024 need privileges). Pick a port above 1024.`,
    ]);
  }
  if (error.code === 'EADDRNOTAVAIL' || error.code === 'ENOTFOUND') {
    return new ConfigError([
      `host: "${config.host}" is not an address of this machine. Use 127.0.0.1, 0.0.0.0 or one of its own addresses.`,
    ]);
  }
  return error;
}
