/**
 * One model step's request and the end it makes, each built in one place. The request: by the
 * workflow for every step, and by the API when it prestarts a run's first model call, so the
 * activity can tell the two are the same call (see activities/modelSteps) before it adopts the
 * prestarted one. The end: by the workflow, and by the model call itself, which announces it to
 * the readers of its process before the workflow's next task records the same event.
 */
import { addUsage, clientReply, type ChatMessage, type Usage } from './chat';
import type { EndEvent } from './events';
import type { CallModelInput, CallModelResult, ChatCompletionInput, StoredResponse } from './run';

export interface StepState {
  step: number;
  messages: ChatMessage[];
  /** Client tools, then the run's MCP tools in OpenAI form. */
  tools: unknown[];
  serverTools: string[];
  contentSoFar: string;
  usageSoFar?: Usage;
  /** The previous step's (or session turn's) stored upstream response. */
  from?: StoredResponse;
}

export function stepRequest(runId: string, input: ChatCompletionInput, s: StepState): CallModelInput {
  return {
    runId,
    step: s.step,
    upstream: input.route.upstream,
    body: { ...input.body, model: input.route.upstreamModel, messages: s.messages, ...(s.tools.length > 0 ? { tools: s.tools } : {}) },
    continuation: input.route.continuation,
    serverTools: s.serverTools,
    runScopedCallIds: (input.mcpServers ?? []).length > 0,
    contentSoFar: s.contentSoFar,
    ...(s.usageSoFar ? { usageSoFar: s.usageSoFar } : {}),
    ...(input.route.fallbacks?.length ? { fallbacks: input.route.fallbacks } : {}),
    ...(input.route.contextTokens ? { contextTokens: input.route.contextTokens, trim: input.route.trim !== false } : {}),
    ...(input.route.toolSelection?.strategy === 'rank' && s.serverTools.length > 0 ? { toolSelection: input.route.toolSelection } : {}),
    ...(input.route.toolInstruction && s.serverTools.length > 0 ? { toolInstruction: input.route.toolInstruction } : {}),
    ...(s.from ? { from: s.from } : {}),
  };
}

/** The first step of a run without server-side tools: fully known before the run starts. */
export function firstStepRequest(runId: string, input: ChatCompletionInput): CallModelInput | null {
  if ((input.mcpServers ?? []).length > 0) return null;
  const tools = Array.isArray(input.body.tools) ? (input.body.tools as unknown[]) : [];
  return stepRequest(runId, input, { step: 0, messages: (input.body.messages as ChatMessage[]) ?? [], tools, serverTools: [], contentSoFar: '' });
}

/** The `end` of a run whose last model step returned `r` without tool calls. */
export function stepEnd(call: Pick<CallModelInput, 'step' | 'contentSoFar' | 'usageSoFar'>, r: Pick<CallModelResult, 'message' | 'finishReason' | 'usage' | 'nextSeq'>): EndEvent {
  const message = clientReply(r.message, (call.contentSoFar ?? '') + (r.message.content ?? ''), r.message.tool_calls);
  return { t: 'end', step: call.step, seq: r.nextSeq, finishReason: r.finishReason, usage: addUsage(call.usageSoFar, r.usage), message };
}
