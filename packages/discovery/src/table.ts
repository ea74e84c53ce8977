/** The table `tollgate discover` prints. */
import type { DiscoveredServer } from './types.js';

/** Options for {@link formatDiscoveryTable}. */
export interface FormatDiscoveryTableOptions {
  /** Models named per row before the rest are counted (`+3 more`). @default 3 */
  maxModels?: number;
}

function modelsCell(models: string[], maxModels: number): string {
  if (models.length === 0) return '-';
  const shown = models.slice(0, maxModels).join(', ');
  const rest = models.length - maxModels;
  return rest > 0 ? `${shown} (+${rest} more)` : shown;
}

/**
 * Renders discovered servers as a plain-text table (no colors), one row per server: URL, type,
 * version, state, models. A LABEL column appears when any server has a label.
 *
 * @returns The table without a trailing newline, or `No inference servers found.` for none.
 * @example
 * ```ts
 * console.log(formatDiscoveryTable(await discover()));
 * // URL                     TYPE    VERSION  STATE  MODELS
 * // http://127.0.0.1:11434  ollama  0.12.6   ready  llama3.2:latest, qwen3:8b
 * ```
 */
export function formatDiscoveryTable(
  servers: readonly DiscoveredServer[],
  options: FormatDiscoveryTableOptions = {},
): string {
  if (servers.length === 0) return 'No inference servers found.';
  const maxModels = Math.max(1, Math.floor(options.maxModels ?? 3));
  const withLabels = servers.some((server) => server.label);
  const header = ['URL', 'TYPE', 'VERSION', 'STATE', ...(withLabels ? ['LABEL'] : []), 'MODELS'];
  const rows = servers.map((server) => [
    server.url,
    server.type,
    server.version ?? '-',
    server.healthy ? 'ready' : 'not ready',
    ...(withLabels ? [server.label ?? '-'] : []),
    modelsCell(server.models, maxModels),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  return [header, ...rows]
    .map((cells) =>
      cells
        .map((cell, column) =>
          column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0),
        )
        .join('  '),
    )
    .join('\n');
}
