/**
 * @module @tollgate/backends/testing
 *
 * Fake inference servers for tests. Each is a real `node:http` server on 127.0.0.1 (port 0)
 * that speaks one server's protocol — OpenAI-compatible, Ollama (native NDJSON API and /v1),
 * llama-server, vLLM, LM Studio — with its status codes, error bodies and kind-specific
 * endpoints, and with knobs for the failures a gateway must survive: errors, hangs, slow
 * streams, streams that die mid-way, servers that never report usage.
 *
 * Token counts are word counts, so tests can assert exact usage: `prompt_tokens` is the
 * number of whitespace-separated words in every message's content (or the prompt, or the
 * embedding input), `completion_tokens` the number of words in `reply`.
 *
 * @example
 * ```ts
 * import { startFakeUpstream } from '@tollgate/backends/testing';
 *
 * const fake = await startFakeUpstream({ kind: 'vllm', reply: 'Hi there' });
 * const response = await fetch(`${fake.baseURL}/chat/completions`, {
 *   method: 'POST',
 *   headers: { 'content-type': 'application/json' },
 *   body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'Hello' }] }),
 * });
 * await fake.close();
 * ```
 */
export {
  FAKE_LLAMA_SERVER_PATH,
  type FakeLlamaServerFlags,
  fakeLlamaServerCommand,
} from './fake-llama-server-command.js';
export { FAKE_CONTEXT_LENGTH, FAKE_VERSIONS } from './fake-openai.js';
export {
  type FakeUpstream,
  type FakeUpstreamBehavior,
  type FakeUpstreamKind,
  type FakeUpstreamRequest,
  type StartFakeUpstreamOptions,
  startFakeUpstream,
} from './fake-upstream.js';
