/**
 * The run's event log: what the workflow and its activities publish to the durable
 * WorkflowStream and to the live in-process channel, and what SSE clients resume from.
 * Every event has a position `step:seq`; positions only grow, so `Last-Event-ID` is a cursor.
 */
import type { AssistantMessage, Delta, Usage } from './chat';

export const EVENTS_TOPIC = 'events';

export interface Position {
  step: number;
  seq: number;
}

/** Model output of one step; `d[i]` sits at `seq0 + i`. Batched so history stays small. */
export interface DeltasEvent {
  t: 'deltas';
  step: number;
  seq0: number;
  d: Delta[];
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
}

export function firstPosition(e: RunEvent): Position {
  return { step: e.step, seq: e.t === 'deltas' ? e.seq0 : e.seq };
}

/** Position just after the event, i.e. the next free seq in its step. */
export function nextSeq(e: RunEvent): number {
  return e.t === 'deltas' ? e.seq0 + e.d.length : e.seq + 1;
}

export function comparePositions(a: Position, b: Position): number {
  return a.step - b.step || a.seq - b.seq;
}

export function formatPosition(p: Position): string {
  return `${p.step}:${p.seq}`;
}

export function parsePosition(s: string | undefined | null): Position | null {
  if (!s) return null;
  const m = /^(\d+):(\d+)$/.exec(s.trim());
  return m ? { step: Number(m[1]), seq: Number(m[2]) } : null;
}
