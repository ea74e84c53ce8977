/**
 * OpenAI's response shapes: chat completions and text completions (whole or as SSE chunks),
 * embedding lists, and the usage that goes with them.
 */
import { encodeSseEvent, SSE_DONE } from '@tollgate/protocol';

/** Why a generation ended, in OpenAI's words. */
export type FinishReason = 'stop' | 'length';

/** OpenAI token counts. */
export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** What identifies one answer: its id, creation time (Unix seconds) and model name. */
export interface AnswerHeader {
  id: string;
  created: number;
  model: string;
}

/** A new answer header; `prefix` is `chatcmpl` or `cmpl`, as OpenAI's ids start. */
export function answerHeader(prefix: 'chatcmpl' | 'cmpl', model: string): AnswerHeader {
  return {
    id: `${prefix}-${globalThis.crypto.randomUUID().replaceAll('-', '').slice(0, 24)}`,
    created: Math.floor(Date.now() / 1000),
    model,
  };
}

/** Usage from the prompt and completion token counts. */
export function usageOf(promptTokens: number, completionTokens: number): TokenUsage {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  };
}

/** A whole `chat.completion`. `reasoning` (a model's thoughts) goes in `reasoning_content`. */
export function chatCompletionBody(
  header: AnswerHeader,
  answer: { content: string; reasoning: string; finishReason: FinishReason; usage: TokenUsage },
): Record<string, unknown> {
  const message: Record<string, unknown> = { role: 'assistant', content: answer.content };
  if (answer.reasoning) message.reasoning_content = answer.reasoning;
  return {
    id: header.id,
    object: 'chat.completion',
    created: header.created,
    model: header.model,
    choices: [{ index: 0, message, logprobs: null, finish_reason: answer.finishReason }],
    usage: answer.usage,
  };
}

/** A whole `text_completion`. */
export function textCompletionBody(
  header: AnswerHeader,
  answer: { text: string; finishReason: FinishReason; usage: TokenUsage },
): Record<string, unknown> {
  return {
    id: header.id,
    object: 'text_completion',
    created: header.created,
    model: header.model,
    choices: [{ index: 0, text: answer.text, logprobs: null, finish_reason: answer.finishReason }],
    usage: answer.usage,
  };
}

/** Builds the chunks of one streamed answer. */
export interface ChunkWriter {
  /** The first chunk (chat: the assistant role), sent before any text. */
  start(): unknown;
  /** A piece of the answer's text. */
  text(text: string): unknown;
  /** A piece of the model's reasoning, for answers that carry it (chat). */
  reasoning?(text: string): unknown;
  /** The chunk carrying `finish_reason`. */
  finish(reason: FinishReason): unknown;
  /** The usage-only chunk (`choices: []`), sent last before `[DONE]`. */
  usage(usage: TokenUsage): unknown;
}

/** Chunks of a streamed `chat.completion.chunk` answer. */
export function chatChunkWriter(header: AnswerHeader): ChunkWriter {
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
    id: header.id,
    object: 'chat.completion.chunk',
    created: header.created,
    model: header.model,
    choices,
    ...extra,
  });
  const choice = (delta: Record<string, unknown>, finishReason: FinishReason | null = null) => ({
    index: 0,
    delta,
    logprobs: null,
    finish_reason: finishReason,
  });
  return {
    start: () => chunk([choice({ role: 'assistant', content: '' })]),
    text: (text) => chunk([choice({ content: text })]),
    reasoning: (text) => chunk([choice({ reasoning_content: text })]),
    finish: (reason) => chunk([choice({}, reason)]),
    usage: (usage) => chunk([], { usage }),
  };
}

/** Chunks of a streamed `text_completion` answer. */
export function textChunkWriter(header: AnswerHeader): ChunkWriter {
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({
    id: header.id,
    object: 'text_completion',
    created: header.created,
    model: header.model,
    choices,
    ...extra,
  });
  const choice = (text: string, finishReason: FinishReason | null = null) => ({
    index: 0,
    text,
    logprobs: null,
    finish_reason: finishReason,
  });
  return {
    start: () => chunk([choice('')]),
    text: (text) => chunk([choice(text)]),
    finish: (reason) => chunk([choice('', reason)]),
    usage: (usage) => chunk([], { usage }),
  };
}

const encoder = new TextEncoder();

/** One SSE event carrying `data` as JSON. */
export function sseBytes(data: unknown): Uint8Array {
  return encoder.encode(encodeSseEvent({ data: JSON.stringify(data) }));
}

/** The event that ends an OpenAI stream. */
export const SSE_DONE_BYTES = encoder.encode(encodeSseEvent({ data: SSE_DONE }));

/** A JSON response. */
export function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

/** An SSE response. */
export function sseResponse(body: ReadableStream<Uint8Array>): Response {
  return new Response(body, {
    status: 200,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' },
  });
}

/** A float vector as OpenAI's base64 encoding: little-endian float32 bytes. */
export function base64Floats(vector: readonly number[]): string {
  const floats = new Float32Array(vector);
  return Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString('base64');
}
