/**
 * The run's event log: what a model step streams (deltas, retries) and what the workflow
 * adds (tools, approvals, compensations, the end), and what SSE clients resume from. Every
 * event has a position `step:seq` (see ./positions); positions only grow, so `Last-Event-ID`
 * is a cursor.
 */
import type { AssistantMessage, Delta, Usage } from './chat';

/** One streamed delta; a bare string is shorthand for `{ content }`, the common case. */
export type DeltaItem = Delta | string;

export function deltaOf(item: DeltaItem): Delta {
  return typeof item === 'string' ? { content: item } : item;
}

/** Consecutive model output of one step; `d[i]` sits at `seq0 + i`. */
export interface DeltasEvent {
  t: 'deltas';
  step: number;
  seq0: number;
  d: DeltaItem[];
}

export interface RetryEvent {
  t: 'retry';
  step: number;
  seq: number;
  attempt: number;
  reason: string;
}

export interface ToolStartedEvent {
  t: 'tool_started';
  step: number;
  seq: number;
  callId: string;
  server: string;
  tool: string;
  arguments: string;
}

export interface ToolFinishedEvent {
  t: 'tool_finished';
  step: number;
  seq: number;
  callId: string;
  server: string;
  tool: string;
  ms: number;
  isError: boolean;
  preview: string;
}

export interface ApprovalRequiredEvent {
  t: 'approval_required';
  step: number;
  seq: number;
  approvalId: string;
  callId: string;
  server: string;
  tool: string;
  arguments: string;
}

export interface ApprovalDecidedEvent {
  t: 'approval_decided';
  step: number;
  seq: number;
  approvalId: string;
  approve: boolean;
  reason?: string;
  by: 'api' | 'signal' | 'timeout';
}

export interface CompensationEvent {
  t: 'compensation';
  step: number;
  seq: number;
  forCallId: string;
  server: string;
  tool: string;
  ok: boolean;
  detail: string;
}

export interface EndEvent {
  t: 'end';
  step: number;
  seq: number;
  finishReason: string;
  usage?: Usage;
  message: AssistantMessage;
}

export interface ErrorEvent {
  t: 'error';
  step: number;
  seq: number;
  error: WireError;
  /** What the run's finished model calls used, so a failed stream can still be billed exactly. */
  usage?: Usage;
}

export type RunEvent =
  | DeltasEvent
  | RetryEvent
  | ToolStartedEvent
  | ToolFinishedEvent
  | ApprovalRequiredEvent
  | ApprovalDecidedEvent
  | CompensationEvent
  | EndEvent
  | ErrorEvent;

/** The OpenAI error body plus the HTTP status it travels with. */
export interface WireError {
  status: number;
  message: string;
  type: string;
  code: string | null;
  param: string | null;
  /** The upstream's `Retry-After` on a final 429, passed on to the client. */
  retryAfterSeconds?: number;
}
