import { describe, expect, it } from 'vitest';
import {
  ChatCompletionRequestSchema,
  formatIssuePath,
  isTollgateError,
  ModelListSchema,
  type Operation,
  parseOperationRequest,
  TollgateError,
  UsageSchema,
} from './index.js';

/** Runs a parse expected to fail and returns the TollgateError it threw. */
function rejection(operation: Operation, body: unknown): TollgateError {
  try {
    parseOperationRequest(operation, body);
  } catch (error) {
    if (isTollgateError(error)) return error;
    throw error;
  }
  throw new Error('expected parseOperationRequest to throw');
}

const user = { role: 'user', content: 'Hello' };

describe('parseOperationRequest: pass-through', () => {
  it('behavior: unknown fields survive untouched at every level of a chat request', () => {
    const body = {
      model: 'llama3.1:8b',
      messages: [
        { role: 'system', content: 'Be brief.', cache_control: { type: 'ephemeral' } },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is in this image?', vendor_hint: 1 },
            {
              type: 'image_url',
              image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' },
            },
            { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } },
          ],
          images: ['iVBORw0KGgo='],
        },
        {
          role: 'assistant',
          content: null,
          reasoning_content: 'thinking...',
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Oslo"}', strict: true },
              extra_field: [1, 2, 3],
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 3}', meta: { source: 'cache' } },
      ],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            description: 'Weather for a city',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string' } },
              required: ['city'],
            },
            strict: true,
          },
          x_vendor: 'keep me',
        },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      response_format: {
        type: 'json_schema',
        json_schema: { name: 'w', schema: { type: 'object' } },
      },
      stream: true,
      stream_options: { include_usage: true, continuous_usage_stats: true },
      max_tokens: 256,
      top_k: 40,
      min_p: 0.05,
      repeat_penalty: 1.1,
      chat_template_kwargs: { enable_thinking: false },
      options: { num_ctx: 8192 },
      keep_alive: '5m',
      seed: null,
    };
    const copy = structuredClone(body);
    const parsed = parseOperationRequest('chat.completions', body);
    expect(parsed).toEqual(copy);
    // The input is not mutated either.
    expect(body).toEqual(copy);
  });

  it('behavior: unknown fields survive in completions and embeddings requests', () => {
    const completion = {
      model: 'm',
      prompt: ['a', 'b'],
      suffix: 'z',
      echo: true,
      logprobs: 2,
      top_k: 5,
    };
    expect(parseOperationRequest('completions', structuredClone(completion))).toEqual(completion);
    const embedding = {
      model: 'nomic-embed-text',
      input: [[1, 2], [3]],
      truncate: true,
      user: 'u1',
    };
    expect(parseOperationRequest('embeddings', structuredClone(embedding))).toEqual(embedding);
  });

  it('behavior: accepts every prompt and input shape OpenAI allows', () => {
    for (const prompt of ['text', ['a', 'b'], [1, 2, 3], [[1, 2], [3]]]) {
      expect(parseOperationRequest('completions', { model: 'm', prompt }).prompt).toEqual(prompt);
    }
    for (const input of ['text', ['a', 'b'], [1, 2, 3], [[1, 2], [3]]]) {
      expect(parseOperationRequest('embeddings', { model: 'm', input }).input).toEqual(input);
    }
  });

  it('behavior: nullable OpenAI fields accept null', () => {
    const parsed = parseOperationRequest('chat.completions', {
      model: 'm',
      messages: [user],
      stream: null,
      stream_options: null,
      max_tokens: null,
      max_completion_tokens: null,
      n: null,
    });
    expect(parsed.stream).toBeNull();
    expect(parsed.max_tokens).toBeNull();
  });

  it('behavior: the schemas are exported for direct use and keep unknown fields too', () => {
    expect(ChatCompletionRequestSchema.parse({ model: 'm', messages: [user], foo: 1 })).toEqual({
      model: 'm',
      messages: [user],
      foo: 1,
    });
    expect(
      UsageSchema.parse({
        prompt_tokens: 1,
        total_tokens: 2,
        prompt_tokens_details: { cached_tokens: 0 },
      }),
    ).toEqual({
      prompt_tokens: 1,
      total_tokens: 2,
      prompt_tokens_details: { cached_tokens: 0 },
    });
    expect(
      ModelListSchema.parse({
        object: 'list',
        data: [{ id: 'a', object: 'model', details: { family: 'llama' } }],
      }),
    ).toEqual({
      object: 'list',
      data: [{ id: 'a', object: 'model', details: { family: 'llama' } }],
    });
  });
});

describe('parseOperationRequest: errors', () => {
  it('error: a body that is not a JSON object', () => {
    for (const body of [null, undefined, 'hello', 42, true, [], [{ model: 'm' }]]) {
      const error = rejection('chat.completions', body);
      expect(error).toBeInstanceOf(TollgateError);
      expect(error.code).toBe('invalid_request');
      expect(error.status).toBe(400);
      expect(error.param).toBeNull();
      expect(error.message).toBe('The request body must be a JSON object.');
    }
  });

  it("error: a missing model gets OpenAI's message, for every operation", () => {
    for (const [operation, body] of [
      ['chat.completions', { messages: [user] }],
      ['completions', { prompt: 'x' }],
      ['embeddings', { input: 'x' }],
      ['chat.completions', {}],
    ] as const) {
      const error = rejection(operation, body);
      expect(error.status).toBe(400);
      expect(error.param).toBe('model');
      expect(error.message).toBe('You must provide a model parameter.');
    }
  });

  it('error: a model of the wrong type or empty names the field', () => {
    expect(rejection('chat.completions', { model: 5, messages: [user] })).toMatchObject({
      param: 'model',
      message: 'The "model" field must be a string naming a model.',
    });
    expect(rejection('chat.completions', { model: null, messages: [user] }).param).toBe('model');
    expect(rejection('chat.completions', { model: '', messages: [user] })).toMatchObject({
      param: 'model',
      message: 'The "model" field must not be empty.',
    });
  });

  it('error: missing required fields are named with their path', () => {
    expect(rejection('chat.completions', { model: 'm' })).toMatchObject({
      param: 'messages',
      message: "Missing required parameter: 'messages'.",
    });
    expect(rejection('completions', { model: 'm' })).toMatchObject({ param: 'prompt' });
    expect(rejection('embeddings', { model: 'm' })).toMatchObject({ param: 'input' });
    expect(
      rejection('chat.completions', { model: 'm', messages: [user, { content: 'x' }] }),
    ).toMatchObject({
      param: 'messages[1].role',
      message: "Missing required parameter: 'messages[1].role'.",
    });
  });

  it('error: params point into nested arrays and objects', () => {
    const cases: Array<[unknown, string]> = [
      [{ model: 'm', messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
      [{ model: 'm', messages: [user, { role: 'user', content: 5 }] }, 'messages[1].content'],
      [{ model: 'm', messages: [user, 'hello'] }, 'messages[1]'],
      [
        { model: 'm', messages: [{ role: 'user', content: [{ text: 'no type' }] }] },
        'messages[0].content[0].type',
      ],
      [
        {
          model: 'm',
          messages: [
            { role: 'assistant', tool_calls: [{ id: 'c', function: { arguments: '{}' } }] },
          ],
        },
        'messages[0].tool_calls[0].function.name',
      ],
      [
        {
          model: 'm',
          messages: [
            { role: 'assistant', tool_calls: [{ function: { name: 'f', arguments: {} } }] },
          ],
        },
        'messages[0].tool_calls[0].function.arguments',
      ],
      [
        {
          model: 'm',
          messages: [user],
          tools: [{ type: 'function', function: { description: 'd' } }],
        },
        'tools[0].function.name',
      ],
      [{ model: 'm', messages: [user], tools: [{ function: { name: 'f' } }] }, 'tools[0].type'],
      [{ model: 'm', messages: [user], stream: 'yes' }, 'stream'],
      [
        { model: 'm', messages: [user], stream_options: { include_usage: 'yes' } },
        'stream_options.include_usage',
      ],
      [{ model: 'm', messages: [user], max_tokens: -1 }, 'max_tokens'],
      [{ model: 'm', messages: [user], max_tokens: 1.5 }, 'max_tokens'],
      [{ model: 'm', messages: [user], n: 0 }, 'n'],
      [{ model: 'm', messages: [user], response_format: { schema: {} } }, 'response_format.type'],
    ];
    for (const [body, param] of cases) {
      const error = rejection('chat.completions', body);
      expect(error.param, JSON.stringify(body)).toBe(param);
      expect(error.status).toBe(400);
      expect(error.code).toBe('invalid_request');
      // Every message is a sentence that names the field or says what to send.
      expect(error.message).toMatch(/\.$/);
    }
  });

  it('error: an unknown role lists the valid ones', () => {
    expect(
      rejection('chat.completions', { model: 'm', messages: [{ role: 'wizard' }] }).message,
    ).toBe('A message "role" must be one of system, developer, user, assistant, tool.');
  });

  it('error: empty messages', () => {
    expect(rejection('chat.completions', { model: 'm', messages: [] })).toMatchObject({
      param: 'messages',
      message: '"messages" must hold at least one message.',
    });
  });

  it("error: zod's own wording is prefixed with the field", () => {
    const error = rejection('embeddings', { model: 'm', input: 'x', encoding_format: 'hex' });
    expect(error.param).toBe('encoding_format');
    expect(error.message).toMatch(/^Invalid value for 'encoding_format': .+\.$/);
    expect(rejection('embeddings', { model: 'm', input: { text: 'x' } }).param).toBe('input');
    expect(rejection('embeddings', { model: 'm', input: 'x', dimensions: 0 }).param).toBe(
      'dimensions',
    );
  });

  it('behavior: accepts the message shapes of real clients', () => {
    const parsed = parseOperationRequest('chat.completions', {
      model: 'm',
      messages: [
        { role: 'developer', content: 'rules' },
        { role: 'user', name: 'ann', content: [{ type: 'text', text: 'hi' }] },
        {
          role: 'assistant',
          content: '',
          tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 'a', content: [{ type: 'text', text: 'result' }] },
        { role: 'function', name: 'f', content: 'legacy' },
        { role: 'assistant' },
      ],
    });
    expect(parsed.messages).toHaveLength(6);
    expect(parsed.messages[2]!.tool_calls![0]!.function.name).toBe('f');
  });
});

describe('formatIssuePath', () => {
  it('behavior: spells paths as OpenAI names request fields', () => {
    expect(formatIssuePath(['messages', 0, 'content', 1, 'type'])).toBe(
      'messages[0].content[1].type',
    );
    expect(formatIssuePath([])).toBe('');
    expect(formatIssuePath([2, 'x'])).toBe('[2].x');
  });
});
