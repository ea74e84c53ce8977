/**
 * The OpenAI dialect of the fakes: /v1/* as OpenAI-compatible servers answer it, plus each
 * kind's own endpoints (llama-server /health and /props, vLLM /health and /version, LM Studio
 * /api/v0/models) and each kind's error body.
 */

import { errorTypeForStatus } from '@tollgate/protocol';
import { servedByOllama } from './fake-ollama.js';
import {
  countInputWords,
  countMessageWords,
  countWords,
  fakeEmbedding,
  inputList,
  splitReply,
} from './fake-text.js';
import {
  type FakeExchange,
  type FakeUpstreamKind,
  sendJson,
  sendText,
  withStreamError,
  writeStream,
} from './fake-upstream.js';

/** The context length every fake reports for its models, in tokens. */
export const FAKE_CONTEXT_LENGTH = 4096;

/** The version string the fakes report where the real server reports one. */
export const FAKE_VERSIONS: Record<FakeUpstreamKind, string> = {
  openai: '1.0.0-fake',
  ollama: '0.12.6',
  'llama-server': 'b6000-fake',
  vllm: '0.11.0',
  'lm-studio': '0.3.30',
};

const llamaServerErrorTypes: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  501: 'not_supported_error',
  503: 'unavailable_error',
};

const vllmErrorTypes: Record<number, string> = {
  400: 'BadRequestError',
  401: 'Unauthorized',
  404: 'NotFoundError',
  500: 'InternalServerError',
  501: 'NotImplementedError',
  503: 'ServiceUnavailableError',
};

/** The error body an OpenAI-dialect server of this kind sends. @internal */
export function openAIDialectErrorBody(
  kind: FakeUpstreamKind,
  status: number,
  message: string,
  code: string | null = null,
): unknown {
  switch (kind) {
    case 'llama-server':
      return {
        error: { code: status, message, type: llamaServerErrorTypes[status] ?? 'server_error' },
      };
    case 'vllm':
      return {
        error: {
          message,
          type: vllmErrorTypes[status] ?? 'InternalServerError',
          param: null,
          code: status,
        },
      };
    case 'ollama':
      return {
        error: {
          message,
          type: status >= 500 ? 'api_error' : 'invalid_request_error',
          param: null,
          code,
        },
      };
    default:
      return { error: { message, type: errorTypeForStatus(status), param: null, code } };
  }
}

function sendError(
  exchange: FakeExchange,
  status: number,
  message: string,
  code: string | null = null,
): void {
  sendJson(exchange.response, status, openAIDialectErrorBody(exchange.kind, status, message, code));
}

function modelNotFoundMessage(kind: FakeUpstreamKind, model: string): string {
  switch (kind) {
    case 'vllm':
      return `The model \`${model}\` does not exist.`;
    case 'ollama':
      return `model "${model}" not found, try pulling it first`;
    case 'lm-studio':
      return `Model "${model}" not found. Please check the model identifier.`;
    default:
      return `The model \`${model}\` does not exist or you do not have access to it.`;
  }
}

function sendNotFoundRoute(exchange: FakeExchange): void {
  const { kind, response, method, pathname } = exchange;
  if (kind === 'vllm') sendJson(response, 404, { detail: 'Not Found' });
  else if (kind === 'ollama') sendText(response, 404, '404 page not found');
  else if (kind === 'lm-studio') {
    // LM Studio answers unknown routes with 200 and an error field: probes must not take
    // "200" for "this endpoint exists".
    sendJson(response, 200, { error: `Unexpected endpoint or method. (${method} ${pathname})` });
  } else if (kind === 'llama-server') {
    sendJson(response, 404, openAIDialectErrorBody(kind, 404, 'File Not Found'));
  } else sendError(exchange, 404, `Unknown request URL: ${method} ${pathname}.`, 'unknown_url');
}

function ownedBy(kind: FakeUpstreamKind): string {
  switch (kind) {
    case 'llama-server':
      return 'llamacpp';
    case 'vllm':
      return 'vllm';
    case 'ollama':
      return 'library';
    case 'lm-studio':
      return 'organization_owner';
    default:
      return 'fake-upstream';
  }
}

const created = 1_700_000_000;

function modelList(kind: FakeUpstreamKind, models: string[]): unknown {
  const data = models.map((id) => {
    const entry: Record<string, unknown> = {
      id,
      object: 'model',
      created,
      owned_by: ownedBy(kind),
    };
    if (kind === 'llama-server') {
      entry.meta = {
        vocab_type: 2,
        n_vocab: 32_000,
        n_ctx_train: FAKE_CONTEXT_LENGTH,
        n_embd: 2048,
        n_params: 1_000_000_000,
        size: 700_000_000,
      };
    }
    if (kind === 'vllm') {
      Object.assign(entry, {
        root: id,
        parent: null,
        max_model_len: FAKE_CONTEXT_LENGTH,
        permission: [],
      });
    }
    return entry;
  });
  const list: Record<string, unknown> = { object: 'list', data };
  if (kind === 'llama-server') {
    // Recent llama-server builds also list models in Ollama's shape.
    list.models = models.map((id) => ({
      name: id,
      model: id,
      type: 'model',
      capabilities: ['completion'],
    }));
  }
  return list;
}

function lmStudioModels(models: string[]): unknown {
  return {
    object: 'list',
    data: models.map((id) => ({
      id,
      object: 'model',
      type: /embed/i.test(id) ? 'embeddings' : 'llm',
      publisher: 'fake-publisher',
      arch: 'llama',
      compatibility_type: 'gguf',
      quantization: 'Q4_K_M',
      state: 'loaded',
      max_context_length: FAKE_CONTEXT_LENGTH,
    })),
  };
}

/** OpenAI-compatible servers report a failure after the stream started as an error event. */
function streamErrorEvent(exchange: FakeExchange): (message: string) => string {
  return (message) => sse(openAIDialectErrorBody(exchange.kind, 500, message));
}

function sse(data: unknown): string {
  return `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

function record(body: unknown): Record<string, unknown> {
  return body && typeof body === 'object' && !Array.isArray(body)
    ? (body as Record<string, unknown>)
    : {};
}

/**
 * Checks what every inference request goes through: hang, loading, forced errors, the body,
 * the model. Returns the request body when the request should be answered normally.
 */
function admitInference(exchange: FakeExchange): Record<string, unknown> | undefined {
  const { behavior } = exchange;
  if (behavior.hang) return undefined;
  if (behavior.loading) {
    sendError(exchange, 503, 'Loading model');
    return undefined;
  }
  if (behavior.errorStatus !== undefined) {
    sendError(exchange, behavior.errorStatus, behavior.errorMessage ?? 'Simulated upstream error');
    return undefined;
  }
  if (exchange.invalidJson) {
    sendError(exchange, 400, 'The request body is not valid JSON.');
    return undefined;
  }
  const body = record(exchange.body);
  if (typeof body.model !== 'string' || !body.model) {
    sendError(exchange, 400, 'You must provide a model parameter.');
    return undefined;
  }
  const served =
    exchange.kind === 'ollama'
      ? servedByOllama(behavior.models, body.model)
      : behavior.models.includes(body.model);
  if (!served) {
    sendError(exchange, 404, modelNotFoundMessage(exchange.kind, body.model), 'model_not_found');
    return undefined;
  }
  return body;
}

function wantsToolCall(exchange: FakeExchange, body: Record<string, unknown>): boolean {
  return (
    exchange.behavior.toolCall !== undefined && Array.isArray(body.tools) && body.tools.length > 0
  );
}

function includeUsage(exchange: FakeExchange, body: Record<string, unknown>): boolean {
  return exchange.behavior.reportUsage && record(body.stream_options).include_usage === true;
}

function usageOf(promptTokens: number, completionTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

async function chatCompletions(exchange: FakeExchange): Promise<void> {
  const body = admitInference(exchange);
  if (!body) return;
  const { behavior } = exchange;
  const model = body.model as string;
  const id = exchange.nextId('chatcmpl');
  const usage = usageOf(countMessageWords(body.messages), countWords(behavior.reply));
  const toolCall = wantsToolCall(exchange, body) ? behavior.toolCall : undefined;
  const toolCallId = `call_${id.replace(/\W/g, '_')}`;

  if (body.stream !== true) {
    const message = toolCall
      ? {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: toolCallId,
              type: 'function',
              function: { name: toolCall.name, arguments: toolCall.arguments },
            },
          ],
        }
      : { role: 'assistant', content: behavior.reply };
    const answer: Record<string, unknown> = {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [
        { index: 0, message, logprobs: null, finish_reason: toolCall ? 'tool_calls' : 'stop' },
      ],
    };
    if (behavior.reportUsage) answer.usage = usage;
    sendJson(exchange.response, 200, answer);
    return;
  }

  const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
    sse({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    });
  const pieces = [chunk({ role: 'assistant', content: '' })];
  if (toolCall) {
    pieces.push(
      chunk({
        tool_calls: [
          {
            index: 0,
            id: toolCallId,
            type: 'function',
            function: { name: toolCall.name, arguments: '' },
          },
        ],
      }),
    );
    const half = Math.ceil(toolCall.arguments.length / 2);
    for (const part of [toolCall.arguments.slice(0, half), toolCall.arguments.slice(half)]) {
      if (part) pieces.push(chunk({ tool_calls: [{ index: 0, function: { arguments: part } }] }));
    }
  } else {
    for (const word of splitReply(behavior.reply)) pieces.push(chunk({ content: word }));
  }
  pieces.push(chunk({}, toolCall ? 'tool_calls' : 'stop'));
  if (includeUsage(exchange, body)) {
    pieces.push(sse({ id, object: 'chat.completion.chunk', created, model, choices: [], usage }));
  }
  pieces.push(sse('[DONE]'));
  await writeStream(
    exchange,
    'text/event-stream',
    withStreamError(exchange, pieces, streamErrorEvent(exchange)),
  );
}

async function completions(exchange: FakeExchange): Promise<void> {
  const body = admitInference(exchange);
  if (!body) return;
  const { behavior } = exchange;
  const model = body.model as string;
  const id = exchange.nextId('cmpl');
  const usage = usageOf(countInputWords(body.prompt), countWords(behavior.reply));
  if (body.stream !== true) {
    const answer: Record<string, unknown> = {
      id,
      object: 'text_completion',
      created,
      model,
      choices: [{ index: 0, text: behavior.reply, logprobs: null, finish_reason: 'stop' }],
    };
    if (behavior.reportUsage) answer.usage = usage;
    sendJson(exchange.response, 200, answer);
    return;
  }
  const chunk = (text: string, finishReason: string | null = null) =>
    sse({
      id,
      object: 'text_completion',
      created,
      model,
      choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
    });
  const pieces = splitReply(behavior.reply).map((word) => chunk(word));
  pieces.push(chunk('', 'stop'));
  if (includeUsage(exchange, body)) {
    pieces.push(sse({ id, object: 'text_completion', created, model, choices: [], usage }));
  }
  pieces.push(sse('[DONE]'));
  await writeStream(
    exchange,
    'text/event-stream',
    withStreamError(exchange, pieces, streamErrorEvent(exchange)),
  );
}

function embeddings(exchange: FakeExchange): void {
  const body = admitInference(exchange);
  if (!body) return;
  const inputs = inputList(body.input);
  if (inputs.length === 0) {
    sendError(exchange, 400, '"input" must be a string or an array of strings or tokens.');
    return;
  }
  const promptTokens = countInputWords(body.input);
  // The openai SDK asks for base64 by default: little-endian float32 bytes, as real servers send.
  const base64 = body.encoding_format === 'base64';
  const answer: Record<string, unknown> = {
    object: 'list',
    data: inputs.map((input, index) => {
      const vector = fakeEmbedding(input, exchange.behavior.embeddingDimensions);
      return {
        object: 'embedding',
        index,
        embedding: base64
          ? Buffer.from(new Float32Array(vector).buffer).toString('base64')
          : vector,
      };
    }),
    model: body.model,
  };
  if (exchange.behavior.reportUsage)
    answer.usage = { prompt_tokens: promptTokens, total_tokens: promptTokens };
  sendJson(exchange.response, 200, answer);
}

function llamaServerProps(exchange: FakeExchange): void {
  const model = exchange.behavior.models[0] ?? 'fake-model';
  sendJson(exchange.response, 200, {
    default_generation_settings: {
      n_ctx: FAKE_CONTEXT_LENGTH,
      params: { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05 },
    },
    total_slots: 1,
    model_path: `/models/${model}.gguf`,
    chat_template: "{% for message in messages %}{{ message['content'] }}{% endfor %}",
    modalities: { vision: false, audio: false },
    build_info: FAKE_VERSIONS['llama-server'],
  });
}

/** Answers one request in the OpenAI dialect of the fake's kind. @internal */
export async function handleOpenAIDialect(exchange: FakeExchange): Promise<void> {
  const { kind, method, pathname, response, behavior } = exchange;
  const route = `${method} ${pathname}`;

  if (kind === 'llama-server' && (route === 'GET /health' || route === 'GET /v1/health')) {
    if (behavior.loading)
      return sendJson(response, 503, openAIDialectErrorBody(kind, 503, 'Loading model'));
    return sendJson(response, 200, { status: 'ok' });
  }
  if (kind === 'llama-server' && route === 'GET /props') return llamaServerProps(exchange);
  if (kind === 'vllm' && route === 'GET /health') {
    response.writeHead(200, { 'content-length': 0 });
    response.end();
    return;
  }
  if (kind === 'vllm' && route === 'GET /version')
    return sendJson(response, 200, { version: FAKE_VERSIONS.vllm });
  if (kind === 'lm-studio' && route === 'GET /api/v0/models')
    return sendJson(response, 200, lmStudioModels(behavior.models));

  switch (route) {
    case 'GET /v1/models':
      return sendJson(response, 200, modelList(kind, behavior.models));
    case 'POST /v1/chat/completions':
      return chatCompletions(exchange);
    case 'POST /v1/completions':
      return completions(exchange);
    case 'POST /v1/embeddings':
      return embeddings(exchange);
    default:
      return sendNotFoundRoute(exchange);
  }
}
