#!/usr/bin/env node
/**
 * A stand-in for llama.cpp's llama-server, run as a real process for supervisor tests (plain
 * JavaScript, so `node` runs it without a TypeScript loader).
 *
 *   node fake-llama-server.mjs --port 8080 [--host 127.0.0.1] [--start-delay-ms N]
 *     [--crash-on-start] [--crash-after-chunks N] [--chunk-delay-ms N] [--reply TEXT]
 *     [--spawn-child] [--ignore-sigterm] [any other llama-server flag, ignored]
 *
 * - GET /health: 503 `{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`
 *   for the first --start-delay-ms, then 200 `{"status":"ok"}`.
 * - GET /v1/models, POST /v1/chat/completions (JSON, or SSE ending with `data: [DONE]`, usage
 *   when `stream_options.include_usage`), POST /v1/completions, POST /v1/embeddings.
 * - --crash-on-start: writes a load error to stderr and exits with code 3 after the delay.
 * - --crash-after-chunks N: a stream that has sent N chunks kills the process (exit code 1).
 * - --spawn-child: forks a helper process into the same process group; GET /debug/child
 *   answers `{"pid": N}`.
 * - --ignore-sigterm: survives SIGTERM (only SIGKILL ends it).
 * - GET /debug/args answers the command-line arguments it got.
 * Token counts are word counts.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import process from 'node:process';

const args = process.argv.slice(2);

function option(name) {
  const index = args.indexOf(name);
  if (index !== -1) return args[index + 1];
  const inline = args.find((arg) => arg.startsWith(`${name}=`));
  return inline ? inline.slice(name.length + 1) : undefined;
}

const port = Number(option('--port'));
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write('error: --port N is required\n');
  process.exit(2);
}
const host = option('--host') ?? '127.0.0.1';
const startDelayMs = Number(option('--start-delay-ms') ?? 0);
const crashOnStart = args.includes('--crash-on-start');
const crashAfterChunks =
  option('--crash-after-chunks') === undefined ? undefined : Number(option('--crash-after-chunks'));
const chunkDelayMs = Number(option('--chunk-delay-ms') ?? 0);
const reply = option('--reply') ?? 'Hello from the fake llama-server.';
const modelId = option('--alias') ?? 'fake-model';
const startedAt = Date.now();

process.stderr.write(`main: loading model (fake llama-server, pid ${process.pid})\n`);

let helper;
if (args.includes('--spawn-child')) {
  // Same process group (not detached), no inherited pipes: a helper like a real server's.
  helper = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
}

if (args.includes('--ignore-sigterm')) {
  process.on('SIGTERM', () => process.stderr.write('main: ignoring SIGTERM\n'));
} else {
  process.on('SIGTERM', () => {
    process.stderr.write('main: SIGTERM received, shutting down\n');
    server.close();
    // Wait for the helper, which got the same SIGTERM through the group, so it is reaped here.
    if (helper && helper.exitCode === null && helper.signalCode === null) {
      helper.once('exit', () => process.exit(0));
    } else {
      process.exit(0);
    }
  });
}

if (crashOnStart) {
  setTimeout(() => {
    process.stderr.write("llama_model_load: error loading model: tensor 'blk.0.ffn' missing\n");
    process.stderr.write('main: exiting due to model loading error\n');
    process.exit(3);
  }, startDelayMs);
}

const words = (text) => (typeof text === 'string' ? text.split(/\s+/).filter(Boolean).length : 0);

function promptWords(messages) {
  let count = 0;
  for (const message of Array.isArray(messages) ? messages : []) {
    if (typeof message?.content === 'string') count += words(message.content);
    else if (Array.isArray(message?.content)) {
      for (const part of message.content) count += words(part?.text);
    }
  }
  return count;
}

function send(response, status, body) {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

function error(response, status, message, type) {
  send(response, status, { error: { code: status, message, type } });
}

const loading = () => crashOnStart || Date.now() - startedAt < startDelayMs;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function stream(response, body, id, prompt) {
  response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choices, extra = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: body.model ?? modelId, choices, ...extra })}\n\n`;
  const pieces = reply.split(/(?=\s)/);
  const events = [
    chunk([{ index: 0, delta: { role: 'assistant', content: null }, finish_reason: null }]),
    ...pieces.map((piece) => chunk([{ index: 0, delta: { content: piece }, finish_reason: null }])),
    chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]),
  ];
  if (body.stream_options?.include_usage === true) {
    const completion = words(reply);
    events.push(
      chunk([], {
        usage: {
          prompt_tokens: prompt,
          completion_tokens: completion,
          total_tokens: prompt + completion,
        },
      }),
    );
  }
  events.push('data: [DONE]\n\n');
  let sent = 0;
  for (const event of events) {
    if (response.destroyed) return;
    if (crashAfterChunks !== undefined && sent >= crashAfterChunks) {
      // Let the chunks already written reach the client, then die without ending the stream.
      await sleep(50);
      process.stderr.write(`main: simulated crash after ${sent} chunks\n`);
      process.exit(1);
    }
    response.write(event);
    sent++;
    if (chunkDelayMs) await sleep(chunkDelayMs);
  }
  response.end();
}

async function handle(request, response) {
  const url = new URL(request.url ?? '/', 'http://fake');
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  let body = {};
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      return error(response, 400, 'invalid JSON', 'invalid_request_error');
    }
  }
  const route = `${request.method} ${url.pathname}`;
  if (route === 'GET /health') {
    if (loading()) return error(response, 503, 'Loading model', 'unavailable_error');
    return send(response, 200, { status: 'ok' });
  }
  if (route === 'GET /debug/child') return send(response, 200, { pid: helper?.pid ?? null });
  if (route === 'GET /debug/args') return send(response, 200, { args });
  if (loading()) return error(response, 503, 'Loading model', 'unavailable_error');
  if (route === 'GET /v1/models') {
    return send(response, 200, {
      object: 'list',
      data: [{ id: modelId, object: 'model', created: 0, owned_by: 'llamacpp' }],
    });
  }
  const id = `chatcmpl-fake-${Math.random().toString(36).slice(2, 10)}`;
  if (route === 'POST /v1/chat/completions') {
    const prompt = promptWords(body.messages);
    if (body.stream === true) return stream(response, body, id, prompt);
    const completion = words(reply);
    return send(response, 200, {
      id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model ?? modelId,
      choices: [
        { index: 0, message: { role: 'assistant', content: reply }, finish_reason: 'stop' },
      ],
      usage: {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
      },
    });
  }
  if (route === 'POST /v1/completions') {
    const prompt = words(Array.isArray(body.prompt) ? body.prompt.join(' ') : body.prompt);
    const completion = words(reply);
    return send(response, 200, {
      id,
      object: 'text_completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model ?? modelId,
      choices: [{ index: 0, text: reply, finish_reason: 'stop' }],
      usage: {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
      },
    });
  }
  if (route === 'POST /v1/embeddings') {
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    const prompt = inputs.reduce((sum, input) => sum + words(input), 0);
    return send(response, 200, {
      object: 'list',
      model: body.model ?? modelId,
      data: inputs.map((_, index) => ({
        object: 'embedding',
        index,
        embedding: [1, 0, 0, 0],
      })),
      usage: { prompt_tokens: prompt, total_tokens: prompt },
    });
  }
  return error(response, 404, 'File Not Found', 'not_found_error');
}

const server = createServer((request, response) => {
  handle(request, response).catch((cause) => {
    if (!response.headersSent) error(response, 500, String(cause), 'server_error');
    else response.destroy();
  });
});
server.listen(port, host, () => {
  process.stderr.write(`main: server is listening on http://${host}:${port}\n`);
});
server.on('error', (cause) => {
  process.stderr.write(`main: could not bind ${host}:${port}: ${cause.message}\n`);
  process.exit(1);
});
