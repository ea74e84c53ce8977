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
  errorEnvelope,
  errorResponse,
  errorTypeForStatus,
  isTollgateError,
  type OpenAIErrorEnvelope,
  readUpstreamErrorMessage,
  TollgateError,
  type TollgateErrorCode,
  type TollgateErrorOptions,
} from './errors.js';
export {
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
  type ChatMessage,
  ChatMessageSchema,
  type CompletionRequest,
  CompletionRequestSchema,
  type ContentPart,
  ContentPartSchema,
  type EmbeddingRequest,
  EmbeddingRequestSchema,
  formatIssuePath,
  type Model,
  type ModelList,
  ModelListSchema,
  ModelSchema,
  type Operation,
  type OperationRequest,
  parseOperationRequest,
  StreamOptionsSchema,
  type Tool,
  type ToolCall,
  ToolCallSchema,
  ToolSchema,
  type Usage,
  UsageSchema,
} from './schemas.js';
export { createSseDecoder, encodeSseEvent, SSE_DONE, type SseEvent } from './sse.js';
export {
  createUsageScanner,
  createUsageTap,
  type UsageScanner,
  type UsageTap,
  type UsageTapFormat,
  type UsageTapOptions,
  type UsageTapResult,
} from './usage-tap.js';
