/**
 * Requests the backend refuses, and a model file that is not there. Requests are checked
 * before the model loads, so these run without any model file (and never load one).
 */
import { isTollgateError } from '@tollgate/protocol';
import { describe, expect, test } from 'vitest';
import { createLlamaCppBackend } from './index.js';

// biome-ignore lint/suspicious/noExplicitAny: response bodies are read loosely and checked by assertions.
type Loose = Record<string, any>;

const missingPath = '/nonexistent/tollgate-tests/missing-model.gguf';
const model = 'missing-model';
const signal = () => new AbortController().signal;
const user = [{ role: 'user' as const, content: 'Hi' }];

function backend() {
  return createLlamaCppBackend({ modelPath: missingPath });
}

async function expectError(
  response: Promise<Response>,
  status: number,
  param: string | null,
): Promise<Loose> {
  const answer = await response;
  expect(answer.status).toBe(status);
  expect(answer.headers.get('content-type')).toMatch(/application\/json/);
  const body = (await answer.json()) as Loose;
  expect(typeof body.error.message).toBe('string');
  expect(typeof body.error.type).toBe('string');
  expect(body.error.param).toBe(param);
  return body;
}

describe('llamacpp: options', () => {
  test('behavior: the model id and name come from the file name', () => {
    const created = createLlamaCppBackend({ modelPath: '/models/Qwen3-0.6B-Q8_0.GGUF' });
    expect(created.modelId).toBe('Qwen3-0.6B-Q8_0');
    expect(created.name).toBe('llamacpp@Qwen3-0.6B-Q8_0.GGUF');
    expect(created.kind).toBe('llamacpp');
  });

  test('behavior: a file: URL is taken as a path', () => {
    const created = createLlamaCppBackend({
      modelPath: new URL('file:///models/tiny.gguf'),
      modelId: 'tiny-model',
      name: 'embedded',
    });
    expect(created.modelPath).toBe('/models/tiny.gguf');
    expect(created.modelId).toBe('tiny-model');
    expect(created.name).toBe('embedded');
  });

  test('error: bad options throw at creation', () => {
    expect(() => createLlamaCppBackend({ modelPath: '' })).toThrow(TypeError);
    expect(() => createLlamaCppBackend({ modelPath: missingPath, sequences: 0 })).toThrow(
      RangeError,
    );
    expect(() => createLlamaCppBackend({ modelPath: missingPath, contextSize: 1.5 })).toThrow(
      RangeError,
    );
    expect(() => createLlamaCppBackend({ modelPath: missingPath, threads: -1 })).toThrow(
      RangeError,
    );
    expect(() => createLlamaCppBackend({ modelPath: missingPath, maxQueue: -1 })).toThrow(
      RangeError,
    );
  });
});

describe('llamacpp: a missing model file', () => {
  test('error: health is not ok and names the path; listing still names the model', async () => {
    const missing = backend();
    const health = await missing.health();
    expect(health.ok).toBe(false);
    expect(health.detail).toContain(missingPath);
    expect(await missing.listModels()).toEqual([{ id: model, ownedBy: 'llamacpp' }]);
  });

  test('error: requests get 503 upstream_unavailable naming the path, streamed or not', async () => {
    const missing = backend();
    for (const stream of [false, true]) {
      const body = await expectError(
        missing.chatCompletions({ model, messages: user, stream }, { signal: signal() }),
        503,
        null,
      );
      expect(body.error.code).toBe('upstream_unavailable');
      expect(body.error.message).toContain(missingPath);
    }
    await expectError(
      missing.completions({ model, prompt: 'Hi' }, { signal: signal() }),
      503,
      null,
    );
    await expectError(missing.embeddings({ model, input: 'Hi' }, { signal: signal() }), 503, null);
  });

  test('error: load() rejects with upstream_unavailable', async () => {
    const error = await backend()
      .load()
      .then(
        () => undefined,
        (reason: unknown) => reason,
      );
    expect(isTollgateError(error)).toBe(true);
    expect((error as { code: string }).code).toBe('upstream_unavailable');
    expect((error as Error).message).toMatch(/no model file at .*Check the model path/);
  });

  test('error: a caller signal aborted before the call rejects with its reason', async () => {
    const controller = new AbortController();
    const reason = new Error('already gone');
    controller.abort(reason);
    await expect(
      backend().chatCompletions({ model, messages: user }, { signal: controller.signal }),
    ).rejects.toBe(reason);
  });

  test('error: after close, health says closed and requests get 503', async () => {
    const closing = backend();
    await closing.close();
    expect(await closing.health()).toEqual({ ok: false, detail: 'closed' });
    const body = await expectError(
      closing.chatCompletions({ model, messages: user }, { signal: signal() }),
      503,
      null,
    );
    expect(body.error.code).toBe('service_unavailable');
  });
});

describe('llamacpp: requests it refuses with 400 (checked before loading)', () => {
  const chat = (fields: Loose) =>
    backend().chatCompletions({ model, messages: user, ...fields }, { signal: signal() });

  test('error: another model is 404 model_not_found naming both', async () => {
    const body = await expectError(chat({ model: 'gpt-4o' }), 404, 'model');
    expect(body.error.code).toBe('model_not_found');
    expect(body.error.message).toContain('gpt-4o');
    expect(body.error.message).toContain(model);
  });

  test.each([
    ['n > 1', { n: 2 }, 'n'],
    ['max_tokens 0', { max_tokens: 0 }, 'max_tokens'],
    [
      'max_completion_tokens not an integer',
      { max_completion_tokens: 2.5 },
      'max_completion_tokens',
    ],
    ['a negative temperature', { temperature: -1 }, 'temperature'],
    ['top_p above 1', { top_p: 1.5 }, 'top_p'],
    ['top_k not an integer', { top_k: 'many' }, 'top_k'],
    ['a seed that is not an integer', { seed: 1.5 }, 'seed'],
    ['an empty stop sequence', { stop: ['ok', ''] }, 'stop'],
    ['a stop that is not text', { stop: 42 }, 'stop'],
    ['frequency_penalty out of range', { frequency_penalty: 3 }, 'frequency_penalty'],
    ['logprobs', { logprobs: true }, 'logprobs'],
    ['top_logprobs', { top_logprobs: 2 }, 'top_logprobs'],
    [
      'tools',
      { tools: [{ type: 'function', function: { name: 'get_weather', parameters: {} } }] },
      'tools',
    ],
    ['a JSON response_format', { response_format: { type: 'json_object' } }, 'response_format'],
  ])('error: %s', async (_label, fields, param) => {
    await expectError(chat(fields), 400, param);
  });

  test.each([
    [
      'an image part',
      [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:,' } }] }],
      'messages[0].content[0].type',
    ],
    [
      'a text part without text',
      [{ role: 'user', content: [{ type: 'text' }] }],
      'messages[0].content[0].text',
    ],
    [
      'a tool message',
      [
        { role: 'user', content: 'Hi' },
        { role: 'tool', content: '{}', tool_call_id: 'call_1' },
      ],
      'messages[1].role',
    ],
    [
      'assistant tool calls',
      [
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } },
          ],
        },
      ],
      'messages[0].tool_calls',
    ],
    ['no messages', [], 'messages'],
  ])('error: %s', async (_label, messages, param) => {
    await expectError(chat({ messages }), 400, param);
  });

  test('behavior: tools with tool_choice "none" and a text response_format are accepted (503 here: no file)', async () => {
    await expectError(
      chat({
        tools: [{ type: 'function', function: { name: 'f' } }],
        tool_choice: 'none',
        response_format: { type: 'text' },
      }),
      503,
      null,
    );
  });

  test.each([
    ['several prompts', { prompt: ['a', 'b'] }, 'prompt'],
    ['echo', { prompt: 'a', echo: true }, 'echo'],
    ['suffix', { prompt: 'a', suffix: 'b' }, 'suffix'],
    ['best_of > 1', { prompt: 'a', best_of: 2 }, 'best_of'],
    ['logprobs', { prompt: 'a', logprobs: 1 }, 'logprobs'],
  ])('error: completions with %s', async (_label, fields, param) => {
    await expectError(
      backend().completions({ model, ...fields } as never, { signal: signal() }),
      400,
      param,
    );
  });

  test.each([
    ['an empty string', { input: '' }, 'input'],
    ['an empty string in a list', { input: ['a', ''] }, 'input[1]'],
    ['an empty list', { input: [] }, 'input'],
    ['a mixed list', { input: ['a', 3] }, 'input'],
    ['base85', { input: 'a', encoding_format: 'base85' }, 'encoding_format'],
  ])('error: embeddings with %s', async (_label, fields, param) => {
    await expectError(
      backend().embeddings({ model, ...fields } as never, { signal: signal() }),
      400,
      param,
    );
  });

  test('error: embeddings turned off', async () => {
    const body = await expectError(
      createLlamaCppBackend({ modelPath: missingPath, embedding: false }).embeddings(
        { model, input: 'Hi' },
        { signal: signal() },
      ),
      400,
      'model',
    );
    expect(body.error.message).toContain('embedding: false');
  });
});
