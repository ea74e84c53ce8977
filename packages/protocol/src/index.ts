/**
 * @module @tollgate/protocol
 *
 * The wire contract of Tollgate: zod schemas and types for the OpenAI chat, completions,
 * embeddings and models APIs (unknown fields pass through), the OpenAI error envelope and
 * error classes with stable codes, SSE encoding and decoding, and a usage tap that reads
 * `usage` from a JSON body or an SSE stream as it passes, without holding it back.
 */
export {
  ERROR_CODES,
  TollgateError,
  errorEnvelope,
  errorResponse,
  isTollgateError,
  readUpstreamErrorMessage,
  type OpenAIErrorEnvelope,
  type TollgateErrorCode,
  type TollgateErrorOptions,
} from './errors.js';
export {
  ChatCompletionRequestSchema,
  ChatMessageSchema,
  CompletionRequestSchema,
  ContentPartSchema,
  EmbeddingRequestSchema,
  ModelListSchema,
  ModelSchema,
  StreamOptionsSchema,
  ToolCallSchema,
  ToolSchema,
  UsageSchema,
  parseOperationRequest,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  type ChatMessage,
  type CompletionRequest,
  type ContentPart,
  type EmbeddingRequest,
  type Model,
  type ModelList,
  type Operation,
  type OperationRequest,
  type Tool,
  type ToolCall,
  type Usage,
} from './schemas.js';
export { SSE_DONE, createSseDecoder, encodeSseEvent, type SseEvent } from './sse.js';
export {
  createUsageTap,
  type UsageTap,
  type UsageTapFormat,
  type UsageTapOptions,
  type UsageTapResult,
} from './usage-tap.js';
