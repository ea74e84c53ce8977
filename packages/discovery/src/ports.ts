/**
 * Which ports discovery probes: the well-known ports of local inference servers, and the
 * operator's own list (`port[:label],...`, what TOLLGATE_DISCOVERY_PORTS holds).
 */
import { DiscoveryError } from './errors.js';

/** A port to probe, with the operator's name for what runs there. */
export interface DiscoveryPort {
  /** TCP port, 1-65535. */
  port: number;
  /** A name shown beside what is found there (e.g. `llama`). */
  label?: string;
}

/**
 * The ports discovery probes by default, with the server usually found there. Other servers
 * (SGLang on 30000, Jan on 1337, ...) are added with `extraPorts`.
 */
export const WELL_KNOWN_PORTS: ReadonlyArray<{ readonly port: number; readonly server: string }> = [
  { port: 11434, server: 'Ollama' },
  { port: 8080, server: 'llama-server' },
  { port: 8000, server: 'vLLM' },
  { port: 1234, server: 'LM Studio' },
  { port: 4000, server: 'LiteLLM' },
  { port: 5001, server: 'KoboldCpp' },
  { port: 11973, server: 'MSTY / MLX' },
];

const MAX_LABEL_LENGTH = 64;
const FORMAT_HINT = 'use port[:label] entries separated by commas, e.g. "8080:llama,9000"';

/** Whether a value is a TCP port number (an integer from 1 to 65535). @internal */
export function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 65535;
}

/**
 * Parses a list of extra ports to probe: `port[:label]` entries separated by commas. Blanks
 * around entries and empty entries are ignored; an empty text gives an empty list.
 *
 * @param text - e.g. `"8080:llama,9000"` (the value of TOLLGATE_DISCOVERY_PORTS).
 * @returns The ports in the order given.
 * @throws {DiscoveryError} `invalid_ports` for a port that is not 1-65535, an empty or overlong
 *   label, or a port listed twice.
 * @example
 * ```ts
 * parseDiscoveryPorts('8080:llama, 9000'); // [{ port: 8080, label: 'llama' }, { port: 9000 }]
 * ```
 */
export function parseDiscoveryPorts(text: string): DiscoveryPort[] {
  if (typeof text !== 'string') {
    throw new DiscoveryError('invalid_ports', `Discovery ports must be a string: ${FORMAT_HINT}.`);
  }
  const ports: DiscoveryPort[] = [];
  const seen = new Set<number>();
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (!entry) continue;
    const colon = entry.indexOf(':');
    const portText = (colon === -1 ? entry : entry.slice(0, colon)).trim();
    const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN;
    if (!isPort(port)) {
      throw new DiscoveryError(
        'invalid_ports',
        `"${entry}" does not start with a port from 1 to 65535: ${FORMAT_HINT}.`,
      );
    }
    if (seen.has(port)) {
      throw new DiscoveryError('invalid_ports', `Port ${port} is listed twice: list it once.`);
    }
    seen.add(port);
    if (colon === -1) {
      ports.push({ port });
      continue;
    }
    const label = entry.slice(colon + 1).trim();
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    if (!label || label.length > MAX_LABEL_LENGTH || /[\u0000-\u001f\u007f]/.test(label)) {
      throw new DiscoveryError(
        'invalid_ports',
        `"${entry}" has no usable label after the colon (1-${MAX_LABEL_LENGTH} printable characters): ${FORMAT_HINT}.`,
      );
    }
    ports.push({ port, label });
  }
  return ports;
}
