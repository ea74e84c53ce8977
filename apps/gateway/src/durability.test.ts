/**
 * What must hold across processes: usage survives SIGKILL, nothing is lost while the
 * database is away (and metered requests are refused meanwhile), and two gateways sharing
 * PostgreSQL and Redis enforce one tenant's limits together. Real processes, real PostgreSQL
 * and Redis when TOLLGATE_TEST_DATABASE_URL / TOLLGATE_TEST_REDIS_URL are set.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type FakeUpstream, startFakeUpstream } from '@tollgate/backends/testing';
import { createPostgresStore, createTenancy } from '@tollgate/tenancy';
import { createTestDatabase } from '@tollgate/tenancy/testing';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from './config.js';
import { startGateway } from './server.js';
import {
  captureLogger,
  runCli,
  startCuttableProxy,
  tempDataDir,
  throughProxy,
} from './test-helpers.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 });

const databaseUrl = process.env.TOLLGATE_TEST_DATABASE_URL;
const redisUrl = process.env.TOLLGATE_TEST_REDIS_URL;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const KEY = 'sk-durable-1';
const ADMIN = 'admin-durable';
const PROMPT = [{ role: 'user', content: 'Say hello please' }];
const staticTenant = `static:${createHash('sha256').update(KEY).digest('hex').slice(0, 8)}`;

async function fake(model: string, options: Parameters<typeof startFakeUpstream>[0] = {}) {
  const upstream = await startFakeUpstream({ kind: 'openai', models: [model], ...options });
  cleanups.push(() => upstream.close());
  return upstream;
}

function configFile(dir: string, upstreams: FakeUpstream[]): void {
  const backends = upstreams
    .map(
      (upstream, index) => `  - name: b${index}\n    type: openai\n    url: ${upstream.baseURL}\n`,
    )
    .join('');
  writeFileSync(join(dir, 'tollgate.yaml'), `backends:\n${backends}`);
}

async function serve(dir: string, env: Record<string, string>) {
  const run = runCli(['serve', '--port', '0'], { cwd: dir, env }, (cleanup) =>
    cleanups.push(cleanup),
  );
  const [, url] = await run.waitForStderr(/listening on (http:\/\/\S+) /, 60_000);
  return { run, url: url! };
}

function chat(url: string, model: string, key = KEY, extra: Record<string, unknown> = {}) {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: PROMPT, ...extra }),
  });
}

async function usage(url: string, query: string) {
  const response = await fetch(`${url}/admin/usage?${query}`, {
    headers: { authorization: `Bearer ${ADMIN}` },
  });
  expect(response.status).toBe(200);
  return (await response.json()) as {
    data: Array<Record<string, unknown>>;
    totals: Record<string, number>;
  };
}

const databases = [
  { name: 'the embedded database', url: async () => undefined as string | undefined },
  ...(databaseUrl
    ? [
        {
          name: 'PostgreSQL',
          url: async () => {
            const database = await createTestDatabase(databaseUrl);
            cleanups.push(() => database.drop());
            return database.url as string | undefined;
          },
        },
      ]
    : []),
];

describe.each(databases)('on $name', ({ url: databaseFor }) => {
  it('behavior: requests served before a SIGKILL are recorded after the restart; one cut mid-stream as interrupted', async () => {
    const fast = await fake('fast');
    const slow = await fake('slow', {
      chunkDelayMs: 500,
      reply: 'a b c d e f g h i j k l m n o p',
    });
    const data = tempDataDir();
    cleanups.push(data.cleanup);
    configFile(data.path, [fast, slow]);
    const database = await databaseFor();
    const env: Record<string, string> = {
      TOLLGATE_DATA_DIR: join(data.path, 'data'),
      TOLLGATE_API_KEYS: KEY,
      TOLLGATE_ADMIN_KEY: ADMIN,
      ...(database ? { TOLLGATE_DATABASE_URL: database } : {}),
    };
    const first = await serve(data.path, env);
    for (let index = 0; index < 5; index++) {
      const response = await chat(first.url, 'fast');
      expect(response.status).toBe(200);
      await response.json();
    }
    const cut = await chat(first.url, 'slow', KEY, { stream: true });
    const reader = cut.body!.getReader();
    await reader.read();
    first.run.child.kill('SIGKILL');
    await first.run.exit;
    await reader.read().catch(() => {});

    const second = await serve(data.path, env);
    const report = await usage(second.url, `tenant=${staticTenant}&group_by=model`);
    const byModel = Object.fromEntries(report.data.map((row) => [row.model, row]));
    // The fake counts words: 3 in the prompt, 5 in its reply.
    expect(byModel.fast).toMatchObject({
      requests: 5,
      prompt_tokens: 15,
      completion_tokens: 25,
      estimated_requests: 0,
    });
    expect(byModel.slow).toMatchObject({ requests: 1, estimated_requests: 1 });
    second.run.child.kill('SIGTERM');
    const code = await second.run.exit;
    expect(code, `${second.run.stderr()}\nsignal ${second.run.child.signalCode}`).toBe(0);
  });
});

describe.skipIf(!redisUrl)(
  'SIGKILL with limits in Redis (TOLLGATE_TEST_REDIS_URL unset: skipped)',
  () => {
    it('behavior: the concurrency slot of a request cut by SIGKILL is given back at the restart, not held until its lease ends', async () => {
      const slow = await fake('slow', { chunkDelayMs: 500, reply: 'a b c d e f g h i j k l' });
      const data = tempDataDir();
      cleanups.push(data.cleanup);
      configFile(data.path, [slow]);
      const env: Record<string, string> = {
        TOLLGATE_DATA_DIR: join(data.path, 'data'),
        TOLLGATE_API_KEYS: KEY,
        TOLLGATE_ADMIN_KEY: ADMIN,
        TOLLGATE_REDIS_URL: redisUrl!,
      };
      const first = await serve(data.path, env);
      const admin = async (path: string, body: unknown) => {
        const response = await fetch(`${first.url}/admin${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        expect(response.status).toBe(201);
        return (await response.json()) as { id: string; key: string };
      };
      const tenant = await admin('/tenants', {
        name: `sigkill-${Date.now()}`,
        limits: { max_concurrent: 1 },
      });
      const { key } = await admin(`/tenants/${tenant.id}/keys`, {});
      const cut = await chat(first.url, 'slow', key, { stream: true });
      expect(cut.status).toBe(200);
      const reader = cut.body!.getReader();
      await reader.read();
      // The tenant's one slot is taken.
      expect((await chat(first.url, 'slow', key)).status).toBe(429);
      first.run.child.kill('SIGKILL');
      await first.run.exit;
      await reader.read().catch(() => {});

      // Without the release at start, the slot would stay taken for its 10-minute lease.
      const second = await serve(data.path, env);
      const served = await chat(second.url, 'slow', key);
      expect(served.status).toBe(200);
      await served.json();
      // The one cut as interrupted, at its estimate, and the one served (written in a batch).
      await vi.waitFor(
        async () =>
          expect((await usage(second.url, `tenant=${tenant.id}`)).totals).toMatchObject({
            requests: 2,
            estimated_requests: 1,
          }),
        { timeout: 10_000, interval: 200 },
      );
      second.run.child.kill('SIGTERM');
      expect(await second.run.exit).toBe(0);
    });
  },
);

describe.skipIf(!databaseUrl)(
  'PostgreSQL unreachable (TOLLGATE_TEST_DATABASE_URL unset: skipped)',
  () => {
    it('error: metered requests get 503 while the database is away; nothing served is lost', async () => {
      const database = await createTestDatabase(databaseUrl!);
      cleanups.push(() => database.drop());
      const target = new URL(database.url);
      const proxy = await startCuttableProxy(
        { hostname: target.hostname, port: Number(target.port || 5432) },
        (cleanup) => cleanups.push(cleanup),
      );
      const upstream = await fake('fast');
      const data = tempDataDir();
      cleanups.push(data.cleanup);
      const log = captureLogger();
      const gateway = await startGateway(
        loadConfig({
          env: {},
          argv: { port: 0 },
          values: {
            data_dir: data.path,
            api_keys: [KEY],
            admin_key: ADMIN,
            database_url: throughProxy(database.url, proxy),
            backends: [{ url: upstream.baseURL }],
          },
        }),
        { logger: log.logger },
      );
      cleanups.push(() => gateway.close());

      let served = 0;
      const first = await chat(gateway.url, 'fast');
      expect(first.status).toBe(200);
      served++;
      await proxy.cut();
      // Requests admitted before the outage is noticed are served and kept; then 503s.
      let refused: Response | undefined;
      for (let attempt = 0; attempt < 200 && !refused; attempt++) {
        const response = await chat(gateway.url, 'fast');
        if (response.status === 200) served++;
        else refused = response;
        const body = await response.text();
        if (refused) expect(JSON.parse(body).error.code).toBe('service_unavailable');
        await new Promise((done) => setTimeout(done, 50));
      }
      expect(refused?.status).toBe(503);
      expect((await fetch(`${gateway.url}/health/ready`)).status).toBe(503);
      await log.waitFor((line) => String(line.msg).includes('usage records cannot be written'));

      await proxy.restore();
      await vi.waitFor(
        async () => {
          expect((await fetch(`${gateway.url}/health/ready`)).status).toBe(200);
        },
        { timeout: 30_000, interval: 200 },
      );
      const report = await usage(gateway.url, `tenant=${staticTenant}`);
      expect(report.totals.requests).toBe(served);
      expect(report.totals.estimated_requests).toBe(0);
    });
  },
);

describe.skipIf(!databaseUrl || !redisUrl)(
  'two gateways on PostgreSQL and Redis (TOLLGATE_TEST_DATABASE_URL or TOLLGATE_TEST_REDIS_URL unset: skipped)',
  () => {
    it('behavior: a tenant gets its requests per minute once across both, not once per gateway', async () => {
      const database = await createTestDatabase(databaseUrl!);
      cleanups.push(() => database.drop());
      const store = await createPostgresStore({ url: database.url });
      cleanups.push(() => store.close());
      const tenancy = createTenancy({ store });
      cleanups.push(() => tenancy.close());
      // Minute windows are UTC minutes: stay clear of a boundary so all requests share one.
      const second = new Date().getUTCSeconds();
      if (second > 40) await new Promise((done) => setTimeout(done, (61 - second) * 1000));
      const tenant = await tenancy.createTenant(
        { name: `shared-${Date.now()}`, limits: { requests_per_minute: 4 } },
        { actor: 'test' },
      );
      const { key } = await tenancy.issueKey(tenant.id, {}, { actor: 'test' });
      const upstream = await fake('fast');
      const gateways = [];
      for (let count = 0; count < 2; count++) {
        const data = tempDataDir();
        cleanups.push(data.cleanup);
        configFile(data.path, [upstream]);
        gateways.push(
          await serve(data.path, {
            TOLLGATE_DATA_DIR: join(data.path, 'data'),
            TOLLGATE_DATABASE_URL: database.url,
            TOLLGATE_REDIS_URL: redisUrl!,
          }),
        );
      }
      const statuses: number[] = [];
      for (let index = 0; index < 8; index++) {
        const response = await chat(gateways[index % 2]!.url, 'fast', key);
        statuses.push(response.status);
        await response.arrayBuffer();
      }
      expect(statuses.filter((status) => status === 200)).toHaveLength(4);
      expect(statuses.filter((status) => status === 429)).toHaveLength(4);
    });
  },
);
