/**
 * What a generation reports, with node-llama-cpp's chat stood in by a stub: segments of models
 * that think aloud cannot come from the tiny test model (its template has none), so the
 * routing of thoughts to `reasoning_content` is checked here.
 */
import type { LlamaChatResponseChunk } from 'node-llama-cpp';
import { describe, expect, test } from 'vitest';
import { chatGeneration } from './generation.js';
import type { GenerationParams } from './params.js';
import type { Slot } from './runtime.js';

const params: GenerationParams = {
  maxTokens: 10,
  stop: ['END'],
  sampling: { temperature: 0, repeatPenalty: false },
};

/** A slot whose chat replays the given chunks and stop reason, metering `sampled` tokens. */
function stubSlot(chunks: LlamaChatResponseChunk[], stopReason: string, sampled: number) {
  const seen: Record<string, unknown>[] = [];
  let output = 0;
  const meter = {
    getState: () => ({ usedInputTokens: 0, usedOutputTokens: output }),
    diff: (before: { usedOutputTokens: number }) => ({
      usedInputTokens: 0,
      usedOutputTokens: output - before.usedOutputTokens,
    }),
  };
  const chat = {
    async generateResponse(
      _history: unknown,
      options: Record<string, unknown> & { onResponseChunk(chunk: LlamaChatResponseChunk): void },
    ) {
      seen.push(options);
      for (const chunk of chunks) options.onResponseChunk(chunk);
      output += sampled;
      const response = chunks
        .filter((chunk) => chunk.type === undefined)
        .map((chunk) => chunk.text)
        .join('');
      return { response, metadata: { stopReason } };
    },
  };
  return { slot: { sequence: { tokenMeter: meter }, chat } as unknown as Slot, seen };
}

const text = (value: string): LlamaChatResponseChunk => ({
  type: undefined,
  segmentType: undefined,
  text: value,
  tokens: [],
});
const segment = (segmentType: 'thought' | 'comment', value: string): LlamaChatResponseChunk => ({
  type: 'segment',
  segmentType,
  text: value,
  tokens: [],
});

describe('chat generation', () => {
  test('behavior: thoughts go to reasoning, the answer to text, comments and empty chunks nowhere', async () => {
    const { slot } = stubSlot(
      [
        segment('thought', 'Let me think. '),
        segment('thought', ''),
        segment('comment', 'aside'),
        text('Hello'),
        text(''),
        text(' there'),
      ],
      'eogToken',
      7,
    );
    const texts: string[] = [];
    const thoughts: string[] = [];
    const outcome = await chatGeneration([], params, 10)(
      slot,
      { onText: (value) => texts.push(value), onReasoning: (value) => thoughts.push(value) },
      new AbortController().signal,
    );
    expect(texts).toEqual(['Hello', ' there']);
    expect(thoughts).toEqual(['Let me think. ']);
    expect(outcome).toEqual({ text: 'Hello there', finishReason: 'stop', completionTokens: 7 });
  });

  test('behavior: maxTokens is finish_reason length, the stops and sampling reach node-llama-cpp', async () => {
    const { slot, seen } = stubSlot([text('a')], 'maxTokens', 10);
    const signal = new AbortController().signal;
    const outcome = await chatGeneration([], params, 10)(
      slot,
      { onText() {}, onReasoning() {} },
      signal,
    );
    expect(outcome.finishReason).toBe('length');
    expect(seen[0]).toMatchObject({
      maxTokens: 10,
      customStopTriggers: ['END'],
      temperature: 0,
      repeatPenalty: false,
      signal,
      stopOnAbortSignal: false,
    });
  });

  test('behavior: a stop sequence is finish_reason stop', async () => {
    const { slot } = stubSlot([text('a')], 'customStopTrigger', 2);
    const outcome = await chatGeneration([], params, 10)(
      slot,
      { onText() {}, onReasoning() {} },
      new AbortController().signal,
    );
    expect(outcome.finishReason).toBe('stop');
  });
});
