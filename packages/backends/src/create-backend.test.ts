import { afterEach, describe, expect, test } from 'vitest';
import { type BackendConfig, createBackend } from './index.js';
import { type FakeUpstream, startFakeUpstream } from './testing/index.js';

const fakes: FakeUpstream[] = [];
async function fake(kind: FakeUpstream['kind']): Promise<FakeUpstream> {
  const started = await startFakeUpstream({ kind });
  fakes.push(started);
  return started;
}
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((started) => started.close()));
});

const chat = { model: 'fake-model', messages: [{ role: 'user' as const, content: 'hi' }] };

describe('createBackend', () => {
  test.each([
    ['openai', 'openai'],
    ['ollama', 'ollama'],
    ['llama-server', 'llama-server'],
    ['vllm', 'vllm'],
    ['lm-studio', 'lm-studio'],
    ['mlx', 'openai'],
  ] as const)(
    'behavior: type %s builds an adapter of that kind that talks to its server',
    async (type, fakeKind) => {
      const server = await fake(fakeKind);
      const url = type === 'openai' ? server.baseURL : server.url;
      const backend = createBackend({ type, url });
      expect(backend.kind).toBe(type);
      expect(backend.name).toBe(`${type}@${new URL(server.url).host}`);
      const response = await backend.chatCompletions(chat, {
        signal: new AbortController().signal,
      });
      expect(response.status).toBe(200);
    },
  );

  test.each(['ollama', 'llama-server', 'vllm', 'lm-studio', 'mlx'] as const)(
    'args: a root URL given with a trailing /v1 is tolerated for %s',
    async (type) => {
      const server = await fake(type === 'mlx' ? 'openai' : type);
      const backend = createBackend({ type, url: `${server.url}/v1/` });
      const response = await backend.chatCompletions(chat, {
        signal: new AbortController().signal,
      });
      expect(response.status).toBe(200);
      expect(server.requests.at(-1)!.path).toBe(
        type === 'ollama' ? '/api/chat' : '/v1/chat/completions',
      );
    },
  );

  test('args: name, API key and headers are passed to the adapter', async () => {
    const server = await fake('vllm');
    const backend = createBackend({
      type: 'vllm',
      url: server.url,
      name: 'gpu-box',
      apiKey: 'k',
      headers: { 'x-extra': 'yes' },
    });
    expect(backend.name).toBe('gpu-box');
    await (
      await backend.chatCompletions(chat, { signal: new AbortController().signal })
    ).arrayBuffer();
    const { headers } = server.requests.at(-1)!;
    expect(headers.authorization).toBe('Bearer k');
    expect(headers['x-extra']).toBe('yes');
  });

  test('error: type llamacpp points to its own package', () => {
    expect(() => createBackend({ type: 'llamacpp', url: '/models/a.gguf' })).toThrow(
      /@tollgate\/backend-llamacpp/,
    );
  });

  test('error: an unknown type is refused with the list of known ones', () => {
    expect(() =>
      createBackend({ type: 'tgi', url: 'http://127.0.0.1:1' } as unknown as BackendConfig),
    ).toThrow(/Unknown backend type "tgi".*openai, ollama/);
  });
});
