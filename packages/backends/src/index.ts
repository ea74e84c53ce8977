/**
 * @module @tollgate/backends
 *
 * Adapters that put local LLM servers (any OpenAI-compatible server, Ollama, llama.cpp's
 * llama-server, vLLM, LM Studio, MLX) behind one `Backend` contract, and a router that maps
 * model names to backends with aliases, least-in-flight balancing, failover before the first
 * byte, a health watchdog and per-model concurrency limits with a bounded queue.
 */
export type {
  Backend,
  BackendCallOptions,
  BackendHealth,
  BackendKind,
  BackendModel,
} from './backend.js';
export { type BackendConfig, createBackend } from './create-backend.js';
export { createOllama, type OllamaOptions } from './ollama.js';
export { createOpenAICompatible, type OpenAICompatibleOptions } from './openai-compatible.js';
export {
  createLlamaServer,
  createLmStudio,
  createMlx,
  createVllm,
  type ServerPresetOptions,
} from './presets.js';
export { createRouter } from './router.js';
export type {
  DispatchOptions,
  DispatchOutcome,
  DispatchResult,
  ModelConcurrency,
  ResolvedModel,
  Router,
  RouterBackendEntry,
  RouterBackendStatus,
  RouterEvent,
  RouterModel,
  RouterOptions,
} from './router-types.js';
