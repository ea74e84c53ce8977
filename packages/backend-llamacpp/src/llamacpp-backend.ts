/**
 * The in-process backend: one GGUF model served through the `Backend` contract, loaded on
 * first use, one request per context sequence and a FIFO queue for the rest.
 */
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend, BackendCallOptions, BackendHealth, BackendModel } from '@tollgate/backends';
import {
  type ChatCompletionRequest,
  type CompletionRequest,
  type EmbeddingRequest,
  errorResponse,
  isTollgateError,
  TollgateError,
} from '@tollgate/protocol';
import type { Llama, Token } from 'node-llama-cpp';
import { chatHistoryFrom, refuseUnsupportedChatFields } from './chat-request.js';
import {
  chatGeneration,
  completionGeneration,
  type Generation,
  type GenerationListener,
  type GenerationOutcome,
} from './generation.js';
import { checkTokenIds, completionPrompt, embeddingInputParam, embeddingInputs } from './inputs.js';
import {
  answerHeader,
  base64Floats,
  type ChunkWriter,
  chatChunkWriter,
  chatCompletionBody,
  jsonResponse,
  SSE_DONE_BYTES,
  sseBytes,
  sseResponse,
  type TokenUsage,
  textChunkWriter,
  textCompletionBody,
  usageOf,
} from './openai-format.js';
import { generationParams, invalid, refuseLogprobs } from './params.js';
import { checkModelFile, type GpuOption, loadRuntime, type Runtime, type Slot } from './runtime.js';
import { createSlotPool, type SlotPool } from './slot-pool.js';

/** Options for {@link createLlamaCppBackend}. */
export interface LlamaCppBackendOptions {
  /** The GGUF file: a path, or a `file:` URL. */
  modelPath: string | URL;
  /** A unique name for logs and usage records. @default `llamacpp@<file name>` */
  name?: string;
  /** The name callers use in `model`. @default the file name without `.gguf` */
  modelId?: string;
  /**
   * Tokens each sequence holds (prompt and answer together). llama.cpp may round it up to a
   * multiple of 256.
   * @default node-llama-cpp's "auto": as large as memory allows, up to the model's training size
   */
  contextSize?: number;
  /** Requests generated at once, one per context sequence (each holds `contextSize` tokens). @default 1 */
  sequences?: number;
  /**
   * Requests that may wait for a free sequence, in arrival order; one more is answered with
   * 503 and `retry-after: 1`. `Infinity` for no bound.
   * @default 64
   */
  maxQueue?: number;
  /** CPU threads per evaluation. @default node-llama-cpp's choice (the CPU's math cores, at least 4) */
  threads?: number;
  /**
   * `false` runs on the CPU; `'auto'`, `'cuda'`, `'vulkan'` or `'metal'` offload layers to a GPU,
   * when node-llama-cpp's prebuilt binary for it is installed.
   * @default false
   */
  gpu?: GpuOption;
  /** Serve POST /v1/embeddings from the same model (a second, lazily created context). @default true */
  embedding?: boolean;
  /** A Llama (from node-llama-cpp's `getLlama`) to share, e.g. between tests; not disposed by `close`. */
  llama?: Llama;
}

/** The in-process backend: a `Backend` with an explicit load and a close. */
export interface LlamaCppBackend extends Backend {
  /** The name callers use in `model`. */
  readonly modelId: string;
  /** The GGUF file, as a path. */
  readonly modelPath: string;
  /**
   * Loads the model now rather than on the first request. Safe to call more than once.
   *
   * @throws {TollgateError} `upstream_unavailable` saying why the model cannot load (no file,
   *   no prebuilt binary, not enough memory, a file llama.cpp refuses) or that it is closed.
   */
  load(): Promise<void>;
  /**
   * Stops every generation (their streams error, waiting requests get 503), then frees the
   * model, its contexts and the Llama it created. Later requests get 503.
   */
  close(): Promise<void>;
}

/** The model and what hands out its sequences. */
interface Loaded {
  runtime: Runtime;
  slots: SlotPool<Slot>;
  /** One embedding at a time: the embedding context has a single sequence. */
  embedder: SlotPool<true>;
}

/** A generation request, ready to run once a sequence is free. */
interface GenerationJob {
  stream: boolean;
  promptTokens: number;
  generation: Generation;
  writer: ChunkWriter;
  body(outcome: GenerationOutcome, reasoning: string, usage: TokenUsage): Record<string, unknown>;
}

const DEFAULT_MAX_QUEUE = 64;

function positiveInteger(value: number | undefined, field: string): void {
  if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
    throw new RangeError(`${field} must be a positive integer, got ${value}.`);
  }
}

function pathOf(modelPath: string | URL): string {
  if (modelPath instanceof URL) return fileURLToPath(modelPath);
  if (typeof modelPath !== 'string' || modelPath.trim() === '') {
    throw new TypeError('modelPath must be the path (or a file: URL) of a .gguf file.');
  }
  return modelPath.startsWith('file:') ? fileURLToPath(modelPath) : modelPath;
}

/**
 * How many tokens the answer may take: what the caller asked, within what the context has
 * left after the prompt (llama-server's behaviour: the answer ends with `length`).
 *
 * @throws {TollgateError} `invalid_request` (400) when the prompt leaves no room, in OpenAI's
 *   words.
 */
function answerBudget(
  promptTokens: number,
  requested: number | undefined,
  room: number,
  contextSize: number,
  what: 'messages' | 'prompt',
): number {
  if (room < 1) {
    throw invalid(
      `This model's maximum context length is ${contextSize} tokens. However, your ${what} resulted in ${promptTokens} tokens. Please reduce the length of the ${what}.`,
      what,
    );
  }
  return Math.min(requested ?? room, room);
}

/** A vector scaled to length 1, as OpenAI and llama-server return embeddings. */
function normalized(vector: readonly number[]): number[] {
  let sum = 0;
  for (const value of vector) sum += value * value;
  const norm = Math.sqrt(sum);
  return norm > 0 ? vector.map((value) => value / norm) : [...vector];
}

/**
 * The SSE body of a streamed answer: the first chunk at once, a chunk per piece of text as it
 * is generated, then the finish reason, the usage chunk and `[DONE]`. An abort (the caller
 * leaving, the backend closing) errors the body at once; cancelling the body stops the
 * generation.
 */
function eventStream(
  writer: ChunkWriter,
  generate: (listener: GenerationListener) => Promise<GenerationOutcome>,
  controller: AbortController,
  usage: (outcome: GenerationOutcome) => TokenUsage,
): ReadableStream<Uint8Array> {
  let open = true;
  return new ReadableStream<Uint8Array>({
    start(stream) {
      const send = (data: unknown) => {
        if (open) stream.enqueue(sseBytes(data));
      };
      const fail = (reason: unknown) => {
        if (!open) return;
        open = false;
        stream.error(reason);
      };
      controller.signal.addEventListener('abort', () => fail(controller.signal.reason), {
        once: true,
      });
      send(writer.start());
      generate({
        onText: (text) => send(writer.text(text)),
        onReasoning: (text) => {
          if (writer.reasoning) send(writer.reasoning(text));
        },
      }).then((outcome) => {
        send(writer.finish(outcome.finishReason));
        send(writer.usage(usage(outcome)));
        if (!open) return;
        open = false;
        stream.enqueue(SSE_DONE_BYTES);
        stream.close();
      }, fail);
    },
    cancel(reason) {
      open = false;
      controller.abort(reason);
    },
  });
}

/**
 * Creates a backend that runs a GGUF model in-process with node-llama-cpp (prebuilt llama.cpp
 * binaries only: it never downloads or builds anything, and runs on the CPU unless `gpu` says
 * otherwise). The model loads on the first request, or on `load()`.
 *
 * - Chat completions go through the model's own chat template (the GGUF's, as node-llama-cpp
 *   resolves it); completions take one prompt (text or token ids); embeddings take strings or
 *   token ids and come back L2-normalized.
 * - Streams send the assistant role first, then text as it is generated, the finish reason,
 *   a usage chunk with the real token counts, and `[DONE]`.
 * - Requests the backend cannot honour (tools, images, `n` > 1, log probabilities, several
 *   prompts, a prompt longer than the context) get a 400 in the OpenAI envelope; a model that
 *   cannot load gets 503 with the reason; an unknown model 404.
 * - One generation per sequence; the others wait in a FIFO queue that a caller leaves by
 *   aborting. An abort stops the generation within a token and frees its sequence.
 *
 * @throws {TypeError} for a missing `modelPath`; {RangeError} for a `contextSize`, `sequences`
 *   or `threads` that is not a positive integer, or a negative `maxQueue`.
 * @example
 * ```ts
 * const backend = createLlamaCppBackend({ modelPath: './models/qwen3-0.6b.gguf', contextSize: 4096 });
 * const response = await backend.chatCompletions(
 *   { model: 'qwen3-0.6b', messages: [{ role: 'user', content: 'Hi' }], stream: true },
 *   { signal: AbortSignal.timeout(120_000) },
 * );
 * // response.body: OpenAI SSE chunks, a usage chunk, then `data: [DONE]`.
 * await backend.close();
 * ```
 */
export function createLlamaCppBackend(options: LlamaCppBackendOptions): LlamaCppBackend {
  const modelPath = pathOf(options.modelPath);
  const fileName = basename(modelPath);
  const modelId = options.modelId ?? fileName.replace(/\.gguf$/i, '');
  const name = options.name ?? `llamacpp@${fileName}`;
  const sequences = options.sequences ?? 1;
  const maxQueue = options.maxQueue ?? DEFAULT_MAX_QUEUE;
  const embedding = options.embedding ?? true;
  positiveInteger(options.contextSize, 'contextSize');
  positiveInteger(sequences, 'sequences');
  positiveInteger(options.threads, 'threads');
  if (maxQueue !== Number.POSITIVE_INFINITY && (!Number.isInteger(maxQueue) || maxQueue < 0)) {
    throw new RangeError(`maxQueue must be a non-negative integer or Infinity, got ${maxQueue}.`);
  }

  let loaded: Loaded | undefined;
  let loading: Promise<Loaded> | undefined;
  let lastLoadError: TollgateError | undefined;
  let closed = false;
  /** Generations running now, each with what stops it. */
  const running = new Map<AbortController, Promise<unknown>>();

  const closedError = () =>
    new TollgateError(
      'service_unavailable',
      `Backend "${name}" is closed and serves no more requests.`,
    );

  function ensureLoaded(): Promise<Loaded> {
    if (closed) return Promise.reject(closedError());
    if (loaded) return Promise.resolve(loaded);
    loading ??= loadRuntime({
      name,
      modelPath,
      contextSize: options.contextSize,
      sequences,
      threads: options.threads,
      gpu: options.gpu ?? false,
      llama: options.llama,
    }).then(
      async (runtime) => {
        if (closed) {
          await runtime.dispose();
          throw closedError();
        }
        lastLoadError = undefined;
        loaded = {
          runtime,
          slots: createSlotPool(runtime.slots, { name, maxQueue }),
          embedder: createSlotPool([true as const], { name, maxQueue }),
        };
        return loaded;
      },
      (error: unknown) => {
        // The next request tries again: the file may have been put in place meanwhile.
        loading = undefined;
        if (isTollgateError(error)) lastLoadError = error;
        throw error;
      },
    );
    return loading;
  }

  function checkModel(model: string): void {
    if (model !== modelId) {
      throw new TollgateError(
        'model_not_found',
        `The model "${model}" is not served by backend "${name}", which serves "${modelId}".`,
        { param: 'model' },
      );
    }
  }

  /**
   * Runs a handler: the caller's abort rejects (as the contract says), every other failure
   * becomes a Response in the OpenAI envelope.
   */
  async function answer(signal: AbortSignal, handler: () => Promise<Response>): Promise<Response> {
    signal.throwIfAborted();
    try {
      return await handler();
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      if (isTollgateError(error)) return errorResponse(error);
      return errorResponse(
        new TollgateError(
          'internal_error',
          `Backend "${name}" failed while generating: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        ),
      );
    }
  }

  /** Takes a sequence (waiting in line if need be) and runs the job on it. */
  async function serve(
    state: Loaded,
    job: GenerationJob,
    callOptions: BackendCallOptions,
  ): Promise<Response> {
    const { signal } = callOptions;
    const lease = await state.slots.acquire(signal);
    if (signal.aborted) {
      // Aborted in the same tick the sequence came free: hand it on.
      lease.release();
      throw signal.reason;
    }
    // Stops the generation: the caller leaving, the body cancelled, or the backend closing.
    const controller = new AbortController();
    const generate = (listener: GenerationListener): Promise<GenerationOutcome> => {
      const onCallerAbort = () => controller.abort(signal.reason);
      signal.addEventListener('abort', onCallerAbort, { once: true });
      const outcome = job.generation(lease.value, listener, controller.signal).finally(() => {
        signal.removeEventListener('abort', onCallerAbort);
        running.delete(controller);
        // Only now: node-llama-cpp has stopped using the sequence.
        lease.release();
      });
      running.set(controller, outcome);
      return outcome;
    };
    const usage = (outcome: GenerationOutcome) =>
      usageOf(job.promptTokens, outcome.completionTokens);

    if (job.stream) return sseResponse(eventStream(job.writer, generate, controller, usage));
    let reasoning = '';
    const outcome = await generate({
      onText() {},
      onReasoning(text) {
        reasoning += text;
      },
    });
    return jsonResponse(job.body(outcome, reasoning, usage(outcome)));
  }

  async function chatCompletions(
    request: ChatCompletionRequest,
    callOptions: BackendCallOptions,
  ): Promise<Response> {
    return answer(callOptions.signal, async () => {
      checkModel(request.model);
      refuseUnsupportedChatFields(request);
      refuseLogprobs(request);
      const params = generationParams(request);
      const history = chatHistoryFrom(request.messages);
      const state = await ensureLoaded();
      const { contextSize } = state.runtime;
      const promptTokens = state.runtime.chatPromptTokens(history);
      // LlamaChat keeps one token of the context free.
      const room = contextSize - promptTokens - 1;
      const maxTokens = answerBudget(promptTokens, params.maxTokens, room, contextSize, 'messages');
      const header = answerHeader('chatcmpl', request.model);
      return serve(
        state,
        {
          stream: request.stream === true,
          promptTokens,
          generation: chatGeneration(history, params, maxTokens),
          writer: chatChunkWriter(header),
          body: (outcome, reasoning, usage) =>
            chatCompletionBody(header, {
              content: outcome.text,
              reasoning,
              finishReason: outcome.finishReason,
              usage,
            }),
        },
        callOptions,
      );
    });
  }

  async function completions(
    request: CompletionRequest,
    callOptions: BackendCallOptions,
  ): Promise<Response> {
    return answer(callOptions.signal, async () => {
      checkModel(request.model);
      refuseLogprobs(request);
      const prompt = completionPrompt(request);
      const params = generationParams(request);
      const state = await ensureLoaded();
      const { runtime } = state;
      if (typeof prompt !== 'string') checkTokenIds(prompt, runtime.vocabularySize, 'prompt');
      const { tokens, count } = runtime.completionPromptTokens(prompt);
      if (count === 0) throw invalid('"prompt" must not be empty for this model.', 'prompt');
      const room = runtime.contextSize - count;
      const maxTokens = answerBudget(count, params.maxTokens, room, runtime.contextSize, 'prompt');
      const header = answerHeader('cmpl', request.model);
      return serve(
        state,
        {
          stream: request.stream === true,
          promptTokens: count,
          generation: completionGeneration(tokens, params, maxTokens),
          writer: textChunkWriter(header),
          body: (outcome, _reasoning, usage) =>
            textCompletionBody(header, {
              text: outcome.text,
              finishReason: outcome.finishReason,
              usage,
            }),
        },
        callOptions,
      );
    });
  }

  async function embeddings(
    request: EmbeddingRequest,
    callOptions: BackendCallOptions,
  ): Promise<Response> {
    const { signal } = callOptions;
    return answer(signal, async () => {
      checkModel(request.model);
      if (!embedding) {
        throw invalid(
          `Backend "${name}" serves "${modelId}" without embeddings (it was created with embedding: false).`,
          'model',
        );
      }
      const inputs = embeddingInputs(request);
      const format = request.encoding_format ?? 'float';
      if (format !== 'float' && format !== 'base64') {
        throw invalid('"encoding_format" must be "float" or "base64".', 'encoding_format');
      }
      const state = await ensureLoaded();
      const { runtime } = state;
      const size = runtime.model.embeddingVectorSize;
      if (request.dimensions !== undefined && request.dimensions !== size) {
        throw invalid(
          `"${modelId}" makes embeddings of ${size} dimensions only: set "dimensions" to ${size} or leave it out.`,
          'dimensions',
        );
      }
      inputs.forEach((input, index) => {
        if (typeof input !== 'string') {
          checkTokenIds(input, runtime.vocabularySize, embeddingInputParam(request, index));
        }
      });
      const lease = await state.embedder.acquire(signal);
      try {
        const context = await runtime.embeddingContext();
        const lengths = inputs.map((input) =>
          context.calculateInputLength(typeof input === 'string' ? input : (input as Token[])),
        );
        lengths.forEach((length, index) => {
          if (length >= runtime.contextSize) {
            throw invalid(
              `This model's maximum context length is ${runtime.contextSize} tokens. However, input ${index} resulted in ${length} tokens. Please reduce its length.`,
              embeddingInputParam(request, index),
            );
          }
        });
        const data: Array<Record<string, unknown>> = [];
        for (const [index, input] of inputs.entries()) {
          signal.throwIfAborted();
          const result = await context.getEmbeddingFor(
            typeof input === 'string' ? input : (input as Token[]),
          );
          const vector = normalized(result.vector);
          data.push({
            object: 'embedding',
            index,
            embedding: format === 'base64' ? base64Floats(vector) : vector,
          });
        }
        const promptTokens = lengths.reduce((sum, length) => sum + length, 0);
        return jsonResponse({
          object: 'list',
          data,
          model: request.model,
          usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
        });
      } finally {
        lease.release();
      }
    });
  }

  return {
    name,
    kind: 'llamacpp',
    modelId,
    modelPath,
    async listModels(): Promise<BackendModel[]> {
      const contextLength = loaded?.runtime.contextSize ?? options.contextSize;
      const model: BackendModel = { id: modelId, ownedBy: 'llamacpp' };
      if (contextLength !== undefined) model.contextLength = contextLength;
      return [model];
    },
    async health(): Promise<BackendHealth> {
      if (closed) return { ok: false, detail: 'closed' };
      if (loaded) return { ok: true };
      try {
        await checkModelFile(name, modelPath);
      } catch (error) {
        return { ok: false, detail: (error as Error).message };
      }
      // The file is there; a load that failed for another reason will likely fail again.
      if (lastLoadError) return { ok: false, detail: lastLoadError.message };
      return { ok: true };
    },
    chatCompletions,
    completions,
    embeddings,
    async load() {
      await ensureLoaded();
    },
    async close() {
      if (closed) return;
      closed = true;
      const reason = closedError();
      const state = loaded ?? (await loading?.catch(() => undefined));
      state?.slots.close(reason);
      state?.embedder.close(reason);
      for (const controller of running.keys()) controller.abort(reason);
      await Promise.allSettled(running.values());
      loaded = undefined;
      await state?.runtime.dispose();
    },
  };
}
