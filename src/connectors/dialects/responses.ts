/**
 * `openai-responses`: OpenAI's Responses API (`POST /responses`, streamed). System and developer
 * messages at the start become `instructions` (later ones stay `developer` items); assistant tool
 * calls are `function_call` items and tool results `function_call_output` items. Streamed
 * `function_call` items become tool-call deltas (index = the call's place among the response's
 * calls), reasoning summaries become `reasoning_content`.
 *
 * With `storeResponses` on, responses are stored upstream and a step that continues an earlier
 * one (the next step of a tool loop, the next turn of a session) sends `previous_response_id`
 * and only the messages after those that response already holds.
 */
import type { ResponseCreateParamsStreaming, ResponseInputItem, ResponseStreamEvent, Tool } from 'openai/resources/responses/responses';
import type { UpstreamConfig } from '../../config/schema';
import {
  contentParts,
  contentText,
  errorBody,
  isInstruction,
  maxOutput,
  parseJson,
  StreamFailure,
  usageOf,
  chunkOf,
  type ChatBody,
  type ChatChunk,
  type ChatMessageIn,
  type Dialect,
  type StreamDecoder,
  type UpstreamContinuation,
} from './dialect';

/** The status a failed response's error code comes with. */
const CODE_STATUS: Record<string, number> = { rate_limit_exceeded: 429, server_error: 500, vector_store_timeout: 504, invalid_prompt: 400 };

function items(messages: ChatMessageIn[]): ResponseInputItem[] {
  const out: ResponseInputItem[] = [];
  for (const m of messages) {
    if (m.role === 'tool') {
      out.push({ type: 'function_call_output', call_id: m.tool_call_id ?? '', output: contentText(m.content) });
    } else if (m.role === 'assistant') {
      const text = contentText(m.content);
      if (text) out.push({ role: 'assistant', content: text });
      for (const c of m.tool_calls ?? []) out.push({ type: 'function_call', call_id: c.id, name: c.function.name, arguments: c.function.arguments });
    } else if (isInstruction(m)) {
      out.push({ role: 'developer', content: contentText(m.content) });
    } else {
      const content = contentParts(m.content).map((p) => (p.kind === 'text' ? { type: 'input_text' as const, text: p.text } : { type: 'input_image' as const, image_url: p.url, detail: 'auto' as const }));
      if (content.length) out.push({ role: 'user', content });
    }
  }
  return out;
}

function toolChoice(c: unknown): ResponseCreateParamsStreaming['tool_choice'] {
  if (c === 'none' || c === 'auto' || c === 'required') return c;
  const named = (c as { function?: { name?: unknown } } | undefined)?.function?.name;
  return typeof named === 'string' ? { type: 'function', name: named } : undefined;
}

export function responsesRequest(body: ChatBody, cfg: UpstreamConfig, from?: UpstreamContinuation): ResponseCreateParamsStreaming {
  const reuse = cfg.storeResponses && from && from.messageCount <= body.messages.length ? from : undefined;
  // Leading instructions are `instructions`; a continued response is sent them again (they do not carry over).
  let lead = 0;
  while (lead < body.messages.length && isInstruction(body.messages[lead]!)) lead++;
  const instructions = body.messages.slice(0, lead).map((m) => contentText(m.content)).join('\n\n');
  const rest = reuse ? body.messages.slice(Math.max(lead, reuse.messageCount)) : body.messages.slice(lead);
  const tools: Tool[] | undefined = body.tools?.map((t) => ({
    type: 'function',
    name: t.function!.name,
    description: t.function!.description ?? null,
    parameters: t.function!.parameters ?? { type: 'object', properties: {} },
    strict: t.function!.strict ?? false,
  }));
  const choice = toolChoice(body.tool_choice);
  const max = maxOutput(body);
  return {
    model: body.model,
    input: items(rest),
    stream: true,
    store: cfg.storeResponses,
    ...(reuse ? { previous_response_id: reuse.responseId } : {}),
    ...(instructions ? { instructions } : {}),
    ...(tools?.length ? { tools } : {}),
    ...(choice ? { tool_choice: choice } : {}),
    ...(body.parallel_tool_calls !== undefined ? { parallel_tool_calls: body.parallel_tool_calls } : {}),
    ...(body.temperature !== undefined ? { temperature: body.temperature } : {}),
    ...(body.top_p !== undefined ? { top_p: body.top_p } : {}),
    ...(max !== undefined ? { max_output_tokens: max } : {}),
    ...(body.reasoning_effort ? { reasoning: { effort: body.reasoning_effort as 'low', summary: 'auto' } } : {}),
    ...(body.user ? { safety_identifier: body.user } : {}),
  };
}

class ResponsesDecoder implements StreamDecoder {
  done = false;
  private id = '';
  /** Output index → tool-call index, for `function_call` items. */
  private readonly calls = new Map<number, number>();

  event(_name: string | undefined, data: string): ChatChunk[] {
    const e = parseJson<ResponseStreamEvent>(data);
    switch (e.type) {
      case 'response.created':
        this.id = e.response.id;
        return [{ id: e.response.id, model: e.response.model, choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] }];
      case 'response.output_item.added': {
        if (e.item.type !== 'function_call') return [];
        const index = this.calls.size;
        this.calls.set(e.output_index, index);
        return [chunkOf({ tool_calls: [{ index, id: e.item.call_id, type: 'function', function: { name: e.item.name, arguments: e.item.arguments ?? '' } }] })];
      }
      case 'response.function_call_arguments.delta': {
        const index = this.calls.get(e.output_index);
        return index === undefined || !e.delta ? [] : [chunkOf({ tool_calls: [{ index, function: { arguments: e.delta } }] })];
      }
      case 'response.output_text.delta':
        return e.delta ? [chunkOf({ content: e.delta })] : [];
      case 'response.refusal.delta':
        return e.delta ? [chunkOf({ refusal: e.delta })] : [];
      case 'response.reasoning_summary_text.delta':
      case 'response.reasoning_text.delta':
        return e.delta ? [chunkOf({ reasoning_content: e.delta })] : [];
      case 'response.completed':
      case 'response.incomplete': {
        this.done = true;
        const r = e.response;
        const u = r.usage;
        const why = r.incomplete_details?.reason;
        const finish = why === 'max_output_tokens' ? 'length' : why === 'content_filter' ? 'content_filter' : this.calls.size > 0 ? 'tool_calls' : 'stop';
        const usage = u ? usageOf(u.input_tokens, u.output_tokens, { cached: u.input_tokens_details?.cached_tokens, reasoning: u.output_tokens_details?.reasoning_tokens }) : null;
        return [{ id: this.id, choices: [{ index: 0, delta: {}, finish_reason: finish }], usage }];
      }
      case 'response.failed': {
        const err = e.response.error;
        const code = err?.code ?? 'server_error';
        throw new StreamFailure({ status: CODE_STATUS[code] ?? 500, message: err?.message ?? 'the response failed', type: code, code, param: null });
      }
      case 'error':
        throw new StreamFailure({ status: (e.code && CODE_STATUS[e.code]) || 500, message: e.message, type: e.code, code: e.code, param: e.param });
      default:
        return [];
    }
  }
}

export const openaiResponses: Dialect = {
  request: (body, cfg, from) => ({
    path: '/responses',
    headers: { ...(cfg.apiKey ? { authorization: `Bearer ${cfg.apiKey}` } : {}) },
    body: responsesRequest(body, cfg, from),
  }),
  decoder: () => new ResponsesDecoder(),
  failure: errorBody,
};
