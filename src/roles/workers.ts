/**
 * The two kinds of worker: the shared one (workflows + every activity, on the shared task
 * queue; in `mix2api start` it is in the API's process, so runs start eagerly there) and the
 * per-process instance one (the process's lease, `checkHeld`, and the streaming `callModel` of
 * runs an API instance here waits on, so its deltas reach its HTTP connections in-process).
 * Both name the instance queue in their identity, so a run can find the process holding its step.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Worker, type InjectedSinks, type NativeConnection, type WorkflowBundleOption } from '@temporalio/worker';
import type { WorkflowInfo } from '@temporalio/workflow';
import type { Context as ActivityContext } from '@temporalio/activity';
import { OpenTelemetryActivityInboundInterceptor, OpenTelemetryActivityOutboundInterceptor, makeWorkflowExporter, type OpenTelemetrySinks } from '@temporalio/interceptors-opentelemetry';
import type { Tracing } from '../telemetry/tracing';
import { traceContextActivityInterceptor } from '../telemetry/traceContext';
import { createActivities, type ActivityDeps } from '../activities';
import type { DataConverter } from '@temporalio/common';
import type { Config } from '../config/load';
import type { LiveHub } from '../connectors/liveHub';
import type { RunSinks } from '../workflows/sinks';
import type { RunEvent } from '../domain/events';
import type { Logger } from '../telemetry/log';
import { ENCRYPTED_FAILURE_CONVERTER } from '../connectors/payloadCodec';
import { workflowBundle } from './workflowBundle';

/**
 * One line per run outcome (`end` or `error`), from the worker that ran the run's last workflow
 * task; tool calls only at debug, and only there with their arguments and output preview.
 */
function logRunEvent(logger: Logger, info: WorkflowInfo, e: RunEvent): void {
  if (e.t === 'end' || e.t === 'error') {
    const attrs = info.searchAttributes as Record<string, unknown[] | undefined>;
    logger.info(
      {
        event: 'run',
        runId: info.workflowId,
        workflow: info.workflowType,
        model: attrs?.Mix2apiModel?.[0],
        keyName: attrs?.Mix2apiKeyName?.[0],
        status: e.t === 'end' ? 'completed' : 'failed',
        ...(e.t === 'end' ? { finishReason: e.finishReason } : { error: { code: e.error.code, type: e.error.type, status: e.error.status } }),
        steps: e.step + 1,
        promptTokens: e.usage?.prompt_tokens,
        completionTokens: e.usage?.completion_tokens,
        durationMs: Date.now() - info.startTime.getTime(),
      },
      'run finished',
    );
  } else if ((e.t === 'tool_started' || e.t === 'tool_finished') && logger.isLevelEnabled('debug')) {
    logger.debug({ event: e.t, runId: info.workflowId, server: e.server, tool: e.tool, callId: e.callId, ...(e.t === 'tool_started' ? { arguments: e.arguments } : { ms: e.ms, isError: e.isError, preview: e.preview }) }, e.t.replace('_', ' '));
  }
}

export interface WorkerOptions {
  config: Config;
  native: NativeConnection;
  deps: ActivityDeps & { live: LiveHub; logger: Logger };
  /**
   * A prebuilt workflow bundle (tests); default: bundle `src/workflows` at start. The workflows'
   * failure converter is bundled in: a prebuilt bundle must be built with `dataConverter`'s
   * `failureConverterPath` (the SDK passes it on when it bundles here).
   */
  workflowBundle?: WorkflowBundleOption;
  /** The process's Temporal data converter (payload encryption), shared with its client. */
  dataConverter?: DataConverter;
  /** Tracing on (see telemetry/tracing); its workflow interceptors need a bundle built here. */
  tracing?: Tracing | null;
  /** The worker identity (activities/lease `instanceIdentity`). */
  identity: string;
}

/**
 * Every activity runs in the caller's trace context (telemetry/traceContext); with tracing on, the
 * Temporal SDK's OpenTelemetry interceptors add its span.
 */
function activityInterceptors(o: WorkerOptions) {
  const otel = (ctx: ActivityContext) => ({ inbound: new OpenTelemetryActivityInboundInterceptor(ctx), outbound: new OpenTelemetryActivityOutboundInterceptor(ctx) });
  return { activity: o.tracing ? [() => ({ inbound: traceContextActivityInterceptor }), otel] : [() => ({ inbound: traceContextActivityInterceptor })] };
}

/** Workflow interceptor modules a bundle needs: the trace context always, OpenTelemetry's with tracing on. */
export function workflowInterceptorModules(tracing: boolean): string[] {
  return [require.resolve('../workflows/traceContext'), ...(tracing ? [require.resolve('../workflows/tracing')] : [])];
}

function workflowOptions(o: WorkerOptions) {
  const sinks: InjectedSinks<RunSinks & Partial<OpenTelemetrySinks>> = {
    live: {
      event: {
        fn: (info, e) => {
          o.deps.live.pushed(info.workflowId, e);
          o.deps.metrics.runEvent(info.workflowId, e);
          logRunEvent(o.deps.logger, info, e);
        },
        callDuringReplay: false,
      },
    },
  };
  return {
    ...(o.workflowBundle ? { workflowBundle: o.workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
    dataConverter: o.dataConverter,
    sinks: o.tracing ? { ...sinks, exporter: makeWorkflowExporter(o.tracing.spanProcessor, o.tracing.resource) } : sinks,
    interceptors: { ...activityInterceptors(o), ...(o.workflowBundle ? {} : { workflowModules: workflowInterceptorModules(Boolean(o.tracing)) }) },
    // A run's next workflow task goes to the worker that ran the last one; if that worker died,
    // wait this long (default 10 s) before any worker may take it. Part of how long a dead
    // process's run takes to move: a live worker's sticky poll is always waiting.
    stickyQueueScheduleToStartTimeout: '1 second' as const,
  };
}

export async function createSharedWorker(o: WorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: o.native,
    namespace: o.config.temporal.namespace,
    taskQueue: o.config.temporal.taskQueue,
    identity: o.identity,
    ...workflowOptions(o),
    activities: createActivities(o.deps),
    // A tool call's heartbeats go out within a second (its cancellation rides on them; the SDK
    // would otherwise hold them for 80% of the 8-s heartbeat timeout).
    maxHeartbeatThrottleInterval: '1 second',
    shutdownGraceTime: '5 seconds',
  });
}

/** The workflow bundle for `config` (kept under `temporal.dataDir`/bundles; see workflowBundle). */
export function prepareWorkflowBundle(config: Config, tracing: boolean, warn?: (msg: string) => void): Promise<WorkflowBundleOption> {
  return workflowBundle({
    dir: join(config.temporal.dataDir, 'bundles'),
    workflowInterceptorModules: workflowInterceptorModules(tracing),
    failureConverterPath: config.encryption.keys.length > 0 ? ENCRYPTED_FAILURE_CONVERTER : undefined,
    warn,
  });
}

export function instanceQueueName(config: Config): string {
  return `${config.temporal.taskQueue}-live-${randomUUID().slice(0, 8)}`;
}

export async function createInstanceWorker(o: WorkerOptions, taskQueue: string): Promise<Worker> {
  const { callModel, holdLease, checkHeld } = createActivities(o.deps);
  return Worker.create({
    connection: o.native,
    namespace: o.config.temporal.namespace,
    taskQueue,
    identity: o.identity,
    dataConverter: o.dataConverter,
    interceptors: activityInterceptors(o),
    activities: { callModel, holdLease, checkHeld },
    shutdownGraceTime: '5 seconds',
  });
}
