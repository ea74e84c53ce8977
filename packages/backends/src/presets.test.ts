import { afterEach, describe, expect, test } from 'vitest';
import { createLlamaServer, createLmStudio, createOpenAICompatible, createVllm } from './index.js';
import { FAKE_CONTEXT_LENGTH, type FakeUpstream, startFakeUpstream } from './testing/index.js';

const fakes: FakeUpstream[] = [];
async function fake(options: Parameters<typeof startFakeUpstream>[0]): Promise<FakeUpstream> {
  const started = await startFakeUpstream(options);
  fakes.push(started);
  return started;
}
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((started) => started.close()));
});

describe('server presets', () => {
  test('behavior: llama-server still loading its model is not healthy, and says so', async () => {
    const server = await fake({ kind: 'llama-server', loading: true });
    const backend = createLlamaServer({ url: server.url });
    expect(await backend.health()).toEqual({ ok: false, detail: 'loading model' });
    expect(server.requests.at(-1)!.path).toBe('/health');
    server.setBehavior({ loading: false });
    expect(await backend.health()).toEqual({ ok: true });
  });

  test('behavior: vLLM health reads /health and the version from /version', async () => {
    const server = await fake({ kind: 'vllm' });
    const health = await createVllm({ url: server.url }).health();
    expect(health).toEqual({ ok: true, version: '0.11.0' });
    expect(server.requests.map((request) => request.path).sort()).toEqual(['/health', '/version']);
  });

  test('behavior: LM Studio takes the context length from /api/v0/models', async () => {
    const server = await fake({ kind: 'lm-studio', models: ['qwen3-4b', 'nomic-embed'] });
    const models = await createLmStudio({ url: server.url }).listModels();
    expect(models).toEqual([
      { id: 'qwen3-4b', ownedBy: 'organization_owner', contextLength: FAKE_CONTEXT_LENGTH },
      { id: 'nomic-embed', ownedBy: 'organization_owner', contextLength: FAKE_CONTEXT_LENGTH },
    ]);
    expect(server.requests.map((request) => request.path).sort()).toEqual([
      '/api/v0/models',
      '/v1/models',
    ]);
  });

  test('behavior: LM Studio without the native listing still lists its models', async () => {
    // A generic OpenAI-compatible fake has no /api/v0/models.
    const server = await fake({ kind: 'openai' });
    const models = await createLmStudio({ url: server.url }).listModels();
    expect(models.map((model) => model.id)).toEqual(['fake-model']);
    expect(models[0]!.contextLength).toBeUndefined();
  });

  test('behavior: an upstream that answers health with an error status is not healthy, with the status in the detail', async () => {
    const server = await fake({ kind: 'openai' });
    // The API base is wrong: /v2/models does not exist.
    const backend = createOpenAICompatible({ baseURL: `${server.url}/v2` });
    const health = await backend.health();
    expect(health.ok).toBe(false);
    expect(health.detail).toMatch(/404/);
  });

  test('error: a health probe the caller gives up on is not healthy, and says it timed out', async () => {
    // A server that accepts the connection and never answers.
    const neverAnswers = ((_url: string, init: RequestInit) =>
      new Promise((_resolve, reject) => {
        init.signal!.addEventListener('abort', () => reject(init.signal!.reason));
      })) as unknown as typeof fetch;
    const backend = createLlamaServer({ url: 'http://127.0.0.1:8080', fetch: neverAnswers });
    const health = await backend.health({ signal: AbortSignal.timeout(50) });
    expect(health).toEqual({ ok: false, detail: 'timed out' });
  });

  test('error: a request that cannot be written as JSON is a 400 invalid_request and nothing is sent', async () => {
    let sent = 0;
    const counting = (() => {
      sent++;
      return Promise.resolve(new Response('{}'));
    }) as unknown as typeof fetch;
    const backend = createOpenAICompatible({ baseURL: 'http://127.0.0.1:9/v1', fetch: counting });
    let deep: unknown = 'x';
    for (let depth = 0; depth < 200_000; depth++) deep = [deep];
    for (const extra of [{ deep }, { big: 1n }]) {
      const error = await backend
        .chatCompletions(
          { model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra },
          { signal: new AbortController().signal },
        )
        .then(
          () => undefined,
          (failure: unknown) => failure,
        );
      expect(error).toMatchObject({ code: 'invalid_request', status: 400 });
    }
    expect(sent).toBe(0);
  });
});
