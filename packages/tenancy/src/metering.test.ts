import { describe, expect, it } from 'vitest';
import { completionAllowance, costMicroUsd, estimatePromptTokens, priceFor } from './index.js';

describe('metering', () => {
  it('behavior: prices by exact name first, then the longest matching glob', () => {
    const prices = {
      'llama3*': { input: 1, output: 2 },
      'llama3.1*': { input: 3, output: 4 },
      'llama3.1:8b': { input: 5, output: 6 },
    };
    expect(priceFor(prices, 'llama3.1:8b')).toEqual({ input: 5, output: 6 });
    expect(priceFor(prices, 'llama3.1:70b')).toEqual({ input: 3, output: 4 });
    expect(priceFor(prices, 'llama3:8b')).toEqual({ input: 1, output: 2 });
    expect(priceFor(prices, 'qwen')).toBeUndefined();
    expect(priceFor(undefined, 'qwen')).toBeUndefined();
  });

  it('behavior: USD per million tokens times tokens is micro-dollars, rounded up', () => {
    expect(costMicroUsd({ input: 0.15, output: 0.6 }, 1000, 500)).toBe(450);
    expect(costMicroUsd({ input: 0.1, output: 0 }, 3, 0)).toBe(1);
    expect(costMicroUsd(undefined, 1000, 1000)).toBe(0);
  });

  it('behavior: prompt estimates count text, images, tools, prompts and embedding inputs', () => {
    expect(estimatePromptTokens({ messages: [{ role: 'user', content: 'abcdefgh' }] })).toBe(6);
    expect(
      estimatePromptTokens({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'abcd' },
              { type: 'image_url', image_url: { url: 'data:...' } },
            ],
          },
        ],
      }),
    ).toBe(4 + 1 + 512);
    expect(estimatePromptTokens({ prompt: ['abcd', 'abcdefgh'] })).toBe(3);
    expect(estimatePromptTokens({ input: [[1, 2, 3], [4]] })).toBe(4);
    expect(estimatePromptTokens({ messages: [], tools: [{ type: 'function' }] })).toBeGreaterThan(
      0,
    );
    expect(estimatePromptTokens(null)).toBe(0);
    expect(estimatePromptTokens({ messages: [null, 3] })).toBe(8);
  });

  it('behavior: the completion allowance is max_completion_tokens, else max_tokens, else the default', () => {
    expect(
      completionAllowance({ max_completion_tokens: 10, max_tokens: 20 }, 'chat.completions', 99),
    ).toBe(10);
    expect(completionAllowance({ max_tokens: 20 }, 'completions', 99)).toBe(20);
    expect(completionAllowance({}, 'chat.completions', 99)).toBe(99);
    expect(completionAllowance({ max_tokens: -1 }, 'chat.completions', 99)).toBe(99);
    expect(completionAllowance({ max_tokens: 20 }, 'embeddings', 99)).toBe(0);
  });
});
