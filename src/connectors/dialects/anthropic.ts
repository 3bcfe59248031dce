/**
 * `anthropic-messages`: Anthropic's Messages API (`POST /v1/messages`, streamed). System and
 * developer messages become `system`; tool results become `tool_result` blocks of a user turn
 * (consecutive same-role turns merge, as the API wants them alternating); images become `image`
 * blocks. The stream's `tool_use` blocks become tool-call deltas (index = the call's place among
 * the message's calls; id and name on the first), `thinking` becomes `reasoning_content`, and each
 * thinking block, once complete with its signature (or a `redacted_thinking` block), one entry of
 * the message's `reasoning_details`, sent back as that block at the start of the turn on the next
 * step (with thinking on, Anthropic refuses a tool-use turn without it).
 *
 * Prompt caching (`cachePrompts`, on by default here): breakpoints on the last tool, the last
 * system block and the last block of the conversation, so the next step of a tool loop, or the
 * next turn of a session, reads the whole earlier prefix from the cache instead of paying for it.
 */
import type {
  ContentBlockParam,
  MessageCreateParamsStreaming,
  MessageParam,
  RawMessageStreamEvent,
  TextBlockParam,
  Tool,
  ToolChoice,
} from '@anthropic-ai/sdk/resources/messages';
import type { UpstreamConfig } from '../../config/schema';
import type { ReasoningDetail, ToolCallDelta } from '../../domain/chat';
import {
  argsObject,
  chunkOf,
  contentParts,
  contentText,
  isInstruction,
  maxOutput,
  parseJson,
  stopList,
  StreamFailure,
  usageOf,
  type ChatBody,
  type ChatChunk,
  type Dialect,
  type StreamDecoder,
  type WireFailure,
} from './dialect';

/** Anthropic requires `max_tokens`; this is sent when the client set none. */
export const ANTHROPIC_DEFAULT_MAX_TOKENS = 4096;
const THINKING_BUDGET: Record<string, number> = { low: 1024, medium: 4096, high: 16384 };
const EPHEMERAL = { type: 'ephemeral' } as const;

/** Anthropic's error types and the HTTP status each comes with (for errors reported mid-stream). */
const ERROR_STATUS: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

const FINISH: Record<string, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
};

function blocks(content: unknown): ContentBlockParam[] {
  return contentParts(content).map((p): ContentBlockParam => {
    if (p.kind === 'text') return { type: 'text', text: p.text };
    if (p.data !== undefined) return { type: 'image', source: { type: 'base64', media_type: p.mediaType as 'image/png', data: p.data } };
    return { type: 'image', source: { type: 'url', url: p.url } };
  });
}

/** `reasoning_details[].format` of what this dialect makes (OpenRouter's name for Claude's). */
export const ANTHROPIC_REASONING_FORMAT = 'anthropic-claude-v1';

function thinkingBlocks(details: unknown): ContentBlockParam[] {
  if (!Array.isArray(details)) return [];
  return (details as ReasoningDetail[])
    .filter((d) => d?.format === ANTHROPIC_REASONING_FORMAT)
    .sort((a, b) => a.index - b.index)
    .flatMap((d): ContentBlockParam[] => {
      if (d.type === 'reasoning.encrypted' && typeof d.data === 'string') return [{ type: 'redacted_thinking', data: d.data }];
      if (d.type === 'reasoning.text' && typeof d.text === 'string' && typeof d.signature === 'string') return [{ type: 'thinking', thinking: d.text, signature: d.signature }];
      return [];
    });
}

function turns(body: ChatBody): MessageParam[] {
  const out: MessageParam[] = [];
  const push = (role: 'user' | 'assistant', content: ContentBlockParam[]) => {
    if (content.length === 0) return;
    const last = out[out.length - 1];
    if (last && last.role === role) (last.content as ContentBlockParam[]).push(...content);
    else out.push({ role, content });
  };
  for (const m of body.messages) {
    if (isInstruction(m)) continue;
    if (m.role === 'tool') {
      push('user', [{ type: 'tool_result', tool_use_id: m.tool_call_id ?? '', content: contentText(m.content) }]);
    } else if (m.role === 'assistant') {
      // A prefill may not end in white space (the API refuses it).
      const text = m.prefix ? contentText(m.content).trimEnd() : contentText(m.content);
      // The turn's thinking first, as Anthropic returned it (with thinking on, a turn with tool
      // calls must start so, its signature intact).
      const content: ContentBlockParam[] = thinkingBlocks(m.reasoning_details);
      if (text) content.push({ type: 'text', text });
      for (const c of m.tool_calls ?? []) content.push({ type: 'tool_use', id: c.id, name: c.function.name, input: argsObject(c.function.arguments) });
      push('assistant', content);
    } else {
      push('user', blocks(m.content));
    }
  }
  return out;
}

function toolChoice(body: ChatBody): ToolChoice | undefined {
  const c = body.tool_choice;
  const noParallel = body.parallel_tool_calls === false ? { disable_parallel_tool_use: true } : {};
  if (c === 'none') return { type: 'none' };
  if (c === 'required') return { type: 'any', ...noParallel };
  const named = (c as { function?: { name?: unknown } } | undefined)?.function?.name;
  if (typeof named === 'string') return { type: 'tool', name: named, ...noParallel };
  return body.parallel_tool_calls === false ? { type: 'auto', ...noParallel } : undefined;
}

/** Marks the last block of `content` as a cache breakpoint. */
function markLast(content: readonly object[]): void {
  const last = content[content.length - 1] as { cache_control?: unknown } | undefined;
  if (last) last.cache_control = EPHEMERAL;
}

export function anthropicRequest(body: ChatBody, cfg: UpstreamConfig): MessageCreateParamsStreaming {
  const system: TextBlockParam[] = body.messages.filter(isInstruction).map((m) => ({ type: 'text', text: contentText(m.content) }));
  const messages = turns(body);
  const tools: Tool[] | undefined = body.tools?.length
    ? body.tools.map((t) => ({
        name: t.function!.name,
        ...(t.function!.description ? { description: t.function!.description } : {}),
        input_schema: (t.function!.parameters ?? { type: 'object', properties: {} }) as Tool['input_schema'],
      }))
    : undefined;
  if (cfg.cachePrompts) {
    if (tools) markLast(tools);
    markLast(system);
    const last = messages[messages.length - 1];
    if (last && Array.isArray(last.content)) markLast(last.content);
  }
  let maxTokens = maxOutput(body) ?? ANTHROPIC_DEFAULT_MAX_TOKENS;
  const budget = body.reasoning_effort ? THINKING_BUDGET[body.reasoning_effort] : undefined;
  if (budget) maxTokens += budget;
  const choice = toolChoice(body);
  const stop = stopList(body.stop);
  return {
    model: body.model,
    max_tokens: maxTokens,
    messages,
    stream: true,
    ...(system.length ? { system } : {}),
    // With `none` the tools still go: earlier `tool_use` blocks need their definitions.
    ...(tools ? { tools } : {}),
    ...(choice && tools ? { tool_choice: choice } : {}),
    ...(budget ? { thinking: { type: 'enabled', budget_tokens: budget } } : {}),
    // Anthropic refuses temperature with thinking on.
    ...(body.temperature !== undefined && !budget ? { temperature: Math.min(1, body.temperature) } : {}),
    ...(body.top_p !== undefined && !budget ? { top_p: body.top_p } : {}),
    ...(stop ? { stop_sequences: stop } : {}),
    ...(body.user ? { metadata: { user_id: body.user } } : {}),
  };
}

function failureOf(err: { type?: string; message?: string } | undefined, status?: number): WireFailure {
  // Anthropic's error types share OpenAI's names for client errors; the codes are left to the
  // classifier (`upstream_529`, `rate_limit_exceeded`, …) so every dialect's failures read alike.
  const type = err?.type ?? 'api_error';
  return { status: status ?? ERROR_STATUS[type] ?? 500, message: `${type}: ${err?.message ?? type}`, type, code: null, param: null };
}

class AnthropicDecoder implements StreamDecoder {
  done = false;
  private id = '';
  private model = '';
  /** Content block index → tool-call index, for `tool_use` blocks; and whether a block streamed arguments. */
  private readonly tools = new Map<number, { index: number; args: boolean }>();
  /** Content block index → the thinking block so far (sent whole, signed, when it stops). */
  private readonly thinking = new Map<number, { text: string; signature: string }>();
  private details = 0;
  private input = { tokens: 0, cacheRead: 0, cacheWrite: 0 };

  event(name: string | undefined, data: string): ChatChunk[] {
    const e = parseJson<RawMessageStreamEvent | { type: 'ping' } | { type: 'error'; error?: { type?: string; message?: string } }>(data);
    switch (e.type) {
      case 'message_start': {
        this.id = e.message.id;
        this.model = e.message.model;
        const u = e.message.usage;
        this.input = { tokens: u.input_tokens ?? 0, cacheRead: u.cache_read_input_tokens ?? 0, cacheWrite: u.cache_creation_input_tokens ?? 0 };
        return [{ id: this.id, model: this.model, choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] }];
      }
      case 'content_block_start': {
        const b = e.content_block;
        if (b.type === 'tool_use' || b.type === 'server_tool_use') {
          const index = this.tools.size;
          this.tools.set(e.index, { index, args: false });
          return [chunkOf({ tool_calls: [{ index, id: b.id, type: 'function', function: { name: b.name, arguments: '' } }] })];
        }
        if (b.type === 'text' && b.text) return [chunkOf({ content: b.text })];
        if (b.type === 'thinking') {
          this.thinking.set(e.index, { text: b.thinking ?? '', signature: b.signature ?? '' });
          return b.thinking ? [chunkOf({ reasoning_content: b.thinking })] : [];
        }
        if (b.type === 'redacted_thinking') return [chunkOf({ reasoning_details: [{ type: 'reasoning.encrypted', data: b.data, format: ANTHROPIC_REASONING_FORMAT, index: this.details++ }] })];
        return [];
      }
      case 'content_block_delta': {
        const d = e.delta;
        if (d.type === 'text_delta') return d.text ? [chunkOf({ content: d.text })] : [];
        if (d.type === 'thinking_delta') {
          const t = this.thinking.get(e.index);
          if (t) t.text += d.thinking ?? '';
          return d.thinking ? [chunkOf({ reasoning_content: d.thinking })] : [];
        }
        if (d.type === 'signature_delta') {
          const t = this.thinking.get(e.index);
          if (t) t.signature += d.signature ?? '';
          return [];
        }
        if (d.type === 'input_json_delta') {
          const t = this.tools.get(e.index);
          if (!t || !d.partial_json) return [];
          t.args = true;
          return [chunkOf({ tool_calls: [{ index: t.index, function: { arguments: d.partial_json } }] })];
        }
        return [];
      }
      case 'content_block_stop': {
        const th = this.thinking.get(e.index);
        if (th) {
          this.thinking.delete(e.index);
          return th.signature ? [chunkOf({ reasoning_details: [{ type: 'reasoning.text', text: th.text, signature: th.signature, format: ANTHROPIC_REASONING_FORMAT, index: this.details++ }] })] : [];
        }
        // A call without arguments streams none: its arguments are the empty object.
        const t = this.tools.get(e.index);
        if (!t || t.args) return [];
        const delta: ToolCallDelta = { index: t.index, function: { arguments: '{}' } };
        return [chunkOf({ tool_calls: [delta] })];
      }
      case 'message_delta': {
        const u = e.usage;
        // Newer API versions repeat the input counts here; either way they are the totals.
        const tokens = u.input_tokens ?? this.input.tokens;
        const cacheRead = u.cache_read_input_tokens ?? this.input.cacheRead;
        const cacheWrite = u.cache_creation_input_tokens ?? this.input.cacheWrite;
        const finish = e.delta.stop_reason ? (FINISH[e.delta.stop_reason] ?? 'stop') : null;
        return [{ choices: [{ index: 0, delta: {}, finish_reason: finish }], usage: usageOf(tokens + cacheRead + cacheWrite, u.output_tokens ?? 0, { cached: cacheRead }) }];
      }
      case 'message_stop':
        this.done = true;
        return [];
      case 'error':
        throw new StreamFailure(failureOf(e.error));
      default:
        void name;
        return [];
    }
  }
}

export const anthropicMessages: Dialect = {
  request: (body, cfg) => ({
    path: '/v1/messages',
    headers: { 'anthropic-version': '2023-06-01', ...(cfg.apiKey ? { 'x-api-key': cfg.apiKey } : {}) },
    body: anthropicRequest(body, cfg),
  }),
  decoder: () => new AnthropicDecoder(),
  failure(status, text) {
    try {
      const j = JSON.parse(text) as { error?: { type?: string; message?: string } };
      if (j.error) return failureOf(j.error, status);
    } catch {
      // not JSON: the text itself
    }
    return { status, message: text.slice(0, 500) || `upstream returned HTTP ${status}`, type: null, code: null, param: null };
  },
};
