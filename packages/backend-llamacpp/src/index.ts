/**
 * @module @tollgate/backend-llamacpp
 *
 * A Tollgate `Backend` that runs a GGUF model in-process with node-llama-cpp: chat through the
 * model's own chat template, completions, embeddings, token streaming in OpenAI's SSE format
 * with real token counts, stop sequences, token limits, cancellation when the caller leaves,
 * and one request per context sequence with a FIFO queue. Prebuilt llama.cpp binaries only:
 * it never downloads or builds anything, and runs on the CPU unless told otherwise.
 */
export {
  createLlamaCppBackend,
  type LlamaCppBackend,
  type LlamaCppBackendOptions,
} from './llamacpp-backend.js';
export type { GpuOption } from './runtime.js';
