// The scripted upstream's other dialects: the same scripts rendered as Anthropic Messages,
// Gemini streamGenerateContent and OpenAI Responses streams and error bodies, event for event
// as those APIs send them (checked by each vendor's own SDK in test/unit/scriptedDialects.test.ts).
import { createHash, randomUUID } from 'node:crypto';

type Json = Record<string, unknown>;
export type DialectName = 'anthropic' | 'gemini' | 'responses';

/** One streamed piece of a script, in Chat Completions form (what `plan` in ./scriptedUpstream makes). */
export interface PlannedDelta {
  delta: Json;
  delayMs: number;
}

/** One server-sent event to write: its `event:` name (if the dialect names events) and data. */
export interface Frame {
  event?: string;
  data: Json;
  delayMs: number;
}

export interface Rendered {
  frames: Frame[];
  /** A failure event to send after the frames (`streamError`). */
  failure?: Frame;
}

const hex = (n: number): string => randomUUID().replace(/-/g, '').slice(0, n);
const tokens = (v: unknown): number => Math.ceil(JSON.stringify(v ?? '').length / 4);

/** The request's conversation, as each dialect carries it (what prompt tokens are counted from). */
function promptOf(dialect: DialectName, body: Json): unknown[] {
  if (dialect === 'anthropic') return [body.system, body.tools, body.messages];
  if (dialect === 'gemini') return [body.systemInstruction, body.tools, body.contents];
  return [body.instructions, body.tools, body.input];
}

/**
 * Anthropic's prompt cache, as its docs describe it: a request's prefix up to a `cache_control`
 * breakpoint is written to the cache; a later request whose prefix up to one of its breakpoints
 * (or up to 20 blocks before one) matches a written one reads it. Prefixes are keyed by a hash
 * of their JSON.
 */
export class PromptCache {
  private readonly written = new Set<string>();

  /** Input tokens split as Anthropic reports them: uncached, read from the cache, written to it. */
  account(body: Json): { input: number; read: number; write: number } {
    const blocks: unknown[] = [];
    const marks: number[] = [];
    const add = (b: unknown) => {
      blocks.push(b);
      if ((b as { cache_control?: unknown })?.cache_control) marks.push(blocks.length);
    };
    for (const t of (body.tools as unknown[]) ?? []) add(t);
    for (const s of Array.isArray(body.system) ? body.system : body.system ? [body.system] : []) add(s);
    for (const m of (body.messages as Array<{ role: string; content: unknown }>) ?? []) {
      if (typeof m.content === 'string') add({ role: m.role, text: m.content });
      else for (const b of m.content as unknown[]) add({ role: m.role, ...(b as Json) });
    }
    const strip = (b: unknown) => {
      const { cache_control: _c, ...rest } = b as Json;
      return rest;
    };
    const key = (n: number) => createHash('sha256').update(JSON.stringify(blocks.slice(0, n).map(strip))).digest('hex');
    const total = tokens(blocks.map(strip));
    const sizeOf = (n: number) => tokens(blocks.slice(0, n).map(strip));
    // A breakpoint also hits a prefix written up to 20 blocks before it (Anthropic's lookback).
    let read = 0;
    search: for (const m of [...marks].reverse()) {
      for (let n = m; n >= Math.max(1, m - 20); n--) {
        if (this.written.has(key(n))) {
          read = sizeOf(n);
          break search;
        }
      }
    }
    const last = marks[marks.length - 1];
    let write = 0;
    if (last !== undefined && !this.written.has(key(last))) {
      write = Math.max(0, sizeOf(last) - read);
      for (const n of marks) this.written.add(key(n));
    }
    return { input: Math.max(0, total - read - write), read, write };
  }
}

interface Call {
  id: string;
  name: string;
  args: string;
}

/** Each delta's kind, and calls assembled whole (Gemini sends calls in one piece). */
function calls(deltas: PlannedDelta[]): Call[] {
  const out: Call[] = [];
  for (const { delta } of deltas) {
    for (const tc of (delta.tool_calls as Array<{ index: number; id?: string; function: { name?: string; arguments?: string } }>) ?? []) {
      if (tc.id) out[tc.index] = { id: tc.id, name: tc.function.name ?? '', args: '' };
      else out[tc.index]!.args += tc.function.arguments ?? '';
    }
  }
  return out;
}

/**
 * The signature of a thinking block: bound to its text, as Anthropic's is (opaque to clients; the
 * API refuses a block whose text or signature was altered).
 */
export const anthropicSignature = (thinking: string): string => `sig_${createHash('sha256').update(`scripted thinking\0${thinking}`).digest('base64')}`;

/**
 * What Anthropic answers (400 invalid_request_error) to a request with thinking on whose tool-use
 * turns lost their thinking: the last assistant turn with tool calls must start with a thinking
 * (or redacted_thinking) block, and every thinking block's signature must match its text. Null
 * when the request is fine.
 */
export function anthropicThinkingError(body: Json): string | null {
  if ((body.thinking as { type?: string } | undefined)?.type !== 'enabled') return null;
  const messages = (body.messages ?? []) as Array<{ role: string; content: unknown }>;
  let lastToolTurn = -1;
  for (const [i, m] of messages.entries()) {
    if (m.role !== 'assistant' || !Array.isArray(m.content)) continue;
    const blocks = m.content as Array<{ type: string; thinking?: string; signature?: string }>;
    for (const [j, b] of blocks.entries()) if (b.type === 'thinking' && b.signature !== anthropicSignature(b.thinking ?? '')) return `messages.${i}.content.${j}: Invalid \`signature\` in \`thinking\` block`;
    if (blocks.some((b) => b.type === 'tool_use')) lastToolTurn = i;
  }
  if (lastToolTurn < 0) return null;
  const first = (messages[lastToolTurn]!.content as Array<{ type: string }>)[0]!;
  if (first.type === 'thinking' || first.type === 'redacted_thinking') return null;
  return `messages.${lastToolTurn}.content.0.type: Expected \`thinking\` or \`redacted_thinking\`, but found \`${first.type}\`. When \`thinking\` is enabled, a final \`assistant\` message must start with a thinking block (preceeding the lastmost set of \`tool_use\` and \`tool_result\` blocks).`;
}

/** A Gemini 3 thought signature for a function call (opaque; Google wants it back on that call's part). */
export const geminiSignature = (name: string, args: string): string => createHash('sha256').update(`scripted thought\0${name}\0${args || '{}'}`).digest('base64');

const ANTHROPIC_STOP: Record<string, string> = { tool_calls: 'tool_use', length: 'max_tokens', stop: 'end_turn', content_filter: 'refusal' };

export function renderAnthropic(deltas: PlannedDelta[], o: { model: string; finishReason: string; input: { input: number; read: number; write: number }; output: number }): Frame[] {
  const frames: Frame[] = [];
  const emit = (type: string, data: Json, delayMs = 0) => frames.push({ event: type, data: { type, ...data }, delayMs });
  emit('message_start', {
    message: {
      id: `msg_${hex(24)}`,
      type: 'message',
      role: 'assistant',
      model: o.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: o.input.input, cache_read_input_tokens: o.input.read, cache_creation_input_tokens: o.input.write, output_tokens: 1 },
    },
  });
  let block = -1;
  let open: string | null = null;
  let thinking = '';
  const close = () => {
    if (open === 'thinking') emit('content_block_delta', { index: block, delta: { type: 'signature_delta', signature: anthropicSignature(thinking) } });
    if (open) emit('content_block_stop', { index: block });
    open = null;
  };
  const start = (kind: string, content_block: Json, delayMs: number) => {
    close();
    block++;
    open = kind;
    emit('content_block_start', { index: block, content_block }, delayMs);
  };
  for (const { delta, delayMs } of deltas) {
    if (typeof delta.content === 'string') {
      if (open !== 'text') start('text', { type: 'text', text: '' }, delayMs);
      emit('content_block_delta', { index: block, delta: { type: 'text_delta', text: delta.content } }, open === 'text' ? delayMs : 0);
    } else if (typeof delta.reasoning_content === 'string') {
      if (open !== 'thinking') {
        start('thinking', { type: 'thinking', thinking: '', signature: '' }, delayMs);
        thinking = '';
      }
      thinking += delta.reasoning_content;
      emit('content_block_delta', { index: block, delta: { type: 'thinking_delta', thinking: delta.reasoning_content } });
    } else {
      for (const tc of delta.tool_calls as Array<{ id?: string; function: { name?: string; arguments?: string } }>) {
        if (tc.id) start('tool', { type: 'tool_use', id: tc.id.startsWith('toolu_') ? tc.id : `toolu_${tc.id.replace(/^call_/, '')}`, name: tc.function.name, input: {} }, delayMs);
        else emit('content_block_delta', { index: block, delta: { type: 'input_json_delta', partial_json: tc.function.arguments ?? '' } }, delayMs);
      }
    }
  }
  close();
  emit('message_delta', { delta: { stop_reason: ANTHROPIC_STOP[o.finishReason] ?? 'end_turn', stop_sequence: null }, usage: { output_tokens: o.output } });
  emit('message_stop', {});
  return frames;
}

const GEMINI_FINISH: Record<string, string> = { length: 'MAX_TOKENS', content_filter: 'SAFETY' };

export function renderGemini(deltas: PlannedDelta[], o: { model: string; finishReason: string; input: number; output: number }): Frame[] {
  const frames: Frame[] = [];
  const responseId = hex(20);
  const chunk = (parts: Json[], delayMs: number, extra: Json = {}) =>
    frames.push({ delayMs, data: { candidates: [{ content: { role: 'model', parts }, index: 0, ...extra }], modelVersion: o.model, responseId } });
  for (const { delta, delayMs } of deltas) {
    if (typeof delta.content === 'string') chunk([{ text: delta.content }], delayMs);
    else if (typeof delta.reasoning_content === 'string') chunk([{ text: delta.reasoning_content, thought: true }], delayMs);
  }
  const cs = calls(deltas);
  const last = {
    candidates: [{ content: { role: 'model', parts: cs.map((c) => ({ functionCall: { name: c.name, args: JSON.parse(c.args || '{}') as Json }, thoughtSignature: geminiSignature(c.name, c.args) })) }, finishReason: GEMINI_FINISH[o.finishReason] ?? 'STOP', index: 0 }],
    usageMetadata: { promptTokenCount: o.input, candidatesTokenCount: o.output, totalTokenCount: o.input + o.output },
    modelVersion: o.model,
    responseId,
  };
  if (cs.length === 0) (last.candidates[0]!.content as { parts: unknown[] }).parts = [{ text: '' }];
  frames.push({ data: last, delayMs: 0 });
  return frames;
}

/** What a stored response holds, for `previous_response_id`: its id and the items of its context. */
export interface StoredResponse {
  id: string;
  items: unknown[];
}

export function renderResponses(
  deltas: PlannedDelta[],
  o: { model: string; finishReason: string; input: number; cached: number; output: number; id: string; previous: string | null },
): { frames: Frame[]; output: Json[] } {
  const frames: Frame[] = [];
  let seq = 0;
  const emit = (type: string, data: Json, delayMs = 0) => frames.push({ event: type, data: { type, sequence_number: seq++, ...data }, delayMs });
  const response = (status: string, output: Json[], usage: Json | null) => ({
    id: o.id,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status,
    model: o.model,
    output,
    parallel_tool_calls: true,
    previous_response_id: o.previous,
    tool_choice: 'auto',
    tools: [],
    error: null,
    incomplete_details: o.finishReason === 'length' && status !== 'in_progress' ? { reason: 'max_output_tokens' } : null,
    usage,
  });
  const output: Json[] = [];
  const cur: { open: { kind: string; item: Json; index: number; text: string } | null } = { open: null };
  const close = () => {
    if (!cur.open) return;
    const { kind, item, index, text } = cur.open;
    if (kind === 'message') {
      const part = { type: 'output_text', text, annotations: [] };
      emit('response.output_text.done', { item_id: item.id, output_index: index, content_index: 0, text });
      emit('response.content_part.done', { item_id: item.id, output_index: index, content_index: 0, part });
      item.content = [part];
    } else if (kind === 'reasoning') {
      const part = { type: 'summary_text', text };
      emit('response.reasoning_summary_text.done', { item_id: item.id, output_index: index, summary_index: 0, text });
      emit('response.reasoning_summary_part.done', { item_id: item.id, output_index: index, summary_index: 0, part });
      item.summary = [part];
    } else {
      emit('response.function_call_arguments.done', { item_id: item.id, output_index: index, arguments: text });
      item.arguments = text;
    }
    item.status = 'completed';
    emit('response.output_item.done', { output_index: index, item });
    output.push(item);
    cur.open = null;
  };
  const start = (kind: string, item: Json, delayMs: number) => {
    close();
    const index = output.length;
    cur.open = { kind, item, index, text: '' };
    emit('response.output_item.added', { output_index: index, item: { ...item } }, delayMs);
    if (kind === 'message') emit('response.content_part.added', { item_id: item.id, output_index: index, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
    if (kind === 'reasoning') emit('response.reasoning_summary_part.added', { item_id: item.id, output_index: index, summary_index: 0, part: { type: 'summary_text', text: '' } });
  };
  emit('response.created', { response: response('in_progress', [], null) });
  emit('response.in_progress', { response: response('in_progress', [], null) });
  for (const { delta, delayMs } of deltas) {
    if (typeof delta.content === 'string') {
      const fresh = cur.open?.kind !== 'message';
      if (fresh) start('message', { id: `msg_${hex(24)}`, type: 'message', role: 'assistant', status: 'in_progress', content: [] }, delayMs);
      cur.open!.text += delta.content;
      emit('response.output_text.delta', { item_id: cur.open!.item.id, output_index: cur.open!.index, content_index: 0, delta: delta.content, logprobs: [] }, fresh ? 0 : delayMs);
    } else if (typeof delta.reasoning_content === 'string') {
      if (cur.open?.kind !== 'reasoning') start('reasoning', { id: `rs_${hex(24)}`, type: 'reasoning', summary: [] }, delayMs);
      cur.open!.text += delta.reasoning_content;
      emit('response.reasoning_summary_text.delta', { item_id: cur.open!.item.id, output_index: cur.open!.index, summary_index: 0, delta: delta.reasoning_content });
    } else {
      for (const tc of delta.tool_calls as Array<{ id?: string; function: { name?: string; arguments?: string } }>) {
        if (tc.id) start('call', { id: `fc_${hex(24)}`, type: 'function_call', call_id: tc.id, name: tc.function.name, arguments: '', status: 'in_progress' }, delayMs);
        else {
          cur.open!.text += tc.function.arguments ?? '';
          emit('response.function_call_arguments.delta', { item_id: cur.open!.item.id, output_index: cur.open!.index, delta: tc.function.arguments ?? '' }, delayMs);
        }
      }
    }
  }
  close();
  const usage = {
    input_tokens: o.input,
    input_tokens_details: { cached_tokens: o.cached },
    output_tokens: o.output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: o.input + o.output,
  };
  const done = o.finishReason === 'length' ? 'response.incomplete' : 'response.completed';
  emit(done, { response: response(o.finishReason === 'length' ? 'incomplete' : 'completed', output, usage) });
  return { frames, output };
}

/** HTTP faults as each dialect's error body says them. */
export function errorBodyOf(dialect: DialectName | 'openai', status: number, type: string, code: string | null, message: string): Json {
  if (dialect === 'anthropic') return { type: 'error', error: { type, message } };
  if (dialect === 'gemini') return { error: { code: status, message, status: type } };
  return { error: { message, type, param: null, code } };
}

/** Each fault's status and error type in each dialect. */
export const FAULTS: Record<string, Record<DialectName | 'openai', [status: number, type: string, code: string | null]>> = {
  http400: { openai: [400, 'invalid_request_error', null], anthropic: [400, 'invalid_request_error', null], gemini: [400, 'INVALID_ARGUMENT', null], responses: [400, 'invalid_request_error', null] },
  http401: { openai: [401, 'invalid_request_error', 'invalid_api_key'], anthropic: [401, 'authentication_error', null], gemini: [401, 'UNAUTHENTICATED', null], responses: [401, 'invalid_request_error', 'invalid_api_key'] },
  http403: { openai: [403, 'permission_error', null], anthropic: [403, 'permission_error', null], gemini: [403, 'PERMISSION_DENIED', null], responses: [403, 'permission_error', null] },
  http429: { openai: [429, 'requests', 'rate_limit_exceeded'], anthropic: [429, 'rate_limit_error', null], gemini: [429, 'RESOURCE_EXHAUSTED', null], responses: [429, 'requests', 'rate_limit_exceeded'] },
  http500: { openai: [500, 'server_error', null], anthropic: [500, 'api_error', null], gemini: [500, 'INTERNAL', null], responses: [500, 'server_error', null] },
  overloaded: { openai: [503, 'server_error', null], anthropic: [529, 'overloaded_error', null], gemini: [503, 'UNAVAILABLE', null], responses: [503, 'server_error', null] },
};

/** A failure reported inside an cur.open stream. */
export function streamFailure(dialect: DialectName | 'openai', message: string): Frame {
  if (dialect === 'anthropic') return { event: 'error', data: { type: 'error', error: { type: 'overloaded_error', message } }, delayMs: 0 };
  if (dialect === 'gemini') return { data: { error: { code: 503, message, status: 'UNAVAILABLE' } }, delayMs: 0 };
  if (dialect === 'responses') return { event: 'error', data: { type: 'error', code: 'server_error', message, param: null, sequence_number: 0 }, delayMs: 0 };
  return { data: { error: { message, type: 'server_error', code: null } }, delayMs: 0 };
}

export { promptOf, tokens };
