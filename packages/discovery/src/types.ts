/** What discovery reports. */

/** The server types discovery tells apart; each is also a Tollgate backend type. */
export const DISCOVERED_SERVER_TYPES = [
  'ollama',
  'llama-server',
  'vllm',
  'lm-studio',
  'openai',
] as const;

/** One of {@link DISCOVERED_SERVER_TYPES}. `openai` is any other server that lists models at /v1/models. */
export type DiscoveredServerType = (typeof DISCOVERED_SERVER_TYPES)[number];

/** An inference server that answered. */
export interface DiscoveredServer {
  /**
   * What a Tollgate backend of this `type` takes: the server's root URL
   * (`http://127.0.0.1:11434`), or for `openai` the API base including `/v1`
   * (`http://127.0.0.1:4000/v1`).
   */
  url: string;
  /** The host probed, as given (an IPv6 address without brackets). */
  host: string;
  /** The TCP port probed. */
  port: number;
  /** The server type, from its most specific signature. */
  type: DiscoveredServerType;
  /**
   * The server's version, when it tells: Ollama's `/api/version`, vLLM's `/version`,
   * llama-server's `build_info` in `/props`.
   */
  version?: string;
  /** The ids of the models it lists, in its order (empty while llama-server loads). */
  models: string[];
  /**
   * Whether it can take requests now: llama-server and vLLM by their `/health` (llama-server
   * answers 503 while it loads its model), the others by answering their model list.
   */
  healthy: boolean;
  /** The label given with the port (`extraPorts`, `TOLLGATE_DISCOVERY_PORTS`). */
  label?: string;
}
