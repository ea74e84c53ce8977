import { describe, expect, it } from 'vitest';
import {
  ERROR_CODES,
  errorEnvelope,
  errorResponse,
  errorTypeForStatus,
  isTollgateError,
  readUpstreamErrorMessage,
  TollgateError,
  type TollgateErrorCode,
} from './index.js';

/** The brand a second copy of the package would put on its errors. */
const duplicateBrand = Symbol.for('tollgate.error');

const expectedStatus: Record<TollgateErrorCode, number> = {
  invalid_json: 400,
  invalid_request: 400,
  decryption_failed: 400,
  missing_api_key: 401,
  invalid_api_key: 401,
  payment_required: 402,
  model_not_allowed: 403,
  forbidden: 403,
  model_not_found: 404,
  not_found: 404,
  route_not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  body_too_large: 413,
  unsupported_media_type: 415,
  rate_limit_exceeded: 429,
  concurrency_limit: 429,
  insufficient_quota: 429,
  internal_error: 500,
  upstream_error: 502,
  upstream_unreachable: 502,
  upstream_stream_error: 502,
  upstream_unavailable: 503,
  service_unavailable: 503,
  upstream_timeout: 504,
};

describe('TollgateError', () => {
  it('behavior: every code maps to its documented status and an OpenAI type', () => {
    expect(Object.keys(ERROR_CODES).sort()).toEqual(Object.keys(expectedStatus).sort());
    for (const code of Object.keys(ERROR_CODES) as TollgateErrorCode[]) {
      const error = new TollgateError(code, 'message');
      expect(error.status, code).toBe(expectedStatus[code]);
      expect(error.type, code).toBe(ERROR_CODES[code].type);
      expect(error.code).toBe(code);
    }
    expect(new TollgateError('invalid_api_key', 'x').type).toBe('authentication_error');
    expect(new TollgateError('rate_limit_exceeded', 'x').type).toBe('rate_limit_error');
    expect(new TollgateError('model_not_allowed', 'x').type).toBe('permission_error');
    expect(new TollgateError('upstream_timeout', 'x').type).toBe('server_error');
  });

  it('behavior: carries param, cause, headers and a status override', () => {
    const cause = new Error('socket hang up');
    const error = new TollgateError('upstream_error', 'The upstream refused the request.', {
      param: 'messages[0].content',
      cause,
      status: 422,
      headers: { 'x-upstream': 'vllm' },
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('TollgateError');
    expect(error.message).toBe('The upstream refused the request.');
    expect(error.param).toBe('messages[0].content');
    expect(error.cause).toBe(cause);
    expect(error.status).toBe(422);
    expect(error.type).toBe('server_error');
    expect(error.headers).toEqual({ 'x-upstream': 'vllm' });
  });

  it('behavior: defaults are null param, no cause, no headers', () => {
    const error = new TollgateError('invalid_json', 'The body is not valid JSON.');
    expect(error.param).toBeNull();
    expect('cause' in error).toBe(false);
    expect(error.headers).toEqual({});
  });

  it('behavior: toJSON is the OpenAI envelope, and so is JSON.stringify', () => {
    const error = new TollgateError('model_not_found', 'Unknown model "x".', { param: 'model' });
    const envelope = {
      error: {
        message: 'Unknown model "x".',
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      },
    };
    expect(error.toJSON()).toEqual(envelope);
    expect(JSON.parse(JSON.stringify(error))).toEqual(envelope);
  });
});

describe('isTollgateError', () => {
  it('behavior: true for a TollgateError, false for other values', () => {
    expect(isTollgateError(new TollgateError('invalid_request', 'x'))).toBe(true);
    for (const value of [
      new Error('x'),
      null,
      undefined,
      'TollgateError',
      42,
      {},
      { code: 'invalid_request' },
    ]) {
      expect(isTollgateError(value)).toBe(false);
    }
  });

  it('behavior: true for an error from a duplicate copy of the package (Symbol.for brand)', () => {
    // What a second install of @tollgate/protocol would construct: a different class with the
    // same global brand. instanceof cannot see it; the guard must.
    class DuplicateTollgateError extends Error {
      override name = 'TollgateError';
      readonly code = 'rate_limit_exceeded' as const;
      readonly status = 429;
      readonly type = 'rate_limit_error';
      readonly param = null;
      readonly headers = { 'retry-after': '3' };
      readonly [duplicateBrand] = true;
      toJSON() {
        return {
          error: { message: this.message, type: this.type, param: this.param, code: this.code },
        };
      }
    }
    const duplicate = new DuplicateTollgateError('Slow down.');
    expect(duplicate instanceof TollgateError).toBe(false);
    expect(isTollgateError(duplicate)).toBe(true);
    expect(isTollgateError({ [Symbol('tollgate.error')]: true })).toBe(false);
  });

  it('behavior: errorResponse renders a duplicate copy with its own status and headers', async () => {
    const duplicate = Object.assign(new Error('Slow down.'), {
      code: 'rate_limit_exceeded',
      status: 429,
      type: 'rate_limit_error',
      param: null,
      headers: { 'retry-after': '3' },
      [Symbol.for('tollgate.error')]: true,
      toJSON() {
        return {
          error: {
            message: 'Slow down.',
            type: 'rate_limit_error',
            param: null,
            code: 'rate_limit_exceeded',
          },
        };
      },
    });
    const response = errorResponse(duplicate);
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('3');
    expect((await response.json()).error.code).toBe('rate_limit_exceeded');
  });
});

describe('errorEnvelope', () => {
  it('behavior: fills param and code with null when absent', () => {
    expect(errorEnvelope('Nope.', { type: 'invalid_request_error' })).toEqual({
      error: { message: 'Nope.', type: 'invalid_request_error', param: null, code: null },
    });
    expect(
      errorEnvelope('Add a "model" field.', {
        type: 'invalid_request_error',
        code: 'invalid_request',
        param: 'model',
      }),
    ).toEqual({
      error: {
        message: 'Add a "model" field.',
        type: 'invalid_request_error',
        param: 'model',
        code: 'invalid_request',
      },
    });
  });
});

describe('errorResponse', () => {
  it('behavior: a TollgateError becomes its envelope, status and headers, as JSON', async () => {
    const response = errorResponse(
      new TollgateError('rate_limit_exceeded', 'Too many requests; retry in 2 s.', {
        headers: { 'retry-after': '2' },
      }),
      { 'x-request-id': 'abc', 'content-type': 'text/plain' },
    );
    expect(response.status).toBe(429);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.headers.get('retry-after')).toBe('2');
    expect(response.headers.get('x-request-id')).toBe('abc');
    expect(await response.json()).toEqual({
      error: {
        message: 'Too many requests; retry in 2 s.',
        type: 'rate_limit_error',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
  });

  it('behavior: an upstream 4xx status override is kept', () => {
    const response = errorResponse(
      new TollgateError('upstream_error', 'Bad prompt.', { status: 422 }),
    );
    expect(response.status).toBe(422);
  });

  it('error: anything else becomes a generic 500 that leaks nothing of the cause', async () => {
    const secret = 'postgres://admin:hunter2@db.internal/tollgate';
    const messages = new Set<string>();
    for (const thrown of [
      new Error(`connect failed: ${secret}`),
      new TypeError(secret),
      secret,
      { message: secret, status: 400, code: 'invalid_request' },
      undefined,
    ]) {
      const response = errorResponse(thrown);
      expect(response.status).toBe(500);
      const text = await response.text();
      expect(text).not.toContain('hunter2');
      expect(text).not.toContain('postgres');
      expect(text).not.toContain('Error');
      const body = JSON.parse(text);
      expect(body.error.code).toBe('internal_error');
      expect(body.error.type).toBe('server_error');
      expect(body.error.param).toBeNull();
      messages.add(body.error.message);
    }
    // One fixed message, whatever was thrown.
    expect(messages.size).toBe(1);
  });

  it('error: the cause of a TollgateError is never sent', async () => {
    const response = errorResponse(
      new TollgateError('upstream_unreachable', 'The model server did not answer.', {
        cause: new Error('ECONNREFUSED 10.0.0.7:11434 token=sk-secret'),
      }),
    );
    const text = await response.text();
    expect(response.status).toBe(502);
    expect(text).not.toContain('sk-secret');
    expect(text).not.toContain('ECONNREFUSED');
  });
});

describe('readUpstreamErrorMessage', () => {
  it('behavior: reads the OpenAI envelope', () => {
    const body = JSON.stringify({
      error: {
        message: 'This model does not exist.',
        type: 'invalid_request_error',
        param: 'model',
        code: null,
      },
    });
    expect(readUpstreamErrorMessage(body)).toBe('This model does not exist.');
  });

  it("behavior: reads Ollama's {error: string}", () => {
    expect(
      readUpstreamErrorMessage('{"error":"model \'llama9\' not found, try pulling it first"}'),
    ).toBe("model 'llama9' not found, try pulling it first");
  });

  it("behavior: reads vLLM's {object: error, message}", () => {
    const body = JSON.stringify({
      object: 'error',
      message: "This model's maximum context length is 4096 tokens.",
      type: 'BadRequestError',
      param: null,
      code: 400,
    });
    expect(readUpstreamErrorMessage(body)).toBe(
      "This model's maximum context length is 4096 tokens.",
    );
  });

  it("behavior: reads FastAPI's detail, as a string or a validation list", () => {
    expect(readUpstreamErrorMessage('{"detail":"Not Found"}')).toBe('Not Found');
    const validation = JSON.stringify({
      detail: [
        { loc: ['body', 'model'], msg: 'Field required', type: 'missing' },
        {
          loc: ['body', 'messages', 0],
          msg: 'Input should be a valid dictionary',
          type: 'dict_type',
        },
      ],
    });
    expect(readUpstreamErrorMessage(validation)).toBe(
      'body.model: Field required; body.messages.0: Input should be a valid dictionary',
    );
    expect(readUpstreamErrorMessage('{"detail":{"reason":"busy"}}')).toBe('{"reason":"busy"}');
  });

  it('behavior: plain text and HTML come back trimmed and cut to 500 characters', () => {
    expect(readUpstreamErrorMessage('  Bad Gateway\n')).toBe('Bad Gateway');
    const long = `<html>${'x'.repeat(2000)}</html>`;
    expect(readUpstreamErrorMessage(long)).toBe(long.slice(0, 500));
    expect(readUpstreamErrorMessage(JSON.stringify({ error: 'y'.repeat(900) }))).toHaveLength(500);
  });

  it('behavior: a JSON string body is its own message; other JSON comes back as text', () => {
    expect(readUpstreamErrorMessage('"overloaded"')).toBe('overloaded');
    expect(readUpstreamErrorMessage('{"status":"bad"}')).toBe('{"status":"bad"}');
    expect(readUpstreamErrorMessage('[1,2]')).toBe('[1,2]');
  });

  it('behavior: nothing readable gives undefined', () => {
    expect(readUpstreamErrorMessage('')).toBeUndefined();
    expect(readUpstreamErrorMessage(' \n\t ')).toBeUndefined();
    expect(readUpstreamErrorMessage('{"error":""}')).toBeUndefined();
    expect(readUpstreamErrorMessage('{"error":{"message":"  "}}')).toBeUndefined();
  });
});

describe('errorTypeForStatus', () => {
  it('behavior: maps statuses to the OpenAI error types', () => {
    expect(errorTypeForStatus(400)).toBe('invalid_request_error');
    expect(errorTypeForStatus(404)).toBe('invalid_request_error');
    expect(errorTypeForStatus(401)).toBe('authentication_error');
    expect(errorTypeForStatus(403)).toBe('permission_error');
    expect(errorTypeForStatus(429)).toBe('rate_limit_error');
    expect(errorTypeForStatus(503)).toBe('server_error');
  });
});
