/**
 * Workflow interceptors, always bundled: the caller's trace context (telemetry/traceContext)
 * comes in on the run's start or a session's turn (an update), and goes out on every activity and
 * child run the workflow schedules after it. Other updates and signals (an approval, a lease's
 * news) are other requests' and do not change it. It only copies one header; it adds no
 * command, so histories replay the same with or without it.
 */
import type { Payload } from '@temporalio/common';
import type { WorkflowInterceptorsFactory } from '@temporalio/workflow';
import { SESSION_TURN_UPDATE } from '../domain/run';

/** The Temporal header carrying `{traceparent, tracestate}`. */
export const TRACE_HEADER = 'mix2api-trace';

export const interceptors: WorkflowInterceptorsFactory = () => {
  // One factory call per workflow execution: this is the run's own.
  let trace: Payload | undefined;
  const take = (headers: Record<string, Payload>) => {
    trace = headers[TRACE_HEADER] ?? trace;
  };
  const give = <I extends { headers: Record<string, Payload> }>(input: I): I => (trace ? { ...input, headers: { ...input.headers, [TRACE_HEADER]: trace } } : input);
  return {
    inbound: [
      {
        execute(input, next) {
          take(input.headers);
          return next(input);
        },
        handleUpdate(input, next) {
          if (input.name === SESSION_TURN_UPDATE) take(input.headers);
          return next(input);
        },
      },
    ],
    outbound: [
      {
        scheduleActivity: (input, next) => next(give(input)),
        scheduleLocalActivity: (input, next) => next(give(input)),
        startChildWorkflowExecution: (input, next) => next(give(input)),
      },
    ],
  };
};
