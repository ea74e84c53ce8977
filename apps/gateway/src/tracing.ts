/**
 * Optional OpenTelemetry traces, through @opentelemetry/api only: one server span per
 * request (continuing a caller's `traceparent` when the operator's SDK registers a
 * propagator), with child spans for admission, the backend call and the settlement. The
 * gateway makes spans only when `tracing.enabled`; where they go is the operator's SDK
 * (for example loaded with `node --import ./otel.mjs`); without one they cost nothing.
 */
import {
  type Attributes,
  context,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';

/** The tracer the gateway uses, from the globally registered provider. */
export function gatewayTracer(): Tracer {
  return trace.getTracer('@tollgate/gateway');
}

/** Starts the server span of a request, as a child of the caller's trace context if any. */
export function startRequestSpan(
  tracer: Tracer,
  request: Request,
  route: string,
  requestId: string,
): Span {
  const carrier: Record<string, string> = {};
  const traceparent = request.headers.get('traceparent');
  if (traceparent !== null) carrier.traceparent = traceparent;
  const tracestate = request.headers.get('tracestate');
  if (tracestate !== null) carrier.tracestate = tracestate;
  const parent = propagation.extract(context.active(), carrier);
  return tracer.startSpan(
    `${request.method} ${route}`,
    {
      kind: SpanKind.SERVER,
      attributes: {
        'http.request.method': request.method,
        'http.route': route,
        'tollgate.request_id': requestId,
      },
    },
    parent,
  );
}

/** Ends a request's span with its status (an error from 500 up). */
export function endRequestSpan(span: Span, status: number, attributes: Attributes = {}): void {
  span.setAttributes({ 'http.response.status_code': status, ...attributes });
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/** A child of `parent` (none when tracing is off). */
export function startChildSpan(
  tracer: Tracer | undefined,
  parent: Span | undefined,
  name: string,
  attributes: Attributes = {},
): Span | undefined {
  if (!tracer || !parent) return undefined;
  return tracer.startSpan(name, { attributes }, trace.setSpan(context.active(), parent));
}

/** Runs `work` inside a child span, which records its error if it throws. */
export async function inChildSpan<T>(
  tracer: Tracer | undefined,
  parent: Span | undefined,
  name: string,
  work: () => Promise<T>,
  attributes: Attributes = {},
): Promise<T> {
  const span = startChildSpan(tracer, parent, name, attributes);
  if (!span) return work();
  try {
    return await work();
  } catch (error) {
    span.setStatus({
      code: SpanStatusCode.ERROR,
      message: (error as Error)?.message ?? String(error),
    });
    throw error;
  } finally {
    span.end();
  }
}
