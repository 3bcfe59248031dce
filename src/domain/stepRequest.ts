/**
 * The request of one model step, built in one place: by the workflow for every step, and by the
 * API when it prestarts a run's first model call, so the activity can tell the two are the same
 * call (see activities/modelSteps) before it adopts the prestarted one.
 */
import type { ChatMessage, Usage } from './chat';
import type { CallModelInput, ChatCompletionInput } from './run';

export interface StepState {
  step: number;
  messages: ChatMessage[];
  /** Client tools, then the run's MCP tools in OpenAI form. */
  tools: unknown[];
  serverTools: string[];
  contentSoFar: string;
  usageSoFar?: Usage;
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
  };
}

/** The first step of a run without server-side tools: fully known before the run starts. */
export function firstStepRequest(runId: string, input: ChatCompletionInput): CallModelInput | null {
  if ((input.mcpServers ?? []).length > 0) return null;
  const tools = Array.isArray(input.body.tools) ? (input.body.tools as unknown[]) : [];
  return stepRequest(runId, input, { step: 0, messages: (input.body.messages as ChatMessage[]) ?? [], tools, serverTools: [], contentSoFar: '' });
}
