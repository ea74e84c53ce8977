/**
 * The text or token inputs of completions and embeddings requests: one prompt for a
 * completion, one or more inputs for embeddings, each a string or an array of token ids.
 */
import type { CompletionRequest, EmbeddingRequest } from '@tollgate/protocol';
import { invalid } from './params.js';

/** A text, or token ids of the model's vocabulary. */
export type TextOrTokens = string | number[];

function isTokenArray(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'number');
}

/**
 * Checks that token ids are integers in the model's vocabulary (llama.cpp would read out of
 * bounds otherwise).
 *
 * @throws {TollgateError} `invalid_request` (400) naming the first bad id.
 */
export function checkTokenIds(
  tokens: readonly number[],
  vocabularySize: number,
  param: string,
): void {
  const index = tokens.findIndex(
    (token) => !Number.isInteger(token) || token < 0 || token >= vocabularySize,
  );
  if (index >= 0) {
    throw invalid(
      `Token ids must be integers from 0 to ${vocabularySize - 1} (the model's vocabulary); got ${tokens[index]}.`,
      `${param}[${index}]`,
    );
  }
}

/**
 * The one prompt of a completions request: a string, an array of one string, token ids, or an
 * array of one token id array.
 *
 * @throws {TollgateError} `invalid_request` (400) for several prompts or a malformed prompt;
 *   also for `echo`, `suffix` and `best_of` > 1, which this backend does not do.
 */
export function completionPrompt(request: CompletionRequest): TextOrTokens {
  const fields = request as Record<string, unknown>;
  if (fields.echo === true)
    throw invalid('This backend does not echo the prompt: leave out "echo".', 'echo');
  if (typeof fields.suffix === 'string' && fields.suffix !== '') {
    throw invalid('This backend does not do insertion: leave out "suffix".', 'suffix');
  }
  if (typeof fields.best_of === 'number' && fields.best_of > 1) {
    throw invalid(
      'This backend returns one choice per request: set "best_of" to 1 or leave it out.',
      'best_of',
    );
  }
  const { prompt } = request;
  if (typeof prompt === 'string' || isTokenArray(prompt)) return prompt;
  if (Array.isArray(prompt) && prompt.length === 1) {
    const only = prompt[0];
    if (typeof only === 'string' || isTokenArray(only)) return only;
  }
  if (Array.isArray(prompt) && prompt.length > 1) {
    throw invalid(
      'This backend completes one prompt per request: send the prompts one by one.',
      'prompt',
    );
  }
  throw invalid('"prompt" must be a string, an array of one string, or token ids.', 'prompt');
}

/**
 * The inputs of an embeddings request, in order.
 *
 * @throws {TollgateError} `invalid_request` (400) for an empty or malformed input.
 */
export function embeddingInputs(request: EmbeddingRequest): TextOrTokens[] {
  const { input } = request;
  let inputs: TextOrTokens[];
  if (typeof input === 'string' || isTokenArray(input)) inputs = [input];
  else if (
    Array.isArray(input) &&
    input.every((item: unknown) => typeof item === 'string' || isTokenArray(item))
  ) {
    inputs = input as TextOrTokens[];
  } else {
    throw invalid('"input" must be a string, an array of strings, or token ids.', 'input');
  }
  if (inputs.length === 0) throw invalid('"input" must hold at least one input.', 'input');
  inputs.forEach((item, index) => {
    if (item.length === 0) {
      throw invalid('An input to embed must not be empty.', embeddingInputParam(request, index));
    }
  });
  return inputs;
}

/** How the request names its `index`th input: `input` when it sent one, else `input[index]`. */
export function embeddingInputParam(request: EmbeddingRequest, index: number): string {
  const { input } = request;
  return typeof input === 'string' || isTokenArray(input) ? 'input' : `input[${index}]`;
}
