/**
 * Local models through a real gateway: servers the supervisor starts on the first request
 * (a fake llama-server program; the real GGUF for the memory estimate) with /admin/models,
 * and a GGUF file run in-process (type llamacpp) answering the openai SDK and the official
 * ollama client with real inference on the tiny test model.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fakeLlamaServerCommand } from '@tollgate/backends/testing';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from './config.js';
import { type Gateway, startGateway } from './server.js';
import { captureLogger, tempDataDir, testStore } from './test-helpers.js';

vi.setConfig({ testTimeout: 120_000, hookTimeout: 120_000 });

// The repository's shared/ folder sits beside the checkout.
const modelFile = fileURLToPath(
  new URL('../../../../shared/models/llama-2-tiny-random.gguf', import.meta.url),
);
const haveModel = existsSync(modelFile);
const ADMIN = 'admin-local-models';
const KEY = 'sk-local-models';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(values: Record<string, unknown>): Promise<Gateway> {
  const data = tempDataDir();
  cleanups.push(data.cleanup);
  const gateway = await startGateway(
    loadConfig({
      env: {},
      argv: { port: 0 },
      values: { data_dir: data.path, admin_key: ADMIN, api_keys: [KEY], ...values },
    }),
    { logger: captureLogger().logger, store: await testStore() },
  );
  cleanups.push(() => gateway.close());
  return gateway;
}

function admin(gateway: Gateway, path: string, body?: unknown): Promise<Response> {
  return fetch(`${gateway.url}/admin${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

async function modelState(gateway: Gateway, id: string): Promise<Record<string, unknown>> {
  const listing = (await (await admin(gateway, '/models')).json()) as {
    data: Array<Record<string, unknown>>;
  };
  return listing.data.find((entry) => entry.id === id)!;
}

const chat = (model: string) => ({
  model,
  messages: [{ role: 'user' as const, content: 'Say hello' }],
  max_tokens: 8,
});

describe('models the gateway starts on demand', () => {
  it('behavior: the first request starts the server, /admin/models shows it ready with its memory estimate, unload stops it', async () => {
    const gateway = await start({
      models: {
        'fake-llama': {
          command: fakeLlamaServerCommand({ startDelayMs: 300 }),
          ...(haveModel ? { model_path: modelFile } : {}),
          ttl_seconds: 600,
        },
      },
    });
    expect(await modelState(gateway, 'fake-llama')).toMatchObject({
      state: 'stopped',
      in_flight: 0,
    });
    const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const completion = await openai.chat.completions.create(chat('fake-llama'));
    expect(completion.choices[0]?.message.content).toBeTruthy();
    const ready = await modelState(gateway, 'fake-llama');
    expect(ready).toMatchObject({
      state: 'ready',
      port: expect.any(Number),
      pid: expect.any(Number),
    });
    if (haveModel) expect(ready.memory_estimate_bytes).toBeGreaterThan(1_000_000);
    const unloaded = await admin(gateway, '/models/fake-llama/unload', {});
    expect(unloaded.status).toBe(200);
    expect(await unloaded.json()).toMatchObject({ state: 'stopped' });
    // Loaded again by hand, with an allowed runtime flag.
    const loaded = await admin(gateway, '/models/fake-llama/load', {
      flags: ['--ctx-size', '2048'],
    });
    expect(loaded.status).toBe(200);
    expect(await loaded.json()).toMatchObject({ state: 'ready', flags: ['--ctx-size', '2048'] });
  });

  it('error: a server that exits on start answers 503 with the reason; flags with a path are refused', async () => {
    const gateway = await start({
      models: { broken: { command: fakeLlamaServerCommand({ crashOnStart: true }) } },
    });
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify(chat('broken')),
    });
    expect(response.status).toBe(503);
    const body = (await response.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/exit|code 3/i);
    const refused = await admin(gateway, '/models/broken/load', {
      flags: ['--model', '/etc/passwd'],
    });
    expect(refused.status).toBe(400);
    const unknown = await admin(gateway, '/models/nope/load', {});
    expect(unknown.status).toBe(404);
  });
});

describe.skipIf(!haveModel)(`a GGUF run in-process (needs ${modelFile})`, () => {
  it('behavior: the openai SDK and the ollama client get real answers, streamed and not, with real token counts', async () => {
    const gateway = await start({
      backends: [{ type: 'llamacpp', url: modelFile, context_size: 512, threads: 1 }],
    });
    const openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 });
    const models = await openai.models.list();
    expect(models.data.map((model) => model.id)).toEqual(['llama-2-tiny-random']);

    const completion = await openai.chat.completions.create(chat('llama-2-tiny-random'));
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(0);
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
    expect(completion.usage?.completion_tokens).toBeLessThanOrEqual(8);

    const stream = await openai.chat.completions.create({
      ...chat('llama-2-tiny-random'),
      stream: true,
      stream_options: { include_usage: true },
    });
    let chunks = 0;
    let usage: { completion_tokens: number } | undefined;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) chunks += 1;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(chunks).toBeGreaterThan(1);
    expect(usage?.completion_tokens).toBeGreaterThan(0);

    const embeddings = await openai.embeddings.create({
      model: 'llama-2-tiny-random',
      input: 'hi',
    });
    expect(embeddings.data[0]?.embedding.length).toBeGreaterThan(0);

    const ollama = new Ollama({ host: gateway.url, headers: { authorization: `Bearer ${KEY}` } });
    const answer = await ollama.chat({
      model: 'llama-2-tiny-random',
      messages: [{ role: 'user', content: 'Say hello' }],
      options: { num_predict: 6 },
    });
    expect(answer.done).toBe(true);
    expect(answer.eval_count).toBeGreaterThan(0);
    expect(answer.eval_count).toBeLessThanOrEqual(6);
    let parts = 0;
    for await (const part of await ollama.generate({
      model: 'llama-2-tiny-random',
      prompt: 'Once upon a time',
      stream: true,
      options: { num_predict: 6 },
    })) {
      if (!part.done) parts += 1;
      else expect(part.prompt_eval_count).toBeGreaterThan(0);
    }
    expect(parts).toBeGreaterThan(1);
    const embedded = await ollama.embed({ model: 'llama-2-tiny-random', input: ['a', 'b'] });
    expect(embedded.embeddings).toHaveLength(2);
  });
});
