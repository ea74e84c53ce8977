/**
 * The one error class of @tollgate/discovery. Only bad input is an error: a closed port, a
 * timeout or a server answering garbage is simply not reported.
 */

/** Stable error codes; new ones may be added, none changes meaning. */
export const DISCOVERY_ERROR_CODES = [
  /** A list of extra ports (`port[:label],...`) is malformed. */
  'invalid_ports',
  /** A CIDR range is malformed or not IPv4. */
  'invalid_cidr',
  /** A CIDR range holds more addresses than discovery scans. */
  'cidr_too_large',
  /** An option has the wrong type or is out of range (a host, a port, a timeout, ...). */
  'invalid_option',
  /** A URL given to `probe` is not an http(s) URL. */
  'invalid_url',
] as const;

/** One of {@link DISCOVERY_ERROR_CODES}. */
export type DiscoveryErrorCode = (typeof DISCOVERY_ERROR_CODES)[number];

const brand = Symbol.for('tollgate.discovery.error');

/**
 * A failure of @tollgate/discovery: a stable `code` and a message that says what to change.
 *
 * @example
 * ```ts
 * throw new DiscoveryError('invalid_cidr', '"10.0.0.0" is not a CIDR range: write it as address/prefix, e.g. 10.0.0.0/28.');
 * ```
 */
export class DiscoveryError extends Error {
  override name = 'DiscoveryError';
  readonly code: DiscoveryErrorCode;
  readonly [brand] = true;

  constructor(code: DiscoveryErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** Whether a value is a {@link DiscoveryError}, also from another copy of this package. */
export function isDiscoveryError(value: unknown): value is DiscoveryError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[brand] === true
  );
}
