/**
 * `pnpm bench`: what the gateway adds on top of calling the upstream directly, measured in
 * the same run against the same fast fake upstream (bench/upstream.ts).
 *
 * Four processes: this one generates load, one runs the upstream, one a bare proxy (the
 * floor of one extra hop), one the gateway (compiled, as the published `tollgate serve`
 * runs, with the default info-level access log written to /dev/null and its embedded
 * database in a temporary data directory). Through the gateway, requests carry the key of a
 * tenant with requests-per-minute, tokens-per-minute and concurrency limits set far above
 * what the load reaches, so auth, the limiter and metering all run on every request and
 * none is refused. Latency is measured open-loop at a fixed rate, from each request's
 * scheduled start (so a stall is not hidden by the load generator waiting for it), for
 * non-streamed and streamed chat completions; throughput is measured closed-loop with a
 * fixed number of concurrent connections. Direct and gateway rounds alternate and the
 * median of the rounds is reported. Options: BENCH_RATE (req/s, default 200),
 * BENCH_SECONDS (per round, default 5), BENCH_ROUNDS (default 3), BENCH_CONCURRENCY
 * (default 32), BENCH_JSON=path to also write the figures as JSON.
 */
import { writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createBhttpResponseDecoder,
  createChunkedRequestWriter,
  decodeKeyConfigs,
  encodeBhttpRequest,
} from '../packages/ecies/src/index.js';
import {
  createBenchSession,
  createTenantKey,
  freePort,
  median,
  percentile,
  runMain,
  startGateway,
  waitForHttp,
} from './harness.js';

const rate = Number(process.env.BENCH_RATE ?? 200);
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 32);
/** A static key: keeps the gateway out of its open (keyless) mode; the load uses a tenant's key. */
const staticKey = 'bench-key';
const adminKey = 'bench-admin-key';
/** Limits far above what this machine can send, so the limiter runs on every request but never refuses. */
const tenantLimits = {
  requests_per_minute: 100_000_000,
  tokens_per_minute: 10_000_000_000,
  max_concurrent: 100_000,
};
/** The bearer token every request carries: the tenant's key once it is issued. */
let apiKey = staticKey;

interface Sample {
  firstByteMs: number;
  totalMs: number;
}

interface Target {
  name: 'direct' | 'proxy' | 'gateway';
  port: number;
  path: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 256 });

function body(stream: boolean): string {
  return JSON.stringify({
    model: 'bench-model',
    messages: [{ role: 'user', content: 'Tell me a short sentence about foxes.' }],
    max_tokens: 32,
    stream,
  });
}

const bodies = { plain: body(false), stream: body(true) };

/** One request; resolves with its timings measured from `startedAt`. */
function send(target: Target, stream: boolean, startedAt: number): Promise<Sample> {
  const payload = stream ? bodies.stream : bodies.plain;
  return new Promise((done, fail) => {
    const call = httpRequest(
      {
        host: '127.0.0.1',
        port: target.port,
        path: target.path,
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
          authorization: `Bearer ${apiKey}`,
        },
      },
      (response) => {
        let firstByteMs = -1;
        response.on('data', () => {
          if (firstByteMs < 0) firstByteMs = performance.now() - startedAt;
        });
        response.on('end', () => {
          if (response.statusCode !== 200)
            fail(new Error(`${target.name}: HTTP ${response.statusCode}`));
          else done({ firstByteMs, totalMs: performance.now() - startedAt });
        });
        response.on('error', fail);
      },
    );
    call.on('error', fail);
    call.end(payload);
  });
}

/** Fixed-rate (open-loop) load; latency counted from each request's scheduled start. */
async function openLoop(target: Target, stream: boolean, durationS: number): Promise<Sample[]> {
  const total = Math.round(rate * durationS);
  const interval = 1000 / rate;
  const start = performance.now() + 5;
  const pending: Promise<Sample>[] = [];
  for (let index = 0; index < total; index++) {
    const scheduled = start + index * interval;
    const wait = scheduled - performance.now();
    if (wait > 1) await sleep(wait);
    // Late (the generator was busy): counted from the schedule, so the wait is not hidden.
    // Early (timers fire up to a millisecond ahead): counted from the actual send.
    pending.push(send(target, stream, Math.min(scheduled, performance.now())));
  }
  return Promise.all(pending);
}

/** Closed-loop load with a fixed number of workers; returns requests per second. */
async function closedLoop(target: Target, durationS: number): Promise<number> {
  const deadline = performance.now() + durationS * 1000;
  let completed = 0;
  const worker = async () => {
    while (performance.now() < deadline) {
      await send(target, false, performance.now());
      completed++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return completed / ((performance.now() - started) / 1000);
}

type Figures = Record<string, number>;

function summarize(samples: Sample[], stream: boolean): Figures {
  const total = samples.map((sample) => sample.totalMs);
  const figures: Figures = { p50: percentile(total, 50), p99: percentile(total, 99) };
  if (stream) {
    const first = samples.map((sample) => sample.firstByteMs);
    figures.ttfb_p50 = percentile(first, 50);
    figures.ttfb_p99 = percentile(first, 99);
  }
  return figures;
}

type TargetName = Target['name'];
const targetNames: TargetName[] = ['direct', 'proxy', 'gateway'];

function formatRow(label: string, values: number[]): string {
  const rps = label.endsWith('rps');
  const cells = values.map(
    (value) => `${value.toFixed(rps ? 0 : 3).padStart(9)}${rps ? '   ' : ' ms'}`,
  );
  const [direct, proxy, gateway] = values as [number, number, number];
  const extra = rps
    ? `${((gateway / direct) * 100).toFixed(1)}% of direct, ${((gateway / proxy) * 100).toFixed(1)}% of proxy`
    : `+${(gateway - direct).toFixed(3)} ms (proxy +${(proxy - direct).toFixed(3)} ms)`;
  return `${label.padEnd(17)}${cells.join(' ')}   ${extra}`;
}

/**
 * What Oblivious HTTP adds to a streamed completion, in the same run: the same streamed
 * request sent plain and as chunked OHTTP (encapsulated by this process, as a client would),
 * one at a time, alternating; time to the first decrypted token and to the end.
 */
async function encryptedStreams(gatewayPort: number): Promise<void> {
  const base = `http://127.0.0.1:${gatewayPort}`;
  const [config] = decodeKeyConfigs(
    new Uint8Array(await (await fetch(`${base}/.well-known/ohttp-gateway`)).arrayBuffer()),
  );
  const inner = () =>
    encodeBhttpRequest({
      method: 'POST',
      scheme: 'http',
      path: '/v1/chat/completions',
      headers: [
        ['authorization', `Bearer ${apiKey}`],
        ['content-type', 'application/json'],
        ['date', new Date().toUTCString()],
      ],
      body: new TextEncoder().encode(bodies.stream),
    });
  const plain = async () => {
    const started = performance.now();
    const response = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: bodies.stream,
    });
    const reader = response.body!.getReader();
    let first = -1;
    for (;;) {
      const { done } = await reader.read();
      if (first < 0) first = performance.now() - started;
      if (done) break;
    }
    return { first, total: performance.now() - started };
  };
  const encrypted = async () => {
    const started = performance.now();
    const writer = createChunkedRequestWriter(config!);
    const body = new Uint8Array([...writer.start(), ...writer.final(inner())]);
    const response = await fetch(`${base}/.well-known/ohttp-gateway`, {
      method: 'POST',
      headers: { 'content-type': 'message/ohttp-chunked-req' },
      body,
    });
    const reader = response.body!.getReader();
    const opener = writer.context.createResponseReader();
    const decoder = createBhttpResponseDecoder();
    let first = -1;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const plaintext of opener.push(value)) {
        for (const event of decoder.push(plaintext)) {
          if (event.type === 'body' && first < 0) first = performance.now() - started;
        }
      }
    }
    decoder.push(opener.end());
    return { first, total: performance.now() - started };
  };
  const count = Number(process.env.BENCH_ENCRYPTED ?? 200);
  const samples = {
    plain: [] as Array<{ first: number; total: number }>,
    ohttp: [] as Array<{ first: number; total: number }>,
  };
  for (let index = 0; index < 20; index++) {
    await plain();
    await encrypted();
  }
  for (let index = 0; index < count; index++) {
    samples.plain.push(await plain());
    samples.ohttp.push(await encrypted());
  }
  console.log(`\nstreamed, plain vs chunked OHTTP (P-256), ${count} sequential requests each`);
  for (const key of ['first', 'total'] as const) {
    const p50 = (list: Array<{ first: number; total: number }>) =>
      percentile(
        list.map((sample) => sample[key]),
        50,
      );
    const plainP50 = p50(samples.plain);
    const ohttpP50 = p50(samples.ohttp);
    console.log(
      `${(key === 'first' ? 'first token p50' : 'whole p50').padEnd(17)}${plainP50.toFixed(3).padStart(9)} ms ${ohttpP50.toFixed(3).padStart(9)} ms   +${(ohttpP50 - plainP50).toFixed(3)} ms encrypted`,
    );
  }
}

async function main(): Promise<void> {
  const session = createBenchSession();
  try {
    const upstreamPort = await freePort();
    const proxyPort = await freePort();
    session.start(['bench/upstream.ts', String(upstreamPort)], {});
    session.start(['bench/bare-proxy.ts', String(proxyPort), String(upstreamPort)], {});
    const gateway = await startGateway(session, {
      upstreamPort,
      env: { TOLLGATE_API_KEYS: staticKey, TOLLGATE_ADMIN_KEY: adminKey },
    });
    const gatewayPort = gateway.port;
    await waitForHttp(upstreamPort, '/v1/models');
    await waitForHttp(proxyPort, '/v1/models');
    apiKey = await createTenantKey(gatewayPort, adminKey, 'bench', tenantLimits);
    const path = '/v1/chat/completions';
    const targets: Target[] = [
      { name: 'direct', port: upstreamPort, path },
      { name: 'proxy', port: proxyPort, path },
      { name: 'gateway', port: gatewayPort, path },
    ];
    console.log(
      `warming up (rate ${rate}/s, ${seconds}s x ${rounds} rounds, concurrency ${concurrency}; gateway: a tenant key with rpm, tpm and concurrency limits, metered)`,
    );
    for (const target of targets) {
      await openLoop(target, false, 1);
      await openLoop(target, true, 1);
      await closedLoop(target, 1);
    }
    const results = new Map<string, Figures[]>();
    const record = (target: Target, scenario: string, figures: Figures) => {
      const key = `${target.name} ${scenario}`;
      results.set(key, [...(results.get(key) ?? []), figures]);
    };
    for (let round = 0; round < rounds; round++) {
      // Each round starts with a different target, so drift in the machine spreads evenly.
      const order = targets.map((_, index) => targets[(index + round) % targets.length]!);
      for (const target of order) {
        record(target, 'plain', summarize(await openLoop(target, false, seconds), false));
        record(target, 'stream', summarize(await openLoop(target, true, seconds), true));
        record(target, 'throughput', { rps: await closedLoop(target, seconds) });
      }
    }
    const medianOf = (name: TargetName, scenario: string, key: string) =>
      median(results.get(`${name} ${scenario}`)!.map((figures) => figures[key]!));
    const rows: Array<{ figure: string; values: number[] }> = [];
    for (const [scenario, keys] of [
      ['plain', ['p50', 'p99']],
      ['stream', ['ttfb_p50', 'ttfb_p99', 'p50', 'p99']],
      ['throughput', ['rps']],
    ] as const) {
      for (const key of keys) {
        const figure = `${scenario} ${key}`;
        rows.push({ figure, values: targetNames.map((name) => medianOf(name, scenario, key)) });
      }
    }
    console.log(
      `\n${'figure'.padEnd(17)}${targetNames.map((name) => name.padStart(12)).join(' ')}   gateway added / ratio`,
    );
    for (const row of rows) console.log(formatRow(row.figure, row.values));
    await encryptedStreams(gatewayPort);
    if (process.env.BENCH_JSON) {
      writeFileSync(
        process.env.BENCH_JSON,
        `${JSON.stringify({ rate, seconds, rounds, concurrency, targets: targetNames, rows }, null, 2)}\n`,
      );
    }
  } finally {
    agent.destroy();
    await session.close();
  }
}

runMain(main);
