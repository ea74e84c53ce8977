/**
 * The gateway's HTTP app: middleware and routes on Hono, runnable by any runtime (and by
 * `app.request()` in tests). The Node server around it lives in `server.ts`.
 */
import { type Span, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import type { DispatchOutcome, Router, RouterModel } from '@tollgate/backends';
import type { KeySet } from '@tollgate/ecies';
import {
  errorResponse,
  isTollgateError,
  type Operation,
  parseOperationRequest,
  TollgateError,
} from '@tollgate/protocol';
import type { PaymentInput } from '@tollgate/tenancy';
import type { PaymentGate, SettleOutcome as PaymentOutcome, VerifiedPayment } from '@tollgate/x402';
import { type Context, Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { HTTPException } from 'hono/http-exception';
import {
  type AccessControl,
  type Admission,
  isLoopbackHost,
  type Principal,
  type SettleOutcome,
  UNPAID,
} from './access.js';
import { type Attestor, addAttestationRoute } from './attestation.js';
import { concatBytes } from './bytes.js';
import type { Config } from './config.js';
import {
  addEncryptionRoutes,
  isObolMediaType,
  OBOL_MEDIA_TYPE,
  ohttpKeyConfigs,
  openObolBody,
  parseReplyKey,
  sealObolReply,
} from './encryption.js';
import { parseJsonText } from './json-depth.js';
import type { Logger } from './logger.js';
import type { GatewayMetrics } from './metrics.js';
import { addOhttpGateway, wasEncapsulated } from './ohttp-gateway.js';
import { addOllamaRoutes } from './ollama-api.js';
import type { ReplayGuard } from './replay.js';
import { endRequestSpan, inChildSpan, startChildSpan, startRequestSpan } from './tracing.js';

/** Options for {@link createApp}. */
export interface CreateAppOptions {
  /** The parts of the configuration the app reads. */
  config: Pick<Config, 'limits' | 'cors'> & Partial<Pick<Config, 'encryption'>>;
  /** Where inference requests go. */
  router: Router;
  /** Who may call. */
  access: AccessControl;
  /** Every line of a request carries its request id through a child of this logger. */
  logger: Logger;
  /** Makes request ids when the caller sends none (or an unusable one). @default crypto.randomUUID */
  generateId?: () => string;
  /** Clock in ms, for `created` in /v1/models. @default Date.now */
  now?: () => number;
  /**
   * Why the gateway cannot serve right now besides its backends (the database, the limiter's
   * Redis), if so; asked on each `/health/ready`.
   */
  notReady?: () => string | undefined | Promise<string | undefined>;
  /** The admin API, mounted at /admin (answers 404 with a hint when absent). */
  admin?: Hono<GatewayEnv>;
  /** The gateway's encryption keys; their public halves are served when given. */
  encryptionKeys?: () => KeySet;
  /** Where the Oblivious HTTP gateway remembers seen requests. @default in memory */
  replayGuard?: ReplayGuard;
  /** GET /v1/attestation: the attestor (none: 404) and the declared model hash. */
  attestation?: { attestor?: Attestor; modelHash?: Uint8Array };
  /** x402 payments on the inference routes; absent: off. */
  payments?: GatewayPayments;
  /** Prometheus metrics, recorded for every request and served at GET /metrics. */
  metrics?: GatewayMetrics;
  /** Who may read GET /metrics: `token` (a bearer token), else loopback callers only. */
  metricsAccess?: { token?: string };
  /** Makes a span per request and its steps (tracing on); absent: no spans. */
  tracer?: Tracer;
}

/** How the app takes x402 payments. */
export interface GatewayPayments {
  gate: PaymentGate;
  /** Callers with an API key pay too (otherwise only callers without one do). */
  keyHoldersPay: boolean;
  /**
   * Set when prices charge completion tokens: a paid request that names no `max_tokens` was
   * priced at this many, so it is capped at them.
   */
  pricedMaxTokens?: number;
  /** Records a payment as a billing record; returns its id (`py_...`). Must not throw. */
  record?(payment: PaymentInput): string | undefined;
}

/**
 * Serves a parsed inference request through the whole pipeline (see `createApp`); `replyKey`
 * seals the answer for an Obol caller.
 */
export type ServeInference = (
  c: Context<GatewayEnv>,
  operation: Operation,
  body: unknown,
  options?: { replyKey?: ReturnType<typeof parseReplyKey> },
) => Promise<Response>;

/** What the inference handler tells the access log about a dispatched request. */
interface DispatchRecord {
  backend: string;
  model: string;
  outcome: Promise<DispatchOutcome>;
}

/** Hono's per-request variables in this app. */
export interface GatewayEnv {
  Variables: {
    requestId: string;
    logger: Logger;
    /** The caller's connection signal, taken before any middleware replaces the request. */
    signal: AbortSignal;
    principal?: Principal;
    model?: string;
    dispatch?: DispatchRecord;
    /** Set when the request ended before a response could be produced (e.g. client left). */
    outcome?: SettleOutcome;
    /** `performance.now()` when the request arrived (for the overhead measure). */
    startedAt: number;
    /** The request's server span, when tracing is on. */
    span?: Span;
  };
}

/** Headers a browser may read from our responses when CORS is on. */
const EXPOSED_HEADERS = [
  'x-request-id',
  'retry-after',
  'x-ratelimit-limit-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-requests',
  'x-ratelimit-reset-tokens',
  // Why an encapsulated request could not be opened (a client refetches keys on unknown_key_id).
  'x-ohttp-error',
  'x-ohttp-key-error',
  // The gateway's own time before the upstream call.
  'x-tollgate-overhead-ms',
  // x402: the terms of a 402, the settlement receipt (v2 and v1 names), why a payment failed.
  'payment-required',
  'payment-response',
  'x-payment-response',
  'x-payment-error',
];

/** Request headers that carry x402 payments (v2 and v1). */
const PAYMENT_HEADERS = ['payment-signature', 'x-payment'];

// Hop-by-hop headers belong to the upstream connection, not ours; content-encoding and
// content-length describe the upstream's bytes, which fetch may have decompressed.
const UPSTREAM_ONLY_HEADERS = [
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-encoding',
  'content-length',
  'proxy-connection',
  'upgrade',
  'trailer',
];

const SANE_REQUEST_ID = /^[A-Za-z0-9._:+/=-]{1,128}$/;

/**
 * Largest non-streamed answer read whole before it is sent, in bytes (a big embeddings batch
 * can be larger; the rest of such a body is streamed on).
 */
const MAX_BUFFERED_BODY_BYTES = 8 * 1024 * 1024;

/** Status logged and settled when the caller went away before an answer (nginx's convention). */
const CLIENT_CLOSED_REQUEST = 499;

const ROUTES: Record<string, string[]> = {
  '/v1/chat/completions': ['POST'],
  '/v1/completions': ['POST'],
  '/v1/embeddings': ['POST'],
  '/v1/models': ['GET', 'HEAD'],
  '/health': ['GET', 'HEAD'],
  '/health/ready': ['GET', 'HEAD'],
  '/v1/enclave/pubkey': ['GET', 'HEAD'],
  '/.well-known/ohttp-gateway': ['GET', 'HEAD', 'POST'],
  '/v1/attestation': ['GET', 'HEAD'],
  '/api/chat': ['POST'],
  '/api/generate': ['POST'],
  '/api/embed': ['POST'],
  '/api/embeddings': ['POST'],
  '/api/tags': ['GET', 'HEAD'],
  '/api/ps': ['GET', 'HEAD'],
  '/api/version': ['GET', 'HEAD'],
};

/**
 * Builds the gateway's Hono app: request ids, access log, CORS, body limit, the OpenAI
 * routes (authenticated, streamed through untouched) and the health routes.
 *
 * @example
 * ```ts
 * const app = createApp({ config, router, access: createStaticKeyAccess(['k']), logger: createLogger() });
 * const response = await app.request('/health');
 * ```
 */
export function createApp(options: CreateAppOptions): Hono<GatewayEnv> {
  const { config, router, access, logger } = options;
  const generateId = options.generateId ?? (() => crypto.randomUUID());
  const now = options.now ?? Date.now;
  const createdAt = Math.floor(now() / 1000);
  const app = new Hono<GatewayEnv>();

  app.use('*', async function requestContext(c, next) {
    const incoming = c.req.header('x-request-id');
    const requestId =
      incoming !== undefined && SANE_REQUEST_ID.test(incoming) ? incoming : generateId();
    c.set('requestId', requestId);
    c.set('logger', logger.child({ requestId }));
    c.set('signal', c.req.raw.signal);
    await next();
    // Set on the answer itself: after the handler, c.header() rebuilds the response around
    // `response.body`, which turns a string or byte body into a web stream and costs
    // @hono/node-server its single-write path. Headers of a fetched Response are immutable;
    // only those go the long way.
    try {
      c.res.headers.set('x-request-id', requestId);
    } catch {
      c.header('x-request-id', requestId);
    }
  });

  const metrics = options.metrics;
  const tracer = options.tracer;
  app.use('*', async function accessLog(c, next) {
    const started = performance.now();
    c.set('startedAt', started);
    metrics?.requestStarted();
    const span = tracer
      ? startRequestSpan(tracer, c.req.raw, routeLabel(c.req.path), c.get('requestId'))
      : undefined;
    if (span) c.set('span', span);
    await next();
    const requestLogger = c.get('logger');
    const method = c.req.method;
    const path = c.req.path;
    const model = c.get('model');
    const principal = c.get('principal')?.id;
    const dispatch = c.get('dispatch');
    const encryptionFailure = c.res.headers.get('x-ohttp-error');
    if (encryptionFailure !== null) metrics?.encryptionFailed(encryptionFailure);
    if (!dispatch) {
      const line: Record<string, unknown> = {
        method,
        path,
        status: c.res.status,
        model,
        principal,
      };
      const outcome = c.get('outcome');
      if (outcome) {
        line.status = outcome.httpStatus;
        line.outcome = outcome.status;
      }
      const durationMs = performance.now() - started;
      line.durationMs = Math.round(durationMs);
      requestLogger.info(line, 'request');
      if (span) endRequestSpan(span, line.status as number);
      metrics?.requestEnded({
        route: routeLabel(path),
        ...(principal !== undefined ? { principal } : {}),
        status: line.status as number,
        durationMs,
      });
      return;
    }
    // A streamed body is still flowing: the line is written when it has ended. A body read
    // whole ends before the answer is written, so the line waits for the next turn of the
    // event loop: serializing and writing it is not on the answer's path. The line is one
    // literal (no spread of a partial line): it is built on every request.
    const { backend, model: upstreamModel } = dispatch;
    const streamEnded = metrics && isStreamed(c.res) ? metrics.streamStarted() : undefined;
    const writeLine = (outcome: DispatchOutcome): void => {
      const usage = outcome.usage;
      const durationMs = performance.now() - started;
      requestLogger.info(
        {
          method,
          path,
          status: outcome.httpStatus,
          model,
          principal,
          backend,
          upstreamModel,
          outcome: outcome.status,
          streamed: outcome.streamed,
          promptTokens: usage?.prompt_tokens,
          completionTokens: usage?.completion_tokens,
          totalTokens: usage?.total_tokens,
          firstByteMs: outcome.firstByteMs,
          error: outcome.error === undefined ? undefined : describeError(outcome.error),
          durationMs: Math.round(durationMs),
        },
        'request',
      );
      if (span) {
        endRequestSpan(span, outcome.httpStatus, {
          'tollgate.backend': backend,
          'tollgate.outcome': outcome.status,
          ...(usage?.total_tokens !== undefined
            ? { 'tollgate.total_tokens': usage.total_tokens }
            : {}),
        });
      }
      if (metrics) {
        streamEnded?.();
        metrics.requestEnded({
          route: routeLabel(path),
          // A dispatched request's model passed the router's check: a bounded label.
          ...(model !== undefined ? { model } : {}),
          ...(principal !== undefined ? { principal } : {}),
          status: outcome.httpStatus,
          durationMs,
          ...(outcome.firstByteMs !== undefined ? { firstByteMs: outcome.firstByteMs } : {}),
          ...(usage?.prompt_tokens !== undefined ? { promptTokens: usage.prompt_tokens } : {}),
          ...(usage?.completion_tokens !== undefined
            ? { completionTokens: usage.completion_tokens }
            : {}),
          backend,
          upstreamFailed: outcome.status === 'failed',
        });
      }
    };
    void dispatch.outcome.then(
      (outcome) => setImmediate(writeLine, outcome),
      (error: unknown) => {
        streamEnded?.();
        span?.end();
        requestLogger.error({ error: describeError(error) }, 'dispatch outcome rejected');
      },
    );
  });

  // CORS comes before the body limit so that even a 413 can be read by a browser.
  if (config.cors.origins.length > 0) {
    app.use(
      '*',
      cors({
        origin: config.cors.origins.includes('*') ? '*' : config.cors.origins,
        allowMethods: ['GET', 'HEAD', 'POST', 'OPTIONS'],
        // Without a list, the preflight's requested headers are allowed (payments included).
        ...(config.cors.allowHeaders
          ? {
              allowHeaders: options.payments
                ? [...new Set([...config.cors.allowHeaders, ...PAYMENT_HEADERS])]
                : config.cors.allowHeaders,
            }
          : {}),
        exposeHeaders: [...new Set([...EXPOSED_HEADERS, ...(config.cors.exposeHeaders ?? [])])],
        maxAge: 600,
      }),
    );
  }

  const maxBodyBytes = config.limits.maxBodyBytes;
  const tooLarge = () =>
    errorResponse(
      new TollgateError(
        'body_too_large',
        `The request body is larger than the ${formatBytes(maxBodyBytes)} this gateway accepts (limits.max_body_bytes).`,
      ),
    );
  const limitStreamedBody = bodyLimit({ maxSize: maxBodyBytes, onError: tooLarge });
  app.use('*', async function limitBody(c, next) {
    // Hono's bodyLimit first reads `request.body`, which makes @hono/node-server build a full
    // web Request around a web stream of the socket (tens of µs, and it turns the later
    // `request.text()` into a stream read). A declared length is checked here without that;
    // Node's parser never delivers more bytes than it declares. Only bodies without a length
    // (chunked uploads) go through bodyLimit, which counts them as they arrive.
    const method = c.req.method;
    if (method === 'GET' || method === 'HEAD') return next();
    const headers = c.req.raw.headers;
    const length = headers.get('content-length');
    if (length !== null && !headers.has('transfer-encoding')) {
      return Number.parseInt(length, 10) > maxBodyBytes ? tooLarge() : next();
    }
    // bodyLimit reads the whole body before the route runs: a caller who leaves mid-upload (or
    // a body that breaks) fails that read, which is no bug of ours and gets no 500.
    let reading = true;
    try {
      return await limitStreamedBody(c, () => {
        reading = false;
        return next();
      });
    } catch (error) {
      if (!reading) throw error;
      if (!c.get('signal').aborted) {
        throw new TollgateError('invalid_request', 'The request body could not be read.', {
          cause: error,
        });
      }
      c.set('outcome', { status: 'failed', httpStatus: CLIENT_CLOSED_REQUEST, error });
      return new Response(null, { status: CLIENT_CLOSED_REQUEST });
    }
  });

  const payments = options.payments;
  const authenticate: MiddlewareHandler<GatewayEnv> = async function authenticate(c, next) {
    if (payments && !presentsKey(c.req.raw.headers)) {
      // No key on a gateway that takes payments: the inference route asks for one.
      c.set('principal', UNPAID);
      return next();
    }
    c.set(
      'principal',
      await access.authenticate(c.req.raw, {
        remoteAddress: remoteAddress(c),
        requestId: c.get('requestId'),
      }),
    );
    await next();
  };

  /**
   * Serves one inference request whose body has been read: validation, the model check,
   * payment, admission, dispatch, settlement, and the answer (sealed for an Obol reply key).
   * Shared by the OpenAI routes and the Ollama-compatible ones, which translate around it.
   */
  const serveInference: ServeInference = async (c, operation, body, serveOptions = {}) => {
    const signal = c.get('signal');
    const requestId = c.get('requestId');
    const requestLogger = c.get('logger');
    const replyKey = serveOptions.replyKey;
    const request = parseOperationRequest(operation, body);
    c.set('model', request.model);
    // An unknown model is a 404 before admission: it must not count against the caller's
    // limits or leave a usage record.
    const { contextLength } = await router.ensureModel(request.model);
    let principal = c.get('principal')!;
    let payment: VerifiedPayment | undefined;
    if (payments && (principal.kind === 'payer' || payments.keyHoldersPay)) {
      const taken = await inChildSpan(tracer, c.get('span'), 'tollgate.payment.verify', () =>
        takePayment(c, payments, principal, operation, request, metrics),
      );
      if (taken instanceof Response) return taken;
      payment = taken;
      if (principal.kind === 'payer') {
        principal = access.payer?.(payment.payer) ?? {
          id: `x402:${payment.payer.toLowerCase()}`,
          kind: 'payer',
          keyId: '',
        };
        c.set('principal', principal);
      }
    }
    let admission: Admission;
    try {
      admission = await inChildSpan(tracer, c.get('span'), 'tollgate.admission', () =>
        access.admit(principal, {
          operation,
          model: request.model,
          body: request,
          requestId,
          ...(contextLength !== undefined ? { contextLength } : {}),
        }),
      );
    } catch (error) {
      await payment?.release();
      throw error;
    }
    const settle = (outcome: SettleOutcome) =>
      settleQuietly(
        admission,
        outcome,
        requestLogger,
        startChildSpan(tracer, c.get('span'), 'tollgate.settlement', {
          'http.response.status_code': outcome.httpStatus,
        }),
      );
    const started = performance.now();
    // What the gateway itself took before the upstream call: body, auth, limits, admission,
    // payment checks. Told to the caller and recorded.
    const overheadMs = started - c.get('startedAt');
    metrics?.overhead(routeLabel(c.req.path), overheadMs);
    let handedOn = false;
    let result: Awaited<ReturnType<Router['dispatch']>>;
    // From the upstream call to the end of its answer (the whole stream).
    const backendSpan = startChildSpan(tracer, c.get('span'), 'tollgate.backend', {
      'gen_ai.request.model': request.model,
    });
    try {
      result = await router.dispatch(operation, request, {
        signal,
        requestId,
        // Only once the body streams to the caller: while it is still being read here, its
        // failure must reach this handler as an error.
        onBodyError: (error) => handedOn && cutConnection(c, error),
      });
    } catch (error) {
      backendSpan?.setStatus({ code: SpanStatusCode.ERROR });
      backendSpan?.end();
      await payment?.release();
      if (signal.aborted) {
        // The caller left while we waited (queued, or before the upstream answered).
        const outcome: DispatchOutcome = {
          status: 'aborted',
          httpStatus: CLIENT_CLOSED_REQUEST,
          streamed: false,
          totalMs: Math.round(performance.now() - started),
          error,
        };
        c.set('outcome', outcome);
        settle(outcome);
        return new Response(null, { status: CLIENT_CLOSED_REQUEST });
      }
      settle({
        status: 'failed',
        httpStatus: isTollgateError(error) ? error.status : 500,
        error,
      });
      throw error;
    }
    let headers: Record<string, string> = {
      ...admission.headers,
      'x-tollgate-overhead-ms': overheadMs.toFixed(3),
    };
    let paymentId: string | undefined;
    if (payment) {
      const paid = await inChildSpan(tracer, c.get('span'), 'tollgate.payment.settle', () =>
        settlePayment(payment!, result.response.status),
      );
      if (paid) {
        const record = paymentRecord(payment, paid, requestId, admission.id);
        metrics?.payment(record.status);
        paymentId = payments!.record?.(record);
        if (!paid.ok) {
          // Nothing is served unpaid: the upstream's answer is dropped and the refusal sent.
          await result.response.body?.cancel(paid.error).catch(() => {});
          const outcome: SettleOutcome = {
            status: 'failed',
            httpStatus: paid.response.status,
            error: paid.error,
            backend: result.backend,
            ...(paymentId !== undefined ? { paymentId } : {}),
          };
          c.set('outcome', outcome);
          void result.outcome.finally(() => settle(outcome));
          requestLogger.warn(
            { code: paid.error.code, reason: paid.error.reason, detail: paid.error.message },
            'payment settlement failed',
          );
          return paid.response;
        }
        headers = { ...headers, ...paid.headers };
      }
    }
    c.set('dispatch', { backend: result.backend, model: result.model, outcome: result.outcome });
    if (backendSpan) {
      backendSpan.setAttributes({
        'tollgate.backend': result.backend,
        'http.response.status_code': result.response.status,
      });
      void result.outcome.then(
        (outcome) => {
          if (outcome.status === 'failed') backendSpan.setStatus({ code: SpanStatusCode.ERROR });
          backendSpan.end();
        },
        () => backendSpan.end(),
      );
    }
    void result.outcome.then(
      (outcome) =>
        settle({
          ...outcome,
          backend: result.backend,
          ...(paymentId !== undefined ? { paymentId } : {}),
        }),
      (error: unknown) =>
        settle({
          status: 'failed',
          httpStatus: result.response.status,
          error,
          backend: result.backend,
          ...(paymentId !== undefined ? { paymentId } : {}),
        }),
    );
    if (replyKey) {
      // The whole answer is sealed at once: a broken body must reach the sealing as an error.
      const plain = await toClientResponse(result.response, headers, {
        onBodyError: () => false,
        handOn: () => {},
      });
      return await sealObolReply(plain, replyKey);
    }
    return await toClientResponse(result.response, headers, {
      onBodyError: (error) => cutConnection(c, error),
      handOn: () => {
        handedOn = true;
      },
    });
  };

  const inference = (operation: Operation) =>
    async function inferenceHandler(c: Context<GatewayEnv>): Promise<Response> {
      const signal = c.get('signal');
      const keys = options.encryptionKeys;
      const obol = keys !== undefined && isObolMediaType(c.req.header('content-type'));
      if (config.encryption?.required && !obol && !wasEncapsulated(c.env)) {
        throw new TollgateError(
          'unsupported_media_type',
          `This gateway serves encrypted requests only: send the body as ${OBOL_MEDIA_TYPE} (see GET /v1/enclave/pubkey).`,
        );
      }
      // Checked before any work, so a malformed reply key never costs an upstream call.
      const replyKey = keys ? parseReplyKey(c.req.header('x-obol-reply-pubkey')) : undefined;
      let body: unknown;
      try {
        body = obol
          ? parseJsonText(
              new TextDecoder().decode(
                openObolBody(new Uint8Array(await c.req.arrayBuffer()), keys!(), now()),
              ),
            )
          : await readJsonBody(c.req.raw);
      } catch (error) {
        if (!signal.aborted) throw error;
        // The caller left while still sending the body: nobody is there to read a 400.
        c.set('outcome', { status: 'failed', httpStatus: CLIENT_CLOSED_REQUEST, error });
        return new Response(null, { status: CLIENT_CLOSED_REQUEST });
      }
      return serveInference(c, operation, body, replyKey ? { replyKey } : {});
    };

  app.post('/v1/chat/completions', authenticate, inference('chat.completions'));
  app.post('/v1/completions', authenticate, inference('completions'));
  app.post('/v1/embeddings', authenticate, inference('embeddings'));
  addOllamaRoutes(app, {
    authenticate,
    serveInference,
    router,
    now,
    encryptionRequired: config.encryption?.required === true,
  });

  app.get('/v1/models', authenticate, async function listModels(c) {
    const models = await router.listModels();
    return c.json({ object: 'list', data: models.map((model) => toOpenAIModel(model, createdAt)) });
  });

  app.get('/v1/models/:model{.+}', authenticate, async function retrieveModel(c) {
    const id = c.req.param('model');
    const models = await router.listModels();
    const model = models.find((entry) => entry.id === id);
    if (!model) {
      throw new TollgateError(
        'model_not_found',
        `The model "${id}" does not exist here. ${knownModelsSentence(models)}`,
        {
          param: 'model',
        },
      );
    }
    return c.json(toOpenAIModel(model, createdAt));
  });

  app.get('/health', (c) => c.json({ status: 'ok' }));

  if (metrics) {
    const token = options.metricsAccess?.token;
    app.get('/metrics', async function serveMetrics(c) {
      // Tenant ids and backends are operational facts: a token, or this machine only.
      if (token !== undefined) {
        if (c.req.header('authorization')?.trim() !== `Bearer ${token}`) {
          throw new TollgateError(
            'invalid_api_key',
            'GET /metrics needs the metrics token: send "Authorization: Bearer <metrics.token>".',
          );
        }
      } else if (!isLoopbackHost(remoteAddress(c) ?? '')) {
        throw new TollgateError(
          'forbidden',
          'GET /metrics answers this machine only; set metrics.token (TOLLGATE_METRICS_TOKEN) to scrape it from elsewhere.',
        );
      }
      return new Response(await metrics.render(), {
        headers: { 'content-type': metrics.contentType, 'cache-control': 'no-store' },
      });
    });
  }

  app.get('/health/ready', async function readiness(c) {
    const backends = router.status();
    const summary = backends.map((backend) => ({
      name: backend.name,
      kind: backend.kind,
      state: backend.state,
      modelCount: backend.models.length,
      inFlight: backend.inFlight,
    }));
    const blocked = await options.notReady?.();
    if (
      blocked === undefined &&
      backends.some((backend) => backend.state === 'healthy' && backend.models.length > 0)
    ) {
      return c.json({ status: 'ready', backends: summary });
    }
    const reason =
      blocked !== undefined
        ? blocked
        : backends.length === 0
          ? 'no backend configured — set TOLLGATE_BACKEND_URL or add backends to tollgate.yaml'
          : `no healthy backend: ${backends
              .map((backend) => {
                const why =
                  backend.state !== 'healthy'
                    ? (backend.lastHealth?.detail ?? backend.state)
                    : 'serves no models';
                return `${backend.name} (${why})`;
              })
              .join(', ')}`;
    return c.json({ status: 'not_ready', reason, backends: summary }, 503);
  });

  if (options.encryptionKeys) {
    addEncryptionRoutes(app, options.encryptionKeys, now);
    const keys = options.encryptionKeys;
    addOhttpGateway(app, {
      keys,
      now,
      ...(options.replayGuard ? { replay: options.replayGuard } : {}),
    });
    addAttestationRoute(app, {
      ...options.attestation,
      keyConfigs: () => ohttpKeyConfigs(keys(), now()),
    });
  }

  if (options.admin) app.route('/admin', options.admin);
  else {
    app.all('/admin/*', (c) =>
      errorResponse(
        new TollgateError(
          'route_not_found',
          `${c.req.method} ${c.req.path}: the admin API is off. Set TOLLGATE_ADMIN_KEY (or admin_key in tollgate.yaml) to turn it on.`,
        ),
      ),
    );
  }

  const routes = metrics ? { ...ROUTES, '/metrics': ['GET', 'HEAD'] } : ROUTES;
  for (const [path, methods] of Object.entries(routes)) {
    app.all(path, function methodNotAllowed(c) {
      const allowed = methods.filter((method) => method !== 'HEAD').join(', ');
      return errorResponse(
        new TollgateError(
          'method_not_allowed',
          `${c.req.method} is not allowed on ${path}; use ${allowed}.`,
          {
            headers: { allow: methods.join(', ') },
          },
        ),
      );
    });
  }

  app.notFound((c) =>
    errorResponse(
      new TollgateError(
        'route_not_found',
        `Unknown route ${c.req.method} ${c.req.path}. This gateway serves POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings, GET /v1/models, the Ollama API (POST /api/chat, POST /api/generate, POST /api/embed, GET /api/tags, GET /api/ps, GET /api/version), GET /v1/enclave/pubkey, GET and POST /.well-known/ohttp-gateway, GET /health and GET /health/ready.`,
      ),
    ),
  );

  app.onError((error, c) => {
    if (isTollgateError(error)) {
      if (error.status === 429 || error.status === 403) metrics?.rejected(error.code);
      else if (error.code === 'decryption_failed') metrics?.encryptionFailed(error.code);
      return errorResponse(error);
    }
    if (error instanceof HTTPException && error.status < 500) {
      const code = error.status === 413 ? 'body_too_large' : 'invalid_request';
      return errorResponse(
        new TollgateError(code, error.message || 'The request could not be handled.', {
          status: error.status,
        }),
      );
    }
    // A bug, not bad input: log it with the request id (no stack, per the logging rules) and
    // tell the caller nothing about it.
    (c.get('logger') ?? logger).error(
      { error: describeError(error), path: c.req.path },
      'unhandled error',
    );
    return errorResponse(error);
  });

  return app;
}

async function readJsonBody(request: Request): Promise<unknown> {
  let text: string;
  try {
    text = await request.text();
  } catch (error) {
    throw new TollgateError('invalid_request', 'The request body could not be read.', {
      cause: error,
    });
  }
  return parseJsonText(text);
}

/** How {@link toClientResponse} ends a body that breaks after the answer has started. */
interface BodyDelivery {
  /** Cuts the caller's connection (returning true), or lets the error reach the server. */
  onBodyError: (error: unknown) => boolean;
  /**
   * The router's body goes to the server as it is: from now on the router ends it through
   * `DispatchOptions.onBodyError`.
   */
  handOn: () => void;
}

async function toClientResponse(
  response: Response,
  extraHeaders: Record<string, string>,
  delivery: BodyDelivery,
): Promise<Response> {
  const { onBodyError } = delivery;
  let headers = response.headers;
  try {
    // The router's response is ours to hand on: edit its headers rather than copy them.
    for (const name of UPSTREAM_ONLY_HEADERS) headers.delete(name);
  } catch {
    // Immutable (a fetch Response passed through as it came): copy.
    headers = new Headers(headers);
    for (const name of UPSTREAM_ONLY_HEADERS) headers.delete(name);
  }
  for (const name in extraHeaders) headers.set(name, extraHeaders[name]!);
  const init = { status: response.status, statusText: response.statusText, headers };
  const nullBody = response.status === 204 || response.status === 205 || response.status === 304;
  if (nullBody || !response.body) return new Response(null, init);
  if (headers.get('content-type')?.toLowerCase().includes('text/event-stream')) {
    // Hono's own stream helpers do the same: it tells @hono/node-server to send the headers at
    // once instead of first reading what the body already holds. A stream that breaks early
    // then still reaches the caller as a started 200 stream that fails (what SDKs report as a
    // stream error), not as a dropped connection that they would retry.
    headers.set('transfer-encoding', 'chunked');
    // A stream is handed on chunk by chunk, never read whole here, and as the router's own
    // stream: one web stream less per request and per chunk than wrapping it to catch its
    // error, which the router reports through onBodyError instead.
    delivery.handOn();
    return new Response(response.body, init);
  }
  // Anything else is one bounded answer (a completion, embeddings, an error): read whole, it
  // leaves as one write with a content-length instead of headers, a chunk and a terminator.
  // A body larger than the bound, or one that breaks, is streamed on as it is (what was read
  // first, then the rest or the error).
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
      if (size > MAX_BUFFERED_BODY_BYTES) {
        return new Response(guardBody(reader, chunks, onBodyError), init);
      }
    }
  } catch {
    // The reader keeps rejecting with the same error, which the guarded stream then meets
    // after the bytes that came before it.
    return new Response(guardBody(reader, chunks, onBodyError), init);
  }
  return new Response(concatBytes(chunks, size), init);
}

/**
 * Passes a body through unchanged; when it fails mid-way, `onError` may cut the caller's
 * connection itself (returning true), otherwise the error reaches the runtime. Either way the
 * caller sees a broken response, never a silently truncated one.
 */
function guardBody(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  first: Uint8Array[],
  onError: (error: unknown) => boolean,
): ReadableStream<Uint8Array> {
  let pending = first.length > 0 ? first : undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (pending) {
          // What was read before the body was handed on goes out first, in one chunk.
          controller.enqueue(concatBytes(pending));
          pending = undefined;
          return;
        }
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (error) {
          if (onError(error)) {
            // The connection is cut; the server cancels this stream when it notices. Ending it
            // here instead would race that and make the server write to a dead socket.
            return new Promise<void>(() => {});
          }
          controller.error(error);
          return;
        }
        if (chunk.done) controller.close();
        else controller.enqueue(chunk.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Cuts the caller's connection when a streamed body broke. Under @hono/node-server the Node
 * response is at `c.env.outgoing`; destroying it ends the chunked body without its final
 * chunk, which every HTTP client reports as an error. Handing the error to the server instead
 * does the same but also prints it, stack and all, to stderr.
 */
function cutConnection(c: Context<GatewayEnv>, error: unknown): boolean {
  const outgoing = (
    c.env as { outgoing?: { destroy(error?: Error): void; destroyed?: boolean } } | undefined
  )?.outgoing;
  if (!outgoing || typeof outgoing.destroy !== 'function') return false;
  c.get('logger').debug(
    { error: describeError(error) },
    'upstream body failed mid-response: cutting the connection',
  );
  if (!outgoing.destroyed) outgoing.destroy();
  return true;
}

/** The caller's address, from the Node socket under @hono/node-server. */
export function remoteAddress(c: Context<GatewayEnv>): string | null {
  const incoming = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)
    ?.incoming;
  return incoming?.socket?.remoteAddress ?? null;
}

/**
 * The payment of a request that must pay: verified (its replay lock held, and the request
 * capped at the output it was priced for), or the answer to send instead (402 terms, a
 * refusal, 503).
 */
async function takePayment(
  c: Context<GatewayEnv>,
  payments: GatewayPayments,
  principal: Principal,
  operation: Operation,
  request: object & { model: string },
  metrics: GatewayMetrics | undefined,
): Promise<VerifiedPayment | Response> {
  // Priced from the validated request, as the terms of its unpaid attempt were.
  const context = { resource: c.req.url, price: { model: request.model, body: request } };
  const decision = await payments.gate.authorize(c.req.raw.headers, context);
  if (decision.status === 'absent') {
    return payments.gate.challenge(
      context,
      principal.kind === 'payer'
        ? 'Payment required: pay with x402 (a PAYMENT-SIGNATURE header), or send an API key.'
        : 'Payment required: this gateway charges key holders too; pay with x402 (a PAYMENT-SIGNATURE header).',
    );
  }
  if (decision.status === 'refused') {
    const { code, reason, message } = decision.error;
    const line = { code, reason, detail: message };
    if (decision.response.status >= 500) c.get('logger').warn(line, 'payment not processed');
    else c.get('logger').info(line, 'payment refused');
    metrics?.payment(`refused:${code}`);
    return decision.response;
  }
  capPaidOutput(operation, request, payments.pricedMaxTokens);
  return decision.payment;
}

/** The route of a path for metrics: one of the gateway's own, never the caller's text. */
export function routeLabel(path: string): string {
  if (Object.hasOwn(ROUTES, path)) return path;
  if (path.startsWith('/v1/models/')) return '/v1/models/:model';
  if (path === '/admin' || path.startsWith('/admin/')) return '/admin';
  if (path === '/metrics') return path;
  return 'other';
}

function isStreamed(response: Response): boolean {
  const type = response.headers.get('content-type') ?? '';
  return type.includes('text/event-stream') || type.includes('application/x-ndjson');
}

/** Caps a paid request that names no output limit at the tokens it was priced for. */
function capPaidOutput(operation: Operation, request: object, pricedMaxTokens?: number): void {
  if (pricedMaxTokens === undefined || operation === 'embeddings') return;
  const body = request as { max_tokens?: unknown; max_completion_tokens?: unknown };
  if (body.max_tokens === undefined && body.max_completion_tokens === undefined) {
    body.max_tokens = pricedMaxTokens;
  }
}

/** Whether a request names an API key (checked later); payments are for callers without one. */
function presentsKey(headers: Headers): boolean {
  return headers.has('authorization') || headers.has('x-api-key');
}

/**
 * Settles a verified payment once the upstream's status is known: an error status is not
 * charged (the payment's lock is released, undefined is returned); otherwise the payment is
 * settled before the body is handed on.
 */
async function settlePayment(
  payment: VerifiedPayment,
  status: number,
): Promise<PaymentOutcome | undefined> {
  if (status >= 400) {
    await payment.release();
    return undefined;
  }
  return payment.settle();
}

/** The billing record of a payment and how its settlement went. */
function paymentRecord(
  payment: VerifiedPayment,
  outcome: PaymentOutcome,
  requestId: string,
  usageId: string | undefined,
): PaymentInput {
  const { requirements } = payment;
  return {
    requestId,
    usageId: usageId ?? null,
    payer: payment.payer.toLowerCase(),
    network: requirements.network,
    asset: requirements.asset,
    payTo: requirements.payTo,
    amount: requirements.amount,
    scheme: requirements.scheme,
    x402Version: payment.payment.x402Version,
    nonce: payment.payment.payload.authorization.nonce,
    status: !outcome.ok ? 'failed' : outcome.receipt ? 'settled' : 'verified',
    transaction: outcome.receipt?.transaction || null,
    error: outcome.ok ? null : (outcome.receipt?.errorReason ?? outcome.error.code),
  };
}

function settleQuietly(
  admission: Admission,
  outcome: SettleOutcome,
  logger: Logger,
  span: Span | undefined,
): void {
  admission
    .settle(outcome)
    .catch((error: unknown) => {
      span?.setStatus({ code: SpanStatusCode.ERROR });
      logger.error({ error: describeError(error) }, 'settling the admission failed');
    })
    .finally(() => span?.end());
}

function toOpenAIModel(model: RouterModel, created: number) {
  return { id: model.id, object: 'model' as const, created, owned_by: model.ownedBy ?? 'tollgate' };
}

function knownModelsSentence(models: RouterModel[]): string {
  if (models.length === 0) return 'No models are available right now.';
  return `Known models: ${models.map((model) => model.id).join(', ')}.`;
}

/** An error as a log field: name, message, code; never the stack. */
export function describeError(error: unknown, depth = 0): Record<string, unknown> {
  if (error instanceof Error) {
    const described: Record<string, unknown> = { name: error.name, message: error.message };
    const code = (error as { code?: unknown }).code;
    if (code !== undefined) described.code = code;
    if (error.cause !== undefined && depth < 3)
      described.cause = describeError(error.cause, depth + 1);
    return described;
  }
  return { message: String(error) };
}

function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}
