/**
 * Micro-benchmark of the router's hot path: what a streamed response costs to relay through
 * `dispatch` (usage tap, usage-chunk removal, finisher) compared with reading the same
 * upstream body directly (and through one identity TransformStream, for scale), in the same run. Prints events per second and the ratio to the
 * baseline. Run: `npx tsx packages/backends/bench/router.bench.ts` (EVENTS, ROUNDS to tune).
 */
import type { Backend } from '../src/backend.js';
import { createRouter } from '../src/router.js';

const events = Number(process.env.EVENTS ?? 20_000);
const rounds = Number(process.env.ROUNDS ?? 5);
const encoder = new TextEncoder();

const chunks: Uint8Array[] = [];
for (let index = 0; index < events; index++) {
  const chunk = {
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta: { content: ` token${index}` }, finish_reason: null }],
  };
  chunks.push(encoder.encode(`data: ${JSON.stringify(chunk)}\n\n`));
}
chunks.push(
  encoder.encode(
    `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 1, completion_tokens: events, total_tokens: events + 1 } })}\n\n`,
  ),
);
chunks.push(encoder.encode('data: [DONE]\n\n'));

/** One upstream chunk per event, as llama-server and vLLM write them. */
function upstreamBody(): ReadableStream<Uint8Array> {
  let index = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = chunks[index++];
      if (chunk) controller.enqueue(chunk);
      else controller.close();
    },
  });
}

async function consume(body: ReadableStream<Uint8Array>): Promise<number> {
  let bytes = 0;
  const reader = body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return bytes;
    bytes += value.byteLength;
  }
}

const backend: Backend = {
  name: 'bench',
  kind: 'openai',
  listModels: async () => [{ id: 'm' }],
  health: async () => ({ ok: true }),
  chatCompletions: async () =>
    new Response(upstreamBody(), { headers: { 'content-type': 'text/event-stream' } }),
  completions: async () => new Response(null, { status: 501 }),
  embeddings: async () => new Response(null, { status: 501 }),
};
const router = createRouter({
  backends: [{ backend, models: ['m'] }],
  concurrency: { m: { maxConcurrent: 4 } },
});
const request = { model: 'm', messages: [{ role: 'user' as const, content: 'hi' }], stream: true };

const cases: Record<string, () => Promise<unknown>> = {
  'baseline: read upstream body': () => consume(upstreamBody()),
  // What any one extra web-streams stage costs, for scale.
  'reference: one identity TransformStream': () =>
    consume(upstreamBody().pipeThrough(new TransformStream())),
  'dispatch, usage chunk removed': async () => {
    const result = await router.dispatch('chat.completions', request, {
      signal: new AbortController().signal,
    });
    await consume(result.response.body!);
    return result.outcome;
  },
  'dispatch, usage kept (include_usage)': async () => {
    const result = await router.dispatch(
      'chat.completions',
      { ...request, stream_options: { include_usage: true } },
      { signal: new AbortController().signal },
    );
    await consume(result.response.body!);
    return result.outcome;
  },
};

const best: Record<string, number> = {};
for (let round = 0; round < rounds; round++) {
  for (const [name, run] of Object.entries(cases)) {
    const start = performance.now();
    await run();
    const seconds = (performance.now() - start) / 1000;
    best[name] = Math.max(best[name] ?? 0, events / seconds);
  }
}
const baseline = best['baseline: read upstream body']!;
for (const [name, rate] of Object.entries(best)) {
  console.log(
    `${name.padEnd(40)} ${Math.round(rate).toString().padStart(10)} events/s  x${(rate / baseline).toFixed(2)}`,
  );
}
