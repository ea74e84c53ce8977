/**
 * @module @tollgate/discovery
 *
 * Finds the LLM inference servers running nearby: the well-known ports on loopback probed in
 * parallel with short timeouts (plus the operator's own ports, and an opt-in, bounded IPv4
 * range), each server's type told from its most specific signature (Ollama, llama-server,
 * vLLM, LM Studio, any other OpenAI-compatible server), and the models it lists.
 * Uses `fetch` only; never reads the environment.
 */
export {
  expandCidr,
  MAX_CIDR_ADDRESSES,
} from './cidr.js';
export { type DiscoverOptions, discover } from './discover.js';
export {
  DISCOVERY_ERROR_CODES,
  DiscoveryError,
  type DiscoveryErrorCode,
  isDiscoveryError,
} from './errors.js';
export {
  type DiscoveryPort,
  parseDiscoveryPorts,
  WELL_KNOWN_PORTS,
} from './ports.js';
export { DEFAULT_PROBE_TIMEOUT_MS, type ProbeOptions, probe } from './probe.js';
export { type FormatDiscoveryTableOptions, formatDiscoveryTable } from './table.js';
export {
  DISCOVERED_SERVER_TYPES,
  type DiscoveredServer,
  type DiscoveredServerType,
} from './types.js';
