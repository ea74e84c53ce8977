/**
 * The Ollama-compatible API: POST /api/chat, /api/generate, /api/embed (and the legacy
 * /api/embeddings); GET /api/tags, /api/ps, /api/version. Requests are translated to OpenAI
 * bodies and served by the same pipeline as the OpenAI routes (authentication, payments,
 * admission and limits, dispatch to any backend type, metering); answers come back in
 * Ollama's shapes, streamed as NDJSON by default, and errors as Ollama's `{"error": "..."}`
 * with the status and headers the OpenAI route would have sent.
 */
import type { Router } from '@tollgate/backends';
import {
  createSseDecoder,
  isTollgateError,
  readUpstreamErrorMessage,
  type SseEvent,
  TollgateError,
} from '@tollgate/protocol';
import type { Context, Hono, MiddlewareHandler } from 'hono';
import type { GatewayEnv, ServeInference } from './app.js';
import { parseJsonText } from './json-depth.js';
import { wasEncapsulated } from './ohttp-gateway.js';
import {
  type AnswerShape,
  asksToUnload,
  asObject,
  createStreamTranslator,
  embeddingVectors,
  finalLine,
  type JsonObject,
  runningEntry,
  type StreamTranslator,
  type TranslatedGeneration,
  tagEntry,
  translateChat,
  translateEmbed,
  translateGenerate,
  wholeAnswer,
} from './ollama-translate.js';

/** The Ollama release whose API these routes follow, reported by GET /api/version. */
export const OLLAMA_API_VERSION = '0.12.6';

/** Options for {@link addOllamaRoutes}. */
export interface OllamaRoutesOptions {
  /** The app's authentication middleware (API key as Bearer or x-api-key, or x402). */
  authenticate: MiddlewareHandler<GatewayEnv>;
  /** The app's inference pipeline, which takes and answers OpenAI shapes. */
  serveInference: ServeInference;
  /** Lists models for /api/tags and /api/ps, and checks the model of a load request. */
  router: Router;
  /** Clock in ms, for `created_at`, `modified_at` and `expires_at`. @default Date.now */
  now?: () => number;
  /** What GET /api/version reports. @default OLLAMA_API_VERSION */
  version?: string;
  /**
   * Refuse inference requests that did not arrive through Oblivious HTTP (the app's
   * `encryption.required`). Ollama clients cannot send the Obol format, so it is not taken here.
   * @default false
   */
  encryptionRequired?: boolean;
}

const NDJSON = 'application/x-ndjson';
const JSON_TYPE = 'application/json; charset=utf-8';
/** Status logged and settled when the caller went away before an answer (nginx's convention). */
const CLIENT_CLOSED_REQUEST = 499;
/** Go's longest duration, ~292 years: Ollama's `expires_at` for a model kept loaded forever. */
const FOREVER_MS = 9_223_372_036_854;
/** Most model names quoted in a "not found" message. */
const MAX_MODELS_IN_MESSAGE = 20;
// Headers that describe the OpenAI body, not the one sent instead.
const BODY_HEADERS = ['content-type', 'content-length', 'transfer-encoding', 'content-encoding'];

const encoder = new TextEncoder();

/**
 * Adds the Ollama-compatible routes to the gateway's app. Every /api/* error (including
 * authentication, limits, payments, unknown routes and methods) leaves as `{"error": "..."}`
 * with its status and headers (retry-after, x-ratelimit-*, payment-required).
 *
 * @example
 * ```ts
 * addOllamaRoutes(app, { authenticate, serveInference, router });
 * // then, with the official client:
 * const ollama = new Ollama({ host: 'http://127.0.0.1:8402', headers: { authorization: 'Bearer tg_...' } });
 * const answer = await ollama.chat({ model: 'llama3.2', messages: [{ role: 'user', content: 'Hi' }] });
 * ```
 */
export function addOllamaRoutes(app: Hono<GatewayEnv>, options: OllamaRoutesOptions): void {
  const { authenticate, serveInference, router } = options;
  const now = options.now ?? Date.now;
  const version = options.version ?? OLLAMA_API_VERSION;
  const startedAt = new Date(now()).toISOString();
  const timestamp = () => new Date(now()).toISOString();

  app.use('/api/*', async function ollamaErrors(c, next) {
    await next();
    const response = c.res;
    if (response.status < 400 || response.body === null) return;
    const converted = await toOllamaError(response);
    // Unset first: assigning over a response merges the old headers (content-length too).
    c.res = undefined;
    c.res = converted;
  });

  /** Refuses plaintext when the gateway serves encrypted requests only. */
  function requireEncryption(c: Context<GatewayEnv>): void {
    if (options.encryptionRequired && !wasEncapsulated(c.env)) {
      throw new TollgateError(
        'unsupported_media_type',
        'This gateway serves encrypted requests only: send Ollama requests through Oblivious HTTP (see GET /.well-known/ohttp-gateway).',
      );
    }
  }

  /** Rewrites an unknown model's 404 in Ollama's words ("not found"), with what is served. */
  async function notServed(model: string, error: TollgateError): Promise<TollgateError> {
    const known = (await router.listModels()).map((entry) => entry.id);
    const shown = model.length > 200 ? `${model.slice(0, 200)}...` : model;
    const list =
      known.length === 0
        ? 'No models are available right now.'
        : `Models served here: ${known.slice(0, MAX_MODELS_IN_MESSAGE).join(', ')}${known.length > MAX_MODELS_IN_MESSAGE ? ` and ${known.length - MAX_MODELS_IN_MESSAGE} more (GET /api/tags)` : ''}.`;
    return new TollgateError(
      'model_not_found',
      `model "${shown}" not found: this gateway does not serve it and cannot pull models. ${list}`,
      { param: 'model', cause: error },
    );
  }

  async function withModelCheck<T>(model: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (isTollgateError(error) && error.code === 'model_not_found') {
        throw await notServed(model, error);
      }
      throw error;
    }
  }

  /** Answers a request that only loads or unloads a model: nothing is generated or metered. */
  async function loadAnswer(
    c: Context<GatewayEnv>,
    shape: AnswerShape,
    request: TranslatedGeneration,
  ): Promise<Response> {
    c.set('model', request.model);
    await withModelCheck(request.model, () => router.ensureModel(request.model));
    const line = finalLine(
      shape,
      request.model,
      timestamp(),
      asksToUnload(request.keepAlive) ? 'unload' : 'load',
      {},
    );
    return request.stream ? ndjsonLines([line]) : json(line);
  }

  function generation(shape: AnswerShape, translate: (body: JsonObject) => TranslatedGeneration) {
    return async function ollamaGeneration(c: Context<GatewayEnv>): Promise<Response> {
      const started = performance.now();
      requireEncryption(c);
      const body = await readBody(c);
      if (body instanceof Response) return body;
      const request = translate(body);
      if (!request.body) return loadAnswer(c, shape, request);
      const openai = request.body;
      const response = await withModelCheck(request.model, () =>
        serveInference(c, request.operation, openai),
      );
      if (!response.ok || response.body === null) return response;
      const elapsed = () => performance.now() - started;
      const headers = answerHeaders(response.headers);
      const streamed = response.headers.get('content-type')?.includes('text/event-stream');
      if (request.stream && streamed) {
        const translator = createStreamTranslator({
          shape,
          model: request.model,
          createdAt: timestamp,
          elapsed,
        });
        return ndjsonStream(response.body, translator, headers);
      }
      const answer = await readAnswer(response);
      const total = elapsed();
      // A whole answer does not tell when its first token came: all of it counts as generation.
      const line = wholeAnswer(shape, answer, request.model, timestamp(), {
        total,
        promptEval: 0,
        eval: total,
      });
      return request.stream ? ndjsonLines([line], headers) : json(line, headers);
    };
  }

  function embedding(field: 'input' | 'prompt') {
    return async function ollamaEmbedding(c: Context<GatewayEnv>): Promise<Response> {
      const started = performance.now();
      requireEncryption(c);
      const body = await readBody(c);
      if (body instanceof Response) return body;
      const { model, body: openai } = translateEmbed(body, field);
      if (!openai) {
        // Nothing to embed: Ollama answers with no vectors once the model is there.
        c.set('model', model);
        await withModelCheck(model, () => router.ensureModel(model));
        return json(field === 'input' ? { model, embeddings: [] } : { embedding: [] });
      }
      const response = await withModelCheck(model, () => serveInference(c, 'embeddings', openai));
      if (!response.ok || response.body === null) return response;
      const headers = answerHeaders(response.headers);
      const list = await readAnswer(response);
      const embeddings = embeddingVectors(list);
      if (field === 'prompt') return json({ embedding: embeddings[0] ?? [] }, headers);
      const usage = asObject(list.usage);
      return json(
        {
          model,
          embeddings,
          total_duration: Math.round((performance.now() - started) * 1_000_000),
          load_duration: 0,
          prompt_eval_count: typeof usage?.prompt_tokens === 'number' ? usage.prompt_tokens : 0,
        },
        headers,
      );
    };
  }

  // No key needed, like GET /health: the version tells nothing about tenants or models.
  app.get('/api/version', (c) => c.json({ version }));

  app.get('/api/tags', authenticate, async function ollamaTags(c) {
    const models = await router.listModels();
    return c.json({ models: models.map((model) => tagEntry(model, startedAt)) });
  });

  app.get('/api/ps', authenticate, async function ollamaRunning(c) {
    const models = await router.listModels();
    const healthy = new Set(
      router
        .status()
        .filter((backend) => backend.state === 'healthy')
        .map((backend) => backend.name),
    );
    const expiresAt = new Date(now() + FOREVER_MS).toISOString();
    return c.json({
      models: models
        .filter((model) => model.backends.some((name) => healthy.has(name)))
        .map((model) => runningEntry(model, expiresAt)),
    });
  });

  app.post('/api/chat', authenticate, generation('chat', translateChat));
  app.post('/api/generate', authenticate, generation('generate', translateGenerate));
  app.post('/api/embed', authenticate, embedding('input'));
  app.post('/api/embeddings', authenticate, embedding('prompt'));
}

/** Reads the request body as a JSON object; a 499 response when the caller left meanwhile. */
async function readBody(c: Context<GatewayEnv>): Promise<JsonObject | Response> {
  let text: string;
  try {
    text = await c.req.text();
  } catch (error) {
    if (c.get('signal').aborted) {
      // The caller left while still sending the body: nobody is there to read a 400.
      c.set('outcome', { status: 'failed', httpStatus: CLIENT_CLOSED_REQUEST, error });
      return new Response(null, { status: CLIENT_CLOSED_REQUEST });
    }
    throw new TollgateError('invalid_request', 'The request body could not be read.', {
      cause: error,
    });
  }
  const parsed = parseJsonText(text);
  const body = asObject(parsed);
  if (!body) {
    throw new TollgateError('invalid_json', 'The request body must be a JSON object.');
  }
  return body;
}

/** Reads a whole OpenAI answer; one that breaks off is a 502 in the caller's terms. */
async function readAnswer(response: Response): Promise<JsonObject> {
  let parsed: unknown;
  try {
    parsed = await response.json();
  } catch (error) {
    throw new TollgateError(
      'upstream_stream_error',
      'The backend answer broke off or was not JSON; the answer is incomplete. Retry the request.',
      { cause: error },
    );
  }
  return asObject(parsed) ?? {};
}

/** The pipeline's headers (request id, rate limits, payment receipt) without the body's. */
function answerHeaders(source: Headers): Headers {
  const headers = new Headers(source);
  for (const name of BODY_HEADERS) headers.delete(name);
  return headers;
}

function json(body: JsonObject, headers = new Headers()): Response {
  headers.set('content-type', JSON_TYPE);
  return new Response(JSON.stringify(body), { status: 200, headers });
}

function linesText(lines: JsonObject[]): string {
  let text = '';
  for (const line of lines) text += `${JSON.stringify(line)}\n`;
  return text;
}

function encodeLines(lines: JsonObject[]): Uint8Array {
  return encoder.encode(linesText(lines));
}

function ndjsonLines(lines: JsonObject[], headers = new Headers()): Response {
  headers.set('content-type', NDJSON);
  return new Response(linesText(lines), { status: 200, headers });
}

/**
 * The NDJSON answer to a streamed request, translated from the pipeline's SSE body as the
 * caller reads it (nothing is read ahead). A stream that breaks ends with Ollama's error line
 * (`{"error": "..."}`, which Ollama's clients raise) and a clean end of the response: the
 * router marks the break with an error event, after which its body is cancelled rather than
 * read to its failure, which would cut the connection.
 */
function ndjsonStream(
  body: ReadableStream<Uint8Array>,
  translator: StreamTranslator,
  headers: Headers,
): Response {
  const events = body.pipeThrough(createSseDecoder()).getReader();
  let finished = false;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          let next: ReadableStreamReadResult<SseEvent>;
          try {
            next = await events.read();
          } catch (error) {
            finished = true;
            const message = isTollgateError(error)
              ? error.message
              : 'The backend stream broke before it finished; the answer is incomplete. Retry the request.';
            controller.enqueue(encodeLines([translator.failure(message)]));
            controller.close();
            return;
          }
          if (next.done) {
            finished = true;
            controller.enqueue(encodeLines([translator.cutShort()]));
            controller.close();
            return;
          }
          const step = translator.push(next.value.data);
          if (step.lines.length > 0) controller.enqueue(encodeLines(step.lines));
          if (step.end === 'done') {
            finished = true;
            controller.close();
            // The rest ([DONE] was the last event) is read to its end, so the upstream
            // request completes rather than being cancelled.
            void drain(events);
            return;
          }
          if (step.end === 'error') {
            finished = true;
            controller.close();
            events.cancel().catch(() => {});
            return;
          }
          if (step.lines.length > 0) return;
        }
      },
      cancel(reason) {
        if (!finished) return events.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
  headers.set('content-type', NDJSON);
  // As for SSE in the app: tells @hono/node-server to send the headers at once, before the
  // first line, instead of first reading what the body already holds.
  headers.set('transfer-encoding', 'chunked');
  return new Response(stream, { status: 200, headers });
}

async function drain(reader: ReadableStreamDefaultReader<SseEvent>): Promise<void> {
  try {
    while (!(await reader.read()).done) {
      // Nothing meaningful follows [DONE]; this waits for the end of the body.
    }
  } catch {
    // The answer was already complete.
  }
}

/** An error response (the OpenAI envelope, an upstream's body, or none) as Ollama's shape. */
async function toOllamaError(response: Response): Promise<Response> {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // A body that breaks leaves only the status to tell.
  }
  const message =
    readUpstreamErrorMessage(text) ?? `${response.status} ${response.statusText}`.trim();
  const headers = answerHeaders(response.headers);
  headers.set('content-type', JSON_TYPE);
  return new Response(JSON.stringify({ error: message }), {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}
