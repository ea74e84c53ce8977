/**
 * Backends that are not plain servers in the config: GGUF files run in-process (type
 * `llamacpp`, through the optional @tollgate/backend-llamacpp), model servers the supervisor
 * starts on demand (`models.<id>.command`), and, when nothing at all is configured, the
 * inference servers discovery finds on this machine.
 */
import { type Backend, createBackend, createSupervisor, type Supervisor } from '@tollgate/backends';
import { type DiscoveredServer, discover as discoverServers } from '@tollgate/discovery';
import { type Config, ConfigError } from './config.js';
import type { Logger } from './logger.js';

/** A backend for the router, with the models it serves when they are fixed. */
export interface RouterEntry {
  backend: Backend;
  models?: string[];
}

/** What {@link openLocalBackends} made. */
export interface LocalBackends {
  /** For the router, after the configured servers. */
  entries: RouterEntry[];
  /** What discovery found (empty when it did not run). */
  discovered: DiscoveredServer[];
  /** Whether discovery ran (nothing was configured). */
  discoveryRan: boolean;
  /** Starts and stops the servers of `models.<id>.command`, when any is configured. */
  supervisor?: Supervisor;
  /** Frees in-process models. */
  close(): Promise<void>;
}

/** Options of {@link openLocalBackends}. */
export interface OpenLocalBackendsOptions {
  logger?: Logger;
  /** The fetch the discovered servers' backends use. */
  upstreamFetch?: typeof fetch;
  /** Replaces the discovery scan (tests). @default a scan of this machine's well-known ports */
  discover?: typeof discoverServers;
}

/** Loads the in-process backend package, or says how to install it. */
async function importLlamaCpp(): Promise<typeof import('@tollgate/backend-llamacpp')> {
  try {
    return await import('@tollgate/backend-llamacpp');
  } catch (error) {
    throw new ConfigError([
      `backends: type llamacpp runs GGUF files in-process with @tollgate/backend-llamacpp, which is not installed (${(error as Error).message.split('\n')[0]}). Install it next to the gateway: npm install @tollgate/backend-llamacpp`,
    ]);
  }
}

/**
 * Builds the in-process backends of the config and, when no backend is configured at all
 * (and `discovery.enabled`), the backends of the servers found on this machine.
 *
 * @throws {ConfigError} when a `llamacpp` backend is configured but its package is missing.
 */
export async function openLocalBackends(
  config: Pick<Config, 'backends' | 'discovery' | 'port' | 'supervised' | 'supervisor'>,
  options: OpenLocalBackendsOptions = {},
): Promise<LocalBackends> {
  const entries: RouterEntry[] = [];
  const closers: Array<() => Promise<void>> = [];
  const files = config.backends.filter((entry) => entry.type === 'llamacpp');
  if (files.length > 0) {
    const { createLlamaCppBackend } = await importLlamaCpp();
    for (const entry of files) {
      const backend = createLlamaCppBackend({
        modelPath: entry.url,
        name: entry.name,
        ...(entry.models?.[0] !== undefined ? { modelId: entry.models[0] } : {}),
        ...(entry.contextSize !== undefined ? { contextSize: entry.contextSize } : {}),
        ...(entry.sequences !== undefined ? { sequences: entry.sequences } : {}),
        ...(entry.threads !== undefined ? { threads: entry.threads } : {}),
      });
      entries.push({ backend, models: [backend.modelId] });
      closers.push(() => backend.close());
    }
  }

  let supervisor: Supervisor | undefined;
  if (config.supervised.length > 0) {
    supervisor = createSupervisor({
      models: config.supervised,
      memoryWaitTimeoutMs: config.supervisor.memoryWaitMs,
      ...(config.supervisor.memoryBudgetBytes !== undefined
        ? { memoryBudgetBytes: config.supervisor.memoryBudgetBytes }
        : {}),
      ...(options.logger ? { logger: options.logger } : {}),
    });
    for (const backend of supervisor.backends()) entries.push({ backend });
    const started = supervisor;
    closers.push(() => started.close());
  }

  let discovered: DiscoveredServer[] = [];
  const discoveryRan =
    config.backends.length === 0 && config.supervised.length === 0 && config.discovery.enabled;
  if (discoveryRan) {
    const found = await (options.discover ?? discoverServers)({
      ...(config.discovery.ports.length > 0 ? { extraPorts: config.discovery.ports } : {}),
      ...(config.discovery.cidr !== undefined ? { cidr: config.discovery.cidr } : {}),
      ...(config.discovery.timeoutMs !== undefined
        ? { timeoutMs: config.discovery.timeoutMs }
        : {}),
    });
    // Another gateway (or this one's own port) answers like Ollama: never front ourselves.
    discovered = found.filter(
      (server) => !(isThisMachine(server.host) && server.port === config.port),
    );
    for (const server of discovered) {
      entries.push({
        backend: createBackend({
          type: server.type,
          url: server.url,
          name: `${server.type}@${server.host}:${server.port}`,
          ...(options.upstreamFetch ? { fetch: options.upstreamFetch } : {}),
        }),
      });
    }
  }

  return {
    entries,
    discovered,
    discoveryRan,
    ...(supervisor ? { supervisor } : {}),
    async close() {
      await Promise.allSettled(closers.map((close) => close()));
    },
  };
}

function isThisMachine(host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '::1';
}
