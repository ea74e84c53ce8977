/**
 * zod schemas for the OpenAI API surface Tollgate serves.
 *
 * They validate only what the gateway must understand (the model, the messages, streaming,
 * token limits) and let every other field through untouched, so parameters a server
 * understands and OpenAI does not (`top_k`, `min_p`, `chat_template_kwargs`, ...) reach it.
 */
import { z } from 'zod';
import { TollgateError } from './errors.js';

const modelName = z
  .string({ error: 'The "model" field must be a string naming a model.' })
  .min(1, { error: 'The "model" field must not be empty.' });

const tokenCount = z.number().int().nonnegative();

/** A part of a multimodal message: `{type: "text", text}`, `{type: "image_url", image_url}`, ... */
export const ContentPartSchema = z.looseObject({ type: z.string() });

/** A tool call made by the assistant. `arguments` is a JSON string, as OpenAI sends it. */
export const ToolCallSchema = z.looseObject({
  id: z.string().optional(),
  type: z.string().optional(),
  function: z.looseObject({ name: z.string(), arguments: z.string().optional() }),
});

/** One chat message. */
export const ChatMessageSchema = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function'], {
    error: 'A message "role" must be one of system, developer, user, assistant, tool.',
  }),
  content: z.union([z.string(), z.array(ContentPartSchema), z.null()]).optional(),
  name: z.string().optional(),
  tool_calls: z.array(ToolCallSchema).optional(),
  tool_call_id: z.string().optional(),
});

/** A tool the model may call. */
export const ToolSchema = z.looseObject({
  type: z.string(),
  function: z
    .looseObject({
      name: z.string(),
      description: z.string().optional(),
      parameters: z.record(z.string(), z.unknown()).optional(),
    })
    .optional(),
});

/** `stream_options` of a streamed request. */
export const StreamOptionsSchema = z.looseObject({ include_usage: z.boolean().optional() });

/** POST /v1/chat/completions */
export const ChatCompletionRequestSchema = z.looseObject({
  model: modelName,
  messages: z
    .array(ChatMessageSchema)
    .min(1, { error: '"messages" must hold at least one message.' }),
  stream: z.boolean().nullish(),
  stream_options: StreamOptionsSchema.nullish(),
  max_tokens: tokenCount.nullish(),
  max_completion_tokens: tokenCount.nullish(),
  n: z.number().int().positive().nullish(),
  tools: z.array(ToolSchema).optional(),
  tool_choice: z.unknown().optional(),
  response_format: z.looseObject({ type: z.string() }).optional(),
});

/** POST /v1/completions */
export const CompletionRequestSchema = z.looseObject({
  model: modelName,
  prompt: z.union([
    z.string(),
    z.array(z.string()),
    z.array(z.number()),
    z.array(z.array(z.number())),
  ]),
  stream: z.boolean().nullish(),
  stream_options: StreamOptionsSchema.nullish(),
  max_tokens: tokenCount.nullish(),
  n: z.number().int().positive().nullish(),
});

/** POST /v1/embeddings */
export const EmbeddingRequestSchema = z.looseObject({
  model: modelName,
  input: z.union([
    z.string(),
    z.array(z.string()),
    z.array(z.number()),
    z.array(z.array(z.number())),
  ]),
  encoding_format: z.enum(['float', 'base64']).optional(),
  dimensions: z.number().int().positive().optional(),
});

/** Token counts as OpenAI reports them. */
export const UsageSchema = z.looseObject({
  prompt_tokens: tokenCount,
  completion_tokens: tokenCount.optional(),
  total_tokens: tokenCount.optional(),
});

/** One entry of GET /v1/models. */
export const ModelSchema = z.looseObject({
  id: z.string(),
  object: z.literal('model').optional(),
  created: z.number().optional(),
  owned_by: z.string().optional(),
});

/** GET /v1/models */
export const ModelListSchema = z.looseObject({
  object: z.literal('list').optional(),
  data: z.array(ModelSchema),
});

export type ContentPart = z.infer<typeof ContentPartSchema>;
export type ToolCall = z.infer<typeof ToolCallSchema>;
export type ChatMessage = z.infer<typeof ChatMessageSchema>;
export type Tool = z.infer<typeof ToolSchema>;
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;
export type EmbeddingRequest = z.infer<typeof EmbeddingRequestSchema>;
export type Usage = z.infer<typeof UsageSchema>;
export type Model = z.infer<typeof ModelSchema>;
export type ModelList = z.infer<typeof ModelListSchema>;

/** The three inference operations of the OpenAI API. */
export type Operation = 'chat.completions' | 'completions' | 'embeddings';

/** The request type of each operation. */
export interface OperationRequest {
  'chat.completions': ChatCompletionRequest;
  completions: CompletionRequest;
  embeddings: EmbeddingRequest;
}

const operationSchemas = {
  'chat.completions': ChatCompletionRequestSchema,
  completions: CompletionRequestSchema,
  embeddings: EmbeddingRequestSchema,
} as const;

/** A `chat.completion` response (non-streamed). Only the fields Tollgate reads are typed. */
export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: {
      role: 'assistant';
      content: string | null;
      tool_calls?: ToolCall[];
      [key: string]: unknown;
    };
    finish_reason: string | null;
    [key: string]: unknown;
  }>;
  usage?: Usage;
  [key: string]: unknown;
}

/** A `chat.completion.chunk` of a streamed response. */
export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: {
      role?: 'assistant';
      content?: string | null;
      tool_calls?: Array<{
        index: number;
        id?: string;
        type?: 'function';
        function?: { name?: string; arguments?: string };
      }>;
      [key: string]: unknown;
    };
    finish_reason: string | null;
    [key: string]: unknown;
  }>;
  usage?: Usage | null;
  [key: string]: unknown;
}

/**
 * Spells a validation issue's path the way OpenAI names request fields in `param`:
 * `messages[0].content`.
 *
 * @example
 * ```ts
 * formatIssuePath(['messages', 0, 'role']); // 'messages[0].role'
 * ```
 */
export function formatIssuePath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else out += out ? `.${String(segment)}` : String(segment);
  }
  return out;
}

/**
 * Validates a parsed JSON body for one operation. Unknown fields are kept.
 *
 * @throws {TollgateError} `invalid_request` (400) naming the first offending field in `param`.
 * @example
 * ```ts
 * const request = parseOperationRequest('chat.completions', await response.json());
 * ```
 */
export function parseOperationRequest<O extends Operation>(
  operation: O,
  body: unknown,
): OperationRequest[O] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new TollgateError('invalid_request', 'The request body must be a JSON object.');
  }
  const result = operationSchemas[operation].safeParse(body);
  if (result.success) return result.data as OperationRequest[O];
  const issue = deepestIssue(result.error.issues[0]!);
  const param = formatIssuePath(issue.path);
  if (valueAt(body, issue.path) === undefined) {
    // OpenAI's own wording, which clients and their users already know.
    if (param === 'model') {
      throw new TollgateError('invalid_request', 'You must provide a model parameter.', {
        param: 'model',
      });
    }
    throw new TollgateError('invalid_request', `Missing required parameter: '${param}'.`, {
      param,
    });
  }
  // The schemas' own messages are full sentences; zod's defaults ("Too small: expected number
  // to be >=0") are not, so they get the field named in front.
  const message = issue.message.endsWith('.')
    ? issue.message
    : `Invalid value for '${param}': ${issue.message}.`;
  throw new TollgateError('invalid_request', message, { param: param || null });
}

/**
 * A union reports only "Invalid input" at its own path. When one of its options got further
 * than the others (the value had that option's shape, e.g. an array of content parts, and
 * failed inside it), that option's issue names the field to fix.
 */
function deepestIssue(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== 'invalid_union') return issue;
  let best: z.core.$ZodIssue | undefined;
  for (const optionIssues of issue.errors) {
    const first = optionIssues[0];
    if (first && first.path.length > 0 && (!best || first.path.length > best.path.length))
      best = first;
  }
  if (!best) return issue;
  return deepestIssue({ ...best, path: [...issue.path, ...best.path] } as z.core.$ZodIssue);
}

function valueAt(body: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let value = body;
  for (const segment of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[segment];
  }
  return value;
}
