/**
 * @module @tollgate/backends
 *
 * Adapters that put local LLM servers (any OpenAI-compatible server, Ollama, llama.cpp's
 * llama-server, vLLM, LM Studio, MLX) behind one `Backend` contract, and a router that maps
 * model names to backends with aliases, least-in-flight balancing, failover before the first
 * byte, a health watchdog and per-model concurrency limits with a bounded queue. A supervisor
 * that starts model servers from commands on demand, stops idle ones and keeps them within a
 * memory budget estimated from GGUF headers, and a GGUF header reader.
 */
export type {
  Backend,
  BackendCallOptions,
  BackendHealth,
  BackendKind,
  BackendModel,
} from './backend.js';
export { splitCommandLine } from './command-line.js';
export { type BackendConfig, createBackend } from './create-backend.js';
export {
  type EstimateModelMemoryOptions,
  estimateModelMemory,
  type GgufArray,
  GgufError,
  type GgufErrorCode,
  type GgufHeader,
  type GgufReadOptions,
  type GgufTensorInfo,
  type GgufValue,
  type GgufValueType,
  ggmlTypeBytes,
  ggmlTypeName,
  isKvCacheType,
  type KvCacheType,
  type ModelMemoryEstimate,
  parseGgufHeader,
  readGgufHeader,
} from './gguf.js';
export { createOllama, OLLAMA_OPTION_NAMES, type OllamaOptions } from './ollama.js';
export { createOpenAICompatible, type OpenAICompatibleOptions } from './openai-compatible.js';
export {
  createLlamaServer,
  createLmStudio,
  createMlx,
  createVllm,
  type ServerPresetOptions,
} from './presets.js';
export type { SpawnFunction } from './process-group.js';
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
  RouterQueueStatus,
} from './router-types.js';
export {
  allowedRuntimeFlags,
  type ValidateRuntimeFlagsOptions,
  validateRuntimeFlags,
} from './runtime-flags.js';
export { createSupervisor } from './supervisor.js';
export type {
  SupervisedModelConfig,
  SupervisedModelState,
  SupervisedModelStatus,
  Supervisor,
  SupervisorLoadOptions,
  SupervisorLogger,
  SupervisorMemory,
  SupervisorOptions,
  SupervisorUnloadOptions,
} from './supervisor-types.js';
