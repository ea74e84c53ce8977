/**
 * The gateway's Prometheus metrics (prom-client), served at GET /metrics. Every label value
 * is bounded: routes come from the gateway's own route table, models only once the router
 * knew them, tenants are tenant ids (x402 payers count as one `x402`), statuses are HTTP
 * statuses, reasons are the gateway's own error codes. No request ids, no caller-chosen text.
 */
import type { Router } from '@tollgate/backends';
import type { Tenancy } from '@tollgate/tenancy';
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type Registry as PromRegistry,
  Registry,
} from 'prom-client';
import { gatewayVersion } from './version.js';

/** How one request ended, as the access log sees it. */
export interface RequestObservation {
  route: string;
  /** A model the router knew, or undefined. */
  model?: string;
  /** The principal's id, if authenticated. */
  principal?: string;
  status: number;
  durationMs: number;
  /** Time from the upstream call to its first byte, for dispatched requests. */
  firstByteMs?: number;
  promptTokens?: number;
  completionTokens?: number;
  /** The backend that answered, for dispatched requests. */
  backend?: string;
  /** Whether the upstream broke (dispatched requests). */
  upstreamFailed?: boolean;
}

/** The metrics the app and the server record into. */
export interface GatewayMetrics {
  readonly registry: PromRegistry;
  /** A request arrived: counts it in flight until {@link GatewayMetrics.requestEnded}. */
  requestStarted(): void;
  requestEnded(observation: RequestObservation): void;
  /** A streamed answer started; ended when its request ends. */
  streamStarted(): () => void;
  /** Time from arrival to the upstream call. */
  overhead(route: string, ms: number): void;
  /** A request refused by limits (429) or a model allow list (403), by error code. */
  rejected(reason: string): void;
  /** An x402 payment's end: `settled`, `verified`, `failed`, or `refused` with its code. */
  payment(status: string): void;
  /** An encrypted request that could not be opened, by reason code. */
  encryptionFailed(reason: string): void;
  /** The Prometheus text exposition. */
  render(): Promise<string>;
  readonly contentType: string;
}

const CODE = /^[a-z0-9_]{1,48}$/;
const bounded = (value: string) => (CODE.test(value) ? value : 'other');

/** Seconds: request and first-token latencies of LLM calls span milliseconds to minutes. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds: the gateway's own part is meant to stay well under a millisecond or two. */
const OVERHEAD_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

/**
 * Creates the gateway's metrics in a registry of their own (with Node's process metrics);
 * `router` feeds the queue and backend gauges at each scrape, `tenancy` the dependency gauge.
 *
 * @example
 * ```ts
 * const metrics = createGatewayMetrics({ router });
 * const text = await metrics.render();
 * ```
 */
export function createGatewayMetrics(
  options: { router?: Router; tenancy?: Pick<Tenancy, 'healthy' | 'limiterHealthy'> } = {},
): GatewayMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const { router, tenancy } = options;

  const requests = new Counter({
    name: 'tollgate_requests_total',
    help: 'Requests answered, by route, model, tenant and HTTP status.',
    labelNames: ['route', 'model', 'tenant', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'tollgate_request_duration_seconds',
    help: 'Time from a request’s arrival to the end of its answer (streams included).',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const firstToken = new Histogram({
    name: 'tollgate_time_to_first_token_seconds',
    help: 'Time from the upstream call to its first byte (the first token of a stream), by model.',
    labelNames: ['model'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const overheadSeconds = new Histogram({
    name: 'tollgate_overhead_seconds',
    help: 'The gateway’s own time before the upstream call (body, auth, limits, admission, payment checks); also sent as x-tollgate-overhead-ms.',
    labelNames: ['route'] as const,
    buckets: OVERHEAD_BUCKETS,
    registers: [registry],
  });
  const tokens = new Counter({
    name: 'tollgate_tokens_total',
    help: 'Tokens in (prompt) and out (completion), by model and tenant.',
    labelNames: ['model', 'tenant', 'kind'] as const,
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: 'tollgate_requests_in_flight',
    help: 'Requests being handled now.',
    registers: [registry],
  });
  const streams = new Gauge({
    name: 'tollgate_streams_in_flight',
    help: 'Streamed answers being sent now.',
    registers: [registry],
  });
  const rejections = new Counter({
    name: 'tollgate_limit_rejections_total',
    help: 'Requests refused by limits (429) or model allow lists (403), by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: 'tollgate_upstream_errors_total',
    help: 'Dispatched requests whose upstream failed (unreachable, 5xx, broke mid-stream), by backend.',
    labelNames: ['backend'] as const,
    registers: [registry],
  });
  const payments = new Counter({
    name: 'tollgate_payments_total',
    help: 'x402 payments by outcome: settled, verified (verify-only), failed (settlement), refused:<code>.',
    labelNames: ['status'] as const,
    registers: [registry],
  });
  const encryption = new Counter({
    name: 'tollgate_encryption_failures_total',
    help: 'Encrypted requests that could not be opened, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  if (router) {
    new Gauge({
      name: 'tollgate_queue_depth',
      help: 'Requests waiting for a concurrency slot, by model (models with a limit).',
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const queue of router.queues()) this.set({ model: queue.model }, queue.queued);
      },
    });
    new Gauge({
      name: 'tollgate_backend_up',
      help: '1 when a backend is healthy (routed to), 0 when degraded.',
      labelNames: ['backend', 'kind'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const backend of router.status()) {
          this.set(
            { backend: backend.name, kind: backend.kind },
            backend.state === 'healthy' ? 1 : 0,
          );
        }
      },
    });
    new Gauge({
      name: 'tollgate_backend_in_flight',
      help: 'Requests in flight to each backend.',
      labelNames: ['backend'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const backend of router.status())
          this.set({ backend: backend.name }, backend.inFlight);
      },
    });
  }

  new Gauge({
    name: 'tollgate_build_info',
    help: 'Always 1; the labels say which gateway and Node.js versions are running.',
    labelNames: ['version', 'node'] as const,
    registers: [registry],
  }).set({ version: gatewayVersion(), node: process.version }, 1);
  if (tenancy) {
    new Gauge({
      name: 'tollgate_dependency_up',
      help: '1 while the gateway reaches a dependency: the database (usage records) or the limiter state (Redis).',
      labelNames: ['dependency'] as const,
      registers: [registry],
      collect() {
        this.set({ dependency: 'database' }, tenancy.healthy ? 1 : 0);
        this.set({ dependency: 'limiter' }, tenancy.limiterHealthy ? 1 : 0);
      },
    });
  }

  return {
    registry,
    contentType: registry.contentType,
    requestStarted() {
      inFlight.inc();
    },
    requestEnded(observation) {
      inFlight.dec();
      const model = observation.model ?? '';
      const tenant = tenantLabel(observation.principal);
      requests.inc({ route: observation.route, model, tenant, status: String(observation.status) });
      duration.observe({ route: observation.route }, observation.durationMs / 1000);
      if (observation.firstByteMs !== undefined && model !== '') {
        firstToken.observe({ model }, observation.firstByteMs / 1000);
      }
      if (observation.promptTokens) {
        tokens.inc({ model, tenant, kind: 'prompt' }, observation.promptTokens);
      }
      if (observation.completionTokens) {
        tokens.inc({ model, tenant, kind: 'completion' }, observation.completionTokens);
      }
      if (observation.upstreamFailed && observation.backend !== undefined) {
        upstreamErrors.inc({ backend: observation.backend });
      }
    },
    streamStarted() {
      streams.inc();
      let ended = false;
      return () => {
        if (ended) return;
        ended = true;
        streams.dec();
      };
    },
    overhead(route, ms) {
      overheadSeconds.observe({ route }, ms / 1000);
    },
    rejected(reason) {
      rejections.inc({ reason: bounded(reason) });
    },
    payment(status) {
      payments.inc({
        status: status.startsWith('refused:')
          ? `refused:${bounded(status.slice(8))}`
          : bounded(status),
      });
    },
    encryptionFailed(reason) {
      encryption.inc({ reason: bounded(reason) });
    },
    render() {
      return registry.metrics();
    },
  };
}

/** Tenant ids are bounded by the tenants that exist; every x402 payer counts as one. */
function tenantLabel(principal: string | undefined): string {
  if (principal === undefined) return '';
  return principal.startsWith('x402') ? 'x402' : principal;
}
