/**
 * How to run the fake llama-server program (`fake-llama-server.mjs`) as a supervised model's
 * command, for tests of the supervisor and of gateways built on it.
 */
import { fileURLToPath } from 'node:url';

/** The fake llama-server program, plain JavaScript that `node` runs as it is. */
export const FAKE_LLAMA_SERVER_PATH = fileURLToPath(
  new URL('./fake-llama-server.mjs', import.meta.url),
);

/** How the fake llama-server behaves; every field is optional. */
export interface FakeLlamaServerFlags {
  /** `/health` answers 503 "Loading model" for this long after the start, in ms. */
  startDelayMs?: number;
  /** Exits with code 3 and a load error on stderr (after `startDelayMs`). */
  crashOnStart?: boolean;
  /** A stream that has sent this many chunks kills the process (exit code 1). */
  crashAfterChunks?: number;
  /** Delay between stream chunks, in ms. */
  chunkDelayMs?: number;
  /** The assistant's text. */
  reply?: string;
  /** Forks a helper process into its process group (`GET /debug/child` gives its pid). */
  spawnChild?: boolean;
  /** Survives SIGTERM: only SIGKILL ends it. */
  ignoreSigterm?: boolean;
}

/**
 * The command of a supervised model that runs the fake llama-server: `node`, the program,
 * `--port ${PORT}`, then the behaviour flags.
 *
 * @example
 * ```ts
 * createSupervisor({ models: [{ id: 'fake', command: fakeLlamaServerCommand({ startDelayMs: 300 }) }] });
 * ```
 */
export function fakeLlamaServerCommand(flags: FakeLlamaServerFlags = {}): string[] {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the placeholder the supervisor replaces
  const command = [process.execPath, FAKE_LLAMA_SERVER_PATH, '--port', '${PORT}'];
  if (flags.startDelayMs !== undefined)
    command.push('--start-delay-ms', String(flags.startDelayMs));
  if (flags.crashOnStart) command.push('--crash-on-start');
  if (flags.crashAfterChunks !== undefined)
    command.push('--crash-after-chunks', String(flags.crashAfterChunks));
  if (flags.chunkDelayMs !== undefined)
    command.push('--chunk-delay-ms', String(flags.chunkDelayMs));
  if (flags.reply !== undefined) command.push('--reply', flags.reply);
  if (flags.spawnChild) command.push('--spawn-child');
  if (flags.ignoreSigterm) command.push('--ignore-sigterm');
  return command;
}
