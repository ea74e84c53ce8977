/**
 * The gateway's logger: pino, one JSON object per line, secrets redacted where they would sit.
 */
import { type DestinationStream, type Logger, pino } from 'pino';
import type { LogLevel } from './config.js';

/** A pino logger. */
export type { Logger } from 'pino';

/** Options for {@link createLogger}. */
export interface CreateLoggerOptions {
  /** @default 'info' */
  level?: LogLevel;
  /** Where lines go. @default standard output, written synchronously so nothing is lost at exit */
  destination?: DestinationStream;
}

// Field names that may carry a secret. The gateway keeps them out of its log lines by
// construction (it never logs headers, bodies or configuration objects); redaction is the
// last line of defence, at the top level and under `headers`. Exact paths only: pino's
// wildcard paths (`*.authorization`) cost over 100 µs on every line, more than the rest of
// a request through the gateway, while exact ones cost next to nothing.
const SECRET_FIELDS = [
  'authorization',
  'x-api-key',
  'cookie',
  'api_key',
  'apiKey',
  'apiKeys',
  'api_keys',
  'admin_key',
  'adminKey',
];
const REDACT_PATHS = SECRET_FIELDS.flatMap((field) => {
  const key = /^[A-Za-z_$][\w$]*$/.test(field) ? field : `["${field}"]`;
  return [key, key.startsWith('[') ? `headers${key}` : `headers.${key}`];
});

/**
 * Creates the gateway's logger. Every line is JSON with `level`, `time` and `msg`; values
 * of `authorization`, `x-api-key`, `cookie` and `api_key` (and similar) at the top level of
 * a line or under its `headers` print as `[redacted]`, as a last line of defence: the
 * gateway never logs them on purpose.
 *
 * @example
 * ```ts
 * const logger = createLogger({ level: 'debug' });
 * logger.child({ requestId: 'abc' }).info('hello');
 * ```
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const destination = options.destination ?? pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'tollgate' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
