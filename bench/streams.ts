/**
 * Part of `pnpm bench`: 1,000 streamed chat completions open at the same time, sent to the
 * fake upstream directly and then through the gateway, in the same run. Reports errors (any
 * status but 200, a broken or incomplete stream), how many were open at once, time to the
 * first token (the first content delta, counted from when the request was sent) and to the
 * end, and the gateway's resident memory idle, at its peak and after, from /proc.
 *
 * The upstream (bench/upstream.ts) sends the role and first token at once and then one event
 * every STREAMS_CHUNK_MS (default 500 ms), 14 more, so a stream lasts about 7 s; the
 * streams are opened evenly over STREAMS_RAMP_MS (default 5,000 ms, 200 new streams a
 * second), so all of them are open together for about two seconds, and the last
 * fifth are opened while 800 or more are already streaming (their first token is reported
 * apart). The gateway is compiled and runs with a static key, its
 * default settings (metering to its embedded database included) and a fresh data directory.
 * Before the gateway's round the benchmark waits (up to STREAMS_SETTLE_S after its start,
 * default 120) for the embedded database's start-up garbage to be collected, so that idle and
 * peak memory are read on the same footing (see waitForSettledRss in harness.ts).
 * Options: STREAMS (default 1000), STREAMS_CHUNK_MS, STREAMS_RAMP_MS, STREAMS_SETTLE_S.
 */
import { readdirSync } from 'node:fs';
import { Agent } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  checkFileLimit,
  createBenchSession,
  freePort,
  mib,
  percentile,
  postJson,
  processMemory,
  resetPeakRss,
  runMain,
  scrapeMetrics,
  sseChunks,
  startGateway,
  waitForHttp,
  waitForSettledRss,
} from './harness.js';

const streams = Number(process.env.STREAMS ?? 1000);
const chunkMs = Number(process.env.STREAMS_CHUNK_MS ?? 500);
const rampMs = Number(process.env.STREAMS_RAMP_MS ?? 5000);
/** At most this long after the gateway's start for its memory to settle (see waitForSettledRss). */
const settleS = Number(process.env.STREAMS_SETTLE_S ?? 120);
const apiKey = 'bench-key';
const expectedText = 'The quick brown fox jumps over the lazy dog and keeps running far away';
const payload = JSON.stringify({
  model: 'bench-model',
  messages: [{ role: 'user', content: 'Tell me a short sentence about foxes.' }],
  max_tokens: 32,
  stream: true,
});

interface StreamResult {
  ok: boolean;
  error?: string;
  firstTokenMs: number;
  totalMs: number;
}

/** One streamed completion; never rejects (failures are results with `ok: false`). */
function stream(
  port: number,
  agent: Agent,
  events: { firstToken(): void; closed(streaming: boolean): void },
): Promise<StreamResult> {
  const started = performance.now();
  return new Promise((done) => {
    let firstTokenMs = -1;
    let settled = false;
    const finish = (ok: boolean, error?: string) => {
      if (settled) return;
      settled = true;
      events.closed(firstTokenMs >= 0);
      done({
        ok,
        ...(error ? { error } : {}),
        firstTokenMs,
        totalMs: performance.now() - started,
      });
    };
    const { answer } = postJson({
      port,
      agent,
      path: '/v1/chat/completions',
      payload,
      key: apiKey,
      onData: (part) => {
        if (firstTokenMs < 0 && /"content":"[^"]/.test(part)) {
          firstTokenMs = performance.now() - started;
          events.firstToken();
        }
      },
    });
    answer.then(
      ({ status, text }) => {
        if (status !== 200) return finish(false, `HTTP ${status}`);
        try {
          const { chunks, done: ended } = sseChunks<{
            choices?: Array<{ delta?: { content?: string } }>;
          }>(text);
          if (!ended) return finish(false, 'no [DONE]');
          const content = chunks.map((chunk) => chunk.choices?.[0]?.delta?.content ?? '').join('');
          if (content !== expectedText) return finish(false, 'content differs');
          finish(true);
        } catch (error) {
          finish(false, `unreadable stream: ${(error as Error).message}`);
        }
      },
      (error: Error) => finish(false, error.message),
    );
  });
}

interface Phase {
  results: StreamResult[];
  /** The most streams that had their first token and had not ended, at one time. */
  maxOpen: number;
  /** Sampled while the streams ran (gateway only). */
  rssSamples: number[];
  /** Read from the gateway when all streams were open at once (gateway only). */
  atPeak?: { streamsInFlight: number; heapUsed: number; openFiles: number };
}

/** Opens `count` streams evenly over `rampMs` and waits for all of them. */
async function phase(port: number, count: number, gatewayPid?: number): Promise<Phase> {
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  let open = 0;
  let maxOpen = 0;
  let atPeak: Phase['atPeak'];
  let peakRead: Promise<void> | undefined;
  const readPeak = async () => {
    if (!gatewayPid) return;
    const openFiles = readdirSync(`/proc/${gatewayPid}/fd`).length;
    const metrics = await scrapeMetrics(port);
    atPeak = {
      streamsInFlight: metrics.get('tollgate_streams_in_flight') ?? Number.NaN,
      heapUsed: metrics.get('nodejs_heap_size_used_bytes') ?? Number.NaN,
      openFiles,
    };
  };
  const events = {
    firstToken() {
      open++;
      if (open > maxOpen) maxOpen = open;
      if (open === count && !peakRead) peakRead = readPeak();
    },
    closed(streaming: boolean) {
      if (streaming) open--;
    },
  };
  const rssSamples: number[] = [];
  const sampler = gatewayPid
    ? setInterval(() => rssSamples.push(processMemory(gatewayPid).rss), 50)
    : undefined;
  const pending: Promise<StreamResult>[] = [];
  const start = performance.now();
  for (let index = 0; index < count; index++) {
    const wait = start + (index * rampMs) / count - performance.now();
    if (wait > 1) await sleep(wait);
    pending.push(stream(port, agent, events));
  }
  const results = await Promise.all(pending);
  if (sampler) clearInterval(sampler);
  await peakRead;
  agent.destroy();
  return { results, maxOpen, rssSamples, ...(atPeak ? { atPeak } : {}) };
}

function row(label: string, direct: number, gateway: number, unit = 'ms'): string {
  return `${label.padEnd(28)}${direct.toFixed(1).padStart(9)} ${unit} ${gateway.toFixed(1).padStart(9)} ${unit}   ${gateway - direct >= 0 ? '+' : ''}${(gateway - direct).toFixed(1)} ${unit}`;
}

async function main(): Promise<void> {
  // Each stream holds a socket in this process and, through the gateway, two in the gateway
  // (caller and upstream); the upstream may hold idle ones from the direct round too.
  const fileLimit = checkFileLimit(streams * 4 + 1024);
  const session = createBenchSession();
  try {
    const upstreamPort = await freePort();
    session.start(['bench/upstream.ts', String(upstreamPort), String(chunkMs)], {});
    await waitForHttp(upstreamPort, '/v1/models');
    const gateway = await startGateway(session, {
      upstreamPort,
      env: { TOLLGATE_API_KEYS: apiKey },
    });
    const pid = gateway.process.pid!;
    console.log(
      `\n${streams} concurrent streams, opened over ${rampMs} ms, each ${14 * chunkMs} ms long (open-file limit ${fileLimit})`,
    );
    for (const port of [upstreamPort, gateway.port]) {
      const warm = await phase(port, Math.min(100, streams));
      if (warm.results.some((result) => !result.ok)) {
        throw new Error(`warm-up streams failed: ${warm.results.find((r) => !r.ok)?.error}`);
      }
    }
    const direct = await phase(upstreamPort, streams);
    const settled = await waitForSettledRss(pid, {
      startRss: gateway.readyRss,
      deadline: gateway.readyAt + settleS * 1000,
    });
    const waited = (performance.now() - gateway.readyAt) / 1000;
    console.log(
      settled
        ? `gateway RSS ${mib(gateway.readyRss)} when ready, ${mib(processMemory(pid).rss)} once the embedded database's start-up garbage was collected (${waited.toFixed(0)} s after the start)`
        : `gateway RSS still ${mib(processMemory(pid).rss)} ${waited.toFixed(0)} s after the start (${mib(gateway.readyRss)} when ready): the embedded database's start-up garbage may be collected during the measurement`,
    );
    await sleep(2000);
    const idle = processMemory(pid).rss;
    const idleHeap = (await scrapeMetrics(gateway.port)).get('nodejs_heap_size_used_bytes') ?? 0;
    resetPeakRss(pid);
    const through = await phase(gateway.port, streams, pid);
    const peak = Math.max(processMemory(pid).peak, ...through.rssSamples);
    await sleep(5000);
    const after = processMemory(pid).rss;

    const errorsOf = (result: Phase) => result.results.filter((item) => !item.ok);
    const ttft = (result: Phase, p: number) =>
      percentile(
        result.results.filter((item) => item.ok).map((item) => item.firstTokenMs),
        p,
      );
    const lastFifth = (result: Phase, p: number) =>
      percentile(
        result.results
          .slice(Math.floor(streams * 0.8))
          .filter((item) => item.ok)
          .map((item) => item.firstTokenMs),
        p,
      );
    const whole = (result: Phase, p: number) =>
      percentile(
        result.results.filter((item) => item.ok).map((item) => item.totalMs),
        p,
      );
    console.log(
      `${''.padEnd(28)}${'direct'.padStart(12)} ${'gateway'.padStart(12)}   gateway added`,
    );
    console.log(
      `${'errors'.padEnd(28)}${String(errorsOf(direct).length).padStart(12)} ${String(errorsOf(through).length).padStart(12)}`,
    );
    console.log(
      `${'open at once (max)'.padEnd(28)}${String(direct.maxOpen).padStart(12)} ${String(through.maxOpen).padStart(12)}`,
    );
    console.log(row('first token p50', ttft(direct, 50), ttft(through, 50)));
    console.log(row('first token p99', ttft(direct, 99), ttft(through, 99)));
    console.log(row('first token max', ttft(direct, 100), ttft(through, 100)));
    console.log(row('first token p50, last 20%', lastFifth(direct, 50), lastFifth(through, 50)));
    console.log(row('first token p99, last 20%', lastFifth(direct, 99), lastFifth(through, 99)));
    console.log(row('whole stream p50', whole(direct, 50), whole(through, 50)));
    console.log(row('whole stream p99', whole(direct, 99), whole(through, 99)));
    const perStream = (peak - idle) / streams;
    console.log(
      `gateway RSS: idle ${mib(idle)}, peak ${mib(peak)}, 5 s after ${mib(after)}; per open stream (peak - idle) / ${streams} = ${(perStream / 1024).toFixed(1)} KiB`,
    );
    if (through.atPeak) {
      const { streamsInFlight, heapUsed, openFiles } = through.atPeak;
      console.log(
        `gateway with all streams open: ${streamsInFlight} streams in flight (its /metrics), ${openFiles} open files, heap used ${mib(heapUsed)} (idle ${mib(idleHeap)})`,
      );
    }
    for (const [name, result] of [
      ['direct', direct],
      ['gateway', through],
    ] as const) {
      const errors = errorsOf(result);
      if (errors.length > 0) {
        const kinds = new Map<string, number>();
        for (const error of errors) kinds.set(error.error!, (kinds.get(error.error!) ?? 0) + 1);
        console.log(`${name} errors: ${[...kinds].map(([k, n]) => `${n} x ${k}`).join(', ')}`);
      }
    }
    if (errorsOf(direct).length + errorsOf(through).length > 0) process.exitCode = 1;
  } finally {
    await session.close();
  }
}

runMain(main);
