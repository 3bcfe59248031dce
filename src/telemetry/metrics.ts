/**
 * Prometheus metrics (`prom-client`), one registry per process role set. Every label value is
 * bounded by configuration: routes are the API's own, models are configured ids (anything else
 * is `other`), upstreams and MCP servers are configured names, tool names come from those
 * servers' lists, and outcomes are a fixed set. No run ids, no client-invented strings.
 *
 * The Temporal SDK's own metrics (worker slots, polls, task latencies) come from its Runtime's
 * Prometheus exporter, which listens on loopback; `/metrics` appends what it serves.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RunEvent } from '../domain/events';

/** Seconds: from a fast first token to a long tool loop. */
const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export type ModelCallOutcome = 'ok' | 'retryable_error' | 'error' | 'cancelled' | 'breaker_open';
export type ToolCallOutcome = 'ok' | 'tool_error' | 'timeout' | 'invalid_arguments' | 'transport_error' | 'cancelled';

export interface MetricsOptions {
  /** Configured model ids: the only values the `model` label takes besides `other`. */
  models?: Iterable<string>;
  /** Where the Temporal SDK Runtime's Prometheus exporter listens, to append its text. */
  temporalUrl?: string;
  /** Process metrics (`process_*`, `nodejs_*`). Off in tests that run many systems in one process. */
  processMetrics?: boolean;
  /** `metrics.enabled`; false: nothing is counted (and nothing serves it). */
  enabled?: boolean;
}

const NOOP = { inc: () => undefined, dec: () => undefined, set: () => undefined, observe: () => undefined };

export class Metrics {
  readonly registry = new Registry();
  private readonly models: Set<string>;
  private readonly temporalUrl?: string;
  /** Approvals this process's runs asked for and are waiting on, by run and approval id. */
  private readonly waiting = new Set<string>();

  readonly httpRequests: Counter<'route' | 'model' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'model' | 'stream'>;
  readonly timeToFirstToken: Histogram<'model'>;
  readonly activeStreams: Gauge<string>;
  readonly activeRuns: Gauge<string>;
  readonly streamsStalled: Counter<'api'>;
  readonly modelCalls: Counter<'upstream' | 'outcome'>;
  readonly modelRetries: Counter<'upstream'>;
  readonly modelFallbacks: Counter<'upstream'>;
  readonly modelTimeToFirstToken: Histogram<'upstream'>;
  readonly modelTokens: Counter<'upstream' | 'type'>;
  readonly toolCalls: Counter<'server' | 'tool' | 'outcome'>;
  readonly toolDuration: Histogram<'server' | 'tool'>;
  readonly approvalsWaiting: Gauge<string>;
  readonly approvals: Counter<'decision'>;
  readonly compensations: Counter<'server' | 'outcome'>;

  constructor(o: MetricsOptions = {}) {
    // Off: every instrument is a no-op, so nothing is counted anywhere.
    const registers = [this.registry];
    const make = <T>(create: () => T): T => (o.enabled === false ? (NOOP as T) : create());
    this.httpRequests = make(() => new Counter({ name: 'mix2api_http_requests_total', help: 'HTTP requests answered, by route, model and status code.', labelNames: ['route', 'model', 'status'] as const, registers }));
    this.httpDuration = make(() => new Histogram({ name: 'mix2api_http_request_duration_seconds', help: 'From request to the end of the answer (a stream: its last byte), by route, model and whether it streamed.', labelNames: ['route', 'model', 'stream'] as const, buckets: LATENCY_BUCKETS, registers }));
    this.timeToFirstToken = make(() => new Histogram({ name: 'mix2api_time_to_first_token_seconds', help: 'From request to the first content a streaming client was sent, by model.', labelNames: ['model'] as const, buckets: LATENCY_BUCKETS, registers }));
    this.activeStreams = make(() => new Gauge({ name: 'mix2api_active_streams', help: 'SSE streams open on this API process.', registers }));
    this.activeRuns = make(() => new Gauge({ name: 'mix2api_active_runs', help: 'Runs this API process is answering a request for (streaming or not).', registers }));
    this.streamsStalled = make(() => new Counter({ name: 'mix2api_streams_stalled_total', help: 'Streams cut off because the client read nothing for stream.stallSeconds (the run goes on), by front door (chat, responses).', labelNames: ['api'] as const, registers }));
    this.modelCalls = make(() => new Counter({ name: 'mix2api_model_calls_total', help: 'Upstream model calls (one per attempt and fallback target), by upstream and outcome.', labelNames: ['upstream', 'outcome'] as const, registers }));
    this.modelRetries = make(() => new Counter({ name: 'mix2api_model_retries_total', help: 'Model-step attempts after the first (Temporal retries of callModel), by upstream.', labelNames: ['upstream'] as const, registers }));
    this.modelFallbacks = make(() => new Counter({ name: 'mix2api_model_fallbacks_total', help: 'Model calls handed to the next fallback target, by the upstream that failed.', labelNames: ['upstream'] as const, registers }));
    this.modelTimeToFirstToken = make(() => new Histogram({ name: 'mix2api_model_time_to_first_token_seconds', help: 'From sending the upstream request to its first delta, by upstream.', labelNames: ['upstream'] as const, buckets: LATENCY_BUCKETS, registers }));
    this.modelTokens = make(() => new Counter({ name: 'mix2api_model_tokens_total', help: 'Tokens the upstreams reported, by upstream and type (prompt, completion, cached_prompt).', labelNames: ['upstream', 'type'] as const, registers }));
    this.toolCalls = make(() => new Counter({ name: 'mix2api_tool_calls_total', help: 'MCP tool calls (one per activity attempt), by server, tool and outcome.', labelNames: ['server', 'tool', 'outcome'] as const, registers }));
    this.toolDuration = make(() => new Histogram({ name: 'mix2api_tool_call_duration_seconds', help: 'MCP tool call duration, by server and tool.', labelNames: ['server', 'tool'] as const, buckets: LATENCY_BUCKETS, registers }));
    this.approvalsWaiting = make(() => new Gauge({ name: 'mix2api_approvals_waiting', help: 'Tool calls waiting for an approval in runs this worker process runs.', registers }));
    this.approvals = make(() => new Counter({ name: 'mix2api_approvals_total', help: 'Approval decisions, by decision (approved, denied, timeout).', labelNames: ['decision'] as const, registers }));
    this.compensations = make(() => new Counter({ name: 'mix2api_compensations_total', help: 'Compensating tool calls a failed or cancelled run made, by server and outcome.', labelNames: ['server', 'outcome'] as const, registers }));
    this.models = new Set(o.models ?? []);
    this.temporalUrl = o.temporalUrl;
    if (o.processMetrics && o.enabled !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** The `model` label: a configured model id, or `other` (clients may send any string). */
  model(name: unknown): string {
    return typeof name === 'string' && this.models.has(name) ? name : 'other';
  }

  /** A workflow event of a run this process's worker runs (from the live sink: not called on replay). */
  runEvent(runId: string, e: RunEvent): void {
    if (e.t === 'approval_required') {
      this.waiting.add(`${runId}/${e.approvalId}`);
      this.approvalsWaiting.set(this.waiting.size);
    } else if (e.t === 'approval_decided') {
      this.waiting.delete(`${runId}/${e.approvalId}`);
      this.approvalsWaiting.set(this.waiting.size);
      this.approvals.inc({ decision: e.by === 'timeout' ? 'timeout' : e.approve ? 'approved' : 'denied' });
    } else if (e.t === 'compensation') {
      this.compensations.inc({ server: e.server, outcome: e.ok ? 'ok' : 'failed' });
    } else if (e.t === 'end' || e.t === 'error') {
      for (const k of this.waiting) if (k.startsWith(`${runId}/`)) this.waiting.delete(k);
      this.approvalsWaiting.set(this.waiting.size);
    }
  }

  /** The Prometheus text exposition: this registry, then the Temporal SDK's metrics. */
  async text(): Promise<string> {
    const own = await this.registry.metrics();
    if (!this.temporalUrl) return own;
    const temporal = await fetch(this.temporalUrl, { signal: AbortSignal.timeout(2000) })
      .then((r) => (r.ok ? r.text() : ''))
      .catch(() => '');
    return temporal ? `${own}\n${temporal}` : own;
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
