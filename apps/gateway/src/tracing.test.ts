/**
 * OpenTelemetry traces through a real gateway, with the SDK's in-memory exporter standing in
 * for the operator's: a server span per request continuing the caller's traceparent, with
 * children for admission, the backend call and the settlement; none when tracing is off.
 */
import { propagation, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestGateway } from './test-helpers.js';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

beforeAll(() => {
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});
afterAll(async () => {
  trace.disable();
  propagation.disable();
  await provider.shutdown();
});

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  exporter.reset();
});

const KEY = 'sk-tracing';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';

async function spansFor(traceId: string, count: number): Promise<ReadableSpan[]> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const spans = exporter
      .getFinishedSpans()
      .filter((span) => span.spanContext().traceId === traceId);
    if (spans.length >= count) return spans;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
}

describe('traces', () => {
  it('behavior: a request is one server span, in the caller’s trace, with admission, backend and settlement children', async () => {
    const { gateway } = await startTestGateway(
      { values: { api_keys: [KEY], tracing: { enabled: true } } },
      (cleanup) => cleanups.push(cleanup),
    );
    const response = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${KEY}`,
        'content-type': 'application/json',
        traceparent: `00-${TRACE_ID}-${PARENT_ID}-01`,
      },
      body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'Hi' }] }),
    });
    expect(response.status).toBe(200);
    await response.text();
    const spans = await spansFor(TRACE_ID, 4);
    const server = spans.find((span) => span.name === 'POST /v1/chat/completions');
    expect(server).toBeDefined();
    // The caller's span is the server span's parent (the W3C propagator an SDK registers).
    expect(server!.parentSpanContext?.spanId).toBe(PARENT_ID);
    const byName = new Map(spans.map((span) => [span.name, span]));
    for (const child of ['tollgate.admission', 'tollgate.backend', 'tollgate.settlement']) {
      expect(byName.get(child)?.parentSpanContext?.spanId, child).toBe(
        server!.spanContext().spanId,
      );
    }
    expect(server!.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/chat/completions',
      'http.response.status_code': 200,
      'tollgate.backend': expect.any(String),
    });
    expect(byName.get('tollgate.backend')!.attributes['gen_ai.request.model']).toBe('fake-model');
  });

  it('behavior: with tracing off (the default) the gateway makes no spans', async () => {
    const { gateway } = await startTestGateway({ values: { api_keys: [KEY] } }, (cleanup) =>
      cleanups.push(cleanup),
    );
    const response = await fetch(`${gateway.url}/v1/models`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(response.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(exporter.getFinishedSpans()).toEqual([]);
  });
});
