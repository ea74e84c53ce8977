/**
 * Loading a GGUF file with node-llama-cpp: the llama.cpp binding (prebuilt binaries only, never
 * a download or a build), the model, one context with its sequences, and on demand an
 * embedding context. Every failure becomes one `upstream_unavailable` error that says what to do.
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { TollgateError } from '@tollgate/protocol';
import {
  type ChatHistoryItem,
  type ChatWrapper,
  getLlama,
  InsufficientMemoryError,
  type Llama,
  LlamaChat,
  LlamaCompletion,
  type LlamaContext,
  type LlamaContextSequence,
  type LlamaEmbeddingContext,
  type LlamaGpuType,
  LlamaLogLevel,
  type LlamaModel,
  LlamaVocabularyType,
  NoBinaryFoundError,
  resolveChatWrapper,
  type Token,
} from 'node-llama-cpp';

/** Where generation runs: `false` for the CPU, `'auto'` or a named GPU API. */
export type GpuOption = false | 'auto' | Exclude<LlamaGpuType, false>;

/** What {@link loadRuntime} needs. */
export interface RuntimeSettings {
  /** The backend's name, for messages. */
  name: string;
  /** Absolute or relative path of the GGUF file. */
  modelPath: string;
  /** Tokens per sequence; undefined lets node-llama-cpp fit it to memory. */
  contextSize: number | undefined;
  sequences: number;
  threads: number | undefined;
  gpu: GpuOption;
  /** A Llama to use instead of creating (and later disposing) one. */
  llama: Llama | undefined;
}

/** One context sequence with the generators bound to it; one request uses it at a time. */
export interface Slot {
  sequence: LlamaContextSequence;
  chat: LlamaChat;
  completion: LlamaCompletion;
}

/** A loaded model, ready to generate. */
export interface Runtime {
  model: LlamaModel;
  /** Tokens each sequence holds. */
  contextSize: number;
  /** Token ids run from 0 to `vocabularySize - 1`. */
  vocabularySize: number;
  /** What renders chat histories: the model's own template, as node-llama-cpp resolves it. */
  chatWrapper: ChatWrapper;
  slots: Slot[];
  /** Tokens of the rendered chat prompt, exactly as LlamaChat will evaluate them. */
  chatPromptTokens(history: ChatHistoryItem[]): number;
  /** The prompt as tokens, with the count node-llama-cpp evaluates (a BOS token included). */
  completionPromptTokens(prompt: string | readonly number[]): { tokens: Token[]; count: number };
  /** The embedding context, created on first use. */
  embeddingContext(): Promise<LlamaEmbeddingContext>;
  /** Frees the contexts, the model and the Llama this runtime created. */
  dispose(): Promise<void>;
}

/**
 * The token LlamaCompletion puts before a prompt, by the same rule it applies (its own helper
 * is not exported): none for RWKV and UGM vocabularies, always for WPM, else the model's BOS
 * when its metadata asks for one.
 */
function beginningToken(model: LlamaModel): Token | null {
  const type = model.vocabularyType;
  if (type === LlamaVocabularyType.rwkv || type === LlamaVocabularyType.ugm) return null;
  if (type === LlamaVocabularyType.wpm) return model.tokens.bos;
  return model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const line = message.split('\n')[0]!.trim();
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

function unavailable(message: string, cause?: unknown): TollgateError {
  return new TollgateError('upstream_unavailable', message, { cause });
}

/**
 * Checks that the model file is there. Cheap: used by health probes too.
 *
 * @throws {TollgateError} `upstream_unavailable` when there is no file at the path.
 */
export async function checkModelFile(name: string, modelPath: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(modelPath)).isFile();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw unavailable(
      code === 'ENOENT'
        ? `Backend "${name}" has no model file at ${modelPath}. Check the model path.`
        : `Backend "${name}" cannot read its model file ${modelPath}: ${firstLine(error)}`,
      error,
    );
  }
  if (!isFile) {
    throw unavailable(
      `Backend "${name}": ${modelPath} is not a file. Give the path of a .gguf file.`,
    );
  }
}

function loadError(settings: RuntimeSettings, error: unknown): TollgateError {
  const { name, modelPath } = settings;
  if (error instanceof NoBinaryFoundError) {
    return unavailable(
      `Backend "${name}" found no prebuilt llama.cpp binary in node-llama-cpp for ${process.platform}-${process.arch}${settings.gpu ? ` with GPU "${settings.gpu}"` : ''}, and it never builds one. Use a platform node-llama-cpp ships binaries for, or gpu: false.`,
      error,
    );
  }
  if (error instanceof InsufficientMemoryError) {
    return unavailable(
      `Backend "${name}" has not enough memory for ${basename(modelPath)}${settings.contextSize ? ` with a context of ${settings.contextSize} tokens` : ''} and ${settings.sequences} sequence(s): lower contextSize or sequences, or use a smaller model.`,
      error,
    );
  }
  return unavailable(`Backend "${name}" could not load ${modelPath}: ${firstLine(error)}`, error);
}

/**
 * Loads the model and creates its context. Never downloads or builds anything: the Llama is
 * created with `build: 'never'`, `skipDownload: true` and prebuilt binaries only.
 *
 * @throws {TollgateError} `upstream_unavailable` (503) with what went wrong and what to do:
 *   no file, no prebuilt binary, not enough memory, or llama.cpp refused the file.
 */
export async function loadRuntime(settings: RuntimeSettings): Promise<Runtime> {
  await checkModelFile(settings.name, settings.modelPath);
  const ownLlama = settings.llama === undefined;
  let llama: Llama | undefined = settings.llama;
  let model: LlamaModel | undefined;
  try {
    llama ??= await getLlama({
      gpu: settings.gpu,
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      logLevel: LlamaLogLevel.warn,
    });
    model = await llama.loadModel({
      modelPath: settings.modelPath,
      gpuLayers: settings.gpu === false ? 0 : 'auto',
    });
    const context = await model.createContext({
      contextSize: settings.contextSize ?? 'auto',
      sequences: settings.sequences,
      ...(settings.threads === undefined ? {} : { threads: settings.threads }),
    });
    return createRuntime(settings, llama, ownLlama, model, context);
  } catch (error) {
    await model?.dispose().catch(() => undefined);
    if (ownLlama) await llama?.dispose().catch(() => undefined);
    throw loadError(settings, error);
  }
}

function createRuntime(
  settings: RuntimeSettings,
  llama: Llama,
  ownLlama: boolean,
  model: LlamaModel,
  context: LlamaContext,
): Runtime {
  const { contextSize } = context;
  const chatWrapper = resolveChatWrapper(model);
  const sequences = Array.from({ length: settings.sequences }, () => context.getSequence());
  const slots = sequences.map((sequence) => ({
    sequence,
    chat: new LlamaChat({ contextSequence: sequence, chatWrapper }),
    completion: new LlamaCompletion({ contextSequence: sequence }),
  }));
  const beginning = beginningToken(model);
  let embedding: Promise<LlamaEmbeddingContext> | undefined;

  return {
    model,
    contextSize,
    vocabularySize: model.fileInfo.metadata?.tokenizer?.ggml?.tokens?.length ?? 0,
    chatWrapper,
    slots,
    chatPromptTokens(history) {
      return chatWrapper
        .generateContextState({ chatHistory: history })
        .contextText.tokenize(model.tokenizer).length;
    },
    completionPromptTokens(prompt) {
      const tokens =
        typeof prompt === 'string'
          ? model.tokenize(prompt, false, beginning === null ? undefined : 'trimLeadingSpace')
          : (prompt.slice() as Token[]);
      return { tokens, count: tokens.length + (beginning === null ? 0 : 1) };
    },
    embeddingContext() {
      embedding ??= model
        .createEmbeddingContext({
          contextSize,
          ...(settings.threads === undefined ? {} : { threads: settings.threads }),
        })
        .catch((error: unknown) => {
          embedding = undefined;
          throw loadError(settings, error);
        });
      return embedding;
    },
    async dispose() {
      for (const slot of slots) {
        slot.chat.dispose();
        slot.completion.dispose();
      }
      const embeddingContext = await embedding?.catch(() => undefined);
      await embeddingContext?.dispose();
      // Disposing the model disposes its contexts.
      await model.dispose();
      if (ownLlama) await llama.dispose();
    },
  };
}
