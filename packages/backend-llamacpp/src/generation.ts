/**
 * One generation on one context sequence, chat or plain completion, reporting text as it comes
 * and ending with OpenAI's finish reason and the tokens really generated.
 */
import type { ChatHistoryItem, LlamaChatResponseChunk, Token } from 'node-llama-cpp';
import type { FinishReason } from './openai-format.js';
import type { GenerationParams } from './params.js';
import type { Slot } from './runtime.js';

/** Where the generated text goes as it comes. */
export interface GenerationListener {
  /** A piece of the answer. */
  onText(text: string): void;
  /** A piece of the model's reasoning (a "thought" segment of models that think aloud). */
  onReasoning(text: string): void;
}

/** How a generation ended. */
export interface GenerationOutcome {
  /** The whole answer, without reasoning and without the stop sequence that ended it. */
  text: string;
  finishReason: FinishReason;
  /** Tokens sampled, a stop sequence's included, as the sequence's token meter counts them. */
  completionTokens: number;
}

/** A generation waiting for a slot and a signal that stops it. */
export type Generation = (
  slot: Slot,
  listener: GenerationListener,
  signal: AbortSignal,
) => Promise<GenerationOutcome>;

function finishReasonOf(stopReason: string): FinishReason {
  // Everything else ("eogToken", "stopGenerationTrigger", "customStopTrigger") is a stop;
  // an abort never gets here, since the generation rejects with the signal's reason.
  return stopReason === 'maxTokens' ? 'length' : 'stop';
}

function generationOptions(params: GenerationParams, maxTokens: number, signal: AbortSignal) {
  return {
    ...params.sampling,
    maxTokens,
    signal,
    stopOnAbortSignal: false,
    trimWhitespaceSuffix: false,
    ...(params.stop.length > 0 ? { customStopTriggers: params.stop } : {}),
  };
}

/**
 * A chat generation: the history rendered by the model's chat template, at most `maxTokens`
 * tokens (the caller keeps it within the context, so no context shift ever drops messages).
 */
export function chatGeneration(
  history: ChatHistoryItem[],
  params: GenerationParams,
  maxTokens: number,
): Generation {
  return async (slot, listener, signal) => {
    const before = slot.sequence.tokenMeter.getState();
    const result = await slot.chat.generateResponse(history, {
      ...generationOptions(params, maxTokens, signal),
      onResponseChunk(chunk: LlamaChatResponseChunk) {
        if (!chunk.text) return;
        if (chunk.type === undefined) listener.onText(chunk.text);
        else if (chunk.segmentType === 'thought') listener.onReasoning(chunk.text);
      },
    });
    return {
      text: result.response,
      finishReason: finishReasonOf(result.metadata.stopReason),
      completionTokens: slot.sequence.tokenMeter.diff(before).usedOutputTokens,
    };
  };
}

/**
 * A plain completion of prompt tokens (node-llama-cpp puts the BOS token in front), at most
 * `maxTokens` tokens. Context shift is off: the caller keeps prompt and answer within the
 * context, and a prompt is never cut silently.
 */
export function completionGeneration(
  tokens: Token[],
  params: GenerationParams,
  maxTokens: number,
): Generation {
  return async (slot, listener, signal) => {
    const before = slot.sequence.tokenMeter.getState();
    const result = await slot.completion.generateCompletionWithMeta(tokens, {
      ...generationOptions(params, maxTokens, signal),
      onTextChunk: (text) => {
        if (text) listener.onText(text);
      },
      disableContextShift: true,
      // Only bounds how much of the prompt is kept: with 1, all of a prompt that fits.
      contextShiftSize: 1,
    });
    return {
      text: result.response,
      finishReason: finishReasonOf(result.metadata.stopReason),
      completionTokens: slot.sequence.tokenMeter.diff(before).usedOutputTokens,
    };
  };
}
