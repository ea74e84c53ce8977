/**
 * What a request is expected to cost before it runs (to reserve it) and what it cost after
 * (to record it): token estimates from the request body, and prices per model.
 */
import { globMatches } from './limits.js';

/** Prices of one model in US dollars per million tokens. */
export interface ModelPrice {
  input: number;
  output: number;
}

/** Prices by model: exact names, or globs with `*` (the longest matching glob wins). */
export type PriceTable = Record<string, ModelPrice>;

/** Roughly four characters per token for English text with common tokenizers. */
const CHARS_PER_TOKEN = 4;
/** Per message: role and the template's separators. */
const TOKENS_PER_MESSAGE = 4;
/** An image part, whatever its size: a middle figure between low and high detail. */
const TOKENS_PER_IMAGE = 512;

/**
 * The price of a model: its exact entry, else the longest matching glob, else undefined
 * (unpriced: it costs nothing).
 *
 * @example
 * ```ts
 * priceFor({ 'llama3*': { input: 0.1, output: 0.2 } }, 'llama3.1:8b'); // { input: 0.1, output: 0.2 }
 * ```
 */
export function priceFor(prices: PriceTable | undefined, model: string): ModelPrice | undefined {
  if (!prices) return undefined;
  const exact = prices[model];
  if (exact) return exact;
  let best: { length: number; price: ModelPrice } | undefined;
  for (const pattern in prices) {
    if (!pattern.includes('*') || (best && pattern.length <= best.length)) continue;
    if (globMatches(pattern, model)) best = { length: pattern.length, price: prices[pattern]! };
  }
  return best?.price;
}

/**
 * Cost in millionths of a US dollar. A price per million tokens times a token count is
 * exactly micro-dollars; the result is rounded up so nothing is ever free by rounding.
 */
export function costMicroUsd(
  price: ModelPrice | undefined,
  promptTokens: number,
  completionTokens: number,
): number {
  if (!price) return 0;
  return Math.ceil(price.input * promptTokens + price.output * completionTokens);
}

function textTokens(text: string): number {
  return Math.ceil(text.length / CHARS_PER_TOKEN);
}

/** Tokens in a message's `content`: a string, or an array of text and image parts. */
function contentTokens(content: unknown): number {
  if (typeof content === 'string') return textTokens(content);
  if (!Array.isArray(content)) return 0;
  let tokens = 0;
  for (const part of content) {
    if (typeof part === 'string') tokens += textTokens(part);
    else if (part && typeof part === 'object') {
      const typed = part as { type?: unknown; text?: unknown };
      if (typeof typed.text === 'string') tokens += textTokens(typed.text);
      else if (typed.type === 'image_url' || typed.type === 'input_image')
        tokens += TOKENS_PER_IMAGE;
    }
  }
  return tokens;
}

/** Tokens in a completions `prompt` or an embeddings `input`: text, texts, or token ids. */
function inputTokens(input: unknown): number {
  if (typeof input === 'string') return textTokens(input);
  if (!Array.isArray(input)) return 0;
  let tokens = 0;
  for (const item of input) {
    if (typeof item === 'number') tokens += 1;
    else tokens += inputTokens(item);
  }
  return tokens;
}

/**
 * Estimates the prompt tokens of a chat, completions or embeddings request from its text
 * (about four characters a token, a fixed figure per image, the tool definitions counted
 * as their JSON). Used to reserve before the upstream reports real usage, and as the
 * recorded figure (marked estimated) when it reports none.
 *
 * @example
 * ```ts
 * estimatePromptTokens({ messages: [{ role: 'user', content: 'Hello there, how are you?' }] }); // 11
 * ```
 */
export function estimatePromptTokens(body: unknown): number {
  if (!body || typeof body !== 'object') return 0;
  const request = body as {
    messages?: unknown;
    prompt?: unknown;
    input?: unknown;
    tools?: unknown;
  };
  let tokens = 0;
  if (Array.isArray(request.messages)) {
    for (const message of request.messages) {
      tokens += TOKENS_PER_MESSAGE;
      if (!message || typeof message !== 'object') continue;
      const { content, tool_calls: toolCalls } = message as {
        content?: unknown;
        tool_calls?: unknown;
      };
      tokens += contentTokens(content);
      if (toolCalls !== undefined) tokens += textTokens(JSON.stringify(toolCalls));
    }
  }
  tokens += inputTokens(request.prompt);
  tokens += inputTokens(request.input);
  if (Array.isArray(request.tools)) tokens += textTokens(JSON.stringify(request.tools));
  return tokens;
}

/**
 * The completion tokens a request may produce: `max_completion_tokens`, else `max_tokens`,
 * else the default; 0 for embeddings (which produce none).
 */
export function completionAllowance(
  body: unknown,
  operation: string,
  defaultMaxTokens: number,
): number {
  if (operation === 'embeddings') return 0;
  const request = (body ?? {}) as { max_completion_tokens?: unknown; max_tokens?: unknown };
  for (const value of [request.max_completion_tokens, request.max_tokens]) {
    if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return Math.ceil(value);
  }
  return defaultMaxTokens;
}
