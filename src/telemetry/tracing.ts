/**
 * OpenTelemetry traces. Off by default; the standard `OTEL_*` variables turn OTLP/HTTP export on
 * (see config/load `tracingFrom`). With it off, the tracer below is OpenTelemetry's no-op one,
 * so the instrumented code paths cost next to nothing.
 *
 * One trace per completion: the HTTP request (continuing the caller's W3C `traceparent`), the
 * workflow start and the workflow, and under it every activity, by the Temporal SDK's own
 * interceptors (`@temporalio/interceptors-opentelemetry`), which carry the context in Temporal
 * headers, so a run resumed by another worker after a crash stays in the same trace. mix2api adds
 * a `chat {model}` span per upstream call and an `execute_tool {tool}` span per MCP call, with
 * OpenTelemetry GenAI attributes (`gen_ai.*`), and sends `traceparent` on to the upstream and to
 * HTTP MCP servers.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { context, propagation, trace, SpanKind, SpanStatusCode, ROOT_CONTEXT, type Span, type Tracer } from '@opentelemetry/api';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { OTLPTraceExporter as OtlpHttpJson } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OtlpHttpProto } from '@opentelemetry/exporter-trace-otlp-proto';
import type { TracingConfig } from '../config/load';
import { currentTraceContext } from './traceContext';

export { SpanKind, SpanStatusCode, type Span };

/** A proxy: it is no-op until (and unless) `startTracing` registers a provider. */
const TRACER: Tracer = trace.getTracer('mix2api');
export const tracer = (): Tracer => TRACER;

export interface Tracing {
  /** The processor and resource the Temporal workflow-span exporter sink needs. */
  spanProcessor: SpanProcessor;
  resource: Resource;
  shutdown(): Promise<void>;
}

let installed: Tracing | null = null;

/** Registers the process-wide tracer provider and W3C propagators; null when tracing is off. */
export function startTracing(cfg: TracingConfig, version: string): Tracing | null {
  if (!cfg.enabled) return null;
  if (installed) return installed;
  // One instance id per process: spans of a run that moved to another worker say so.
  const resource = new Resource({ 'service.name': cfg.serviceName, 'service.version': version, 'service.instance.id': randomUUID() });
  // The exporters read the endpoint, headers and timeout from the standard OTEL_EXPORTER_OTLP_* variables.
  const exporter = cfg.protocol === 'http/json' ? new OtlpHttpJson() : new OtlpHttpProto();
  const spanProcessor = new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500 });
  const provider = new NodeTracerProvider({ resource, spanProcessors: [spanProcessor] });
  provider.register({ propagator: new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }) });
  installed = { spanProcessor, resource, shutdown: () => provider.shutdown() };
  return installed;
}

/**
 * W3C trace headers for a request made within `span`. While tracing is off (nothing recorded,
 * nothing injected): the caller's own context, forwarded as it came (telemetry/traceContext).
 */
export function traceHeaders(span?: Span): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(span ? trace.setSpan(context.active(), span) : context.active(), carrier);
  if (carrier.traceparent) return carrier;
  const inherited = currentTraceContext();
  return inherited ? { traceparent: inherited.traceparent, ...(inherited.tracestate ? { tracestate: inherited.tracestate } : {}) } : carrier;
}

/** Runs `fn` with `span` as the active span. */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

const requestTraces = new WeakMap<IncomingMessage, string>();

/** The trace id of a request's server span, if it is being traced. */
export function requestTraceId(req: IncomingMessage): string | undefined {
  return requestTraces.get(req);
}

/**
 * Runs `handle` inside a server span for the request (a child of the caller's `traceparent`),
 * ended with the response's status once the response closes.
 */
export function traceRequest(req: IncomingMessage, res: { statusCode: number; getHeader(n: string): unknown; once(e: 'close', f: () => void): void }, route: string, handle: () => void): void {
  const parent = propagation.extract(ROOT_CONTEXT, req.headers);
  const span = tracer().startSpan(
    `${req.method} ${route}`,
    { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method ?? '', 'url.path': req.url?.split('?')[0] ?? '', 'http.route': route } },
    parent,
  );
  if (span.isRecording()) requestTraces.set(req, span.spanContext().traceId);
  res.once('close', () => {
    span.setAttribute('http.response.status_code', res.statusCode);
    const runId = res.getHeader('x-run-id');
    if (typeof runId === 'string') span.setAttribute('mix2api.run_id', runId);
    if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  });
  context.with(trace.setSpan(parent, span), handle);
}

/** `gen_ai.provider.name` for a dialect. */
export function providerOf(api: string): string {
  return api === 'anthropic-messages' ? 'anthropic' : api === 'gemini' ? 'gcp.gemini' : 'openai';
}

/** Ends a span as failed, with `error.type`. */
export function failSpan(span: Span, errorType: string, message: string): void {
  span.setAttribute('error.type', errorType);
  span.setStatus({ code: SpanStatusCode.ERROR, message: message.slice(0, 300) });
  span.end();
}
