/**
 * Telling servers apart by what they answer. Each signature is a shape that only that server
 * sends (checked against its source), never "some endpoint returned 200": LM Studio answers
 * 200 with an error body to any path it does not know, and vLLM answers /health with 200 as
 * llama-server does (with an empty body where llama-server sends `{"status":"ok"}`).
 */
import type { DiscoveredServerType } from './types.js';

/** One GET's answer: its status and its body, parsed when it is JSON. @internal */
export interface Answer {
  status: number;
  /** The parsed JSON body; undefined when the body is empty, not JSON or too large. */
  body: unknown;
}

/** The paths a probe reads, relative to the server's root. @internal */
export const PROBE_PATHS = {
  /** Every OpenAI-compatible server; also what tells a listening HTTP server at all. */
  models: 'v1/models',
  /** Ollama: `{version}`. */
  ollamaVersion: 'api/version',
  /** Ollama: `{models: [{name, model, modified_at, size, digest, details}]}`. */
  ollamaTags: 'api/tags',
  /** llama-server: generation settings, slots, model path, build. */
  props: 'props',
  /** llama-server: `{"status":"ok"}`, 503 while loading; vLLM: 200 with an empty body. */
  health: 'health',
  /** vLLM: `{version}`. */
  version: 'version',
  /** LM Studio's native listing: `{object: 'list', data: [{id, state, max_context_length, ...}]}`. */
  lmStudioModels: 'api/v0/models',
} as const;

/** What each path answered; missing when no HTTP answer came. @internal */
export type Answers = { [key in keyof typeof PROBE_PATHS]?: Answer };

/** A server identified from its answers. @internal */
export interface Identity {
  type: DiscoveredServerType;
  version?: string;
  models: string[];
  healthy: boolean;
}

type JsonObject = Record<string, unknown>;

function asObject(value: unknown): JsonObject | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as JsonObject)
    : undefined;
}

/** The body of a 200 answer, when it is a JSON object. */
function okBody(answer: Answer | undefined): JsonObject | undefined {
  return answer?.status === 200 ? asObject(answer.body) : undefined;
}

function nonEmptyString(value: unknown): string | undefined {
  return typeof value === 'string' && value ? value : undefined;
}

function objectsOf(value: unknown): JsonObject[] | undefined {
  if (!Array.isArray(value)) return undefined;
  const objects = value.map(asObject);
  return objects.every((entry) => entry !== undefined) ? (objects as JsonObject[]) : undefined;
}

/** `{version: "..."}`: Ollama's /api/version, vLLM's /version. */
function versionFrom(answer: Answer | undefined): string | undefined {
  return nonEmptyString(okBody(answer)?.version);
}

/** Ollama's tags: a `models` array whose entries carry a name and a digest. */
function ollamaTagNames(body: JsonObject | undefined): string[] | undefined {
  const entries = objectsOf(body?.models);
  if (!entries) return undefined;
  if (!entries.every((entry) => typeof entry.name === 'string' && typeof entry.digest === 'string'))
    return undefined;
  return unique(entries.map((entry) => nonEmptyString(entry.name) ?? nonEmptyString(entry.model)));
}

/**
 * The OpenAI list shape: `data` entries with an `id`. An empty list counts only with
 * `object: "list"`, so a stray `{"data": []}` is not taken for one.
 */
function openAIEntries(body: JsonObject | undefined): JsonObject[] | undefined {
  const entries = objectsOf(body?.data);
  if (!entries) return undefined;
  if (entries.length === 0) return body?.object === 'list' ? entries : undefined;
  return entries.every((entry) => typeof entry.id === 'string') ? entries : undefined;
}

/** Model ids from either list shape (OpenAI's `data`, Ollama's `models`), without repeats. */
function modelIds(body: JsonObject | undefined): string[] | undefined {
  const openAI = openAIEntries(body);
  const ollama = objectsOf(body?.models)?.map(
    (entry) => nonEmptyString(entry.name) ?? nonEmptyString(entry.model),
  );
  if (!openAI && !ollama?.some((name) => name !== undefined)) return undefined;
  return unique([...(openAI ?? []).map((entry) => nonEmptyString(entry.id)), ...(ollama ?? [])]);
}

function unique(values: Array<string | undefined>): string[] {
  return [...new Set(values.filter((value): value is string => value !== undefined))];
}

/** Whether every listed model names `owner` as its owner (vLLM: "vllm", llama-server: "llamacpp"). */
function ownedByAll(body: JsonObject | undefined, owner: string): boolean {
  const entries = openAIEntries(body);
  return !!entries?.length && entries.every((entry) => entry.owned_by === owner);
}

/** llama-server's /props, in single-model and in router mode. */
function isLlamaServerProps(body: JsonObject | undefined): boolean {
  return (
    asObject(body?.default_generation_settings) !== undefined &&
    (typeof body?.total_slots === 'number' || typeof body?.model_path === 'string')
  );
}

/** llama-server while it loads its model: 503 with its own error envelope on every path. */
function isLlamaServerLoading(answer: Answer | undefined): boolean {
  return (
    answer?.status === 503 && asObject(asObject(answer.body)?.error)?.type === 'unavailable_error'
  );
}

/** LM Studio's native listing: entries with an id and a load `state`. */
function lmStudioIds(body: JsonObject | undefined): string[] | undefined {
  const entries = openAIEntries(body);
  if (!entries?.every((entry) => typeof entry.state === 'string')) return undefined;
  return unique(entries.map((entry) => nonEmptyString(entry.id)));
}

/**
 * Identifies a server from its answers, most specific signature first; undefined when none
 * matches (nothing that lists models, HTML, invalid JSON, a catch-all). @internal
 */
export function identifyServer(answers: Answers): Identity | undefined {
  const listing = okBody(answers.models);
  const listed = modelIds(listing);

  const ollamaVersion = versionFrom(answers.ollamaVersion);
  const tags = ollamaTagNames(okBody(answers.ollamaTags));
  if (ollamaVersion && tags) {
    return { type: 'ollama', version: ollamaVersion, models: tags, healthy: true };
  }

  const props = okBody(answers.props);
  if (
    isLlamaServerProps(props) ||
    isLlamaServerLoading(answers.health) ||
    // Started with --api-key, llama-server keeps /props private but still lists its models.
    ownedByAll(listing, 'llamacpp')
  ) {
    return withVersion(
      { type: 'llama-server', models: listed ?? [], healthy: answers.health?.status === 200 },
      nonEmptyString(props?.build_info),
    );
  }

  const vllmVersion = versionFrom(answers.version);
  if (vllmVersion && ownedByAll(listing, 'vllm')) {
    return {
      type: 'vllm',
      version: vllmVersion,
      models: listed ?? [],
      healthy: answers.health?.status === 200,
    };
  }

  const lmStudio = lmStudioIds(okBody(answers.lmStudioModels));
  if (lmStudio) {
    return { type: 'lm-studio', models: listed ?? lmStudio, healthy: listed !== undefined };
  }

  if (listed) return { type: 'openai', models: listed, healthy: true };
  return undefined;
}

function withVersion(identity: Identity, version: string | undefined): Identity {
  return version ? { ...identity, version } : identity;
}
