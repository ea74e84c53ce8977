import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isDiscoveryError, probe } from './index.js';
import { type FakeServer, startFakeServer, startRedirectServer } from './testing.js';

type Route = { status?: number; body?: unknown; text?: string };

/** A fetch that answers from a table of paths (404 elsewhere), for shapes no fake speaks. */
function fetchFrom(routes: Record<string, Route>): typeof fetch {
  return async (input) => {
    const path = new URL(String(input)).pathname;
    const route = routes[path];
    if (!route) return new Response('not found', { status: 404 });
    const text = route.text ?? (route.body === undefined ? '' : JSON.stringify(route.body));
    return new Response(text, { status: route.status ?? 200 });
  };
}

const root = 'http://127.0.0.1:9';
const openAIList = { object: 'list', data: [{ id: 'model-a', object: 'model', owned_by: 'me' }] };

describe('probe', () => {
  let vllm: FakeServer;
  let redirect: FakeServer;

  beforeAll(async () => {
    vllm = await startFakeServer({ kind: 'vllm' });
    redirect = await startRedirectServer(vllm.url);
  });

  afterAll(async () => {
    await redirect.close();
    await vllm.close();
  });

  test('behavior: a trailing /v1 in the URL is dropped', async () => {
    const server = await probe(`${vllm.url}/v1/`);
    expect(server).toMatchObject({ url: vllm.url, type: 'vllm' });
  });

  test('behavior: a redirect is not followed, so nothing is found behind it', async () => {
    const before = vllm.requests.length;
    expect(await probe(redirect.url)).toBeUndefined();
    expect(redirect.requests).toContain('GET /v1/models');
    expect(vllm.requests.length).toBe(before);
  });

  test('behavior: a label is reported', async () => {
    expect(await probe(vllm.url, { label: 'big' })).toMatchObject({ label: 'big' });
  });

  test('behavior: Ollama tags without /api/version are not Ollama', async () => {
    const server = await probe(root, {
      fetch: fetchFrom({
        '/api/tags': { body: { models: [{ name: 'x:latest', model: 'x:latest', digest: 'ab' }] } },
        '/v1/models': { body: openAIList },
      }),
    });
    expect(server).toMatchObject({ type: 'openai', url: `${root}/v1`, models: ['model-a'] });
  });

  test('behavior: /api/version without the tags shape is not Ollama', async () => {
    const server = await probe(root, {
      fetch: fetchFrom({
        '/api/version': { body: { version: '0.12.6' } },
        '/api/tags': { body: { models: 'none' } },
        '/v1/models': { body: openAIList },
      }),
    });
    expect(server?.type).toBe('openai');
  });

  test('behavior: /version without models owned by vllm is not vLLM', async () => {
    const server = await probe(root, {
      fetch: fetchFrom({
        '/version': { body: { version: '0.11.0' } },
        '/health': { status: 200 },
        '/v1/models': { body: openAIList },
      }),
    });
    expect(server?.type).toBe('openai');
  });

  test('behavior: /health {"status":"ok"} alone is not llama-server', async () => {
    const server = await probe(root, {
      fetch: fetchFrom({
        '/health': { body: { status: 'ok' } },
        '/v1/models': { body: openAIList },
      }),
    });
    expect(server?.type).toBe('openai');
  });

  test("behavior: llama-server's router mode /props (no slots) is llama-server", async () => {
    const server = await probe(root, {
      fetch: fetchFrom({
        '/props': {
          body: {
            role: 'router',
            model_alias: 'llama-server',
            model_path: 'none',
            default_generation_settings: { params: {}, n_ctx: 0 },
          },
        },
        '/health': { body: { status: 'ok' } },
        '/v1/models': { body: { object: 'list', data: [{ id: 'a' }, { id: 'b' }] } },
      }),
    });
    expect(server).toMatchObject({ type: 'llama-server', models: ['a', 'b'], healthy: true });
  });

  test('behavior: an empty LM Studio (no models) is still LM Studio', async () => {
    const server = await probe(root, {
      fetch: fetchFrom({
        '/api/v0/models': { body: { object: 'list', data: [] } },
        '/v1/models': { body: { object: 'list', data: [] } },
      }),
    });
    expect(server).toMatchObject({ type: 'lm-studio', models: [], healthy: true });
  });

  test('behavior: LM Studio whose /v1/models fails lists the native models and is not healthy', async () => {
    const server = await probe(root, {
      fetch: fetchFrom({
        '/api/v0/models': {
          body: { object: 'list', data: [{ id: 'm', state: 'not-loaded', max_context_length: 8 }] },
        },
        '/v1/models': { body: { error: 'Unexpected endpoint or method. (GET /v1/models)' } },
      }),
    });
    expect(server).toMatchObject({ type: 'lm-studio', models: ['m'], healthy: false });
  });

  test('behavior: a generic server listing models in the Ollama shape is openai', async () => {
    const server = await probe(root, {
      fetch: fetchFrom({ '/v1/models': { body: { models: [{ name: 'x' }, { model: 'y' }] } } }),
    });
    expect(server).toMatchObject({ type: 'openai', models: ['x', 'y'] });
  });

  test.each([
    ['{"data": []} without object "list"', { body: { data: [] } }],
    ['entries without ids', { body: { object: 'list', data: [{ name: 1 }] } }],
    ['an error with 200', { body: { error: 'nope' } }],
    ['a list with status 401', { status: 401, body: openAIList }],
    ['a JSON array', { body: [{ id: 'x' }] }],
    ['plain text', { text: 'OK' }],
  ])('behavior: /v1/models with %s lists nothing', async (_name, route) => {
    expect(await probe(root, { fetch: fetchFrom({ '/v1/models': route }) })).toBeUndefined();
  });

  test('behavior: a body past 4 MiB is not read', async () => {
    const huge = JSON.stringify({ ...openAIList, padding: 'x'.repeat(5 * 1024 * 1024) });
    const fetchHuge: typeof fetch = async () => new Response(huge);
    expect(await probe(root, { fetch: fetchHuge })).toBeUndefined();
  });

  test('behavior: a fetch that throws synchronously is a server not found', async () => {
    const throwing = (() => {
      throw new TypeError('boom');
    }) as unknown as typeof fetch;
    expect(await probe(root, { fetch: throwing })).toBeUndefined();
  });

  test.each([['not a url'], ['ftp://127.0.0.1:21'], ['']])(
    'error: %j is refused as a URL',
    async (url) => {
      const error = await probe(url).catch((caught: unknown) => caught);
      expect(isDiscoveryError(error)).toBe(true);
      expect(error).toMatchObject({ code: 'invalid_url' });
    },
  );

  test('error: a bad timeout is refused', async () => {
    await expect(probe(root, { timeoutMs: -5 })).rejects.toMatchObject({ code: 'invalid_option' });
  });
});
