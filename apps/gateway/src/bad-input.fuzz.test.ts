/**
 * Bad input on every JSON route, sent to a real gateway socket in front of a healthy fake
 * upstream: random JSON, mutated valid bodies, random bytes, wrong content types, random
 * headers and query strings, then the classic attacks one by one (oversized and chunked
 * bodies, deep nesting, invalid UTF-8, huge and many headers, slow-loris, bodies that never
 * end, duplicate and `__proto__` keys, out-of-range numbers). Whatever arrives, the answer
 * is never a 5xx, always arrives, carries the route's error shape, and the gateway keeps
 * serving. fast-check prints the seed and the shrunk counterexample of a failing property;
 * rerun one with `{ seed, path }` in its parameters.
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Gateway } from './server.js';
import { captureLogger, startTestGateway } from './test-helpers.js';

const ADMIN_KEY = 'admin-secret-for-fuzz';
const STATIC_KEY = 'k';
/** A request that never gets an answer is a hang: the property fails on its timeout. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Runs per property times this (FUZZ_RUNS=10 for a longer hunt); FUZZ_SEED replays a seed. */
const RUNS_SCALE = Number(process.env.FUZZ_RUNS ?? 1);
if (process.env.FUZZ_SEED !== undefined)
  fc.configureGlobal({ seed: Number(process.env.FUZZ_SEED) });
/** The default limits.max_body_bytes (10 MiB). */
const MAX_BODY_BYTES = 10 * 1024 * 1024;

let gateway: Gateway;
let tenantKey: string;
/** A tenant the fuzz may rename, re-limit and issue keys for (not the caller's own). */
let targetTenantId: string;
/** A key the fuzz may rotate and revoke. */
let targetKeyId: string;
let logs: ReturnType<typeof captureLogger>;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  logs = captureLogger('warn');
  ({ gateway } = await startTestGateway(
    { values: { api_keys: [STATIC_KEY], admin_key: ADMIN_KEY }, logger: logs.logger },
    (cleanup) => cleanups.push(cleanup),
  ));
  const caller = await admin('POST', '/admin/tenants', { name: 'fuzz-caller' });
  const issued = await admin('POST', `/admin/tenants/${caller.id}/keys`, { name: 'fuzz' });
  tenantKey = issued.key as string;
  const target = await admin('POST', '/admin/tenants', { name: 'fuzz-target' });
  targetTenantId = target.id as string;
  const key = await admin('POST', `/admin/tenants/${targetTenantId}/keys`, { name: 'target' });
  targetKeyId = key.id as string;
}, 60_000);

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function admin(
  method: string,
  path: string,
  body: unknown,
): Promise<Record<string, unknown>> {
  const response = await fetch(`${gateway.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await response.json()) as Record<string, unknown>;
  if (!response.ok)
    throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

// --- Sending and checking -------------------------------------------------------------------

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

/** Sends one request and reads the whole answer; a timeout (a hang) throws. */
async function send(path: string, init: RequestInit = {}): Promise<Answer> {
  const response = await fetch(`${gateway.url}${path}`, {
    ...init,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', text };
}

/** The error shape a route answers with: Ollama's on /api/* (but for the 413 of the body limit). */
function errorShape(path: string, status: number): 'ollama' | 'openai' {
  return path.startsWith('/api/') && status !== 413 ? 'ollama' : 'openai';
}

/**
 * The invariants of every answer to bad input: no 5xx (the upstream is healthy), and a 4xx
 * carries the route's error shape with a message a person can act on, without a stack.
 */
function expectWellFormed(path: string, answer: Answer): void {
  const { status, text } = answer;
  const where = `${path} -> ${status} ${text.slice(0, 300)}`;
  expect(status, where).toBeLessThan(500);
  expect(status, where).toBeGreaterThanOrEqual(200);
  if (status < 400) {
    if (answer.contentType.includes('application/json'))
      expect(() => JSON.parse(text)).not.toThrow();
    return;
  }
  expect(answer.contentType, where).toContain('application/json');
  const body = JSON.parse(text) as { error?: unknown };
  if (errorShape(path, status) === 'ollama') {
    expect(Object.keys(body), where).toEqual(['error']);
    expect(typeof body.error, where).toBe('string');
    expect((body.error as string).length, where).toBeGreaterThan(0);
    expect(body.error as string, where).not.toMatch(/\n\s+at /);
    return;
  }
  const error = body.error as Record<string, unknown>;
  expect(Object.keys(body), where).toEqual(['error']);
  expect(typeof error, where).toBe('object');
  expect(typeof error.message, where).toBe('string');
  expect((error.message as string).length, where).toBeGreaterThan(0);
  expect(error.message as string, where).not.toMatch(/\n\s+at /);
  expect(typeof error.type, where).toBe('string');
  expect('param' in error && (error.param === null || typeof error.param === 'string'), where).toBe(
    true,
  );
  expect('code' in error && (error.code === null || typeof error.code === 'string'), where).toBe(
    true,
  );
}

/**
 * Asserts the gateway is up, its records are still written (no poisoned batch) so it is
 * ready, and it still serves a valid request.
 */
async function expectStillServing(): Promise<void> {
  expect((await send('/health')).status).toBe(200);
  await gateway.tenancy.flush();
  const ready = await send('/health/ready');
  expect(ready.status, ready.text).toBe(200);
  const answer = await send('/v1/chat/completions', {
    method: 'POST',
    headers: { authorization: `Bearer ${STATIC_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] }),
  });
  expect(answer.status, answer.text).toBe(200);
}

// --- Bodies -------------------------------------------------------------------------------

/** JSON text spliced in as it is: numbers JSON.stringify cannot write (1e400) and deep nests. */
class RawJson {
  constructor(readonly text: string) {}
}

function toJsonText(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJsonText).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const fields = Object.entries(value).map(
      ([key, item]) => `${JSON.stringify(key)}:${toJsonText(item)}`,
    );
    return `{${fields.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const nested = (depth: number) => new RawJson(`${'['.repeat(depth)}${']'.repeat(depth)}`);
const nestedObjects = (depth: number) =>
  new RawJson(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);

/** Values that break assumptions: wrong types, edge numbers, NaN-like strings, odd unicode. */
const weirdValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom<unknown>(
    new RawJson('1e400'),
    new RawJson('-1e400'),
    new RawJson('1e-400'),
    new RawJson('-0'),
    new RawJson('123456789012345678901234567890'),
    'NaN',
    'Infinity',
    '-Infinity',
    '1e400',
    '',
    ' ',
    '\u0000',
    'a\u0000b',
    '\ud800',
    '\uffff',
    '\u202e\u200b',
    '__proto__',
    'constructor',
    2 ** 53 + 1,
    Number.MAX_VALUE,
    -Number.MAX_VALUE,
    Number.MIN_VALUE,
    -1,
    0,
    0.5,
    true,
    false,
    null,
    [],
    {},
    [null],
    { __proto__: null, polluted: true },
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.integer({ min: 1, max: 20_000 }).map(nested),
  fc.integer({ min: 1, max: 20_000 }).map(nestedObjects),
  fc.integer({ min: 1_000, max: 300_000 }).map((length) => 'x'.repeat(length)),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 300 }),
);

/** Keys a mutation may add: random, or ones that have bitten JavaScript servers before. */
const weirdKey = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom(
    '__proto__',
    'constructor',
    'prototype',
    'toString',
    'hasOwnProperty',
    'model',
    'stream',
    'messages',
    'n',
    'tools',
    'stream_options',
    'limits',
    'name',
  ),
);

type Path = Array<string | number>;

/** The paths of every value inside `value` (not the root). */
function pathsOf(value: unknown, prefix: Path = []): Path[] {
  if (typeof value !== 'object' || value === null || value instanceof RawJson) return [];
  const entries: Array<[string | number, unknown]> = Array.isArray(value)
    ? value.map((item, index) => [index, item])
    : Object.entries(value);
  return entries.flatMap(([key, item]) => [[...prefix, key], ...pathsOf(item, [...prefix, key])]);
}

/** The containers (objects) inside `value`, root included, where a key may be added. */
function objectPathsOf(value: unknown): Path[] {
  return [[], ...pathsOf(value)].filter((path) => {
    const found = at(value, path);
    return (
      typeof found === 'object' &&
      found !== null &&
      !Array.isArray(found) &&
      !(found instanceof RawJson)
    );
  });
}

/** A deep copy (RawJson is immutable and kept): generated values must not change between runs. */
function copy(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || value instanceof RawJson) return value;
  if (Array.isArray(value)) return value.map(copy);
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, copy(item)]));
}

function at(value: unknown, path: Path): unknown {
  let current = value;
  for (const segment of path) current = (current as Record<string | number, unknown>)[segment];
  return current;
}

type Mutation =
  | { kind: 'replace'; pick: number; value: unknown }
  | { kind: 'remove'; pick: number }
  | { kind: 'add'; pick: number; key: string; value: unknown };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), value: weirdValue }),
  fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
  fc.record({
    kind: fc.constant('add' as const),
    pick: fc.nat(),
    key: weirdKey,
    value: weirdValue,
  }),
);

/** Applies mutations to a copy of a valid body (keys set as own data, `__proto__` included). */
function mutate(valid: unknown, mutations: Mutation[]): unknown {
  const body = copy(valid);
  for (const change of mutations) {
    if (change.kind === 'add') {
      const paths = objectPathsOf(body);
      const target = at(body, paths[change.pick % paths.length]!) as object;
      Object.defineProperty(target, change.key, {
        value: copy(change.value),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      continue;
    }
    const paths = pathsOf(body);
    if (paths.length === 0) continue;
    const path = paths[change.pick % paths.length]!;
    const parent = at(body, path.slice(0, -1)) as Record<string | number, unknown>;
    const last = path.at(-1)!;
    if (change.kind === 'replace') parent[last] = copy(change.value);
    else if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  }
  return body;
}

const encoder = new TextEncoder();

/** A body for a route: valid, mutated, random JSON, random bytes or text, cut, or empty. */
function bodyFor(valid: () => unknown): fc.Arbitrary<Uint8Array | string> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant(0).map(() => toJsonText(valid())) },
    {
      weight: 6,
      arbitrary: fc
        .array(mutation, { minLength: 1, maxLength: 4 })
        .map((changes) => toJsonText(mutate(valid(), changes))),
    },
    { weight: 2, arbitrary: fc.jsonValue().map((value) => JSON.stringify(value) ?? 'null') },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 2_000 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
    {
      weight: 1,
      arbitrary: fc.nat().map((cut) => {
        const text = toJsonText(valid());
        return text.slice(0, cut % text.length);
      }),
    },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', '\n\t', 'null', '[]', '{}', '""', '0') },
  );
}

// --- Headers ------------------------------------------------------------------------------

/** Header names fetch refuses or sets itself, and those the generators choose on purpose. */
const RESERVED_HEADERS = new Set([
  'host',
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'expect',
  'te',
  'trailer',
  'proxy-connection',
  'authorization',
  'x-api-key',
  'content-type',
]);

const headerName = fc
  .oneof(
    fc.stringMatching(/^[a-z][a-z0-9-]{0,24}$/),
    fc.constantFrom(
      'x-request-id',
      'x-obol-reply-pubkey',
      'payment-signature',
      'x-payment',
      'accept',
      'accept-encoding',
      'content-encoding',
      'origin',
      'x-forwarded-for',
      'cookie',
      'range',
      'if-none-match',
      'access-control-request-method',
    ),
  )
  .filter((name) => !RESERVED_HEADERS.has(name));

/** What fetch lets through in a header value: a tab, visible ASCII and Latin-1. */
const headerChar = fc
  .oneof(
    fc.integer({ min: 0x20, max: 0x7e }),
    fc.integer({ min: 0x80, max: 0xff }),
    fc.constant(0x09),
  )
  .map((code) => String.fromCharCode(code));
const headerValue = fc.oneof(
  fc.string({ unit: headerChar, maxLength: 60 }),
  // Four of these stay under Node's 16 KiB of headers (past it, Node answers 431 itself).
  fc.integer({ min: 100, max: 3_000 }).map((length) => 'v'.repeat(length)),
);

const contentType = fc.option(
  fc.oneof(
    fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/x-ndjson',
      'application/octet-stream',
      'application/x-obol-encrypted',
      'message/ohttp-req',
      '',
      '*/*',
    ),
    headerValue,
  ),
  { nil: undefined, freq: 4 },
);

type Credential = 'static' | 'tenant' | 'x-api-key' | 'admin' | 'none' | { random: string };

function credentialHeaders(credential: Credential): Record<string, string> {
  if (credential === 'static') return { authorization: `Bearer ${STATIC_KEY}` };
  if (credential === 'tenant') return { authorization: `Bearer ${tenantKey}` };
  if (credential === 'x-api-key') return { 'x-api-key': STATIC_KEY };
  if (credential === 'admin') return { authorization: `Bearer ${ADMIN_KEY}` };
  if (credential === 'none') return {};
  return { authorization: credential.random };
}

/** Authorization values that are not a key of this gateway (or barely are: `Bearer  k`). */
const randomCredential: fc.Arbitrary<Credential> = fc
  .oneof(
    headerValue,
    headerValue.map((value) => `Bearer ${value}`),
    fc.constantFrom(
      'Bearer',
      'Bearer ',
      'Basic a2s6',
      `bearer ${ADMIN_KEY}x`,
      `Bearer  ${STATIC_KEY}`,
    ),
  )
  .map((value) => ({ random: value }));

/**
 * The credentials of a route's requests. Wrong API keys on the inference routes have their own
 * small property: past 10 failures a minute from one address, the gateway delays each further
 * one by up to 2 s (its brute-force brake), which would only make the fuzz slow.
 */
function credentialFor(kind: 'inference' | 'admin'): fc.Arbitrary<Credential> {
  if (kind === 'admin') {
    return fc.oneof(
      { weight: 8, arbitrary: fc.constant<Credential>('admin') },
      { weight: 1, arbitrary: fc.constant<Credential>('none') },
      { weight: 1, arbitrary: randomCredential },
    );
  }
  return fc.oneof(
    { weight: 5, arbitrary: fc.constantFrom<Credential>('static', 'tenant') },
    { weight: 1, arbitrary: fc.constant<Credential>('x-api-key') },
    { weight: 1, arbitrary: fc.constant<Credential>('none') },
  );
}

interface FuzzRequest {
  body: Uint8Array | string;
  contentType: string | undefined;
  credential: Credential;
  extra: Record<string, string>;
}

function headersOf(request: FuzzRequest): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(request.extra)) headers.set(name, value);
  if (request.contentType !== undefined) headers.set('content-type', request.contentType);
  for (const [name, value] of Object.entries(credentialHeaders(request.credential))) {
    headers.set(name, value);
  }
  return headers;
}

// --- Routes -------------------------------------------------------------------------------

const chatBody = () => ({
  model: 'fake-model',
  messages: [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: [{ type: 'text', text: 'hi' }] },
  ],
  max_tokens: 8,
  temperature: 0.5,
  stream: false,
  stream_options: { include_usage: true },
  stop: ['x'],
  n: 1,
  tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
  response_format: { type: 'json_object' },
});

interface JsonRoute {
  method: 'POST' | 'PATCH';
  /** The path, given the ids the fuzz may target (a random id sometimes replaces them). */
  path: (id: string) => string;
  kind: 'inference' | 'admin';
  valid: () => unknown;
  /** The id the path normally carries. */
  id?: () => string;
  runs: number;
}

const JSON_ROUTES: Record<string, JsonRoute> = {
  'POST /v1/chat/completions': {
    method: 'POST',
    path: () => '/v1/chat/completions',
    kind: 'inference',
    valid: chatBody,
    runs: 150,
  },
  'POST /v1/completions': {
    method: 'POST',
    path: () => '/v1/completions',
    kind: 'inference',
    valid: () => ({ model: 'fake-model', prompt: ['hi', 'there'], max_tokens: 8, stream: true }),
    runs: 80,
  },
  'POST /v1/embeddings': {
    method: 'POST',
    path: () => '/v1/embeddings',
    kind: 'inference',
    valid: () => ({ model: 'fake-model', input: ['a', 'b'], encoding_format: 'float' }),
    runs: 80,
  },
  'POST /api/chat': {
    method: 'POST',
    path: () => '/api/chat',
    kind: 'inference',
    valid: () => ({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'hi', images: ['iVBORw0KGgo='] }],
      stream: true,
      format: 'json',
      keep_alive: '5m',
      options: { num_predict: 8, temperature: 0.1, top_k: 3, stop: 'x' },
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
    }),
    runs: 120,
  },
  'POST /api/generate': {
    method: 'POST',
    path: () => '/api/generate',
    kind: 'inference',
    valid: () => ({
      model: 'fake-model',
      prompt: 'hi',
      system: 'Be brief.',
      suffix: '',
      raw: false,
      stream: false,
      format: { type: 'object', properties: { a: { type: 'string' } } },
      options: { num_predict: 8, seed: 1 },
    }),
    runs: 100,
  },
  'POST /api/embed': {
    method: 'POST',
    path: () => '/api/embed',
    kind: 'inference',
    valid: () => ({ model: 'fake-model', input: ['a', 'b'], truncate: true, options: {} }),
    runs: 60,
  },
  'POST /api/embeddings': {
    method: 'POST',
    path: () => '/api/embeddings',
    kind: 'inference',
    valid: () => ({ model: 'fake-model', prompt: 'hi' }),
    runs: 50,
  },
  'POST /admin/tenants': {
    method: 'POST',
    path: () => '/admin/tenants',
    kind: 'admin',
    valid: () => ({
      name: `t-${crypto.randomUUID().slice(0, 8)}`,
      limits: {
        requests_per_minute: 60,
        tokens_per_minute: 1000,
        max_concurrent: 2,
        models: ['fake-*'],
        budget: [{ period: 'day', tokens: 100, spend_usd: 1.5 }],
      },
    }),
    runs: 80,
  },
  'PATCH /admin/tenants/:id': {
    method: 'PATCH',
    path: (id) => `/admin/tenants/${id}`,
    id: () => targetTenantId,
    kind: 'admin',
    valid: () => ({ name: 'fuzz-target', limits: { requests_per_minute: 5, models: ['*'] } }),
    runs: 60,
  },
  'POST /admin/tenants/:id/keys': {
    method: 'POST',
    path: (id) => `/admin/tenants/${id}/keys`,
    id: () => targetTenantId,
    kind: 'admin',
    valid: () => ({ name: 'k 1', expires_at: '2099-01-01T00:00:00Z' }),
    runs: 60,
  },
  'POST /admin/keys/:id/rotate': {
    method: 'POST',
    path: (id) => `/admin/keys/${id}/rotate`,
    id: () => targetKeyId,
    kind: 'admin',
    valid: () => ({ grace_seconds: 10 }),
    runs: 50,
  },
  'POST /admin/keys/:id/revoke': {
    method: 'POST',
    path: (id) => `/admin/keys/${id}/revoke`,
    id: () => targetKeyId,
    kind: 'admin',
    valid: () => ({}),
    runs: 40,
  },
  'POST /admin/models/:id/load': {
    method: 'POST',
    path: (id) => `/admin/models/${id}/load`,
    id: () => 'fake-model',
    kind: 'admin',
    valid: () => ({ flags: ['--ctx-size', '512'] }),
    runs: 40,
  },
};

/** Path ids: the real one mostly, else random text, encoded or raw (broken percent escapes). */
const pathId = fc.oneof(
  { weight: 4, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }).map(encodeURIComponent) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '%',
      '%zz',
      '%E0%A4%A',
      '%00',
      '..',
      '.',
      'tn_',
      'key_%ff',
      '%2F%2e%2e',
    ),
  },
);

describe('random and mutated requests on every JSON route', () => {
  for (const [name, route] of Object.entries(JSON_ROUTES)) {
    it(`behavior: ${name} (${route.runs} runs): never a 5xx or a hang, always the error shape`, {
      timeout: 120_000,
    }, async () => {
      const request = fc.record({
        body: bodyFor(route.valid),
        contentType,
        credential: credentialFor(route.kind),
        extra: fc.dictionary(headerName, headerValue, { maxKeys: 4 }),
        id: pathId,
      });
      await fc.assert(
        fc.asyncProperty(request, async ({ id, ...fuzz }) => {
          const path = route.path(id ?? route.id?.() ?? '');
          const answer = await send(path, {
            method: route.method,
            headers: headersOf(fuzz),
            body: fuzz.body as BodyInit,
          });
          expectWellFormed(path, answer);
        }),
        { numRuns: route.runs * RUNS_SCALE },
      );
      await expectStillServing();
    });
  }
});

describe('random credentials', () => {
  it("behavior: wrong API keys on the inference routes (10 runs) are a 401 in the route's shape", {
    timeout: 60_000,
  }, async () => {
    const inference = Object.keys(JSON_ROUTES).filter(
      (name) => JSON_ROUTES[name]!.kind === 'inference',
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...inference),
        randomCredential,
        async (name, credential) => {
          const route = JSON_ROUTES[name]!;
          const path = route.path('');
          const body = toJsonText(route.valid());
          const headers = headersOf({
            body,
            contentType: 'application/json',
            credential,
            extra: {},
          });
          const answer = await send(path, { method: route.method, headers, body });
          expectWellFormed(path, answer);
          expect([200, 401]).toContain(answer.status);
        },
      ),
      { numRuns: 10 },
    );
  });
});

// --- Query strings ------------------------------------------------------------------------

const GET_ROUTES: Record<string, { params: string[]; credential: Credential }> = {
  '/v1/models': { params: [], credential: 'static' },
  '/api/tags': { params: [], credential: 'tenant' },
  '/admin/usage': {
    params: ['tenant', 'model', 'since', 'until', 'group_by', 'format'],
    credential: 'admin',
  },
  '/admin/audit': {
    params: ['actor', 'action', 'target', 'since', 'until', 'limit'],
    credential: 'admin',
  },
  '/admin/payments': {
    params: ['payer', 'status', 'since', 'until', 'limit'],
    credential: 'admin',
  },
  '/admin/models': { params: [], credential: 'admin' },
};

const queryValue = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom(
    '',
    '0',
    '-1',
    '1001',
    '1e400',
    'NaN',
    '7d',
    '99999999999999999999d',
    '1000000w',
    '100000w',
    '0000-01-01',
    '0001-01-01',
    '9999-12-31T23:59:59.999',
    '2026-02-30',
    '2026-11-01T10:00:00',
    '0000-00-00',
    '+275760-09-13',
    'tenant,model,day',
    'csv',
    'fuzz-caller',
    'static:x',
    'settled',
    '\u0000',
  ),
);

/** A query string: well-encoded pairs, raw text, or broken percent escapes. */
function queryFor(params: string[]): fc.Arbitrary<string> {
  const name = params.length > 0 ? fc.oneof(fc.constantFrom(...params), fc.string()) : fc.string();
  return fc.oneof(
    fc
      .array(fc.tuple(name, queryValue), { maxLength: 5 })
      .map((pairs) => new URLSearchParams(pairs).toString()),
    fc.constantFrom(
      '%',
      '%zz',
      'limit=%E0%A4%A',
      'since=%ff',
      '=&&=',
      'a=%00',
      '&&&',
      'x'.repeat(4_000),
    ),
    fc.string({ unit: headerChar, maxLength: 50 }).map((text) => text.replaceAll('#', '')),
  );
}

describe('random query strings on the GET routes', () => {
  for (const [path, route] of Object.entries(GET_ROUTES)) {
    it(`behavior: GET ${path} (50 runs): never a 5xx or a hang, always the error shape`, {
      timeout: 60_000,
    }, async () => {
      await fc.assert(
        fc.asyncProperty(queryFor(route.params), async (query) => {
          const answer = await send(`${path}?${query}`, {
            headers: credentialHeaders(route.credential),
          });
          expectWellFormed(path, answer);
        }),
        { numRuns: 50 * RUNS_SCALE },
      );
      await expectStillServing();
    });
  }
});

// --- The classic attacks, one by one --------------------------------------------------------

const validChat = JSON.stringify({
  model: 'fake-model',
  messages: [{ role: 'user', content: 'hi' }],
});
const inferenceHeaders = {
  authorization: `Bearer ${STATIC_KEY}`,
  'content-type': 'application/json',
};

/** A body stream of `total` bytes in `chunk`-byte pieces (sent chunked: no content-length). */
function chunkedBody(total: number, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= total) {
        controller.close();
        return;
      }
      const size = Math.min(chunk, total - sent);
      controller.enqueue(new Uint8Array(size).fill(0x20));
      sent += size;
    },
  });
}

/** Opens a raw connection to the gateway. */
async function rawSocket(): Promise<Socket> {
  const socket = connect(gateway.port, '127.0.0.1');
  await once(socket, 'connect');
  socket.on('error', () => {});
  return socket;
}

describe('specific bad input', () => {
  it.each(['/v1/chat/completions', '/api/chat', '/admin/tenants'])(
    'error: a body over limits.max_body_bytes with a content-length is a 413 on %s',
    async (path) => {
      const answer = await send(path, {
        method: 'POST',
        headers: {
          ...inferenceHeaders,
          authorization: `Bearer ${path.startsWith('/admin') ? ADMIN_KEY : STATIC_KEY}`,
        },
        body: new Uint8Array(MAX_BODY_BYTES + 1).fill(0x20),
      });
      expect(answer.status).toBe(413);
      expectWellFormed(path, answer);
      expect(JSON.parse(answer.text).error.code).toBe('body_too_large');
    },
  );

  it.each(['/v1/chat/completions', '/api/generate', '/admin/tenants'])(
    'error: a chunked body over limits.max_body_bytes is a 413 on %s',
    async (path) => {
      const answer = await send(path, {
        method: 'POST',
        headers: {
          ...inferenceHeaders,
          authorization: `Bearer ${path.startsWith('/admin') ? ADMIN_KEY : STATIC_KEY}`,
        },
        body: chunkedBody(MAX_BODY_BYTES + 64 * 1024),
        duplex: 'half',
      } as RequestInit);
      expect(answer.status).toBe(413);
      expectWellFormed(path, answer);
      await expectStillServing();
    },
  );

  it('behavior: a 10 MB string field just under the limit is served (or refused with a 4xx)', {
    timeout: 30_000,
  }, async () => {
    const overhead = JSON.stringify({ model: 'fake-model', input: '' }).length;
    const body = JSON.stringify({
      model: 'fake-model',
      input: 'a'.repeat(MAX_BODY_BYTES - overhead),
    });
    expect(body.length).toBe(MAX_BODY_BYTES);
    for (const path of ['/v1/embeddings', '/api/embed']) {
      const answer = await send(path, { method: 'POST', headers: inferenceHeaders, body });
      expectWellFormed(path, answer);
      expect(answer.status).not.toBe(413);
    }
    await expectStillServing();
  });

  it.each([
    ['arrays, unclosed', '['.repeat(100_000)],
    ['arrays', `${'['.repeat(100_000)}${']'.repeat(100_000)}`],
    ['objects', `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`],
  ])('error: 100k levels of nested %s as the body are a 400', async (_, text) => {
    for (const path of ['/v1/chat/completions', '/api/chat', '/admin/tenants']) {
      const answer = await send(path, {
        method: 'POST',
        headers: {
          ...inferenceHeaders,
          authorization: `Bearer ${path.startsWith('/admin') ? ADMIN_KEY : STATIC_KEY}`,
        },
        body: text,
      });
      expect(answer.status, answer.text).toBe(400);
      expectWellFormed(path, answer);
    }
    await expectStillServing();
  });

  it.each([
    [
      'in a field the gateway passes on',
      (deep: string) =>
        `{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"extra":${deep}}`,
      '/v1/chat/completions',
    ],
    [
      'in a message',
      (deep: string) => `{"model":"fake-model","messages":[{"role":"user","content":${deep}}]}`,
      '/v1/chat/completions',
    ],
    [
      'in Ollama options',
      (deep: string) =>
        `{"model":"fake-model","prompt":"hi","stream":false,"options":{"stop":${deep}}}`,
      '/api/generate',
    ],
    [
      'in an Ollama format',
      (deep: string) =>
        `{"model":"fake-model","prompt":"hi","stream":false,"format":{"a":${deep}}}`,
      '/api/generate',
    ],
    [
      'in tenant limits',
      (deep: string) => `{"name":"deep","limits":{"models":${deep}}}`,
      '/admin/tenants',
    ],
  ])('error: 100k levels of nesting %s are a 4xx, not a stack overflow', async (_, wrap, path) => {
    for (const deep of [
      `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
      `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`,
    ]) {
      const answer = await send(path, {
        method: 'POST',
        headers: {
          ...inferenceHeaders,
          authorization: `Bearer ${path.startsWith('/admin') ? ADMIN_KEY : STATIC_KEY}`,
        },
        body: wrap(deep),
      });
      expectWellFormed(path, answer);
      expect(answer.status).toBeGreaterThanOrEqual(400);
    }
    await expectStillServing();
  });

  it('error: invalid UTF-8 as the body is a 400; inside a JSON string it is read as U+FFFD', async () => {
    for (const path of ['/v1/chat/completions', '/api/chat', '/admin/tenants']) {
      const authorization = `Bearer ${path.startsWith('/admin') ? ADMIN_KEY : STATIC_KEY}`;
      const garbage = await send(path, {
        method: 'POST',
        headers: { ...inferenceHeaders, authorization },
        body: new Uint8Array([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x90]),
      });
      expect(garbage.status).toBe(400);
      expectWellFormed(path, garbage);
    }
    const [before, after] = validChat.split('hi') as [string, string];
    const inString = await send('/v1/chat/completions', {
      method: 'POST',
      headers: inferenceHeaders,
      body: new Uint8Array([
        ...encoder.encode(before),
        0xff,
        0xc3,
        0x28,
        0xed,
        0xa0,
        0x80,
        ...encoder.encode(after),
      ]),
    });
    expect(inString.status, inString.text).toBe(200);
    const name = await send('/admin/tenants', {
      method: 'POST',
      headers: { ...inferenceHeaders, authorization: `Bearer ${ADMIN_KEY}` },
      body: new Uint8Array([
        ...encoder.encode('{"name":"bad'),
        0xff,
        0xc0,
        ...encoder.encode('"}'),
      ]),
    });
    expect(name.status).toBe(400);
    expectWellFormed('/admin/tenants', name);
    await expectStillServing();
  });

  it('error: NUL in admin paths, queries and bodies is a 400; records carrying one are still written', async () => {
    const headers = { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' };
    const cases: Array<[string, RequestInit]> = [
      ['/admin/tenants/%00', {}],
      [`/admin/tenants/${targetTenantId}%00/keys`, { method: 'POST', body: '{}' }],
      ['/admin/keys/%00/revoke', { method: 'POST', body: '{}' }],
      ['/admin/usage?model=%00', {}],
      ['/admin/usage?tenant=a%00', {}],
      ['/admin/audit?actor=%00', {}],
      ['/admin/payments?payer=%00', {}],
      [
        '/admin/tenants',
        { method: 'POST', body: '{"name":"nul","limits":{"models":["a\\u0000"]}}' },
      ],
      [
        '/admin/tenants',
        { method: 'POST', body: '{"name":"lone","limits":{"models":["a\\ud800"]}}' },
      ],
    ];
    for (const [path, init] of cases) {
      const answer = await send(path, { ...init, headers });
      expect(answer.status, `${path}: ${answer.text}`).toBe(400);
      expectWellFormed(path, answer);
    }
    // A wrong admin key is audited with the path it was sent to, NUL and all.
    const denied = await send('/admin/x%00y', { headers: { authorization: 'Bearer wrong' } });
    expect(denied.status).toBe(401);
    await expectStillServing();
  });

  it("error: a 64 KiB header value gets Node's 431 and the gateway keeps serving", async () => {
    const answer = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...inferenceHeaders, 'x-huge': 'a'.repeat(64 * 1024) },
      body: validChat,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    }).then(
      (response) => response.status,
      (error: unknown) => error,
    );
    // Node answers 431 and closes; a client still writing may see the close first instead.
    if (typeof answer === 'number') expect(answer).toBe(431);
    else expect(String((answer as Error).cause ?? answer)).not.toMatch(/timeout/i);
    await expectStillServing();
  });

  it('behavior: many headers are served while under the 16 KiB header limit, 431 past it', async () => {
    const many = (count: number) => {
      const headers = new Headers(inferenceHeaders);
      for (let index = 0; index < count; index++) headers.set(`x-h${index}`, 'v');
      return headers;
    };
    const served = await send('/v1/chat/completions', {
      method: 'POST',
      headers: many(1_000),
      body: validChat,
    });
    expect(served.status, served.text).toBe(200);
    const refused = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: many(3_000),
      body: validChat,
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    }).then(
      (response) => response.status,
      (error: unknown) => error,
    );
    if (typeof refused === 'number') expect(refused).toBe(431);
    await expectStillServing();
  });

  it('behavior: slow-loris connections do not keep others from being served', async () => {
    expect(gateway.server.headersTimeout).toBeGreaterThan(0);
    expect(gateway.server.headersTimeout).toBeLessThanOrEqual(30_000);
    const head = `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${STATIC_KEY}\r\n`;
    const sockets = await Promise.all(Array.from({ length: 50 }, rawSocket));
    let sent = 0;
    const timer = setInterval(() => {
      if (sent >= head.length) return;
      for (const socket of sockets) socket.write(head[sent]!);
      sent++;
    }, 5);
    try {
      await vi.waitFor(() => expect(sent).toBeGreaterThan(20), { timeout: 5_000 });
      await expectStillServing();
      expect(sockets.every((socket) => !socket.destroyed)).toBe(true);
    } finally {
      clearInterval(timer);
      for (const socket of sockets) socket.destroy();
    }
  });

  it('behavior: requests whose body never ends do not keep others from being served', async () => {
    const abort = new AbortController();
    const never = Array.from({ length: 10 }, () =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'POST',
        headers: inferenceHeaders,
        body: new ReadableStream({
          start(controller) {
            controller.enqueue(encoder.encode('{"model":"fake-model","messages":['));
          },
        }),
        duplex: 'half',
        signal: abort.signal,
      } as RequestInit).catch(() => undefined),
    );
    // Bodies that declare a length and never reach it, on an Ollama and an admin route.
    const declared = await Promise.all(
      [
        ['/api/chat', STATIC_KEY],
        ['/admin/tenants', ADMIN_KEY],
      ].map(async ([path, key]) => {
        const socket = await rawSocket();
        socket.write(
          `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${key}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"name":`,
        );
        return socket;
      }),
    );
    try {
      await vi.waitFor(() => expect(gateway.inFlight()).toBeGreaterThanOrEqual(12), {
        timeout: 5_000,
      });
      await expectStillServing();
    } finally {
      abort.abort();
      for (const socket of declared) socket.destroy();
      await Promise.all(never);
    }
    // The dangling requests end with their connections: nothing is left in flight.
    await vi.waitFor(() => expect(gateway.inFlight()).toBe(0), { timeout: 5_000 });
  });

  it('behavior: duplicate keys take the last value, as JSON.parse does', async () => {
    const answer = await send('/v1/chat/completions', {
      method: 'POST',
      headers: inferenceHeaders,
      body: '{"model":"nope","messages":[],"model":"fake-model","messages":[{"role":"user","content":"hi"}]}',
    });
    expect(answer.status, answer.text).toBe(200);
    const ollama = await send('/api/chat', {
      method: 'POST',
      headers: inferenceHeaders,
      body: '{"model":"fake-model","stream":false,"messages":[{"role":"user","content":"hi"}],"model":"missing"}',
    });
    expect(ollama.status).toBe(404);
    expectWellFormed('/api/chat', ollama);
  });

  it('behavior: __proto__ and constructor keys pollute no prototype', async () => {
    const prototypeNames = Object.getOwnPropertyNames(Object.prototype).sort();
    const poison = '{"polluted":"yes","toString":"no"}';
    const bodies: Array<[string, string, string]> = [
      [
        '/v1/chat/completions',
        STATIC_KEY,
        `{"__proto__":${poison},"model":"fake-model","messages":[{"role":"user","content":"hi","__proto__":${poison}}],"constructor":{"prototype":${poison}}}`,
      ],
      ['/v1/embeddings', STATIC_KEY, `{"model":"fake-model","input":"a","__proto__":${poison}}`],
      [
        '/api/chat',
        STATIC_KEY,
        `{"__proto__":${poison},"model":"fake-model","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"__proto__":${poison},"constructor":{"prototype":${poison}}},"format":{"__proto__":${poison}}}`,
      ],
      [
        '/api/generate',
        STATIC_KEY,
        `{"model":"fake-model","prompt":"hi","stream":false,"__proto__":${poison},"options":{"__proto__":${poison}}}`,
      ],
      [
        '/api/embed',
        STATIC_KEY,
        `{"model":"fake-model","input":"a","options":{"__proto__":${poison}}}`,
      ],
      [
        '/admin/tenants',
        ADMIN_KEY,
        `{"name":"proto","limits":{"__proto__":${poison},"budget":{"__proto__":${poison},"period":"day"}}}`,
      ],
      ['/admin/tenants', ADMIN_KEY, `{"__proto__":${poison},"name":"proto2"}`],
    ];
    for (const [path, key, body] of bodies) {
      const answer = await send(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body,
      });
      expectWellFormed(path, answer);
    }
    const probe: Record<string, unknown> = {};
    expect(probe.polluted).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeNames);
    expect({}.toString()).toBe('[object Object]');
    await expectStillServing();
  });

  it('error: numbers out of range (1e400, -1e400, huge integers) are a 400 where a number is meant', async () => {
    for (const [path, body] of [
      [
        '/v1/chat/completions',
        '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}',
      ],
      [
        '/v1/chat/completions',
        '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"temperature":-1e400}',
      ],
      [
        '/v1/completions',
        '{"model":"fake-model","prompt":"hi","max_tokens":123456789012345678901234567890}',
      ],
      [
        '/api/generate',
        '{"model":"fake-model","prompt":"hi","stream":false,"options":{"num_predict":1e400}}',
      ],
      ['/admin/tenants', '{"name":"big","limits":{"requests_per_minute":1e400}}'],
      ['/admin/keys/x/rotate', '{"grace_seconds":1e400}'],
    ] as const) {
      const answer = await send(path, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${path.startsWith('/admin') ? ADMIN_KEY : STATIC_KEY}`,
        },
        body,
      });
      expectWellFormed(path, answer);
    }
    await expectStillServing();
  });

  it('behavior: nothing above was an unhandled error in the log', () => {
    const unhandled = logs.lines.filter(
      (line) => line.msg === 'unhandled error' || line.level === 'fatal',
    );
    expect(unhandled).toEqual([]);
  });
});
