/**
 * The fastest honest upstream we can write: a bare node:http server answering chat
 * completions with canned bodies, so a benchmark measures the gateway and not the model.
 * Run as its own process: `tsx bench/upstream.ts <port>`; it prints "ready" when listening.
 */
import { createServer } from 'node:http';

const port = Number(process.argv[2] ?? 0);
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
    if (!body.stream) {
      response.writeHead(200, { 'content-type': 'application/json' }).end(completion);
      return;
    }
    response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    // One write per event, as a real server flushes token by token.
    for (const event of streamEvents) response.write(event);
    if (body.stream_options?.include_usage) response.write(usageEvent);
    response.end('data: [DONE]\n\n');
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`ready ${typeof address === 'object' && address ? address.port : port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
