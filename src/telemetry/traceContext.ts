/**
 * The caller's W3C trace context (`traceparent`, `tracestate`), carried through a run whether or
 * not mix2api records spans: a proxy that does not trace still forwards the context it was given
 * (W3C Trace Context, §3.2 / §3.3), so the upstream and HTTP MCP servers see the caller's trace
 * id. The context rides in a Temporal header of its own (`mix2api-trace`) from the API's start of
 * a run (or a session turn) to the workflow, which puts it on every activity it schedules
 * (workflows/traceContext), so it survives a move to another worker. Within a process it is an
 * AsyncLocalStorage: the API's request and each activity run inside it, and `traceHeaders`
 * (telemetry/tracing) falls back to it when no span is recording.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingHttpHeaders } from 'node:http';
import { defaultPayloadConverter, type Headers } from '@temporalio/common';
import type { WorkflowClientInterceptor } from '@temporalio/client';
import type { ActivityInboundCallsInterceptor } from '@temporalio/worker';
import { TRACE_HEADER } from '../workflows/traceContext';

export interface TraceContext {
  traceparent: string;
  tracestate?: string;
}

const current = new AsyncLocalStorage<TraceContext>();

/** version-traceid-parentid-flags, lowercase hex; version ff, an all-zero trace id or parent id are invalid. */
export const TRACEPARENT = /^([\da-f]{2})-([\da-f]{32})-([\da-f]{16})-[\da-f]{2}$/;

/** The request's trace context, when its `traceparent` is valid (an invalid one is dropped, as the spec says). */
export function inboundTraceContext(headers: IncomingHttpHeaders): TraceContext | undefined {
  const tp = typeof headers.traceparent === 'string' ? headers.traceparent.trim() : '';
  const m = TRACEPARENT.exec(tp);
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return undefined;
  const ts = headers.tracestate;
  const tracestate = (Array.isArray(ts) ? ts.join(',') : ts)?.trim();
  return { traceparent: tp, ...(tracestate ? { tracestate } : {}) };
}

export function withTraceContext<T>(ctx: TraceContext | undefined, fn: () => T): T {
  return ctx ? current.run(ctx, fn) : fn();
}

/** The context of the request or activity this code runs for, if the caller sent one. */
export function currentTraceContext(): TraceContext | undefined {
  return current.getStore();
}

function withHeader(headers: Headers): Headers {
  const ctx = current.getStore();
  return ctx ? { ...headers, [TRACE_HEADER]: defaultPayloadConverter.toPayload(ctx) } : headers;
}

/** Every start, signal and update the API makes carries the request's trace context. */
export const traceContextClientInterceptor: WorkflowClientInterceptor = {
  start: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  startWithDetails: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  signal: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  signalWithStart: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  startUpdate: (input, next) => next({ ...input, headers: withHeader(input.headers) }),
  startUpdateWithStart: (input, next) => next({ ...input, workflowStartHeaders: withHeader(input.workflowStartHeaders), updateHeaders: withHeader(input.updateHeaders) }),
};

/** An activity runs inside the trace context its workflow scheduled it with. */
export const traceContextActivityInterceptor: ActivityInboundCallsInterceptor = {
  execute(input, next) {
    const p = input.headers[TRACE_HEADER];
    if (!p) return next(input);
    let ctx: TraceContext | undefined;
    try {
      ctx = defaultPayloadConverter.fromPayload<TraceContext>(p);
    } catch {
      ctx = undefined;
    }
    return typeof ctx?.traceparent === 'string' ? current.run(ctx, () => next(input)) : next(input);
  },
};
