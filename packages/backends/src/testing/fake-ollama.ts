/**
 * Ollama's native API as the fakes speak it: /api/version, /api/tags, /api/ps, /api/show,
 * and /api/chat, /api/generate (NDJSON streams by default), /api/embed, with Ollama's
 * `{"error": "..."}` bodies. Its OpenAI-compatible /v1/* lives in the OpenAI dialect.
 */
import { FAKE_CONTEXT_LENGTH, FAKE_VERSIONS } from './fake-openai.js';
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
  sendJson,
  sendText,
  withStreamError,
  writeStream,
} from './fake-upstream.js';

const createdAt = '2025-01-01T00:00:00.000000000Z';

function sendError(exchange: FakeExchange, status: number, message: string): void {
  sendJson(exchange.response, status, { error: message }, 'application/json; charset=utf-8');
}

function record(body: unknown): Record<string, unknown> {
  return body && typeof body === 'object' && !Array.isArray(body)
    ? (body as Record<string, unknown>)
    : {};
}

/**
 * Ollama resolves `name` to `name:latest`. @internal
 */
export function servedByOllama(models: string[], name: string): boolean {
  const withTag = (model: string) => (model.includes(':') ? model : `${model}:latest`);
  return models.some((model) => withTag(model) === withTag(name));
}

function admitInference(exchange: FakeExchange): Record<string, unknown> | undefined {
  const { behavior } = exchange;
  if (behavior.hang) return undefined;
  if (behavior.loading) {
    sendError(exchange, 503, 'server busy, please try again. maximum pending requests exceeded');
    return undefined;
  }
  if (behavior.errorStatus !== undefined) {
    sendError(exchange, behavior.errorStatus, behavior.errorMessage ?? 'Simulated upstream error');
    return undefined;
  }
  if (exchange.invalidJson) {
    sendError(exchange, 400, 'invalid character in request body');
    return undefined;
  }
  const body = record(exchange.body);
  if (typeof body.model !== 'string' || !body.model) {
    sendError(exchange, 400, 'model is required');
    return undefined;
  }
  if (!servedByOllama(behavior.models, body.model)) {
    sendError(exchange, 404, `model "${body.model}" not found, try pulling it first`);
    return undefined;
  }
  return body;
}

function timings(
  promptTokens: number,
  completionTokens: number,
  reportUsage: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    total_duration: 1_000_000,
    load_duration: 100_000,
    prompt_eval_duration: 200_000,
    eval_duration: 700_000,
  };
  if (reportUsage) {
    out.prompt_eval_count = promptTokens;
    out.eval_count = completionTokens;
  }
  return out;
}

function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

function ndjson(line: unknown): string {
  return `${JSON.stringify(line)}\n`;
}

async function chat(exchange: FakeExchange): Promise<void> {
  const body = admitInference(exchange);
  if (!body) return;
  const { behavior } = exchange;
  const model = body.model as string;
  const promptTokens = countMessageWords(body.messages);
  const completionTokens = countWords(behavior.reply);
  const toolCall =
    behavior.toolCall && Array.isArray(body.tools) && body.tools.length > 0
      ? behavior.toolCall
      : undefined;
  const toolCalls = toolCall
    ? [
        {
          function: {
            index: 0,
            name: toolCall.name,
            arguments: parseArguments(toolCall.arguments),
          },
        },
      ]
    : undefined;
  const done = {
    model,
    created_at: createdAt,
    message: { role: 'assistant', content: '' },
    done_reason: 'stop',
    done: true,
    ...timings(promptTokens, completionTokens, behavior.reportUsage),
  };

  if (body.stream === false) {
    const message = toolCall
      ? { role: 'assistant', content: '', tool_calls: toolCalls }
      : { role: 'assistant', content: behavior.reply };
    sendJson(exchange.response, 200, { ...done, message }, 'application/json; charset=utf-8');
    return;
  }
  const pieces = toolCall
    ? [
        ndjson({
          model,
          created_at: createdAt,
          message: { role: 'assistant', content: '', tool_calls: toolCalls },
          done: false,
        }),
      ]
    : splitReply(behavior.reply).map((word) =>
        ndjson({
          model,
          created_at: createdAt,
          message: { role: 'assistant', content: word },
          done: false,
        }),
      );
  pieces.push(ndjson(done));
  await writeStream(
    exchange,
    'application/x-ndjson',
    withStreamError(exchange, pieces, streamErrorLine),
  );
}

/** Ollama reports a failure after the stream started as an `{"error": "..."}` line. */
function streamErrorLine(message: string): string {
  return ndjson({ error: message });
}

async function generate(exchange: FakeExchange): Promise<void> {
  const body = admitInference(exchange);
  if (!body) return;
  const { behavior } = exchange;
  const model = body.model as string;
  const promptTokens = countInputWords(body.prompt);
  const completionTokens = countWords(behavior.reply);
  const done = {
    model,
    created_at: createdAt,
    response: '',
    done: true,
    done_reason: 'stop',
    context: [1, 2, 3],
    ...timings(promptTokens, completionTokens, behavior.reportUsage),
  };
  if (body.stream === false) {
    sendJson(
      exchange.response,
      200,
      { ...done, response: behavior.reply },
      'application/json; charset=utf-8',
    );
    return;
  }
  const pieces = splitReply(behavior.reply).map((word) =>
    ndjson({ model, created_at: createdAt, response: word, done: false }),
  );
  pieces.push(ndjson(done));
  await writeStream(
    exchange,
    'application/x-ndjson',
    withStreamError(exchange, pieces, streamErrorLine),
  );
}

function embed(exchange: FakeExchange): void {
  const body = admitInference(exchange);
  if (!body) return;
  const inputs = inputList(body.input);
  const answer: Record<string, unknown> = {
    model: body.model,
    embeddings: inputs.map((input) => fakeEmbedding(input, exchange.behavior.embeddingDimensions)),
    total_duration: 1_000_000,
    load_duration: 100_000,
  };
  if (exchange.behavior.reportUsage) answer.prompt_eval_count = countInputWords(body.input);
  sendJson(exchange.response, 200, answer, 'application/json; charset=utf-8');
}

// Names are listed as configured (real Ollama always shows a tag such as `:latest`; configure
// `models: ['llama3:latest']` to see that), so tests naming `fake-model` find it listed as such.
function tagEntry(name: string): Record<string, unknown> {
  return {
    name,
    model: name,
    modified_at: createdAt,
    size: 700_000_000,
    digest: 'a'.repeat(64),
    details: {
      parent_model: '',
      format: 'gguf',
      family: 'llama',
      families: ['llama'],
      parameter_size: '1B',
      quantization_level: 'Q4_K_M',
    },
  };
}

function show(exchange: FakeExchange): void {
  const body = record(exchange.body);
  const name =
    typeof body.model === 'string' ? body.model : typeof body.name === 'string' ? body.name : '';
  if (!servedByOllama(exchange.behavior.models, name)) {
    sendError(exchange, 404, `model '${name}' not found`);
    return;
  }
  sendJson(exchange.response, 200, {
    modelfile: `FROM ${name}`,
    parameters: 'stop "<|eot|>"',
    template: '{{ .Prompt }}',
    details: tagEntry(name).details,
    model_info: { 'general.architecture': 'llama', 'llama.context_length': FAKE_CONTEXT_LENGTH },
    capabilities: ['completion', 'tools'],
  });
}

/** Answers one request to Ollama's native API (or its root). @internal */
export async function handleOllamaNative(exchange: FakeExchange): Promise<void> {
  const { method, pathname, response, behavior } = exchange;
  switch (`${method} ${pathname}`) {
    case 'GET /':
    case 'HEAD /':
      return sendText(response, 200, 'Ollama is running');
    case 'GET /api/version':
      return sendJson(response, 200, { version: FAKE_VERSIONS.ollama });
    case 'GET /api/tags':
      return sendJson(response, 200, { models: behavior.models.map(tagEntry) });
    case 'GET /api/ps':
      return sendJson(response, 200, {
        models: behavior.models.map((name) => ({
          ...tagEntry(name),
          expires_at: '2099-01-01T00:00:00Z',
          size_vram: 700_000_000,
          context_length: FAKE_CONTEXT_LENGTH,
        })),
      });
    case 'POST /api/show':
      return show(exchange);
    case 'POST /api/chat':
      return chat(exchange);
    case 'POST /api/generate':
      return generate(exchange);
    case 'POST /api/embed':
      return embed(exchange);
    default:
      return sendText(response, 404, '404 page not found');
  }
}
