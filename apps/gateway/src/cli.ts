#!/usr/bin/env node
/**
 * The `tollgate` command.
 *
 * `tollgate serve` loads the configuration, starts the gateway and stops it gracefully on
 * SIGINT/SIGTERM. Exit codes: 0 done, 1 configuration or start-up problem, 2 wrong usage.
 */
import { parseArgs } from 'node:util';
import { FIRST_KEY_HELP } from './access.js';
import { keysCommand, tenantsCommand, usageCommand } from './cli-admin.js';
import { discoverCommand } from './cli-discover.js';
import { encryptionCommand } from './cli-encryption.js';
import { isConfigError, loadConfig } from './config.js';
import { keySetPath } from './encryption.js';
import { createLogger } from './logger.js';
import { startGateway } from './server.js';
import { gatewayVersion } from './version.js';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** A stop signal this soon after the first is the same stop, delivered twice. */
const REPEAT_SIGNAL_MS = 1000;

const MAIN_HELP = `tollgate — an OpenAI-compatible gateway in front of the LLM servers you run yourself
(Ollama, llama.cpp's llama-server, vLLM, LM Studio, MLX, any OpenAI-compatible server),
with tenants, API keys, rate limits, token budgets and usage metering.

Usage:
  tollgate <command> [options]

Commands:
  serve        Start the gateway
  discover     Find the LLM servers running on this machine
  tenants      Create, list, change and delete tenants and their limits
  keys         Issue, list, rotate and revoke API keys
  usage        Show usage by tenant, model or day (table, JSON or CSV)
  encryption   Show or rotate the gateway's encryption keys

Run "tollgate <command> --help" for a command's options.

Options:
  -h, --help     Show this help
  -v, --version  Print the version

Quick start (from the repository root, with Ollama running on this machine):
  TOLLGATE_BACKEND_URL=http://127.0.0.1:11434 TOLLGATE_BACKEND_TYPE=ollama pnpm tollgate serve

Then point any OpenAI client at http://127.0.0.1:8402/v1. Give callers keys:
  pnpm tollgate tenants create my-team --rpm 60
  pnpm tollgate keys issue my-team

Configuration reference: docs/configuration.md; tenants, keys and limits: docs/tenancy.md
`;

const SERVE_HELP = `tollgate serve — start the gateway

Serves the OpenAI API (POST /v1/chat/completions, /v1/completions, /v1/embeddings,
GET /v1/models), encrypted requests (GET /v1/enclave/pubkey, /.well-known/ohttp-gateway),
the admin API (/admin, with TOLLGATE_ADMIN_KEY) and health checks (GET /health,
GET /health/ready), forwarding requests to the configured backends. Stops gracefully on
Ctrl+C or SIGTERM: in-flight requests and streams get shutdown.grace_seconds (30 by default)
to finish; a second signal, a second or more later, exits at once. SIGHUP reloads the
encryption keys (after tollgate encryption rotate).

Usage:
  tollgate serve [--config FILE] [--host HOST] [--port PORT]

Options:
  -c, --config FILE  YAML config file (default: ./tollgate.yaml when it exists)
      --host HOST    Listen address (default 127.0.0.1)
  -p, --port PORT    Listen port (default 8402; 0 picks a free port)
  -h, --help         Show this help

Environment (overrides the config file; flags override both):
  TOLLGATE_BACKEND_URL   The server to forward to: its root URL, e.g. http://127.0.0.1:11434
                         (for type openai, the API base including /v1)
  TOLLGATE_BACKEND_TYPE  openai (default), ollama, llama-server, vllm, lm-studio, mlx, or llamacpp
                         (then TOLLGATE_BACKEND_URL is the path of a GGUF file, run in-process)
                         With no backend configured, the gateway serves the servers it finds on
                         this machine ("tollgate discover" shows them).
  TOLLGATE_DISCOVERY_PORTS  More ports for discovery: "port[:label],..."
  TOLLGATE_API_KEYS      Comma-separated static keys (each an unlimited tenant), sent as
                         "Authorization: Bearer <key>". Issued keys: "tollgate keys --help".
                         With no keys and no tenants at all the gateway only runs on a loopback
                         address, open to this machine, and refuses to start on any other host.
  TOLLGATE_ADMIN_KEY     Turns on the admin API under /admin (Bearer this key)
  TOLLGATE_DATABASE_URL  postgres://... (default: the embedded database in the data dir)
  TOLLGATE_REDIS_URL     redis://... to share rate limits between several gateways
  TOLLGATE_ENCRYPTION_REQUIRED  true: serve encrypted requests only (see docs/encryption.md)
  TOLLGATE_X402_PAY_TO   An address: callers without a key pay per request with x402 (USDC);
                         needs TOLLGATE_X402_FACILITATOR_URL. Also TOLLGATE_X402_NETWORK
                         (default eip155:84532, Base Sepolia test money), TOLLGATE_X402_PRICE
                         (USD per request, default 0.001), TOLLGATE_X402_VERIFY_ONLY (see docs/payments.md)
  TOLLGATE_HOST, TOLLGATE_PORT, TOLLGATE_LOG_LEVEL, TOLLGATE_DATA_DIR, TOLLGATE_CONFIG

Examples:
  # Ollama on this machine:
  TOLLGATE_BACKEND_URL=http://127.0.0.1:11434 TOLLGATE_BACKEND_TYPE=ollama pnpm tollgate serve

  # llama-server, reachable from the network, with keys:
  TOLLGATE_BACKEND_URL=http://127.0.0.1:8080 TOLLGATE_BACKEND_TYPE=llama-server \\
  TOLLGATE_API_KEYS=sk-team-1,sk-team-2 pnpm tollgate serve --host 0.0.0.0

  # Strangers pay $0.001 a request in test USDC:
  TOLLGATE_BACKEND_URL=http://127.0.0.1:11434 TOLLGATE_BACKEND_TYPE=ollama \\
  TOLLGATE_X402_PAY_TO=0xYourAddress TOLLGATE_X402_FACILITATOR_URL=https://x402.org/facilitator \\
  pnpm tollgate serve --host 0.0.0.0

  # Several backends, aliases and limits from a file:
  pnpm tollgate serve --config ./tollgate.yaml

Configuration reference: docs/configuration.md
`;

function usageError(message: string, help: 'main' | 'serve'): number {
  process.stderr.write(
    `tollgate: ${message}\nRun "tollgate ${help === 'serve' ? 'serve ' : ''}--help" for usage.\n`,
  );
  return EXIT_USAGE;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(MAIN_HELP);
    return EXIT_OK;
  }
  if (command === '-v' || command === '--version') {
    process.stdout.write(`${gatewayVersion()}\n`);
    return EXIT_OK;
  }
  if (command.startsWith('-')) return usageError(`unknown option "${command}"`, 'main');
  const io = {
    out: (text: string) => process.stdout.write(text),
    err: (text: string) => process.stderr.write(text),
  };
  switch (command) {
    case 'serve':
      return serveCommand(rest);
    case 'tenants':
      return tenantsCommand(rest, io);
    case 'keys':
      return keysCommand(rest, io);
    case 'usage':
      return usageCommand(rest, io);
    case 'encryption':
      return encryptionCommand(rest, io);
    case 'discover':
      return discoverCommand(rest, io);
    default:
      return usageError(
        `unknown command "${command}" (available: serve, discover, tenants, keys, usage, encryption)`,
        'main',
      );
  }
}

async function serveCommand(args: string[]): Promise<number> {
  let values: { config?: string; host?: string; port?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        host: { type: 'string' },
        port: { type: 'string', short: 'p' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (error) {
    return usageError((error as Error).message, 'serve');
  }
  if (values.help) {
    process.stdout.write(SERVE_HELP);
    return EXIT_OK;
  }

  let config: ReturnType<typeof loadConfig>;
  try {
    const argv: { config?: string; host?: string; port?: string } = {};
    if (values.config !== undefined) argv.config = values.config;
    if (values.host !== undefined) argv.host = values.host;
    if (values.port !== undefined) argv.port = values.port;
    config = loadConfig({ argv });
  } catch (error) {
    if (!isConfigError(error)) throw error;
    process.stderr.write(`tollgate: ${error.message}\n`);
    return EXIT_FAILURE;
  }

  const logger = createLogger({ level: config.logLevel });
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(config, { logger });
  } catch (error) {
    if (!isConfigError(error)) throw error;
    process.stderr.write(`tollgate: ${error.message}\n`);
    return EXIT_FAILURE;
  }

  // Signals are handled from the moment the gateway runs, not after the start-up lines: a
  // SIGTERM while backends are probed must still drain and close the store cleanly.
  const stopped = new Promise<number>((resolve) => {
    let stoppingSince: number | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stoppingSince !== undefined) {
        // One stop sent to the whole process group (systemd, timeout, kill -- -pgid) arrives
        // twice: directly, and relayed by the tsx or pnpm in front. Only a later one is a
        // second request.
        if (Date.now() - stoppingSince < REPEAT_SIGNAL_MS) return;
        process.stderr.write(`tollgate: ${signal} again, exiting now\n`);
        process.exit(EXIT_FAILURE);
      }
      stoppingSince = Date.now();
      process.stderr.write(
        `tollgate: ${signal} received, finishing ${gateway.inFlight()} in-flight request(s) (up to ${config.shutdown.graceMs / 1000}s; signal again to exit now)\n`,
      );
      gateway.close().then(
        () => resolve(EXIT_OK),
        (error: unknown) => {
          logger.error(
            { error: error instanceof Error ? error.message : String(error) },
            'shutdown failed',
          );
          resolve(EXIT_FAILURE);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  // SIGHUP: serve the key file as it is now (after `tollgate encryption rotate`).
  process.on('SIGHUP', () => {
    try {
      const set = gateway.reloadEncryptionKeys();
      const current = set.keys[0];
      logger.info(
        { file: keySetPath(config.dataDir), current: current?.id, keys: set.keys.length },
        'encryption keys reloaded',
      );
    } catch (error) {
      const message = isConfigError(error)
        ? error.problems.join(' ')
        : error instanceof Error
          ? error.message
          : String(error);
      logger.error(
        { error: message },
        'encryption keys not reloaded: still serving the previous ones',
      );
      process.stderr.write(`tollgate: SIGHUP: encryption keys not reloaded: ${message}\n`);
    }
  });

  if (config.configFile) logger.info({ configFile: config.configFile }, 'configuration loaded');
  for (const notice of config.notices) process.stderr.write(`tollgate: warning: ${notice}\n`);
  if (gateway.openAccess) {
    // startGateway refuses this on any non-loopback address, so only this machine is exposed.
    process.stderr.write(
      `tollgate: WARNING: there are no API keys yet, so every program on this machine can use the gateway without one.\n${FIRST_KEY_HELP.replace(/^/gm, 'tollgate:   ')}\n`,
    );
  }
  logger.info({ url: gateway.url }, 'listening');
  process.stderr.write(
    `tollgate: listening on ${gateway.url} (OpenAI base URL: ${gateway.url}/v1)\n`,
  );
  if (gateway.discoveryRan && gateway.discovered.length === 0) {
    const advice =
      'No backend is configured and discovery found no inference server on this machine, so requests cannot be served yet (GET /health/ready answers 503). ' +
      'Start one (e.g. "ollama serve") and restart the gateway, add its port with TOLLGATE_DISCOVERY_PORTS=port[:label], or set TOLLGATE_BACKEND_URL (and TOLLGATE_BACKEND_TYPE), ' +
      'e.g. TOLLGATE_BACKEND_URL=http://127.0.0.1:11434 TOLLGATE_BACKEND_TYPE=ollama, or list backends in tollgate.yaml (see docs/backends.md).';
    logger.warn(advice);
    process.stderr.write(`tollgate: ${advice}\n`);
  } else if (gateway.router.status().length === 0) {
    const advice =
      'No backend is configured and discovery is off, so requests cannot be served yet (GET /health/ready answers 503). ' +
      'Set TOLLGATE_BACKEND_URL (and TOLLGATE_BACKEND_TYPE) or list backends in tollgate.yaml (see docs/backends.md).';
    logger.warn(advice);
    process.stderr.write(`tollgate: ${advice}\n`);
  } else {
    // Probe once now so the start-up lines say what is actually reachable.
    await gateway.router.refresh().catch(() => {});
    if (gateway.discoveryRan) {
      const found = `no backend is configured: serving the ${gateway.discovered.length} server(s) discovery found on this machine (tollgate discover lists them; configure backends to choose)`;
      logger.info({ discovered: gateway.discovered.map((server) => server.url) }, found);
      process.stderr.write(`tollgate: ${found}\n`);
    }
    for (const backend of gateway.router.status()) {
      const entry = config.backends.find((candidate) => candidate.name === backend.name);
      const url =
        entry?.url ??
        gateway.discovered.find(
          (server) => backend.name === `${server.type}@${server.host}:${server.port}`,
        )?.url;
      logger.info(
        {
          backend: backend.name,
          kind: backend.kind,
          url,
          state: backend.state,
          models: backend.models,
          detail: backend.lastHealth?.ok === false ? backend.lastHealth.detail : undefined,
        },
        'backend',
      );
      process.stderr.write(
        `tollgate: backend ${backend.name} (${backend.kind}, ${url ?? '?'}): ${backend.state}, models: ${backend.models.join(', ') || 'none yet'}\n`,
      );
    }
  }

  return stopped;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    // Not a configuration problem: a bug. Say so plainly; the details help a bug report.
    process.stderr.write(
      `tollgate: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(EXIT_FAILURE);
  },
);
