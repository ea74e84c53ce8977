/**
 * The gateway's configuration: one zod schema, read from a YAML file, overridden by
 * `TOLLGATE_*` environment variables, overridden in turn by command-line flags.
 *
 * This is the only module that reads `process.env` (and only when no `env` is passed in), so
 * everything else receives a typed {@link Config} and tests never touch the real environment.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackendKind } from '@tollgate/backends';
import { type DiscoveryPort, expandCidr, parseDiscoveryPorts } from '@tollgate/discovery';
import { formatIssuePath } from '@tollgate/protocol';
import { applyLimitsInput, type TenantLimits, tenantLimitsInputSchema } from '@tollgate/tenancy';
import { createPricing, findNetwork, toCaip2 } from '@tollgate/x402';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';

/** pino's log levels, quietest last. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** A pino log level. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** The server kinds a backend entry may name (`type:` in YAML, `TOLLGATE_BACKEND_TYPE`). */
export const BACKEND_TYPES = [
  'openai',
  'ollama',
  'llama-server',
  'vllm',
  'lm-studio',
  'mlx',
  'llamacpp',
] as const satisfies readonly BackendKind[];

/** The default config file, looked up in the working directory. */
export const DEFAULT_CONFIG_FILE = 'tollgate.yaml';

const MiB = 1024 * 1024;

// Messages are phrased to follow "<path>: ", so a problem reads as one sentence.
function integer(min: number, max?: number) {
  const message =
    max === undefined
      ? `must be an integer of at least ${min}`
      : `must be an integer between ${min} and ${max}`;
  const schema = z.number({ error: message }).int({ error: message }).min(min, { error: message });
  return max === undefined ? schema : schema.max(max, { error: message });
}

function positiveSeconds() {
  const message = 'must be a number of seconds greater than 0';
  return z.number({ error: message }).positive({ error: message }).finite({ error: message });
}

function text(what = 'a non-empty string') {
  return z.string({ error: `must be ${what}` }).min(1, { error: `must be ${what}` });
}

function stringList(what = 'a list of non-empty strings') {
  return z.array(text(what), { error: `must be ${what}` });
}

const httpUrl = z.string({ error: 'must be an http:// or https:// URL' }).refine(
  (value) => {
    try {
      const url = new URL(value);
      return url.protocol === 'http:' || url.protocol === 'https:';
    } catch {
      return false;
    }
  },
  { error: 'must be an http:// or https:// URL, e.g. http://127.0.0.1:11434' },
);

function urlWithScheme(schemes: string[], example: string) {
  const message = `must be a ${schemes.map((scheme) => `${scheme}//`).join(' or ')} URL, e.g. ${example}`;
  return z.string({ error: message }).refine(
    (value) => {
      try {
        return schemes.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    { error: message },
  );
}

const PriceSchema = z.strictObject(
  {
    input: z
      .number({ error: 'must be a number, 0 or more' })
      .min(0, { error: 'must be a number, 0 or more' }),
    output: z
      .number({ error: 'must be a number, 0 or more' })
      .min(0, { error: 'must be a number, 0 or more' }),
  },
  { error: 'must be a map with "input" and "output" (US dollars per million tokens)' },
);

// A USD amount: YAML gives 0.001 as a number, which is turned into its decimal text exactly
// as written; a string is taken as it is. Checked as a decimal when the pricing is built.
const usd = z
  .union([z.string(), z.number().min(0)], { error: 'must be an amount of US dollars, e.g. 0.001' })
  .transform((value) => (typeof value === 'number' ? String(value) : value.trim()))
  .refine((value) => /^\d+(\.\d+)?$/.test(value), {
    error: 'must be an amount of US dollars written as a plain decimal, e.g. 0.001',
  });

const PaymentPriceSchema = z.strictObject(
  {
    per_request: usd.optional(),
    input_per_million: usd.optional(),
    output_per_million: usd.optional(),
  },
  {
    error:
      'must be a map with per_request (US dollars per request) and/or input_per_million and output_per_million (US dollars per million tokens)',
  },
);

const address = z
  .string({ error: 'must be an address: 0x and 40 hex digits' })
  .regex(/^0x[0-9a-fA-F]{40}$/, { error: 'must be an address: 0x and 40 hex digits' });

const BackendSchema = z
  .strictObject(
    {
      name: text().optional(),
      type: z
        .enum(BACKEND_TYPES, { error: `must be one of ${BACKEND_TYPES.join(', ')}` })
        .default('openai'),
      // An http(s) URL, or for type llamacpp the path of a GGUF file: checked below, by type.
      url: text('a URL, or for type llamacpp the path of a GGUF file'),
      api_key: text().optional(),
      headers: z
        .record(z.string(), z.string({ error: 'must be a string' }), {
          error: 'must be a map of header name to value',
        })
        .optional(),
      models: stringList().optional(),
      timeout_seconds: positiveSeconds().optional(),
      context_size: integer(1).optional(),
      sequences: integer(1, 64).optional(),
      threads: integer(1, 1024).optional(),
    },
    { error: 'must be a map with at least a "url"' },
  )
  .superRefine((entry, context) => {
    if (entry.type !== 'llamacpp' && !httpUrl.safeParse(entry.url).success) {
      context.addIssue({
        code: 'custom',
        path: ['url'],
        message: 'must be an http:// or https:// URL, e.g. http://127.0.0.1:11434',
      });
    }
  });

// A size in bytes: a number, or a number with a unit ("16GiB", "512 MB").
const byteSize = z
  .union([z.number().int().positive(), z.string()], {
    error: 'must be a size: bytes, or a number with a unit like "16GiB" or "512MB"',
  })
  .transform((value, context) => {
    const bytes = typeof value === 'number' ? value : parseByteSize(value);
    if (bytes === undefined) {
      context.addIssue({
        code: 'custom',
        message: `must be a size: bytes, or a number with a unit like "16GiB" or "512MB" (not "${String(value)}")`,
      });
      return z.NEVER;
    }
    return bytes;
  });

/** Where a supervised model's command takes the port the gateway picks. */
const PORT_PLACEHOLDER = `\${PORT}`;

const SUPERVISED_TYPES = ['llama-server', 'vllm', 'openai', 'ollama', 'lm-studio', 'mlx'] as const;

const ModelSchema = z
  .strictObject(
    {
      // Concurrency, for any model:
      max_concurrent: integer(1).optional(),
      max_queue: integer(0).optional(),
      queue_timeout_seconds: positiveSeconds().optional(),
      // A server the gateway starts on the first request and stops when idle:
      command: z
        .union([text(`a command line containing ${PORT_PLACEHOLDER}`), stringList()], {
          error: `must be a command line (or a list of arguments) containing ${PORT_PLACEHOLDER}`,
        })
        .optional(),
      env: z
        .record(z.string(), z.string({ error: 'must be a string' }), {
          error: 'must be a map of variable name to value',
        })
        .optional(),
      cwd: text('a directory path').optional(),
      health_path: text('a path like /health').optional(),
      type: z
        .enum(SUPERVISED_TYPES, { error: `must be one of ${SUPERVISED_TYPES.join(', ')}` })
        .optional(),
      ttl_seconds: z
        .number({ error: 'must be a number of seconds, 0 or more' })
        .min(0, { error: 'must be a number of seconds, 0 or more' })
        .optional(),
      start_timeout_seconds: positiveSeconds().optional(),
      stop_grace_seconds: positiveSeconds().optional(),
      model_path: text('the path of a GGUF file').optional(),
      memory: byteSize.optional(),
      allowed_flags: stringList().optional(),
      api_key: text().optional(),
    },
    { error: 'must be a map with "max_concurrent" and/or a "command" that serves the model' },
  )
  .superRefine((entry, context) => {
    if (entry.command === undefined && entry.max_concurrent === undefined) {
      context.addIssue({
        code: 'custom',
        message:
          'needs "max_concurrent" (a concurrency limit) or "command" (a server the gateway starts on demand), or both',
      });
    }
    if (entry.command === undefined) {
      const serverOnly = Object.keys(entry).filter(
        (key) => !['max_concurrent', 'max_queue', 'queue_timeout_seconds'].includes(key),
      );
      if (serverOnly.length > 0) {
        context.addIssue({
          code: 'custom',
          message: `${serverOnly.join(', ')} only apply to a model with a "command"`,
        });
      }
    } else {
      const command = Array.isArray(entry.command) ? entry.command.join(' ') : entry.command;
      if (!command.includes(PORT_PLACEHOLDER)) {
        context.addIssue({
          code: 'custom',
          path: ['command'],
          message: `must contain ${PORT_PLACEHOLDER}, where the gateway puts the port it chose for the server`,
        });
      }
    }
  });

function section<T extends z.ZodRawShape>(shape: T) {
  // `prefault` (not `default`) runs the empty map through the schema, so a section left out
  // still gets each of its fields' defaults.
  return z.strictObject(shape, { error: 'must be a map' }).prefault({} as never);
}

/**
 * The schema of the config file (snake_case, as written in YAML). Environment variables and
 * flags are merged into this shape before it is checked, so every source gets the same rules.
 */
export const ConfigFileSchema = z.strictObject(
  {
    host: text('a host name or IP address').default('127.0.0.1'),
    port: integer(0, 65535).default(8402),
    data_dir: text('a directory path').default('./.tollgate'),
    log_level: z
      .enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` })
      .default('info'),
    api_keys: stringList().default([]),
    admin_key: text().optional(),
    database_url: urlWithScheme(
      ['postgres:', 'postgresql:'],
      'postgres://user@127.0.0.1:5432/tollgate',
    ).optional(),
    redis_url: urlWithScheme(['redis:', 'rediss:'], 'redis://127.0.0.1:6379').optional(),
    backends: z.array(BackendSchema, { error: 'must be a list of backends' }).default([]),
    aliases: z
      .record(text('a model name'), text('a model name'), {
        error: 'must be a map of alias to model name',
      })
      .default({}),
    models: z
      .record(text('a model name'), ModelSchema, {
        error: 'must be a map of model name to its limits and/or the command that serves it',
      })
      .default({}),
    supervisor: section({
      memory_budget: byteSize.optional(),
      memory_wait_seconds: positiveSeconds().default(60),
    }),
    limits: section({ max_body_bytes: integer(1).default(10 * MiB) }),
    cors: section({
      origins: stringList('a list of origins, e.g. ["https://app.example.com"] or ["*"]').default(
        [],
      ),
      allow_headers: stringList().optional(),
      expose_headers: stringList().optional(),
    }),
    health: section({
      interval_seconds: positiveSeconds().default(10),
      failure_threshold: integer(1).default(3),
    }),
    upstream: section({ first_byte_timeout_seconds: positiveSeconds().default(600) }),
    encryption: section({
      required: z.boolean({ error: 'must be true or false' }).default(false),
    }),
    attestation: section({
      attestor: z
        .enum(['none', 'stub', 'tsm'], { error: 'must be one of none, stub, tsm' })
        .default('none'),
      tsm_root: text('a directory path').optional(),
      model_hash: z
        .string({ error: 'must be a hex string' })
        .regex(/^(?:[0-9a-fA-F]{2})*$/, { error: 'must be a hex string' })
        .optional(),
    }),
    tenancy: section({
      default_max_tokens: integer(1).default(1024),
      key_cache_seconds: z
        .number({ error: 'must be a number of seconds, 0 or more' })
        .min(0, { error: 'must be a number of seconds, 0 or more' })
        .default(10),
      prices: z
        .record(text('a model name or glob'), PriceSchema, {
          error: 'must be a map of model name (or glob) to { input, output } prices',
        })
        .default({}),
      limiter_unreachable: z
        .enum(['refuse', 'serve'], { error: 'must be one of refuse, serve' })
        .default('refuse'),
    }),
    metrics: section({
      enabled: z.boolean({ error: 'must be true or false' }).default(true),
      token: text().optional(),
    }),
    tracing: section({
      enabled: z.boolean({ error: 'must be true or false' }).default(false),
    }),
    discovery: section({
      enabled: z.boolean({ error: 'must be true or false' }).default(true),
      ports: z
        .union([z.string(), z.array(z.union([z.number(), z.string()]))], {
          error: 'must be "port[:label],..." or a list of ports (8080 or "8080:label")',
        })
        .optional(),
      cidr: text('an IPv4 range like 192.168.1.0/28').optional(),
      timeout_ms: integer(1, 60_000).optional(),
    }),
    payments: section({
      pay_to: address.optional(),
      network: text('a CAIP-2 network id, e.g. eip155:84532').default('eip155:84532'),
      asset: z
        .strictObject(
          {
            address,
            name: text(),
            version: text(),
            decimals: integer(0, 36).default(6),
          },
          { error: 'must be a map with the token address, its EIP-712 name and version' },
        )
        .optional(),
      facilitator_url: httpUrl.optional(),
      facilitator_headers: z
        .record(z.string(), z.string({ error: 'must be a string' }), {
          error: 'must be a map of header name to value',
        })
        .optional(),
      verify_only: z.boolean({ error: 'must be true or false' }).default(false),
      key_holders_pay: z.boolean({ error: 'must be true or false' }).default(false),
      max_timeout_seconds: integer(1, 3600).default(120),
      description: text().optional(),
      price: PaymentPriceSchema.prefault({}),
      models: z
        .record(text('a model name or a prefix ending in *'), PaymentPriceSchema, {
          error: 'must be a map of model name (or prefix*) to a price',
        })
        .default({}),
      payer_limits: tenantLimitsInputSchema.optional(),
    }),
    shutdown: section({
      grace_seconds: z
        .number({ error: 'must be a number of seconds, 0 or more' })
        .min(0, { error: 'must be a number of seconds, 0 or more' })
        .finite({ error: 'must be a number of seconds, 0 or more' })
        .default(30),
    }),
  },
  { error: 'the config file must hold a map of settings (key: value lines)' },
);

/** One backend, ready for `createBackend`. */
export interface BackendConfig {
  /** Unique; defaults to `<type>@<host:port>`. */
  name: string;
  type: (typeof BACKEND_TYPES)[number];
  /** Root URL of the server (for type `openai`, the API base including `/v1`). */
  url: string;
  apiKey?: string;
  headers?: Record<string, string>;
  /** Models it serves; when absent they are listed from the server. */
  models?: string[];
  /** Per-request timeout in ms. */
  timeoutMs?: number;
  /** Type llamacpp: tokens of context per sequence (default: the model's own, capped). */
  contextSize?: number;
  /** Type llamacpp: requests generated at once; more wait in a queue. */
  sequences?: number;
  /** Type llamacpp: CPU threads per evaluation. */
  threads?: number;
}

/** A model served by a server the gateway starts on demand (`models.<id>.command`). */
export interface SupervisedModelSettings {
  id: string;
  command: string | string[];
  env?: Record<string, string>;
  cwd?: string;
  healthPath?: string;
  type?: (typeof SUPERVISED_TYPES)[number];
  ttlMs?: number;
  startTimeoutMs?: number;
  stopGraceMs?: number;
  modelPath?: string;
  memoryBytes?: number;
  allowedFlags?: string[];
  apiKey?: string;
}

/** Concurrency limit of one model. */
export interface ModelLimitConfig {
  maxConcurrent: number;
  maxQueue?: number;
  queueTimeoutMs?: number;
}

/** The gateway's configuration, validated, with durations in milliseconds. */
export interface Config {
  /** Listen address. @default '127.0.0.1' */
  host: string;
  /** Listen port; 0 picks a free one. @default 8402 */
  port: number;
  /** Absolute path of the data directory. @default '<cwd>/.tollgate' */
  dataDir: string;
  /** @default 'info' */
  logLevel: LogLevel;
  /** Static client keys, each an unlimited caller. @default [] */
  apiKeys: string[];
  /** Bearer key of the admin API; unset turns the admin API off. */
  adminKey?: string;
  /** PostgreSQL URL; unset keeps records in PGlite under the data dir. */
  databaseUrl?: string;
  /** Redis URL for limiter state shared by several gateways; unset keeps it in memory. */
  redisUrl?: string;
  /** @default [] */
  backends: BackendConfig[];
  /** Alias -> model name. @default {} */
  aliases: Record<string, string>;
  /** Per-model concurrency limits. @default {} */
  models: Record<string, ModelLimitConfig>;
  /** Models whose server the gateway starts on the first request and stops when idle. @default [] */
  supervised: SupervisedModelSettings[];
  supervisor: {
    /** Memory the supervised servers may use together (GGUF estimates); none: no budget. */
    memoryBudgetBytes?: number;
    /** How long a start may wait for memory to free up. @default 60000 */
    memoryWaitMs: number;
  };
  limits: {
    /** Largest request body accepted, in bytes. @default 10485760 (10 MiB) */
    maxBodyBytes: number;
  };
  cors: {
    /** Allowed origins; empty turns CORS off, `['*']` allows any. @default [] */
    origins: string[];
    allowHeaders?: string[];
    exposeHeaders?: string[];
  };
  health: {
    /** @default 10000 */
    intervalMs: number;
    /** @default 3 */
    failureThreshold: number;
  };
  upstream: {
    /** @default 600000 */
    firstByteTimeoutMs: number;
  };
  shutdown: {
    /** How long in-flight requests may run on after shutdown starts. @default 30000 */
    graceMs: number;
  };
  encryption: {
    /** Refuse plaintext inference requests (415): only encrypted bodies are served. @default false */
    required: boolean;
  };
  attestation: {
    /** Who makes the evidence of GET /v1/attestation; `none` turns the route off. @default 'none' */
    attestor: 'none' | 'stub' | 'tsm';
    /** The configfs-tsm report root. @default '/sys/kernel/config/tsm/report' */
    tsmRoot?: string;
    /** Hex: what the operator declares it serves (e.g. the model file's SHA-256), bound into the evidence. */
    modelHash?: string;
  };
  metrics: {
    /** Serve GET /metrics (Prometheus). @default true */
    enabled: boolean;
    /** Bearer token for GET /metrics; without one only this machine may read it. */
    token?: string;
  };
  tracing: {
    /** Make OpenTelemetry spans (sent wherever the registered SDK sends them). @default false */
    enabled: boolean;
  };
  discovery: {
    /** Look for local servers when no backend is configured. @default true */
    enabled: boolean;
    /** Ports probed besides the well-known ones. @default [] */
    ports: DiscoveryPort[];
    /** Opt-in: an IPv4 range to scan too (at most 256 addresses). */
    cidr?: string;
    /** Per probe. @default the discovery package's (500 ms) */
    timeoutMs?: number;
  };
  /** x402 pay-per-request; absent when off (no `pay_to`). */
  payments?: PaymentsConfig;
  tenancy: {
    /** Completion tokens reserved for a request without max_tokens. @default 1024 */
    defaultMaxTokens: number;
    /** How long a looked-up API key is cached. @default 10000 */
    keyCacheMs: number;
    /** US dollars per million tokens, by model name or glob. @default {} */
    prices: Record<string, { input: number; output: number }>;
    /**
     * Tenants with limits while Redis does not answer: refused with 503 (fail closed), or
     * served unchecked (fail open). @default 'refuse'
     */
    limiterUnreachable: 'refuse' | 'serve';
  };
  /** The config file that was read, if any (absolute path). */
  configFile?: string;
  /**
   * Things worth a warning that are not errors: environment variables of features this version
   * does not have yet, unknown `TOLLGATE_*` variables (often typos).
   */
  notices: string[];
}

/** A price of the payments section, USD amounts as decimal strings. */
export interface PaymentPriceConfig {
  perRequest?: string;
  inputPerMillion?: string;
  outputPerMillion?: string;
}

/** x402 payments, as configured (`payments:` in YAML, `TOLLGATE_X402_*`). */
export interface PaymentsConfig {
  /** The address paid. */
  payTo: `0x${string}`;
  /** CAIP-2 network. @default 'eip155:84532' (Base Sepolia) */
  network: string;
  /** The token, when not the network's USDC. */
  asset?: { address: `0x${string}`; name: string; version: string; decimals: number };
  /** The facilitator's base URL. */
  facilitatorUrl: string;
  /** Headers sent to the facilitator (e.g. its API key). */
  facilitatorHeaders?: Record<string, string>;
  /** Verify payments without settling them. @default false */
  verifyOnly: boolean;
  /** Callers with an API key pay too (and are metered). @default false */
  keyHoldersPay: boolean;
  /** Seconds the gateway may take to settle, told to clients. @default 120 */
  maxTimeoutSeconds: number;
  description?: string;
  /** The price of a model not in `models`. @default { perRequest: '0.001' } */
  price: PaymentPriceConfig;
  /** Prices by model name or prefix (`llama3*`). */
  models: Record<string, PaymentPriceConfig>;
  /**
   * Limits each paying address gets, as a tenant's (requests and tokens per minute,
   * concurrency, models, budgets). @default {} (unlimited: each request is paid for)
   */
  payerLimits: TenantLimits;
}

/** Options for {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Command-line flags; they win over everything. */
  argv?: { config?: string; host?: string; port?: string | number };
  /** The environment. @default process.env */
  env?: Record<string, string | undefined>;
  /** Directory that relative paths are resolved against. @default process.cwd() */
  cwd?: string;
  /**
   * The config file's contents as an object (snake_case keys), used instead of reading a file.
   * Handy for tests and for embedding the gateway.
   */
  values?: Record<string, unknown>;
}

/**
 * The configuration is unusable. `problems` lists every problem found, one sentence each;
 * the message holds them all, ready to print.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly code = 'invalid_config';
  readonly problems: string[];

  constructor(problems: string[], header = 'The configuration has problems:') {
    super(`${header}\n${problems.map((problem) => `- ${problem}`).join('\n')}`);
    this.problems = problems;
  }
}

/** Tells whether a value is a {@link ConfigError}, also across duplicate installs. */
export function isConfigError(value: unknown): value is ConfigError {
  return value instanceof Error && (value as { code?: unknown }).code === 'invalid_config';
}

/** Environment variables this version reads. */
const ENV_USED = new Set([
  'TOLLGATE_CONFIG',
  'TOLLGATE_HOST',
  'TOLLGATE_PORT',
  'TOLLGATE_DATA_DIR',
  'TOLLGATE_LOG_LEVEL',
  'TOLLGATE_API_KEYS',
  'TOLLGATE_ADMIN_KEY',
  'TOLLGATE_BACKEND_URL',
  'TOLLGATE_BACKEND_TYPE',
  'TOLLGATE_DATABASE_URL',
  'TOLLGATE_REDIS_URL',
  'TOLLGATE_LIMITER_UNREACHABLE',
  'TOLLGATE_ENCRYPTION_REQUIRED',
  'TOLLGATE_DISCOVERY_PORTS',
  'TOLLGATE_METRICS_TOKEN',
  'TOLLGATE_TRACING',
  'TOLLGATE_X402_PAY_TO',
  'TOLLGATE_X402_NETWORK',
  'TOLLGATE_X402_PRICE',
  'TOLLGATE_X402_FACILITATOR_URL',
  'TOLLGATE_X402_VERIFY_ONLY',
]);

// Named but never echoed in problem lines: keys, and URLs that may carry passwords.
const SECRET_ENV = new Set([
  'TOLLGATE_API_KEYS',
  'TOLLGATE_ADMIN_KEY',
  'TOLLGATE_DATABASE_URL',
  'TOLLGATE_REDIS_URL',
  'TOLLGATE_METRICS_TOKEN',
]);

/**
 * Loads the configuration: defaults, then the YAML file (`--config`, else `TOLLGATE_CONFIG`,
 * else `./tollgate.yaml` when present), then `TOLLGATE_*` variables, then flags.
 *
 * @throws {ConfigError} listing every problem at once, each naming the setting and where its
 *   value came from, e.g. `port: must be an integer between 0 and 65535 (from TOLLGATE_PORT="abc")`.
 * @example
 * ```ts
 * const config = loadConfig({ env: { TOLLGATE_BACKEND_URL: 'http://127.0.0.1:11434', TOLLGATE_BACKEND_TYPE: 'ollama' } });
 * config.backends[0]?.type; // 'ollama'
 * ```
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const argv = options.argv ?? {};
  const problems: string[] = [];
  const notices: string[] = [];
  // Where a value came from, by path prefix ('port', 'backends[2]'), for the problem lines.
  const sources = new Map<string, string>();
  const value = (name: string): string | undefined => {
    const raw = env[name];
    // An empty variable (`TOLLGATE_PORT=` in a compose file) means "not set".
    return raw === undefined || raw.trim() === '' ? undefined : raw.trim();
  };

  // 1. The file.
  let fileLabel: string | undefined;
  let configFile: string | undefined;
  let raw: Record<string, unknown> = {};
  if (options.values) {
    raw = { ...options.values };
    fileLabel = 'config values';
  } else {
    const explicit =
      argv.config !== undefined
        ? { path: argv.config, source: `--config "${argv.config}"` }
        : value('TOLLGATE_CONFIG') !== undefined
          ? {
              path: value('TOLLGATE_CONFIG')!,
              source: `TOLLGATE_CONFIG="${value('TOLLGATE_CONFIG')}"`,
            }
          : undefined;
    const path = resolve(cwd, explicit?.path ?? DEFAULT_CONFIG_FILE);
    if (explicit && !existsSync(path)) {
      problems.push(`config file ${path} does not exist (from ${explicit.source})`);
    } else if (existsSync(path)) {
      configFile = path;
      fileLabel = explicit?.path ?? DEFAULT_CONFIG_FILE;
      const loaded = readYaml(path, fileLabel);
      if (loaded.problems.length > 0) problems.push(...loaded.problems);
      else if (loaded.value !== undefined && loaded.value !== null) {
        if (typeof loaded.value !== 'object' || Array.isArray(loaded.value)) {
          problems.push(
            `${fileLabel}: must hold a map of settings (key: value lines), not a ${Array.isArray(loaded.value) ? 'list' : typeof loaded.value}`,
          );
        } else raw = { ...(loaded.value as Record<string, unknown>) };
      }
    }
  }

  // 2. The environment.
  const fromEnv = (key: string, name: string, parsed: unknown): void => {
    raw[key] = parsed;
    sources.set(key, SECRET_ENV.has(name) ? name : `${name}="${value(name)}"`);
  };
  if (value('TOLLGATE_HOST') !== undefined)
    fromEnv('host', 'TOLLGATE_HOST', value('TOLLGATE_HOST'));
  if (value('TOLLGATE_PORT') !== undefined)
    fromEnv('port', 'TOLLGATE_PORT', numberOrText(value('TOLLGATE_PORT')!));
  if (value('TOLLGATE_DATA_DIR') !== undefined)
    fromEnv('data_dir', 'TOLLGATE_DATA_DIR', value('TOLLGATE_DATA_DIR'));
  if (value('TOLLGATE_LOG_LEVEL') !== undefined) {
    fromEnv('log_level', 'TOLLGATE_LOG_LEVEL', value('TOLLGATE_LOG_LEVEL')!.toLowerCase());
  }
  if (value('TOLLGATE_ADMIN_KEY') !== undefined)
    fromEnv('admin_key', 'TOLLGATE_ADMIN_KEY', value('TOLLGATE_ADMIN_KEY'));
  if (value('TOLLGATE_DATABASE_URL') !== undefined)
    fromEnv('database_url', 'TOLLGATE_DATABASE_URL', value('TOLLGATE_DATABASE_URL'));
  if (value('TOLLGATE_REDIS_URL') !== undefined)
    fromEnv('redis_url', 'TOLLGATE_REDIS_URL', value('TOLLGATE_REDIS_URL'));
  // A variable that sets one field of a section, keeping the file's other fields.
  const setInSection = (name: string, section: string, field: string, fieldValue: unknown) => {
    const current = raw[section];
    raw[section] = {
      ...(typeof current === 'object' && current !== null ? current : {}),
      [field]: fieldValue,
    };
    sources.set(`${section}.${field}`, SECRET_ENV.has(name) ? name : `${name}="${value(name)}"`);
  };
  const fromEnvIn = (
    name: string,
    section: string,
    field: string,
    convert: (text: string) => unknown = (text) => text,
  ) => {
    const text = value(name);
    if (text !== undefined) setInSection(name, section, field, convert(text));
  };
  fromEnvIn('TOLLGATE_ENCRYPTION_REQUIRED', 'encryption', 'required', booleanWord);
  fromEnvIn('TOLLGATE_DISCOVERY_PORTS', 'discovery', 'ports');
  fromEnvIn('TOLLGATE_LIMITER_UNREACHABLE', 'tenancy', 'limiter_unreachable');
  fromEnvIn('TOLLGATE_METRICS_TOKEN', 'metrics', 'token');
  fromEnvIn('TOLLGATE_TRACING', 'tracing', 'enabled', booleanWord);
  fromEnvIn('TOLLGATE_X402_PAY_TO', 'payments', 'pay_to');
  fromEnvIn('TOLLGATE_X402_NETWORK', 'payments', 'network');
  fromEnvIn('TOLLGATE_X402_FACILITATOR_URL', 'payments', 'facilitator_url');
  fromEnvIn('TOLLGATE_X402_VERIFY_ONLY', 'payments', 'verify_only', booleanWord);
  const price = value('TOLLGATE_X402_PRICE');
  if (price !== undefined) {
    const payments = raw.payments as Record<string, unknown> | undefined;
    const current = payments?.price;
    setInSection('TOLLGATE_X402_PRICE', 'payments', 'price', {
      ...(typeof current === 'object' && current !== null ? current : {}),
      per_request: price,
    });
    sources.set('payments.price', `TOLLGATE_X402_PRICE="${price}"`);
  }
  if (value('TOLLGATE_API_KEYS') !== undefined) {
    const keys = value('TOLLGATE_API_KEYS')!
      .split(',')
      .map((key) => key.trim())
      .filter((key) => key !== '');
    const fileKeys = Array.isArray(raw.api_keys)
      ? raw.api_keys
      : raw.api_keys === undefined
        ? []
        : undefined;
    if (fileKeys === undefined) {
      // The file's value is broken; let the schema report it against the file.
    } else {
      raw.api_keys = [...new Set([...fileKeys, ...keys])];
    }
  }
  const backendUrl = value('TOLLGATE_BACKEND_URL');
  const backendType = value('TOLLGATE_BACKEND_TYPE');
  if (backendUrl !== undefined) {
    const backends = raw.backends === undefined ? [] : raw.backends;
    if (Array.isArray(backends)) {
      const entry: Record<string, unknown> = { url: backendUrl };
      if (backendType !== undefined) entry.type = backendType.toLowerCase();
      raw.backends = [...backends, entry];
      const index = backends.length;
      sources.set(`backends[${index}].url`, `TOLLGATE_BACKEND_URL="${backendUrl}"`);
      sources.set(`backends[${index}].type`, `TOLLGATE_BACKEND_TYPE="${backendType}"`);
      sources.set(`backends[${index}]`, 'TOLLGATE_BACKEND_URL');
    }
  } else if (backendType !== undefined) {
    problems.push(
      `TOLLGATE_BACKEND_TYPE="${backendType}" is set but TOLLGATE_BACKEND_URL is not: set the server's URL too, e.g. TOLLGATE_BACKEND_URL=http://127.0.0.1:11434`,
    );
  }
  for (const name of Object.keys(env)) {
    if (!name.startsWith('TOLLGATE_') || value(name) === undefined || ENV_USED.has(name)) continue;
    const guess = closest(name, [...ENV_USED]);
    notices.push(
      `Unknown environment variable ${name} is ignored${guess ? ` (did you mean ${guess}?)` : ''}.`,
    );
  }

  // 3. Flags.
  if (argv.host !== undefined) {
    raw.host = argv.host;
    sources.set('host', `--host "${argv.host}"`);
  }
  if (argv.port !== undefined) {
    raw.port = typeof argv.port === 'number' ? argv.port : numberOrText(argv.port);
    sources.set('port', `--port "${argv.port}"`);
  }

  // 4. One check over the merged values.
  const result = ConfigFileSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      problems.push(...describeIssue(issue, sources, fileLabel));
    }
  }
  if (problems.length > 0 || !result.success) {
    throw new ConfigError(
      problems,
      configFile ? `The configuration (${configFile}) has problems:` : undefined,
    );
  }
  const config = toConfig(result.data, cwd, sources, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  result.data.backends.forEach((backend, index) => {
    // The commonest quick-start slip: a server's root URL given for type openai, whose URL is
    // the API base. Only a hint: some OpenAI-compatible APIs live under other paths.
    if (backend.type !== 'openai') return;
    const path = new URL(backend.url).pathname;
    if (path === '' || path === '/') {
      const source = sources.get(`backends[${index}].url`);
      notices.push(
        `backends[${index}].url${source ? ` (from ${source})` : ''} has no path, but for type openai it is the API base, usually ending in /v1 (e.g. ${new URL('/v1', backend.url).href}). If requests get 404s, add /v1, or set the server's type (TOLLGATE_BACKEND_TYPE=ollama, llama-server, vllm, lm-studio, mlx), whose URL is the root.`,
      );
    }
  });
  if (configFile !== undefined) config.configFile = configFile;
  config.notices = notices;
  return config;
}

type ConfigFile = z.output<typeof ConfigFileSchema>;

function toConfig(
  file: ConfigFile,
  cwd: string,
  sources: Map<string, string>,
  problems: string[],
): Config {
  const names = new Map<string, number>();
  const backends = file.backends.map((entry, index): BackendConfig => {
    // Type llamacpp names a GGUF file (a path, relative to the working directory, or a
    // file: URL) instead of a server.
    const url =
      entry.type === 'llamacpp'
        ? resolve(cwd, entry.url.startsWith('file:') ? fileURLToPath(entry.url) : entry.url)
        : entry.url;
    if (entry.type === 'llamacpp' && !existsSync(url)) {
      const source = sources.get(`backends[${index}].url`);
      problems.push(
        `backends[${index}].url: there is no file at ${url}${source ? ` (from ${source})` : ''}; type llamacpp takes the path of a GGUF model file`,
      );
    }
    const name =
      entry.name ??
      (entry.type === 'llamacpp'
        ? `llamacpp@${basename(url)}`
        : `${entry.type}@${new URL(url).host}`);
    const previous = names.get(name);
    if (previous !== undefined) {
      const source = sources.get(`backends[${index}]`);
      problems.push(
        `backends[${index}]${entry.name ? '.name' : ''}: the name "${name}" is already used by backends[${previous}]; give each backend a unique "name"${source ? ` (from ${source})` : ''}`,
      );
    }
    names.set(name, index);
    const backend: BackendConfig = { name, type: entry.type, url };
    if (entry.api_key !== undefined) backend.apiKey = entry.api_key;
    if (entry.headers !== undefined) backend.headers = entry.headers;
    if (entry.models !== undefined) backend.models = entry.models;
    if (entry.timeout_seconds !== undefined) backend.timeoutMs = entry.timeout_seconds * 1000;
    if (entry.context_size !== undefined) backend.contextSize = entry.context_size;
    if (entry.sequences !== undefined) backend.sequences = entry.sequences;
    if (entry.threads !== undefined) backend.threads = entry.threads;
    return backend;
  });
  const models: Record<string, ModelLimitConfig> = {};
  const supervised: SupervisedModelSettings[] = [];
  for (const [model, entry] of Object.entries(file.models)) {
    if (entry.max_concurrent !== undefined) {
      const limit: ModelLimitConfig = { maxConcurrent: entry.max_concurrent };
      if (entry.max_queue !== undefined) limit.maxQueue = entry.max_queue;
      if (entry.queue_timeout_seconds !== undefined)
        limit.queueTimeoutMs = entry.queue_timeout_seconds * 1000;
      models[model] = limit;
    }
    if (entry.command !== undefined) supervised.push(toSupervised(model, entry, cwd));
  }
  const cors: Config['cors'] = { origins: file.cors.origins };
  if (file.cors.allow_headers !== undefined) cors.allowHeaders = file.cors.allow_headers;
  if (file.cors.expose_headers !== undefined) cors.exposeHeaders = file.cors.expose_headers;
  const config: Config = {
    host: file.host,
    port: file.port,
    dataDir: isAbsolute(file.data_dir) ? file.data_dir : resolve(cwd, file.data_dir),
    logLevel: file.log_level,
    apiKeys: file.api_keys,
    backends,
    aliases: file.aliases,
    models,
    supervised,
    supervisor: {
      memoryWaitMs: file.supervisor.memory_wait_seconds * 1000,
      ...(file.supervisor.memory_budget !== undefined
        ? { memoryBudgetBytes: file.supervisor.memory_budget }
        : {}),
    },
    limits: { maxBodyBytes: file.limits.max_body_bytes },
    cors,
    health: {
      intervalMs: file.health.interval_seconds * 1000,
      failureThreshold: file.health.failure_threshold,
    },
    upstream: { firstByteTimeoutMs: file.upstream.first_byte_timeout_seconds * 1000 },
    shutdown: { graceMs: file.shutdown.grace_seconds * 1000 },
    encryption: { required: file.encryption.required },
    attestation: {
      attestor: file.attestation.attestor,
      ...(file.attestation.tsm_root !== undefined ? { tsmRoot: file.attestation.tsm_root } : {}),
      ...(file.attestation.model_hash !== undefined
        ? { modelHash: file.attestation.model_hash }
        : {}),
    },
    metrics: {
      enabled: file.metrics.enabled,
      ...(file.metrics.token !== undefined ? { token: file.metrics.token } : {}),
    },
    tracing: { enabled: file.tracing.enabled },
    discovery: toDiscoveryConfig(file.discovery, sources, problems),
    tenancy: {
      defaultMaxTokens: file.tenancy.default_max_tokens,
      keyCacheMs: file.tenancy.key_cache_seconds * 1000,
      prices: file.tenancy.prices,
      limiterUnreachable: file.tenancy.limiter_unreachable,
    },
    notices: [],
  };
  if (file.admin_key !== undefined) config.adminKey = file.admin_key;
  if (file.database_url !== undefined) config.databaseUrl = file.database_url;
  if (file.redis_url !== undefined) config.redisUrl = file.redis_url;
  const payments = toPaymentsConfig(file.payments, sources, problems);
  if (payments) config.payments = payments;
  return config;
}

function toSupervised(
  id: string,
  entry: ConfigFile['models'][string],
  cwd: string,
): SupervisedModelSettings {
  const model: SupervisedModelSettings = { id, command: entry.command! };
  if (entry.env !== undefined) model.env = entry.env;
  if (entry.cwd !== undefined) model.cwd = resolve(cwd, entry.cwd);
  if (entry.health_path !== undefined) model.healthPath = entry.health_path;
  if (entry.type !== undefined) model.type = entry.type;
  if (entry.ttl_seconds !== undefined) model.ttlMs = entry.ttl_seconds * 1000;
  if (entry.start_timeout_seconds !== undefined)
    model.startTimeoutMs = entry.start_timeout_seconds * 1000;
  if (entry.stop_grace_seconds !== undefined) model.stopGraceMs = entry.stop_grace_seconds * 1000;
  if (entry.model_path !== undefined) model.modelPath = resolve(cwd, entry.model_path);
  if (entry.memory !== undefined) model.memoryBytes = entry.memory;
  if (entry.allowed_flags !== undefined) model.allowedFlags = entry.allowed_flags;
  if (entry.api_key !== undefined) model.apiKey = entry.api_key;
  return model;
}

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** `"16GiB"`, `"512 MB"`, `"1024"` in bytes; undefined when it is not a size. */
function parseByteSize(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return undefined;
  const unit = BYTE_UNITS[(match[2] || 'b').toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(match[1]) * unit);
  return bytes > 0 && Number.isSafeInteger(bytes) ? bytes : undefined;
}

function toDiscoveryConfig(
  section: ConfigFile['discovery'],
  sources: Map<string, string>,
  problems: string[],
): Config['discovery'] {
  const discovery: Config['discovery'] = { enabled: section.enabled, ports: [] };
  const ports = section.ports;
  if (ports !== undefined) {
    try {
      discovery.ports = parseDiscoveryPorts(
        typeof ports === 'string' ? ports : ports.map(String).join(','),
      );
    } catch (error) {
      const source = sources.get('discovery.ports');
      problems.push(
        `discovery.ports: ${(error as Error).message}${source ? ` (from ${source})` : ''}`,
      );
    }
  }
  if (section.cidr !== undefined) {
    try {
      expandCidr(section.cidr);
      discovery.cidr = section.cidr;
    } catch (error) {
      problems.push(`discovery.cidr: ${(error as Error).message}`);
    }
  }
  if (section.timeout_ms !== undefined) discovery.timeoutMs = section.timeout_ms;
  return discovery;
}

function toPaymentsConfig(
  section: ConfigFile['payments'],
  sources: Map<string, string>,
  problems: string[],
): PaymentsConfig | undefined {
  const from = (path: string) => {
    const source = sources.get(path);
    return source ? ` (from ${source})` : '';
  };
  if (section.pay_to === undefined) {
    if (section.facilitator_url !== undefined) {
      problems.push(
        `payments.facilitator_url${from('payments.facilitator_url')} is set but payments.pay_to is not: payments stay off until you name the address that is paid (TOLLGATE_X402_PAY_TO)`,
      );
    }
    return undefined;
  }
  if (section.facilitator_url === undefined) {
    problems.push(
      `payments.facilitator_url: required when payments are on (payments.pay_to${from('payments.pay_to')} is set): the facilitator verifies and settles payments, e.g. TOLLGATE_X402_FACILITATOR_URL=https://x402.org/facilitator for Base Sepolia`,
    );
  }
  const network = toCaip2(section.network);
  if (network === undefined) {
    problems.push(
      `payments.network: "${section.network}"${from('payments.network')} is not a CAIP-2 EVM network id like eip155:84532 (Base Sepolia) or eip155:8453 (Base)`,
    );
  } else if (section.asset === undefined && findNetwork(network) === undefined) {
    problems.push(
      `payments.asset: required on ${network}, where no USDC deployment is known: give its address, EIP-712 name and version`,
    );
  }
  const toPrice = (price: z.output<typeof PaymentPriceSchema>): PaymentPriceConfig => ({
    ...(price.per_request !== undefined ? { perRequest: price.per_request } : {}),
    ...(price.input_per_million !== undefined ? { inputPerMillion: price.input_per_million } : {}),
    ...(price.output_per_million !== undefined
      ? { outputPerMillion: price.output_per_million }
      : {}),
  });
  const price = toPrice(section.price);
  const payments: PaymentsConfig = {
    payTo: section.pay_to as `0x${string}`,
    network: network ?? section.network,
    facilitatorUrl: section.facilitator_url ?? '',
    verifyOnly: section.verify_only,
    keyHoldersPay: section.key_holders_pay,
    maxTimeoutSeconds: section.max_timeout_seconds,
    // Nothing priced: the flat default per request.
    price: Object.keys(price).length > 0 ? price : { perRequest: '0.001' },
    models: Object.fromEntries(
      Object.entries(section.models).map(([model, entry]) => [model, toPrice(entry)]),
    ),
    payerLimits: section.payer_limits ? applyLimitsInput({}, section.payer_limits) : {},
  };
  if (section.asset !== undefined) {
    payments.asset = { ...section.asset, address: section.asset.address as `0x${string}` };
  }
  if (section.facilitator_headers !== undefined) {
    payments.facilitatorHeaders = section.facilitator_headers;
  }
  if (section.description !== undefined) payments.description = section.description;
  try {
    // Builds the price function once to report a price finer than the asset's decimals.
    createPricing({
      default: payments.price,
      models: payments.models,
      decimals: payments.asset?.decimals ?? 6,
    });
  } catch (error) {
    problems.push(`payments: ${(error as Error).message}${from('payments.price')}`);
  }
  return payments;
}

function readYaml(path: string, label: string): { value?: unknown; problems: string[] } {
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    return { problems: [`${label}: cannot be read (${reason})`] };
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    return {
      problems: document.errors.map((error) => {
        const position = lineCounter.linePos(error.pos[0]);
        return `${label} line ${position.line}, column ${position.col}: ${error.message.split('\n')[0]} (not valid YAML)`;
      }),
    };
  }
  try {
    return { value: document.toJS({ maxAliasCount: 100 }), problems: [] };
  } catch (error) {
    return { problems: [`${label}: ${(error as Error).message} (not valid YAML)`] };
  }
}

/** true/1/yes and false/0/no (any case); anything else is left as text for the schema to report. */
function booleanWord(raw: string): boolean | string {
  const word = raw.trim().toLowerCase();
  if (['true', '1', 'yes'].includes(word)) return true;
  if (['false', '0', 'no'].includes(word)) return false;
  return raw;
}

function numberOrText(raw: string): number | string {
  // Only a plain decimal becomes a number, so "8402abc" or "0x10" are reported, not coerced.
  return /^-?\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw.trim()) : raw;
}

function sourceOf(
  path: string,
  sources: Map<string, string>,
  fileLabel: string | undefined,
): string {
  // The longest recorded prefix wins: `backends[1].url` before `backends[1]`.
  let best: string | undefined;
  for (const key of sources.keys()) {
    if (
      (path === key || path.startsWith(`${key}.`) || path.startsWith(`${key}[`)) &&
      (!best || key.length > best.length)
    ) {
      best = key;
    }
  }
  if (best !== undefined) return ` (from ${sources.get(best)})`;
  return fileLabel ? ` (in ${fileLabel})` : '';
}

function describeIssue(
  issue: z.core.$ZodIssue,
  sources: Map<string, string>,
  fileLabel: string | undefined,
): string[] {
  const path = formatIssuePath(issue.path);
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeys(issue.path);
    return issue.keys.map((key) => {
      const full = path ? `${path}.${key}` : key;
      const guess = closest(key, known) ?? elsewhere(key, issue.path);
      const hint = guess ? `did you mean "${guess}"?` : `known keys: ${known.join(', ')}`;
      return `${full}: unknown setting (${hint})${sourceOf(full, sources, fileLabel)}`;
    });
  }
  let message = issue.message;
  if (issue.code === 'invalid_type' && issue.input === undefined) message = 'is required';
  else if (message.startsWith('Invalid input')) message = `is not valid: ${message}`;
  const where = path || 'config';
  return [`${where}: ${message}${sourceOf(path, sources, fileLabel)}`];
}

/** The keys allowed at a path of the config file, for "did you mean" hints. */
function knownKeys(path: ReadonlyArray<PropertyKey>): string[] {
  let schema: z.core.$ZodType | undefined = ConfigFileSchema;
  for (const segment of path) {
    schema = unwrap(schema);
    const def = schema?._zod.def as unknown as Record<string, unknown> | undefined;
    if (!def) return [];
    if (def.type === 'object')
      schema = (def.shape as Record<string, z.core.$ZodType>)[String(segment)];
    else if (def.type === 'array') schema = def.element as z.core.$ZodType;
    else if (def.type === 'record') schema = def.valueType as z.core.$ZodType;
    else return [];
  }
  schema = unwrap(schema);
  const def = schema?._zod.def as unknown as Record<string, unknown> | undefined;
  return def?.type === 'object' ? Object.keys(def.shape as object) : [];
}

function unwrap(schema: z.core.$ZodType | undefined): z.core.$ZodType | undefined {
  let current = schema;
  for (let depth = 0; current && depth < 10; depth += 1) {
    const def = current._zod.def as unknown as Record<string, unknown>;
    if (
      def.type === 'default' ||
      def.type === 'prefault' ||
      def.type === 'optional' ||
      def.type === 'nullable'
    ) {
      current = def.innerType as z.core.$ZodType;
    } else if (def.type === 'pipe') current = def.in as z.core.$ZodType;
    else break;
  }
  return current;
}

/** A setting of that name in another section (`max_body_bytes` -> `limits.max_body_bytes`). */
function elsewhere(key: string, path: ReadonlyArray<PropertyKey>): string | undefined {
  if (path.length > 0) return undefined;
  for (const section of knownKeys([])) {
    const guess = closest(key, knownKeys([section]));
    if (guess) return `${section}.${guess}`;
  }
  return undefined;
}

/** The candidate nearest to a (mistyped) name, if any is close; camelCase matches snake_case. */
function closest(name: string, candidates: readonly string[]): string | undefined {
  const normalize = (value: string) =>
    value
      .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
      .replace(/-/g, '_')
      .toLowerCase();
  const target = normalize(name);
  let best: { candidate: string; distance: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(target, normalize(candidate));
    if (!best || distance < best.distance) best = { candidate, distance };
  }
  if (!best) return undefined;
  return best.distance <= Math.max(2, Math.floor(target.length / 4)) ? best.candidate : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}
