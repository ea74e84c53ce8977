import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, isConfigError, type LoadConfigOptions, loadConfig } from './config.js';

const directories: string[] = [];

function directory(files: Record<string, string> = {}): string {
  const path = mkdtempSync(join(tmpdir(), 'tollgate-config-'));
  directories.push(path);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(path, name), content);
  return path;
}

afterEach(() => {
  for (const path of directories.splice(0)) rmSync(path, { recursive: true, force: true });
});

function problemsOf(options: LoadConfigOptions): string[] {
  try {
    loadConfig(options);
  } catch (error) {
    expect(isConfigError(error)).toBe(true);
    return (error as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('behavior: defaults when there is no file and no environment', () => {
    const cwd = directory();
    const config = loadConfig({ env: {}, cwd });
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 8402,
      dataDir: join(cwd, '.tollgate'),
      logLevel: 'info',
      apiKeys: [],
      backends: [],
      aliases: {},
      models: {},
      limits: { maxBodyBytes: 10 * 1024 * 1024 },
      cors: { origins: [] },
      health: { intervalMs: 10_000, failureThreshold: 3 },
      upstream: { firstByteTimeoutMs: 600_000 },
      shutdown: { graceMs: 30_000 },
      notices: [],
    });
    expect(config.configFile).toBeUndefined();
    expect(config.adminKey).toBeUndefined();
  });

  it('behavior: ./tollgate.yaml is read when present, with durations in ms', () => {
    const cwd = directory({
      'tollgate.yaml': [
        'port: 9000',
        'log_level: debug',
        'backends:',
        '  - name: box',
        '    type: ollama',
        '    url: http://127.0.0.1:11434',
        '    models: [llama3]',
        '    timeout_seconds: 2.5',
        '    api_key: upstream-secret',
        'aliases:',
        '  fast: llama3',
        'models:',
        '  llama3: { max_concurrent: 2, max_queue: 5, queue_timeout_seconds: 1 }',
        'limits: { max_body_bytes: 2048 }',
        'cors: { origins: ["*"] }',
        'health: { interval_seconds: 0.5 }',
        'upstream: { first_byte_timeout_seconds: 30 }',
        'shutdown: { grace_seconds: 0 }',
      ].join('\n'),
    });
    const config = loadConfig({ env: {}, cwd });
    expect(config.configFile).toBe(join(cwd, 'tollgate.yaml'));
    expect(config.port).toBe(9000);
    expect(config.logLevel).toBe('debug');
    expect(config.backends).toEqual([
      {
        name: 'box',
        type: 'ollama',
        url: 'http://127.0.0.1:11434',
        models: ['llama3'],
        timeoutMs: 2500,
        apiKey: 'upstream-secret',
      },
    ]);
    expect(config.aliases).toEqual({ fast: 'llama3' });
    expect(config.models).toEqual({
      llama3: { maxConcurrent: 2, maxQueue: 5, queueTimeoutMs: 1000 },
    });
    expect(config.limits.maxBodyBytes).toBe(2048);
    expect(config.cors.origins).toEqual(['*']);
    expect(config.health).toEqual({ intervalMs: 500, failureThreshold: 3 });
    expect(config.upstream.firstByteTimeoutMs).toBe(30_000);
    expect(config.shutdown.graceMs).toBe(0);
  });

  it('behavior: the environment overrides the file and flags override the environment', () => {
    const cwd = directory({
      'tollgate.yaml': 'host: 10.0.0.1\nport: 9000\nlog_level: debug\ndata_dir: /var/lib/tg\n',
    });
    const fromEnv = loadConfig({ env: { TOLLGATE_PORT: '9100', TOLLGATE_LOG_LEVEL: 'WARN' }, cwd });
    expect(fromEnv).toMatchObject({
      host: '10.0.0.1',
      port: 9100,
      logLevel: 'warn',
      dataDir: '/var/lib/tg',
    });
    const fromFlags = loadConfig({
      env: { TOLLGATE_PORT: '9100', TOLLGATE_HOST: '10.0.0.2', TOLLGATE_DATA_DIR: 'data' },
      argv: { port: '0', host: '127.0.0.1' },
      cwd,
    });
    expect(fromFlags).toMatchObject({ host: '127.0.0.1', port: 0, dataDir: join(cwd, 'data') });
  });

  it('behavior: TOLLGATE_CONFIG names the file, and --config wins over it', () => {
    const cwd = directory({
      'a.yaml': 'port: 1111\n',
      'b.yaml': 'port: 2222\n',
      'tollgate.yaml': 'port: 3333\n',
    });
    expect(loadConfig({ env: { TOLLGATE_CONFIG: 'a.yaml' }, cwd }).port).toBe(1111);
    expect(
      loadConfig({ env: { TOLLGATE_CONFIG: 'a.yaml' }, argv: { config: 'b.yaml' }, cwd }).port,
    ).toBe(2222);
  });

  it('error: a named config file that does not exist', () => {
    const cwd = directory();
    const problems = problemsOf({ env: { TOLLGATE_CONFIG: 'missing.yaml' }, cwd });
    expect(problems).toEqual([
      expect.stringContaining('does not exist (from TOLLGATE_CONFIG="missing.yaml")'),
    ]);
    expect(problemsOf({ env: {}, argv: { config: 'gone.yaml' }, cwd })[0]).toContain('--config');
  });

  it('behavior: TOLLGATE_API_KEYS is split on commas, trimmed, and merged with the file', () => {
    const cwd = directory({ 'tollgate.yaml': 'api_keys: [file-key, shared]\n' });
    const config = loadConfig({ env: { TOLLGATE_API_KEYS: ' env-1 , env-2,,shared ,' }, cwd });
    expect(config.apiKeys).toEqual(['file-key', 'shared', 'env-1', 'env-2']);
  });

  it('behavior: TOLLGATE_ADMIN_KEY is kept', () => {
    expect(
      loadConfig({ env: { TOLLGATE_ADMIN_KEY: 'admin-secret' }, cwd: directory() }).adminKey,
    ).toBe('admin-secret');
  });

  it('behavior: TOLLGATE_BACKEND_URL adds a backend, openai unless TOLLGATE_BACKEND_TYPE says otherwise', () => {
    const cwd = directory({
      'tollgate.yaml': 'backends:\n  - { name: first, url: "http://127.0.0.1:8000/v1" }\n',
    });
    const plain = loadConfig({ env: { TOLLGATE_BACKEND_URL: 'http://127.0.0.1:9999/v1' }, cwd });
    expect(plain.backends).toEqual([
      { name: 'first', type: 'openai', url: 'http://127.0.0.1:8000/v1' },
      { name: 'openai@127.0.0.1:9999', type: 'openai', url: 'http://127.0.0.1:9999/v1' },
    ]);
    const typed = loadConfig({
      env: { TOLLGATE_BACKEND_URL: 'http://127.0.0.1:11434', TOLLGATE_BACKEND_TYPE: 'Ollama' },
      cwd: directory(),
    });
    expect(typed.backends).toEqual([
      { name: 'ollama@127.0.0.1:11434', type: 'ollama', url: 'http://127.0.0.1:11434' },
    ]);
  });

  it('behavior: an openai backend URL without /v1 gets a notice, other types do not', () => {
    const bare = loadConfig({
      env: { TOLLGATE_BACKEND_URL: 'http://127.0.0.1:8080' },
      cwd: directory(),
    });
    expect(bare.notices).toEqual([expect.stringContaining('http://127.0.0.1:8080/v1')]);
    const typed = loadConfig({
      env: { TOLLGATE_BACKEND_URL: 'http://127.0.0.1:8080', TOLLGATE_BACKEND_TYPE: 'llama-server' },
      cwd: directory(),
    });
    expect(typed.notices).toEqual([]);
    const based = loadConfig({
      env: { TOLLGATE_BACKEND_URL: 'http://127.0.0.1:8080/v1' },
      cwd: directory(),
    });
    expect(based.notices).toEqual([]);
  });

  it('error: TOLLGATE_BACKEND_TYPE without a URL, or of an unknown type', () => {
    expect(problemsOf({ env: { TOLLGATE_BACKEND_TYPE: 'ollama' }, cwd: directory() })[0]).toContain(
      'TOLLGATE_BACKEND_URL',
    );
    const problems = problemsOf({
      env: { TOLLGATE_BACKEND_URL: 'http://127.0.0.1:1', TOLLGATE_BACKEND_TYPE: 'olama' },
      cwd: directory(),
    });
    expect(problems).toEqual([
      expect.stringMatching(
        /^backends\[0\]\.type: must be one of .*\(from TOLLGATE_BACKEND_TYPE="olama"\)$/,
      ),
    ]);
  });

  it('error: every problem is reported at once, each with where its value came from', () => {
    const cwd = directory({
      'tollgate.yaml':
        'log_level: loud\nbackends:\n  - url: not-a-url\nmodels:\n  llama3: { max_queue: -1 }\n',
    });
    let caught: unknown;
    try {
      loadConfig({ env: { TOLLGATE_PORT: 'abc' }, cwd });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const error = caught as ConfigError;
    expect(error.problems).toEqual(
      expect.arrayContaining([
        'port: must be an integer between 0 and 65535 (from TOLLGATE_PORT="abc")',
        expect.stringMatching(
          /^log_level: must be one of fatal, error, warn, info, debug, trace, silent \(in tollgate\.yaml\)$/,
        ),
        expect.stringMatching(/^backends\[0\]\.url: must be an http:\/\/ or https:\/\/ URL/),
        expect.stringMatching(
          /^models\.llama3: needs "max_concurrent" \(a concurrency limit\) or "command"/,
        ),
        expect.stringMatching(/^models\.llama3\.max_queue: must be an integer of at least 0/),
      ]),
    );
    expect(error.problems).toHaveLength(5);
    expect(error.message).toContain(
      '\n- port: must be an integer between 0 and 65535 (from TOLLGATE_PORT="abc")',
    );
    expect(error.message).not.toMatch(/\n\s+at /);
  });

  it('error: a port out of range from a flag names the flag', () => {
    expect(problemsOf({ env: {}, argv: { port: '70000' }, cwd: directory() })).toEqual([
      'port: must be an integer between 0 and 65535 (from --port "70000")',
    ]);
  });

  it('error: unknown keys are named, with a suggestion when one is close', () => {
    const cwd = directory({
      'tollgate.yaml':
        'prot: 1\ncors: { origin: ["*"] }\nmaxBodyBytes: 5\nbackends:\n  - { url: "http://a:1", kind: ollama }\n',
    });
    const problems = problemsOf({ env: {}, cwd });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^prot: unknown setting \(did you mean "port"\?\)/),
        expect.stringMatching(/^cors\.origin: unknown setting \(did you mean "origins"\?\)/),
        expect.stringMatching(
          /^maxBodyBytes: unknown setting \(did you mean "limits\.max_body_bytes"\?\)/,
        ),
        expect.stringMatching(/^backends\[0\]\.kind: unknown setting/),
      ]),
    );
  });

  it('error: invalid YAML is reported with its line, not thrown raw', () => {
    const cwd = directory({ 'tollgate.yaml': 'port: 1\nhost: "unterminated\n' });
    const problems = problemsOf({ env: {}, cwd });
    expect(problems[0]).toMatch(/^tollgate\.yaml line \d+, column \d+: .*\(not valid YAML\)$/);
  });

  it('error: a config file that is a list, not a map', () => {
    const cwd = directory({ 'tollgate.yaml': '- port: 1\n' });
    expect(problemsOf({ env: {}, cwd })[0]).toContain('must hold a map of settings');
  });

  it('behavior: an empty config file means defaults', () => {
    const cwd = directory({ 'tollgate.yaml': '# nothing yet\n' });
    expect(loadConfig({ env: {}, cwd }).port).toBe(8402);
  });

  it('error: two backends with the same name', () => {
    const problems = problemsOf({
      env: { TOLLGATE_BACKEND_URL: 'http://127.0.0.1:11434' },
      values: { backends: [{ url: 'http://127.0.0.1:11434' }] },
    });
    expect(problems[0]).toMatch(
      /backends\[1\]: the name "openai@127\.0\.0\.1:11434" is already used by backends\[0\]/,
    );
  });

  it('behavior: unknown variables are ignored with a notice that suggests the closest name', () => {
    const config = loadConfig({
      env: { TOLLGATE_API_KEY: 'typo', TOLLGATE_DISCOVERY_PORT: '9000', OTHER: 'ignored' },
      cwd: directory(),
    });
    expect(config.notices).toEqual([
      'Unknown environment variable TOLLGATE_API_KEY is ignored (did you mean TOLLGATE_API_KEYS?).',
      'Unknown environment variable TOLLGATE_DISCOVERY_PORT is ignored (did you mean TOLLGATE_DISCOVERY_PORTS?).',
    ]);
    expect(config.apiKeys).toEqual([]);
  });

  describe('discovery', () => {
    it('behavior: on by default; TOLLGATE_DISCOVERY_PORTS adds ports with labels', () => {
      expect(loadConfig({ env: {}, cwd: directory() }).discovery).toEqual({
        enabled: true,
        ports: [],
      });
      const config = loadConfig({
        env: { TOLLGATE_DISCOVERY_PORTS: '9000:vllm-box, 9001' },
        cwd: directory(),
      });
      expect(config.discovery.ports).toEqual([{ port: 9000, label: 'vllm-box' }, { port: 9001 }]);
    });

    it('behavior: the file takes a list of ports, a CIDR range, a timeout, or turns it off', () => {
      const cwd = directory({
        'tollgate.yaml':
          'discovery:\n  enabled: false\n  ports: [9000, "9001:lab"]\n  cidr: 10.0.0.0/30\n  timeout_ms: 200\n',
      });
      expect(loadConfig({ env: {}, cwd }).discovery).toEqual({
        enabled: false,
        ports: [{ port: 9000 }, { port: 9001, label: 'lab' }],
        cidr: '10.0.0.0/30',
        timeoutMs: 200,
      });
    });

    it('error: bad ports and too large a range are refused', () => {
      expect(
        problemsOf({ env: { TOLLGATE_DISCOVERY_PORTS: '99999' }, cwd: directory() })[0],
      ).toMatch(/^discovery\.ports: .*\(from TOLLGATE_DISCOVERY_PORTS="99999"\)$/);
      const cwd = directory({ 'tollgate.yaml': 'discovery:\n  cidr: 10.0.0.0/8\n' });
      expect(problemsOf({ env: {}, cwd })[0]).toMatch(/^discovery\.cidr: /);
    });
  });

  describe('type llamacpp', () => {
    it('behavior: TOLLGATE_BACKEND_URL is the path of a GGUF file, resolved against the working directory', () => {
      const cwd = directory({ 'tiny.gguf': 'GGUF' });
      const config = loadConfig({
        env: { TOLLGATE_BACKEND_URL: 'tiny.gguf', TOLLGATE_BACKEND_TYPE: 'llamacpp' },
        cwd,
      });
      expect(config.backends).toEqual([
        { name: 'llamacpp@tiny.gguf', type: 'llamacpp', url: join(cwd, 'tiny.gguf') },
      ]);
      expect(config.notices).toEqual([]);
    });

    it('behavior: the file takes a file: URL, a context size and a number of sequences', () => {
      const cwd = directory({ 'tiny.gguf': 'GGUF' });
      const yaml = `backends:\n  - type: llamacpp\n    url: file://${join(cwd, 'tiny.gguf')}\n    context_size: 2048\n    sequences: 2\n`;
      writeFileSync(join(cwd, 'tollgate.yaml'), yaml);
      expect(loadConfig({ env: {}, cwd }).backends[0]).toMatchObject({
        url: join(cwd, 'tiny.gguf'),
        contextSize: 2048,
        sequences: 2,
      });
    });

    it('error: a missing model file, and a path given for a server type, say what is expected', () => {
      const cwd = directory();
      expect(
        problemsOf({
          env: { TOLLGATE_BACKEND_URL: 'missing.gguf', TOLLGATE_BACKEND_TYPE: 'llamacpp' },
          cwd,
        }),
      ).toEqual([
        `backends[0].url: there is no file at ${join(cwd, 'missing.gguf')} (from TOLLGATE_BACKEND_URL="missing.gguf"); type llamacpp takes the path of a GGUF model file`,
      ]);
      expect(
        problemsOf({
          env: { TOLLGATE_BACKEND_URL: 'models/x.gguf', TOLLGATE_BACKEND_TYPE: 'ollama' },
          cwd,
        }),
      ).toEqual([expect.stringContaining('backends[0].url: must be an http:// or https:// URL')]);
    });
  });

  describe('payments', () => {
    const payTo = '0x209693Bc6afc0C5328bA36FaF03C514EF312287C';

    it('behavior: off unless pay_to is set', () => {
      expect(loadConfig({ env: {}, cwd: directory() }).payments).toBeUndefined();
    });

    it('behavior: the TOLLGATE_X402_* variables turn payments on with the defaults of the rest', () => {
      const config = loadConfig({
        env: {
          TOLLGATE_X402_PAY_TO: payTo,
          TOLLGATE_X402_FACILITATOR_URL: 'http://127.0.0.1:4020',
          TOLLGATE_X402_PRICE: '0.002',
          TOLLGATE_X402_VERIFY_ONLY: 'yes',
        },
        cwd: directory(),
      });
      expect(config.payments).toEqual({
        payTo,
        network: 'eip155:84532',
        facilitatorUrl: 'http://127.0.0.1:4020',
        verifyOnly: true,
        keyHoldersPay: false,
        maxTimeoutSeconds: 120,
        price: { perRequest: '0.002' },
        models: {},
        payerLimits: {},
      });
      expect(config.notices).toEqual([]);
    });

    it('behavior: the file sets prices per model; TOLLGATE_X402_PRICE overrides only the flat price', () => {
      const cwd = directory({
        'tollgate.yaml': [
          'payments:',
          `  pay_to: "${payTo}"`,
          '  facilitator_url: https://facilitator.example/x402',
          '  network: base',
          '  key_holders_pay: true',
          '  price:',
          '    per_request: 0.001',
          '    output_per_million: 2',
          '  models:',
          '    "llama3*": { per_request: "0.0005", input_per_million: 0.1 }',
          '  payer_limits: { requests_per_minute: 30, max_concurrent: 2, models: ["llama3*"] }',
          '',
        ].join('\n'),
      });
      const config = loadConfig({ env: { TOLLGATE_X402_PRICE: '0.003' }, cwd });
      expect(config.payments).toMatchObject({
        network: 'eip155:8453',
        keyHoldersPay: true,
        price: { perRequest: '0.003', outputPerMillion: '2' },
        models: { 'llama3*': { perRequest: '0.0005', inputPerMillion: '0.1' } },
        payerLimits: { requestsPerMinute: 30, maxConcurrent: 2, models: ['llama3*'] },
      });
    });

    it("error: payer_limits are checked as a tenant's limits are", () => {
      const problems = problemsOf({
        values: {
          payments: {
            pay_to: payTo,
            facilitator_url: 'http://f',
            payer_limits: { requests_per_minute: 0, per_hour: 5 },
          },
        },
        env: {},
        cwd: directory(),
      });
      expect(problems.join('\n')).toMatch(/payments\.payer_limits\.requests_per_minute/);
      expect(problems.join('\n')).toMatch(/payments\.payer_limits.*per_hour/);
    });

    it.each([
      [{ TOLLGATE_X402_PAY_TO: payTo }, 'payments.facilitator_url: required when payments are on'],
      [
        { TOLLGATE_X402_PAY_TO: '0xabc', TOLLGATE_X402_FACILITATOR_URL: 'http://f' },
        'payments.pay_to: must be an address',
      ],
      [{ TOLLGATE_X402_FACILITATOR_URL: 'http://f' }, 'payments.pay_to is not'],
      [
        { TOLLGATE_X402_PAY_TO: payTo, TOLLGATE_X402_FACILITATOR_URL: 'ftp://f' },
        'payments.facilitator_url: must be an http',
      ],
      [
        {
          TOLLGATE_X402_PAY_TO: payTo,
          TOLLGATE_X402_FACILITATOR_URL: 'http://f',
          TOLLGATE_X402_NETWORK: 'solana',
        },
        'payments.network: "solana"',
      ],
      [
        {
          TOLLGATE_X402_PAY_TO: payTo,
          TOLLGATE_X402_FACILITATOR_URL: 'http://f',
          TOLLGATE_X402_NETWORK: 'eip155:1',
        },
        'payments.asset: required on eip155:1',
      ],
      [
        {
          TOLLGATE_X402_PAY_TO: payTo,
          TOLLGATE_X402_FACILITATOR_URL: 'http://f',
          TOLLGATE_X402_PRICE: 'cheap',
        },
        'payments.price.per_request: must be an amount of US dollars',
      ],
      [
        {
          TOLLGATE_X402_PAY_TO: payTo,
          TOLLGATE_X402_FACILITATOR_URL: 'http://f',
          TOLLGATE_X402_PRICE: '0.0000001',
        },
        'more than 6 decimal places',
      ],
      [
        {
          TOLLGATE_X402_PAY_TO: payTo,
          TOLLGATE_X402_FACILITATOR_URL: 'http://f',
          TOLLGATE_X402_VERIFY_ONLY: 'maybe',
        },
        'payments.verify_only: must be true or false',
      ],
    ])('error: %j is refused: %s', (env, message) => {
      expect(() => loadConfig({ env, cwd: directory() })).toThrow(message);
    });
  });

  it('behavior: TOLLGATE_ENCRYPTION_REQUIRED takes true/false/1/0/yes/no and overrides the file', () => {
    const cwd = directory({ 'tollgate.yaml': 'encryption:\n  required: false\n' });
    expect(loadConfig({ env: {}, cwd }).encryption.required).toBe(false);
    for (const [value, expected] of [
      ['true', true],
      ['1', true],
      ['YES', true],
      ['false', false],
      ['0', false],
    ] as const) {
      expect(
        loadConfig({ env: { TOLLGATE_ENCRYPTION_REQUIRED: value }, cwd }).encryption.required,
      ).toBe(expected);
    }
    expect(problemsOf({ env: { TOLLGATE_ENCRYPTION_REQUIRED: 'maybe' }, cwd })[0]).toContain(
      'encryption.required: must be true or false (from TOLLGATE_ENCRYPTION_REQUIRED="maybe")',
    );
  });

  it('behavior: the database and Redis URLs come from the environment, never echoed in problems', () => {
    const config = loadConfig({
      env: {
        TOLLGATE_DATABASE_URL: 'postgres://app:pw@127.0.0.1:5432/tollgate',
        TOLLGATE_REDIS_URL: 'redis://127.0.0.1:6379',
      },
      cwd: directory(),
    });
    expect(config.databaseUrl).toBe('postgres://app:pw@127.0.0.1:5432/tollgate');
    expect(config.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(config.notices).toEqual([]);
    const problems = problemsOf({
      env: { TOLLGATE_DATABASE_URL: 'mysql://root:hunter2@db/x', TOLLGATE_REDIS_URL: 'http://x' },
      cwd: directory(),
    });
    expect(problems).toHaveLength(2);
    expect(problems[0]).toContain('database_url: must be a postgres:// or postgresql:// URL');
    expect(problems[0]).toContain('(from TOLLGATE_DATABASE_URL)');
    expect(problems.join('\n')).not.toContain('hunter2');
  });

  it('behavior: tenancy settings have defaults and take prices per model', () => {
    const config = loadConfig({
      values: {
        tenancy: { default_max_tokens: 256, prices: { 'llama3*': { input: 0.1, output: 0.2 } } },
      },
      env: {},
      cwd: directory(),
    });
    expect(config.tenancy).toEqual({
      defaultMaxTokens: 256,
      keyCacheMs: 10_000,
      prices: { 'llama3*': { input: 0.1, output: 0.2 } },
      limiterUnreachable: 'refuse',
    });
    const problems = problemsOf({
      values: { tenancy: { prices: { m: { input: -1 } } } },
      env: {},
      cwd: directory(),
    });
    expect(problems.join('\n')).toMatch(/tenancy\.prices\.m\.input: must be a number, 0 or more/);
  });

  it('behavior: the policy while Redis is away comes from tenancy.limiter_unreachable or TOLLGATE_LIMITER_UNREACHABLE, and only refuse or serve', () => {
    const fromFile = loadConfig({
      values: { tenancy: { limiter_unreachable: 'serve' } },
      env: {},
      cwd: directory(),
    });
    expect(fromFile.tenancy.limiterUnreachable).toBe('serve');
    const fromEnv = loadConfig({
      env: { TOLLGATE_LIMITER_UNREACHABLE: 'serve' },
      cwd: directory(),
    });
    expect(fromEnv.tenancy.limiterUnreachable).toBe('serve');
    const problems = problemsOf({
      env: { TOLLGATE_LIMITER_UNREACHABLE: 'open' },
      cwd: directory(),
    });
    expect(problems.join('\n')).toMatch(
      /tenancy\.limiter_unreachable: must be one of refuse, serve \(from TOLLGATE_LIMITER_UNREACHABLE="open"\)/,
    );
  });

  it('behavior: the example tollgate.yaml in docs/configuration.md is valid', () => {
    const docs = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');
    const example = /## Example `tollgate.yaml`\s+```yaml\n([\s\S]*?)```/.exec(docs)?.[1];
    expect(example).toBeDefined();
    const config = loadConfig({ env: {}, cwd: directory({ 'tollgate.yaml': example! }) });
    expect(config.backends).toHaveLength(3);
    expect(config.databaseUrl).toMatch(/^postgres:/);
    expect(config.tenancy.prices['llama3*']).toEqual({ input: 0.1, output: 0.2 });
  });

  it('behavior: empty environment variables count as unset', () => {
    const config = loadConfig({
      env: { TOLLGATE_PORT: '', TOLLGATE_BACKEND_URL: '  ' },
      cwd: directory(),
    });
    expect(config.port).toBe(8402);
    expect(config.backends).toEqual([]);
  });
});
