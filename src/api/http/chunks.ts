/**
 * Renders run events as OpenAI `chat.completion.chunk` objects and the final
 * `chat.completion`. One assistant message per request: tool steps mix2api runs itself show
 * up as progress (reasoning_content or content), never as a `tool_calls` turn.
 */
import type { AssistantMessage, Delta, Usage } from '../../domain/chat';
import { deltaOf, type RunEvent } from '../../domain/events';
import type { WireError } from '../../domain/events';
import type { ChatCompletionResult } from '../../domain/run';
import { errorBody } from './errors';

export type ProgressMode = 'reasoning' | 'content' | 'none';

export interface ChunkContext {
  id: string;
  created: number;
  model: string;
}

export function chunk(ctx: ChunkContext, delta: object, finishReason: string | null = null, usage?: Usage) {
  return {
    id: ctx.id,
    object: 'chat.completion.chunk' as const,
    created: ctx.created,
    model: ctx.model,
    choices: [{ index: 0, delta, finish_reason: finishReason, logprobs: null }],
    ...(usage ? { usage: wireUsage(usage) } : {}),
  };
}

export function usageChunk(ctx: ChunkContext, usage: Usage) {
  return { id: ctx.id, object: 'chat.completion.chunk' as const, created: ctx.created, model: ctx.model, choices: [], usage: wireUsage(usage) };
}

/**
 * Usage as mix2api reports it: the upstream's counts summed over the run's model calls, with
 * `reasoning_tokens` always present (0 unless the upstream counted some), so a gateway that
 * infers reasoning from `reasoning_content` does not bill mix2api's progress lines as reasoning.
 */
export function wireUsage(u: Usage): Usage {
  return { ...u, completion_tokens_details: { reasoning_tokens: u.completion_tokens_details?.reasoning_tokens ?? 0 } };
}

/**
 * A failure after the stream began: the OpenAI error object, in a chunk that also has a choice
 * with `finish_reason: "error"`. The `openai` clients raise the error; an edge gateway that
 * relays only chunks with `choices` or `usage` (one-api, new-api) passes it on instead of
 * dropping it, so its client sees the failure rather than a clean-looking end. It carries the
 * usage of the run's finished model calls when there were any: a gateway bills what was spent
 * instead of counting the streamed text itself.
 */
export function errorChunk(ctx: ChunkContext, error: Pick<WireError, 'message' | 'type' | 'code' | 'param'>, usage?: Usage) {
  return { ...chunk(ctx, {}, 'error', usage), ...errorBody(error) };
}

/** Progress text for a run event that is not model output; null when there is nothing to show. */
export function progressText(e: RunEvent): string | null {
  switch (e.t) {
    case 'tool_started':
      return `\n▶ ${e.server}/${e.tool} ${truncate(e.arguments, 200)}\n`;
    case 'tool_finished':
      return `${e.isError ? '✗' : '✓'} ${e.server}/${e.tool} ${e.isError ? 'failed' : 'done'} in ${e.ms} ms\n`;
    case 'approval_required':
      return `\n⏸ approval needed: ${e.server}/${e.tool} ${truncate(e.arguments, 200)} (approval id ${e.approvalId})\n`;
    case 'approval_decided':
      return `${e.approve ? '✓ approved' : '✗ denied'} ${e.approvalId}${e.by === 'timeout' ? ' (timed out)' : ''}${e.reason ? `: ${e.reason}` : ''}\n`;
    case 'compensation':
      return `↺ undo ${e.server}/${e.tool} ${e.ok ? 'done' : `failed: ${truncate(e.detail, 200)}`}\n`;
    case 'retry':
      return `\n↻ upstream attempt ${e.attempt} (${e.reason === 'continue' ? 'continuing' : 'restarting'} this step)\n`;
    default:
      return null;
  }
}

function truncate(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

/** The `delta` objects an event contributes to the client's stream. */
export function eventDeltas(e: RunEvent, progress: ProgressMode): Array<{ seq: number; delta: Delta }> {
  if (e.t === 'deltas') return e.d.map((item, i) => ({ seq: e.seq0 + i, delta: deltaOf(item) }));
  const text = progress === 'none' ? null : progressText(e);
  if (!text) return [];
  return [{ seq: e.seq, delta: progress === 'content' ? { content: text } : { reasoning_content: text } }];
}

export function completionBody(r: ChatCompletionResult) {
  const message: AssistantMessage = { ...r.message };
  return {
    id: r.id,
    object: 'chat.completion' as const,
    created: r.created,
    model: r.model,
    choices: [{ index: 0, message: { ...message, refusal: message.refusal ?? null }, finish_reason: r.finishReason, logprobs: null }],
    usage: wireUsage(r.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }),
  };
}
