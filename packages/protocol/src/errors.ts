/**
 * The OpenAI error envelope and the error classes every Tollgate package throws.
 *
 * An error that leaves the gateway always has the shape OpenAI's clients parse:
 * `{"error": {"message", "type", "param", "code"}}`, with an HTTP status that says what the
 * caller should do (fix the request, authenticate, wait, or try later).
 */

/** The body of an OpenAI error response. */
export interface OpenAIErrorEnvelope {
  error: {
    message: string;
    type: string;
    param: string | null;
    code: string | null;
  };
}

/**
 * Stable error codes. Callers branch on these, so they never change meaning; new ones may be
 * added. Each maps to one HTTP status and one OpenAI `type` in {@link ERROR_CODES}.
 */
export const ERROR_CODES = {
  invalid_json: { status: 400, type: 'invalid_request_error' },
  invalid_request: { status: 400, type: 'invalid_request_error' },
  decryption_failed: { status: 400, type: 'invalid_request_error' },
  missing_api_key: { status: 401, type: 'authentication_error' },
  invalid_api_key: { status: 401, type: 'authentication_error' },
  payment_required: { status: 402, type: 'payment_required' },
  model_not_allowed: { status: 403, type: 'permission_error' },
  forbidden: { status: 403, type: 'permission_error' },
  model_not_found: { status: 404, type: 'invalid_request_error' },
  not_found: { status: 404, type: 'invalid_request_error' },
  route_not_found: { status: 404, type: 'invalid_request_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  conflict: { status: 409, type: 'invalid_request_error' },
  body_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_media_type: { status: 415, type: 'invalid_request_error' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit_error' },
  concurrency_limit: { status: 429, type: 'rate_limit_error' },
  insufficient_quota: { status: 429, type: 'insufficient_quota' },
  internal_error: { status: 500, type: 'server_error' },
  upstream_error: { status: 502, type: 'server_error' },
  upstream_unreachable: { status: 502, type: 'server_error' },
  upstream_stream_error: { status: 502, type: 'server_error' },
  upstream_unavailable: { status: 503, type: 'server_error' },
  service_unavailable: { status: 503, type: 'server_error' },
  upstream_timeout: { status: 504, type: 'server_error' },
} as const satisfies Record<string, { status: number; type: string }>;

/** One of the stable codes in {@link ERROR_CODES}. */
export type TollgateErrorCode = keyof typeof ERROR_CODES;

/** Options for {@link TollgateError}. */
export interface TollgateErrorOptions {
  /** The request field the error is about, e.g. `messages[0].content`. @default null */
  param?: string | null;
  /** The underlying error, kept for logs; never sent to callers. */
  cause?: unknown;
  /** Overrides the status implied by the code (e.g. an upstream's own 4xx). */
  status?: number;
  /** Extra response headers, e.g. `retry-after` on a 429. */
  headers?: Record<string, string>;
}

const brand = Symbol.for('tollgate.error');

/**
 * The base error of every Tollgate package: a stable `code`, the HTTP `status` and OpenAI
 * `type` it implies, the offending `param`, and a message that tells the caller what to do.
 *
 * @example
 * ```ts
 * throw new TollgateError('model_not_found', 'Unknown model "x". Known models: a, b.', { param: 'model' });
 * ```
 */
export class TollgateError extends Error {
  override name = 'TollgateError';
  readonly code: TollgateErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  readonly headers: Record<string, string>;
  readonly [brand] = true;

  constructor(code: TollgateErrorCode, message: string, options: TollgateErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.type = ERROR_CODES[code].type;
    this.param = options.param ?? null;
    this.headers = options.headers ?? {};
  }

  /** The OpenAI envelope for this error. */
  toJSON(): OpenAIErrorEnvelope {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}

/**
 * Tells whether a value is a {@link TollgateError}, also when it comes from another copy of
 * this package (a duplicate install), where `instanceof` would say no.
 */
export function isTollgateError(value: unknown): value is TollgateError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[brand] === true
  );
}

/**
 * Builds the OpenAI error envelope.
 *
 * @example
 * ```ts
 * errorEnvelope('Add a "model" field.', { type: 'invalid_request_error', code: 'invalid_request', param: 'model' });
 * ```
 */
export function errorEnvelope(
  message: string,
  fields: { type: string; code?: string | null; param?: string | null },
): OpenAIErrorEnvelope {
  return {
    error: { message, type: fields.type, param: fields.param ?? null, code: fields.code ?? null },
  };
}

/**
 * Turns an error into an HTTP `Response` carrying the OpenAI envelope. Anything that is not a
 * {@link TollgateError} becomes a generic 500 whose message reveals nothing of the cause.
 *
 * @example
 * ```ts
 * return errorResponse(new TollgateError('invalid_json', 'The body is not valid JSON.'));
 * ```
 */
export function errorResponse(error: unknown, headers?: HeadersInit): Response {
  const known = isTollgateError(error)
    ? error
    : new TollgateError(
        'internal_error',
        'The gateway failed to handle this request. It was logged; try again.',
      );
  const responseHeaders = new Headers(headers);
  responseHeaders.set('content-type', 'application/json');
  for (const [name, value] of Object.entries(known.headers)) responseHeaders.set(name, value);
  return new Response(JSON.stringify(known.toJSON()), {
    status: known.status,
    headers: responseHeaders,
  });
}

/**
 * The OpenAI error `type` that goes with an HTTP status, for errors built from another
 * server's answer (an Ollama error, a proxy's status) rather than from a Tollgate code.
 *
 * @example
 * ```ts
 * errorTypeForStatus(429); // 'rate_limit_error'
 * ```
 */
export function errorTypeForStatus(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/**
 * Reads an error message out of any upstream error body: the OpenAI envelope, Ollama's
 * `{"error": "..."}`, vLLM's `{"object": "error", "message": ...}`, FastAPI's `{"detail": ...}`
 * (vLLM's request validation), or plain text. Long text is cut to 500 characters. Returns
 * undefined when the body holds nothing readable.
 *
 * @example
 * ```ts
 * readUpstreamErrorMessage('{"error":"model \'x\' not found"}'); // "model 'x' not found"
 * readUpstreamErrorMessage('Bad Gateway'); // 'Bad Gateway'
 * readUpstreamErrorMessage('  '); // undefined
 * ```
 */
export function readUpstreamErrorMessage(body: string): string | undefined {
  const text = body.trim();
  if (!text) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return text.slice(0, 500);
  }
  if (typeof parsed === 'string') return nonEmpty(parsed);
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
    const record = parsed as Record<string, unknown>;
    const error = record.error;
    if (typeof error === 'string') return nonEmpty(error);
    if (
      error &&
      typeof error === 'object' &&
      typeof (error as { message?: unknown }).message === 'string'
    ) {
      return nonEmpty((error as { message: string }).message);
    }
    if (typeof record.message === 'string') return nonEmpty(record.message);
    if (typeof record.detail === 'string') return nonEmpty(record.detail);
    if (Array.isArray(record.detail)) {
      // FastAPI validation errors: [{"loc": ["body", "model"], "msg": "Field required", ...}].
      const messages = record.detail.flatMap((item) => {
        if (
          !item ||
          typeof item !== 'object' ||
          typeof (item as { msg?: unknown }).msg !== 'string'
        )
          return [];
        const { loc, msg } = item as { loc?: unknown; msg: string };
        return [Array.isArray(loc) ? `${loc.join('.')}: ${msg}` : msg];
      });
      if (messages.length > 0) return messages.join('; ').slice(0, 500);
    }
    if (record.detail !== undefined && record.detail !== null)
      return JSON.stringify(record.detail).slice(0, 500);
  }
  return text.slice(0, 500);
}

function nonEmpty(message: string): string | undefined {
  const trimmed = message.trim();
  return trimmed ? trimmed.slice(0, 500) : undefined;
}
