/**
 * Finding the inference servers nearby: every host and port probed in parallel, with a bound
 * on simultaneous probes.
 */
import { expandCidr } from './cidr.js';
import { DiscoveryError } from './errors.js';
import { type DiscoveryPort, isPort, WELL_KNOWN_PORTS } from './ports.js';
import { checkTimeout, probe } from './probe.js';
import type { DiscoveredServer } from './types.js';

/** Options for {@link discover}. */
export interface DiscoverOptions {
  /** Hosts to probe: IPv4 or IPv6 addresses, or host names. @default ['127.0.0.1'] */
  hosts?: string[];
  /** Ports to probe on every host. @default the ports of {@link WELL_KNOWN_PORTS} */
  ports?: number[];
  /**
   * More ports, probed besides `ports`, with the operator's label
   * (`parseDiscoveryPorts(TOLLGATE_DISCOVERY_PORTS)`). @default []
   */
  extraPorts?: DiscoveryPort[];
  /**
   * An IPv4 range whose hosts are probed besides `hosts`, e.g. `192.168.1.0/28`; at most 256
   * addresses. Never scanned unless given. @default undefined
   */
  cidr?: string;
  /** Longest wait for each answer, in milliseconds (see {@link probe}). @default 500 */
  timeoutMs?: number;
  /** Most servers probed at once (each probe makes up to 7 requests). @default 64 */
  concurrency?: number;
  /** The fetch to use, for tests or proxies. @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Stops the scan; `discover` then rejects with the signal's reason. @default undefined */
  signal?: AbortSignal;
}

const DEFAULT_HOSTS = ['127.0.0.1'];
const DEFAULT_CONCURRENCY = 64;
const HOST_NAME =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;

function invalid(message: string): DiscoveryError {
  return new DiscoveryError('invalid_option', message);
}

function hostForURL(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function checkHost(host: unknown): string {
  const valid =
    typeof host === 'string' &&
    (host.includes(':') ? IPV6.test(host) : HOST_NAME.test(host)) &&
    URL.canParse(`http://${hostForURL(host)}/`);
  if (!valid) {
    throw invalid(
      `${JSON.stringify(host)} is not a host: give an IP address or a host name, e.g. 127.0.0.1 or ::1 (no scheme, port or path).`,
    );
  }
  return host;
}

function checkPorts(ports: unknown, name: string): number[] {
  if (!Array.isArray(ports) || !ports.every(isPort)) {
    throw invalid(`${name} must be an array of ports from 1 to 65535, e.g. [8080, 9000].`);
  }
  return ports;
}

function checkConcurrency(concurrency: unknown): number {
  if (concurrency === undefined) return DEFAULT_CONCURRENCY;
  if (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency < 1) {
    throw invalid(`concurrency must be a positive integer, not ${String(concurrency)}.`);
  }
  return concurrency;
}

/** The ports to probe, each once, with its label (an extra port's label wins). */
function portsToProbe(options: DiscoverOptions): Map<number, string | undefined> {
  const ports = new Map<number, string | undefined>();
  const base = options.ports ?? WELL_KNOWN_PORTS.map((entry) => entry.port);
  for (const port of checkPorts(base, 'ports')) ports.set(port, undefined);
  const extra = options.extraPorts ?? [];
  if (!Array.isArray(extra)) throw invalid('extraPorts must be an array of { port, label? }.');
  checkPorts(
    extra.map((entry: DiscoveryPort | undefined) => entry?.port),
    'extraPorts ports',
  );
  for (const { port, label } of extra) {
    if (label !== undefined && typeof label !== 'string') {
      throw invalid(`The label of extra port ${port} must be a string.`);
    }
    ports.set(port, label || ports.get(port));
  }
  return ports;
}

function compareHosts(a: string, b: string): number {
  const numeric = (host: string) =>
    /^\d+\.\d+\.\d+\.\d+$/.test(host)
      ? host.split('.').reduce((value, octet) => value * 256 + Number(octet), 0)
      : undefined;
  const [left, right] = [numeric(a), numeric(b)];
  if (left !== undefined && right !== undefined) return left - right;
  return a < b ? -1 : a > b ? 1 : 0;
}

async function mapWithConcurrency<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  async function worker(): Promise<void> {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * Finds the inference servers on the given hosts and ports, by default the well-known ports
 * on 127.0.0.1, probing them in parallel. When nothing listens the scan ends at once (closed
 * ports refuse); a port that accepts and never answers costs at most `timeoutMs`.
 *
 * Never rejects for what servers do (closed ports, timeouts, garbage are just not reported);
 * only bad options, an oversized `cidr`, or an abort reject.
 *
 * @returns The servers found, sorted by port then host.
 * @throws {DiscoveryError} `invalid_option` for a bad host, port, timeout or concurrency;
 *   `invalid_cidr` / `cidr_too_large` for a bad range. Rejects with the signal's reason when
 *   `signal` aborts.
 * @example
 * ```ts
 * const servers = await discover({ extraPorts: parseDiscoveryPorts('9000:mlx') });
 * console.log(formatDiscoveryTable(servers));
 * ```
 */
export async function discover(options: DiscoverOptions = {}): Promise<DiscoveredServer[]> {
  const timeoutMs = checkTimeout(options.timeoutMs);
  const concurrency = checkConcurrency(options.concurrency);
  const given = options.hosts ?? DEFAULT_HOSTS;
  if (!Array.isArray(given)) throw invalid('hosts must be an array, e.g. ["127.0.0.1"].');
  const hosts = [
    ...new Set([...given.map(checkHost), ...(options.cidr ? expandCidr(options.cidr) : [])]),
  ];
  const ports = portsToProbe(options);
  const { fetch, signal } = options;
  signal?.throwIfAborted();

  const targets = hosts.flatMap((host) =>
    [...ports].map(([port, label]) => ({ host, port, label })),
  );
  const found = await mapWithConcurrency(targets, concurrency, async (target) => {
    const server = await probe(`http://${hostForURL(target.host)}:${target.port}`, {
      timeoutMs,
      fetch,
      signal,
      label: target.label,
    });
    // Report the host as given (URL parsing would print ::1 as [::1]).
    return server && { ...server, host: target.host };
  });
  signal?.throwIfAborted();
  return found
    .filter((server): server is DiscoveredServer => server !== undefined)
    .sort((a, b) => a.port - b.port || compareHosts(a.host, b.host));
}
