/**
 * The fakes are what every other test trusts, so their protocol details are tested here.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { type FakeUpstream, type FakeUpstreamKind, startFakeUpstream } from './index.js';

const fakes: FakeUpstream[] = [];
async function fake(options: Parameters<typeof startFakeUpstream>[0] = {}): Promise<FakeUpstream> {
  const started = await startFakeUpstream(options);
  fakes.push(started);
  return started;
}
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((started) => started.close()));
});

function post(url: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
}

const chat = { model: 'fake-model', messages: [{ role: 'user', content: 'one two three' }] };

describe('startFakeUpstream', () => {
  test('behavior: OpenAI-kind streams carry a usage chunk only when asked, like the real servers', async () => {
    const server = await fake({ kind: 'vllm' });
    const plain = await (
      await post(`${server.baseURL}/chat/completions`, { ...chat, stream: true })
    ).text();
    expect(plain).not.toContain('"usage"');
    expect(plain.endsWith('data: [DONE]\n\n')).toBe(true);
    const asked = await (
      await post(`${server.baseURL}/chat/completions`, {
        ...chat,
        stream: true,
        stream_options: { include_usage: true },
      })
    ).text();
    expect(asked).toContain('"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}');
  });

  test.each([
    [
      'openai',
      { error: { message: 'nope', type: 'invalid_request_error', param: null, code: null } },
    ],
    ['llama-server', { error: { code: 400, message: 'nope', type: 'invalid_request_error' } }],
    ['vllm', { error: { message: 'nope', type: 'BadRequestError', param: null, code: 400 } }],
    [
      'lm-studio',
      { error: { message: 'nope', type: 'invalid_request_error', param: null, code: null } },
    ],
  ] as const)('behavior: errorStatus answers in the error shape of %s', async (kind, expected) => {
    const server = await fake({
      kind: kind as FakeUpstreamKind,
      errorStatus: 400,
      errorMessage: 'nope',
    });
    const response = await post(`${server.baseURL}/chat/completions`, chat);
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual(expected);
  });

  test("behavior: Ollama's native API answers errors as {error} and streams NDJSON unless stream is false", async () => {
    const server = await fake({ kind: 'ollama' });
    const missing = await post(`${server.url}/api/chat`, { ...chat, model: 'nope' });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'model "nope" not found, try pulling it first' });

    const streamed = await post(`${server.url}/api/chat`, chat);
    expect(streamed.headers.get('content-type')).toBe('application/x-ndjson');
    const lines = (await streamed.text())
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toHaveLength(6);
    expect(lines.at(-1)).toMatchObject({
      done: true,
      done_reason: 'stop',
      prompt_eval_count: 3,
      eval_count: 5,
    });

    const whole = await post(`${server.url}/api/chat`, { ...chat, stream: false });
    expect(await whole.json()).toMatchObject({
      message: { content: 'Hello from the fake upstream.' },
      done: true,
    });
    expect(server.requests.map((request) => request.path)).toEqual([
      '/api/chat',
      '/api/chat',
      '/api/chat',
    ]);
  });

  test('behavior: kind-specific probes answer as the real servers do', async () => {
    const lmStudio = await fake({ kind: 'lm-studio' });
    const unknown = await fetch(`${lmStudio.url}/props`);
    // LM Studio answers unknown routes with 200: a probe must look at the body.
    expect(unknown.status).toBe(200);
    expect(await unknown.json()).toHaveProperty('error');
    const vllm = await fake({ kind: 'vllm' });
    const health = await fetch(`${vllm.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('');
    expect((await fetch(`${vllm.url}/props`)).status).toBe(404);
    const llamaServer = await fake({ kind: 'llama-server' });
    expect(await (await fetch(`${llamaServer.url}/health`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${llamaServer.url}/props`)).json()).toHaveProperty('total_slots', 1);
    const ollama = await fake({ kind: 'ollama' });
    expect(await (await fetch(`${ollama.url}/api/version`)).json()).toHaveProperty('version');
    expect(await (await fetch(`${ollama.url}/api/tags`)).json()).toMatchObject({
      models: [{ name: 'fake-model' }],
    });
  });

  test('behavior: a client that leaves mid-stream is counted, and waitForClientAbort sees an abort already counted', async () => {
    const server = await fake({ chunkDelayMs: 20, reply: 'word '.repeat(200).trim() });
    const controller = new AbortController();
    const response = await post(
      `${server.baseURL}/chat/completions`,
      { ...chat, stream: true },
      controller.signal,
    );
    const reader = response.body!.getReader();
    await reader.read();
    controller.abort();
    await server.waitForClientAbort();
    expect(server.clientAborts).toBe(1);
    // Already awaited: the next wait needs a new abort.
    await expect(server.waitForClientAbort(50)).rejects.toThrow(/No client abort/);
  });

  test('behavior: failAfterChunks cuts the connection without counting a client abort', async () => {
    const server = await fake({ kind: 'llama-server', failAfterChunks: 1 });
    const response = await post(`${server.baseURL}/chat/completions`, { ...chat, stream: true });
    await expect(response.text()).rejects.toBeDefined();
    expect(server.clientAborts).toBe(0);
  });

  test('behavior: setBehavior with undefined clears an optional knob', async () => {
    const server = await fake({ errorStatus: 503 });
    expect((await post(`${server.baseURL}/chat/completions`, chat)).status).toBe(503);
    server.setBehavior({ errorStatus: undefined, models: undefined });
    expect((await post(`${server.baseURL}/chat/completions`, chat)).status).toBe(200);
  });

  test('behavior: errorAfterChunks sends an in-stream error and ends the response', async () => {
    const server = await fake({ kind: 'ollama', errorAfterChunks: 2, errorMessage: 'boom' });
    const text = await (
      await post(`${server.url}/api/generate`, { model: 'fake-model', prompt: 'x' })
    ).text();
    const lines = text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines).toHaveLength(3);
    expect(lines[2]).toEqual({ error: 'boom' });
  });
});
