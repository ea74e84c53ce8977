/**
 * The fastest honest upstream we can write: a bare node:http server answering chat
 * completions and embeddings with canned bodies, so a benchmark measures the gateway and not
 * the model. Run as its own process: `tsx bench/upstream.ts <port> [chunk delay ms]`; it
 * prints "ready" when listening. With a chunk delay, a stream sends its first token at once
 * and each later token (14 more, the last with finish_reason) that many milliseconds after
 * the previous one, as a model generating tokens would, so many streams can be open at the
 * same time.
 */
import { createServer, type ServerResponse } from 'node:http';

const port = Number(process.argv[2] ?? 0);
const chunkDelayMs = Number(process.argv[3] ?? 0);
const created = 1_700_000_000;
const words = 'The quick brown fox jumps over the lazy dog and keeps running far away'.split(' ');

const completion = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created,
  model: 'bench-model',
  choices: [
    { index: 0, message: { role: 'assistant', content: words.join(' ') }, finish_reason: 'stop' },
  ],
  usage: { prompt_tokens: 12, completion_tokens: words.length, total_tokens: 12 + words.length },
});

function chunk(delta: Record<string, unknown>, finish: string | null): string {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-bench',
    object: 'chat.completion.chunk',
    created,
    model: 'bench-model',
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;
}

const streamEvents = [
  chunk({ role: 'assistant', content: '' }, null),
  ...words.map((word, index) => chunk({ content: index === 0 ? word : ` ${word}` }, null)),
  chunk({}, 'stop'),
];
const usageEvent = `data: ${JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion.chunk',
  created,
  model: 'bench-model',
  choices: [],
  usage: { prompt_tokens: 12, completion_tokens: words.length, total_tokens: 12 + words.length },
})}\n\n`;
const embedding = JSON.stringify({
  object: 'list',
  data: [
    { object: 'embedding', index: 0, embedding: Array.from({ length: 64 }, (_, i) => i / 64) },
  ],
  model: 'bench-model',
  usage: { prompt_tokens: 8, total_tokens: 8 },
});
const models = JSON.stringify({
  object: 'list',
  data: [{ id: 'bench-model', object: 'model', created, owned_by: 'bench' }],
});

const server = createServer((request, response) => {
  if (request.method === 'GET') {
    response.writeHead(200, { 'content-type': 'application/json' }).end(models);
    return;
  }
  const parts: Buffer[] = [];
  request.on('data', (part: Buffer) => parts.push(part));
  request.on('end', () => {
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
      stream?: boolean;
      stream_options?: { include_usage?: boolean };
    };
    if (request.url?.endsWith('/embeddings')) {
      response.writeHead(200, { 'content-type': 'application/json' }).end(embedding);
      return;
    }
    if (!body.stream) {
      response.writeHead(200, { 'content-type': 'application/json' }).end(completion);
      return;
    }
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const events = [...streamEvents];
    if (body.stream_options?.include_usage) events.push(usageEvent);
    events.push('data: [DONE]\n\n');
    if (chunkDelayMs > 0) paced(response, events);
    else {
      // One write per event, as a real server flushes token by token.
      for (const event of events.slice(0, -1)) response.write(event);
      response.end(events.at(-1));
    }
  });
});

/**
 * The role and first token at once, then each token `chunkDelayMs` after the previous one;
 * what follows the last token (the usage event when asked, [DONE]) comes with it, as a server
 * sends it once generation ends.
 */
function paced(response: ServerResponse, events: string[]): void {
  response.write(events[0]);
  response.write(events[1]);
  let next = 2;
  const timer = setInterval(() => {
    if (response.destroyed) {
      clearInterval(timer);
      return;
    }
    const event = events[next++]!;
    if (next < streamEvents.length) {
      response.write(event);
      return;
    }
    clearInterval(timer);
    for (const tail of [event, ...events.slice(next, -1)]) response.write(tail);
    response.end(events.at(-1));
  }, chunkDelayMs);
}
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`ready ${typeof address === 'object' && address ? address.port : port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
