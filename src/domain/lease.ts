/**
 * What a process's lease names (see activities/lease): the activities it runs, each with the
 * trace of what a model step has streamed, so the work can move when the process is lost.
 */
import type { RunEvent } from './events';

/**
 * One held activity: `[workflowId, runId, activityId, attempt, step, n, h]`. For a model step,
 * `n` is its first free position and `h` the digest of positions 0..n-1 (domain/stepLog
 * `trace`), or '' when the positions are not one attempt's output from 0; a tool call has step -1.
 */
export type HeldEntry = [workflowId: string, runId: string, activityId: string, attempt: number, step: number, n: number, h: string];

/**
 * The step of a model call that a lapsed lease never named: it was taken in the instant before
 * the renewal that would have named it, so only its worker identity says whose it was.
 */
export const UNNAMED_STEP = -1;

export interface LeaseInput {
  /** The holder's instance queue. */
  queue: string;
  lapseSeconds: number;
}

/**
 * The detail of a `ProcessLost` failure: the step and what the lost attempt had streamed, as a
 * trace (`n`, `h`; a lapse) or as its events (a process that shut down and handed its steps back).
 */
export interface LostStep {
  /** The step, or `UNNAMED_STEP` for a model step no renewal named (found by its worker identity). */
  step: number;
  /** The lost process's instance queue (a run whose live queue it is sends later steps elsewhere). */
  queue?: string;
  n?: number;
  h?: string;
  events?: RunEvent[];
}
