/**
 * The generation fields of an OpenAI request (token limit, sampling, stop sequences), checked
 * and turned into node-llama-cpp's options. A field the model cannot honour is refused with a
 * 400 rather than ignored, so a caller never mistakes a silent default for its own setting.
 */
import { TollgateError } from '@tollgate/protocol';
import type { LLamaContextualRepeatPenalty } from 'node-llama-cpp';

/**
 * Sampling temperature when the request sets none. llama-server's default, not OpenAI's 1:
 * local models are tuned and documented against llama.cpp's defaults.
 */
export const DEFAULT_TEMPERATURE = 0.8;

/** node-llama-cpp's sampling options, as the request set them. */
export interface SamplingOptions {
  temperature: number;
  topP?: number;
  topK?: number;
  minP?: number;
  seed?: number;
  /** `false` (off) unless the request asked for a penalty: OpenAI applies none by default. */
  repeatPenalty: false | LLamaContextualRepeatPenalty;
}

/** What a chat or completion request asks of the generation. */
export interface GenerationParams {
  /** Most tokens to generate; undefined for "until the context is full". */
  maxTokens: number | undefined;
  /** Stop sequences; the generated text ends before the first one found. */
  stop: string[];
  sampling: SamplingOptions;
}

type RequestFields = Record<string, unknown>;

/** A 400 naming the offending field. */
export function invalid(message: string, param: string | null): TollgateError {
  return new TollgateError('invalid_request', message, { param });
}

interface NumberRule {
  min?: number;
  max?: number;
  integer?: boolean;
}

/** A numeric field, or undefined when absent or null. */
function numberField(request: RequestFields, field: string, rule: NumberRule): number | undefined {
  const value = request[field];
  if (value === undefined || value === null) return undefined;
  const kind = rule.integer ? 'an integer' : 'a number';
  const range =
    rule.min !== undefined && rule.max !== undefined
      ? ` from ${rule.min} to ${rule.max}`
      : rule.min !== undefined
        ? ` of at least ${rule.min}`
        : '';
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (!rule.integer || Number.isInteger(value)) &&
    (rule.min === undefined || value >= rule.min) &&
    (rule.max === undefined || value <= rule.max);
  if (!ok) throw invalid(`"${field}" must be ${kind}${range}.`, field);
  return value as number;
}

function stopSequences(request: RequestFields): string[] {
  const stop = request.stop;
  if (stop === undefined || stop === null) return [];
  const list = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list) || !list.every((item) => typeof item === 'string' && item !== '')) {
    throw invalid('"stop" must be a non-empty string or an array of non-empty strings.', 'stop');
  }
  return list as string[];
}

function repeatPenalty(request: RequestFields): false | LLamaContextualRepeatPenalty {
  const frequencyPenalty = numberField(request, 'frequency_penalty', { min: -2, max: 2 });
  const presencePenalty = numberField(request, 'presence_penalty', { min: -2, max: 2 });
  // llama.cpp's own name, which llama-server takes too.
  const penalty = numberField(request, 'repeat_penalty', { min: 0 });
  if (!frequencyPenalty && !presencePenalty && (penalty === undefined || penalty === 1)) {
    return false;
  }
  return {
    penalty: penalty ?? 1,
    frequencyPenalty: frequencyPenalty ?? 0,
    presencePenalty: presencePenalty ?? 0,
  };
}

/**
 * Reads the generation fields shared by chat and completions: `max_completion_tokens` (chat)
 * or `max_tokens`, `temperature`, `top_p`, `top_k`, `min_p`, `seed`, `stop`,
 * `frequency_penalty`, `presence_penalty`, `repeat_penalty`, and refuses `n` > 1.
 *
 * @throws {TollgateError} `invalid_request` (400) naming the first field out of range.
 * @example
 * ```ts
 * generationParams({ max_tokens: 16, stop: '\n', temperature: 0 });
 * // { maxTokens: 16, stop: ['\n'], sampling: { temperature: 0, repeatPenalty: false } }
 * ```
 */
export function generationParams(request: RequestFields): GenerationParams {
  const n = numberField(request, 'n', { min: 1, integer: true });
  if (n !== undefined && n > 1) {
    throw invalid(
      'This backend returns one choice per request: set "n" to 1 or leave it out.',
      'n',
    );
  }
  const maxCompletionTokens = numberField(request, 'max_completion_tokens', {
    min: 1,
    integer: true,
  });
  const maxTokens =
    maxCompletionTokens ?? numberField(request, 'max_tokens', { min: 1, integer: true });
  const sampling: SamplingOptions = {
    temperature: numberField(request, 'temperature', { min: 0 }) ?? DEFAULT_TEMPERATURE,
    repeatPenalty: repeatPenalty(request),
  };
  const topP = numberField(request, 'top_p', { min: 0, max: 1 });
  if (topP !== undefined) sampling.topP = topP;
  const topK = numberField(request, 'top_k', { min: 0, integer: true });
  if (topK !== undefined) sampling.topK = topK;
  const minP = numberField(request, 'min_p', { min: 0, max: 1 });
  if (minP !== undefined) sampling.minP = minP;
  const seed = numberField(request, 'seed', { integer: true });
  // llama.cpp seeds are 32-bit; OpenAI's are 64-bit. Folding keeps equal seeds equal.
  if (seed !== undefined) sampling.seed = Math.abs(seed) % 2 ** 32;
  return { maxTokens, stop: stopSequences(request), sampling };
}

/**
 * Refuses log probabilities, which this backend does not report.
 *
 * @throws {TollgateError} `invalid_request` (400) for `logprobs` / `top_logprobs` set.
 */
export function refuseLogprobs(request: RequestFields): void {
  const asked = (value: unknown) => value !== undefined && value !== null && value !== false;
  for (const field of ['logprobs', 'top_logprobs']) {
    if (asked(request[field]) && !(field === 'top_logprobs' && request[field] === 0)) {
      throw invalid(
        'This backend does not report log probabilities: leave out "logprobs" and "top_logprobs".',
        field,
      );
    }
  }
}
