/**
 * `tollgate discover`: the inference servers running on this machine (or, opt-in, in a
 * range of addresses), as a table or JSON.
 */
import { parseArgs } from 'node:util';
import {
  type DiscoverOptions,
  discover,
  formatDiscoveryTable,
  isDiscoveryError,
  parseDiscoveryPorts,
  WELL_KNOWN_PORTS,
} from '@tollgate/discovery';
import type { Output } from './cli-admin.js';
import { isConfigError, loadConfig } from './config.js';

export const DISCOVER_HELP = `tollgate discover — find the LLM servers running nearby

Usage:
  tollgate discover [--ports PORTS] [--cidr RANGE] [--timeout-ms N] [--json]

  Probes this machine's well-known ports (${WELL_KNOWN_PORTS.join(', ')}) in parallel,
  plus TOLLGATE_DISCOVERY_PORTS and --ports, and tells each server's type from what it answers:
  ollama, llama-server, vllm, lm-studio, or openai (any other OpenAI-compatible API).
  "tollgate serve" with no backend configured serves what this finds.

Options:
      --ports PORTS     More ports: "port[:label],...", e.g. 9000:vllm-box,9001
      --cidr RANGE      Also probe every address of an IPv4 range (at most 256), e.g. 192.168.1.0/28.
                        Only scan networks you run.
      --timeout-ms N    How long one probe may take (default 500)
  -c, --config FILE     YAML config file (its discovery settings apply)
      --json            Print a JSON array: url, host, port, type, version, models, healthy
  -h, --help            Show this help
`;

/** `tollgate discover ...` */
export async function discoverCommand(args: string[], io: Output): Promise<number> {
  let values: {
    ports?: string;
    cidr?: string;
    'timeout-ms'?: string;
    config?: string;
    json?: boolean;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        ports: { type: 'string' },
        cidr: { type: 'string' },
        'timeout-ms': { type: 'string' },
        config: { type: 'string', short: 'c' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (error) {
    io.err(`tollgate: ${(error as Error).message}\nRun "tollgate discover --help" for usage.\n`);
    return 2;
  }
  if (values.help) {
    io.out(DISCOVER_HELP);
    return 0;
  }
  let options: DiscoverOptions;
  try {
    const config = loadConfig(
      values.config !== undefined ? { argv: { config: values.config } } : {},
    );
    const extraPorts = [
      ...config.discovery.ports,
      ...(values.ports !== undefined ? parseDiscoveryPorts(values.ports) : []),
    ];
    const cidr = values.cidr ?? config.discovery.cidr;
    const timeoutText = values['timeout-ms'];
    const timeoutMs = timeoutText === undefined ? config.discovery.timeoutMs : Number(timeoutText);
    if (timeoutMs !== undefined && (!Number.isInteger(timeoutMs) || timeoutMs < 1)) {
      io.err(
        `tollgate: --timeout-ms must be a whole number of milliseconds, not "${timeoutText}"\n`,
      );
      return 2;
    }
    options = {
      ...(extraPorts.length > 0 ? { extraPorts } : {}),
      ...(cidr !== undefined ? { cidr } : {}),
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    };
  } catch (error) {
    if (!isConfigError(error) && !isDiscoveryError(error)) throw error;
    io.err(`tollgate: ${error.message}\n`);
    return isDiscoveryError(error) ? 2 : 1;
  }
  let servers: Awaited<ReturnType<typeof discover>>;
  try {
    servers = await discover(options);
  } catch (error) {
    if (!isDiscoveryError(error)) throw error;
    io.err(`tollgate: ${error.message}\n`);
    return 2;
  }
  if (values.json) {
    // Every key always present, as documented: an unknown version is null.
    const rows = servers.map((server) => ({
      url: server.url,
      host: server.host,
      port: server.port,
      type: server.type,
      version: server.version ?? null,
      models: server.models,
      healthy: server.healthy,
      ...(server.label !== undefined ? { label: server.label } : {}),
    }));
    io.out(`${JSON.stringify(rows, null, 2)}\n`);
  } else {
    io.out(`${formatDiscoveryTable(servers)}\n`);
  }
  return 0;
}
