/**
 * The context window guard: a request whose size in tokens is over its model's `contextTokens`
 * loses its oldest turns until it fits. What is never dropped: system and developer messages,
 * the last user message (the question being answered) and the last turn (with the calls and
 * results it belongs to). An
 * assistant message with `tool_calls` and the `tool` results answering it go or stay together,
 * since an upstream refuses a result without its call and a call without its result.
 *
 * Tokens are what the caller's counter says (./tokens): counted with the model's own encoding
 * for OpenAI's models, else estimated as UTF-8 JSON bytes / 4, which is also the default here.
 * The output cap the client asked for (`max_completion_tokens`/`max_tokens`) counts against the
 * window too, as OpenAI counts it.
 */
import type { ChatMessage } from './chat';
import { estimateCounter, type TokenCounter } from './tokens';

export { estimateTokens } from './tokens';

export interface Fitted {
  messages: ChatMessage[];
  /** How many messages were left out. */
  dropped: number;
  /** The count (or estimate) of what is sent. */
  tokens: number;
}

/** Groups of indexes that go or stay together: a turn is one message, or a call with its results. */
function groups(messages: ChatMessage[]): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const last = out[out.length - 1];
    // A tool result joins the group of the call before it (and any results between).
    if (m.role === 'tool' && last && last.length > 0 && (messages[last[0]!]!.role === 'assistant' || messages[last[0]!]!.role === 'tool')) last.push(i);
    else out.push([i]);
  }
  return out;
}

/**
 * `messages` trimmed to fit `limit` tokens together with `fixed` (tools, the output cap), or null
 * when even the messages that are never dropped are over it.
 */
export function fitToWindow(messages: ChatMessage[], limit: number, fixed = 0, counter: TokenCounter = estimateCounter): Fitted | null {
  const sizes = messages.map((m) => counter.count(m));
  let total = fixed + sizes.reduce((a, b) => a + b, 0);
  if (total <= limit) return { messages, dropped: 0, tokens: total };
  const keep = new Array<boolean>(messages.length).fill(true);
  const gs = groups(messages);
  let lastUser = -1;
  messages.forEach((m, i) => void (m.role === 'user' && (lastUser = i)));
  // Instructions, the last user message and the last group stay; the rest go oldest first.
  // Once something went, the kept turns still start with a user message (Anthropic and Gemini
  // want that): trimming goes on past the fit up to the next user message.
  for (const g of gs.slice(0, -1)) {
    const role = messages[g[0]!]!.role;
    if (g.length === 1 && (role === 'system' || role === 'developer')) continue;
    if (g[0] === lastUser || (total <= limit && role === 'user')) break;
    for (const i of g) {
      keep[i] = false;
      total -= sizes[i]!;
    }
  }
  if (total > limit) return null;
  const kept = messages.filter((_, i) => keep[i]);
  return { messages: kept, dropped: messages.length - kept.length, tokens: total };
}

/** The window's fixed costs: the tools sent with every step and the output cap asked for. */
export function fixedCost(body: { tools?: unknown; max_tokens?: unknown; max_completion_tokens?: unknown }, tools?: unknown[], counter: TokenCounter = estimateCounter): number {
  const cap = typeof body.max_completion_tokens === 'number' ? body.max_completion_tokens : typeof body.max_tokens === 'number' ? body.max_tokens : 0;
  const t = tools ?? (Array.isArray(body.tools) ? body.tools : []);
  return cap + (t.length ? counter.count(t) : 0);
}

export function contextLengthMessage(tokens: number, limit: number, trimmed: boolean, method: TokenCounter['method'] = 'estimate'): string {
  const how = method === 'estimate' ? 'estimated: UTF-8 bytes / 4' : `counted with ${method}`;
  return `This model's maximum context length is ${limit} tokens, and this request needs about ${tokens} (${how}, with the output cap and tools)${trimmed ? ', more than fits even with every older turn left out' : ''}. Shorten the messages or lower max_completion_tokens.`;
}
