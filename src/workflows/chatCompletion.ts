/**
 * `chatCompletionWorkflow`: one POST /v1/chat/completions. Deterministic code only; all I/O
 * is in activities. Owns the run's durable event log and the step loop.
 */
import * as wf from '@temporalio/workflow';
import { ActivityFailure, ApplicationFailure, TimeoutFailure, TimeoutType } from '@temporalio/common';
import { WorkflowStream, decodePayloadWire } from '@temporalio/workflow-streams/workflow';
import type { createModelActivities } from '../activities/callModel';
import { addUsage, type Usage } from '../domain/chat';
import { EVENTS_TOPIC, comparePositions, nextSeq, type Position, type RunEvent, type WireError } from '../domain/events';
import {
  EVENTS_QUERY,
  RESULT_QUERY,
  wireError,
  type CallModelInput,
  type CallModelResult,
  type ChatCompletionInput,
  type ChatCompletionResult,
  type StepRecord,
} from '../domain/run';

type ModelActivities = ReturnType<typeof createModelActivities>;

/** How long a live-queue task may wait for its API instance before falling back to the shared queue. */
const LIVE_QUEUE_WAIT = '5 seconds';

function modelProxy(input: ChatCompletionInput, step: number, taskQueue: string | undefined, live: boolean) {
  const r = input.route;
  return wf.proxyActivities<ModelActivities>({
    taskQueue,
    summary: `llm ${r.exposedModel} step ${step}`,
    startToCloseTimeout: `${r.totalSeconds + 5} seconds`,
    heartbeatTimeout: '10 seconds',
    ...(live ? { scheduleToStartTimeout: LIVE_QUEUE_WAIT } : {}),
    retry: {
      maximumAttempts: r.retry.maxAttempts,
      initialInterval: `${r.retry.initialIntervalSeconds} seconds`,
      maximumInterval: `${r.retry.maxIntervalSeconds} seconds`,
      backoffCoefficient: 2,
    },
  }).callModel;
}

function isScheduleToStartTimeout(e: unknown): boolean {
  return e instanceof ActivityFailure && e.cause instanceof TimeoutFailure && e.cause.timeoutType === TimeoutType.SCHEDULE_TO_START;
}

/** The live queue when an API instance waits on this run, else (or when it is gone) the shared one. */
async function callModel(input: ChatCompletionInput, args: CallModelInput): Promise<CallModelResult> {
  if (input.liveTaskQueue) {
    try {
      return await modelProxy(input, args.step, input.liveTaskQueue, true)(args);
    } catch (e) {
      if (!isScheduleToStartTimeout(e)) throw e;
    }
  }
  return modelProxy(input, args.step, undefined, false)(args);
}

/** The last failure's OpenAI-shaped error, as classified by the activity. */
export function toWireError(e: unknown): WireError {
  let cur: unknown = e;
  while (cur instanceof ActivityFailure || (cur instanceof ApplicationFailure && !cur.details?.length && cur.cause)) cur = cur.cause;
  if (cur instanceof ApplicationFailure && cur.details?.[0]) return cur.details[0] as WireError;
  if (cur instanceof TimeoutFailure) return wireError(504, `upstream call timed out (${cur.timeoutType === undefined ? 'timeout' : TimeoutType[cur.timeoutType]})`, 'timeout_error', 'upstream_timeout');
  if (wf.isCancellation(e)) return wireError(499, 'run cancelled', 'cancelled', 'run_cancelled');
  const msg = e instanceof Error ? e.message : String(e);
  return wireError(500, msg, 'server_error', 'internal_error');
}

export async function chatCompletionWorkflow(input: ChatCompletionInput): Promise<ChatCompletionResult> {
  const info = wf.workflowInfo();
  const stream = new WorkflowStream();
  const events = stream.topic<RunEvent>(EVENTS_TOPIC);
  const steps: StepRecord[] = [];
  let result: ChatCompletionResult | undefined;

  const logged = (): RunEvent[] =>
    stream.getState().log.map((i) => wf.defaultPayloadConverter.fromPayload<RunEvent>(decodePayloadWire(i.data)));
  const nextSeqOf = (step: number): number => Math.max(0, ...logged().filter((e) => e.step === step).map(nextSeq));
  // Events after a position, also answerable once the run has closed (queries replay history).
  wf.setHandler(wf.defineQuery<RunEvent[], [Position]>(EVENTS_QUERY), (after) =>
    logged().filter((e) => comparePositions({ step: e.step, seq: nextSeq(e) - 1 }, after) > 0),
  );
  wf.setHandler(wf.defineQuery<ChatCompletionResult | null>(RESULT_QUERY), () => result ?? null);

  let usage: Usage | undefined;
  const step = 0;
  try {
    const r = await callModel(input, {
      runId: info.workflowId,
      step,
      upstream: input.route.upstream,
      body: { ...input.body, model: input.route.upstreamModel },
      batchMs: input.batchMs,
      continuation: input.route.continuation,
    });
    usage = addUsage(usage, r.usage);
    steps.push({ step, kind: 'model', attempt: r.attempt, finishReason: r.finishReason, usage: r.usage });
    result = {
      id: info.workflowId,
      created: Math.floor(info.startTime.getTime() / 1000),
      model: input.route.exposedModel,
      message: r.message,
      finishReason: r.finishReason,
      usage,
      steps,
    };
    events.publish({ t: 'end', step, seq: r.nextSeq, finishReason: r.finishReason, usage, message: r.message });
    return result;
  } catch (e) {
    const err = toWireError(e);
    events.publish({ t: 'error', step, seq: nextSeqOf(step), error: err });
    throw ApplicationFailure.create({ type: 'RunFailed', message: err.message, nonRetryable: true, details: [err], cause: e instanceof Error ? e : undefined });
  }
}
