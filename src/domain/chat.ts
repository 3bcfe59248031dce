/**
 * OpenAI Chat Completions shapes mix2api produces and consumes internally, and the pure
 * accumulator that folds streamed deltas into one assistant message.
 */

export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/**
 * An upstream's opaque reasoning state, carried on the assistant message so the next step (or a
 * client that returns the message) sends it back in the upstream's own form. The shape is
 * OpenRouter's `reasoning_details`: `format` names the dialect that made it and alone may read it.
 */
export type ReasoningDetail =
  | { type: 'reasoning.text'; text: string; signature?: string; format: string; index: number }
  /** `id`: the tool call it belongs to, when it is one call's (Gemini's thought signatures). */
  | { type: 'reasoning.encrypted'; data: string; format: string; index: number; id?: string };

export interface AssistantMessage {
  role: 'assistant';
  content: string | null;
  reasoning_content?: string;
  reasoning_details?: ReasoningDetail[];
  tool_calls?: ToolCall[];
  refusal?: string | null;
}

export type ChatMessage = { role: string; content?: unknown; [k: string]: unknown };

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** The upstream's own reasoning count, when it reports one. */
  completion_tokens_details?: { reasoning_tokens?: number };
  /** Prompt tokens read from the upstream's prompt cache (included in `prompt_tokens`). */
  prompt_tokens_details?: { cached_tokens?: number };
}

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

/** One streamed delta, as in `choices[0].delta` of a `chat.completion.chunk` (role left out). */
export interface Delta {
  content?: string;
  reasoning_content?: string;
  /** Whole entries (a dialect sends each once it is complete, signature included). */
  reasoning_details?: ReasoningDetail[];
  refusal?: string;
  tool_calls?: ToolCallDelta[];
}

export function addUsage(a: Usage | undefined, b: Usage | undefined): Usage | undefined {
  if (!a) return b;
  if (!b) return a;
  const ra = a.completion_tokens_details?.reasoning_tokens;
  const rb = b.completion_tokens_details?.reasoning_tokens;
  const ca = a.prompt_tokens_details?.cached_tokens;
  const cb = b.prompt_tokens_details?.cached_tokens;
  return {
    prompt_tokens: a.prompt_tokens + b.prompt_tokens,
    completion_tokens: a.completion_tokens + b.completion_tokens,
    total_tokens: a.total_tokens + b.total_tokens,
    ...(ca !== undefined || cb !== undefined ? { prompt_tokens_details: { cached_tokens: (ca ?? 0) + (cb ?? 0) } } : {}),
    ...(ra !== undefined || rb !== undefined ? { completion_tokens_details: { reasoning_tokens: (ra ?? 0) + (rb ?? 0) } } : {}),
  };
}

/** Folds deltas into a message the way OpenAI's own SDK does: tool calls keyed by `index`. */
export class MessageAccumulator {
  private content = '';
  private reasoning = '';
  private readonly details: ReasoningDetail[] = [];
  private refusal = '';
  private sawContent = false;
  private readonly calls = new Map<number, ToolCall>();

  add(d: Delta): void {
    if (typeof d.content === 'string') {
      this.content += d.content;
      this.sawContent = true;
    }
    if (typeof d.reasoning_content === 'string') this.reasoning += d.reasoning_content;
    if (Array.isArray(d.reasoning_details)) this.details.push(...d.reasoning_details);
    if (typeof d.refusal === 'string') this.refusal += d.refusal;
    for (const tc of d.tool_calls ?? []) {
      const cur = this.calls.get(tc.index) ?? { id: '', type: 'function' as const, function: { name: '', arguments: '' } };
      if (tc.id) cur.id = tc.id;
      if (tc.function?.name) cur.function.name += tc.function.name;
      if (tc.function?.arguments) cur.function.arguments += tc.function.arguments;
      this.calls.set(tc.index, cur);
    }
  }

  get contentSoFar(): string {
    return this.content;
  }

  message(): AssistantMessage {
    const msg: AssistantMessage = { role: 'assistant', content: this.sawContent || this.calls.size === 0 ? this.content : null };
    if (this.reasoning) msg.reasoning_content = this.reasoning;
    if (this.details.length > 0) msg.reasoning_details = [...this.details];
    if (this.refusal) msg.refusal = this.refusal;
    if (this.calls.size > 0) msg.tool_calls = [...this.calls.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c);
    return msg;
  }
}

/** The one assistant message a client sees for a run: all steps' content, and its own calls. */
export function clientReply(step: AssistantMessage, content: string, toolCalls?: ToolCall[]): AssistantMessage {
  return { ...step, content: content === '' && toolCalls?.length ? null : content, tool_calls: toolCalls };
}
