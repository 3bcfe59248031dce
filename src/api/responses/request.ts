/**
 * The Responses request: its schema (anything mix2api does not understand is a 400 naming it), its
 * input items as Chat Completions messages and the body the run engine takes, and response ids
 * (`resp_<hex>` is run `chatcmpl-<hex>`).
 */
import { z } from 'zod';
import type { ChatMessage } from '../../domain/chat';
import { INPUT_BOUNDS } from '../engine/request';

export const RUN_PREFIX = 'chatcmpl-';
/**
 * A run answers as one response, or as several when it stops for approvals: the Responses API
 * ends a response at an `mcp_approval_request`, and the client's `mcp_approval_response` comes in
 * a new request. Segment 0 is `resp_<hex>`, the part after the k-th approval `resp_<hex>_<k>`.
 */
interface ResponseRef {
  runId: string;
  hex: string;
  segment: number;
}
export const responseIdOf = (hex: string, segment: number) => `resp_${hex}${segment > 0 ? `_${segment}` : ''}`;
export function refOf(responseId: string): ResponseRef | null {
  const m = /^resp_([0-9a-f]{32})(?:_([1-9]\d{0,3}))?$/.exec(responseId);
  return m ? { runId: RUN_PREFIX + m[1]!, hex: m[1]!, segment: m[2] ? Number(m[2]) : 0 } : null;
}

const TextPart = z.looseObject({ type: z.enum(['input_text', 'output_text']), text: z.string() });
const ImagePart = z.looseObject({ type: z.literal('input_image'), image_url: z.string().optional(), detail: z.string().optional() });
const MessageItem = z.looseObject({
  type: z.literal('message').optional(),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(z.union([TextPart, ImagePart])).max(INPUT_BOUNDS.contentParts)]),
});
const FunctionCallItem = z.looseObject({ type: z.literal('function_call'), call_id: z.string().min(1), name: z.string().min(1), arguments: z.string() });
const FunctionCallOutputItem = z.looseObject({ type: z.literal('function_call_output'), call_id: z.string().min(1), output: z.union([z.string(), z.array(TextPart)]) });
const ApprovalResponseItem = z.looseObject({ type: z.literal('mcp_approval_response'), approval_request_id: z.string().min(1), approve: z.boolean(), reason: z.string().nullish() });
const InputItem = z.union([MessageItem, FunctionCallItem, FunctionCallOutputItem, ApprovalResponseItem]);

const FunctionTool = z.looseObject({
  type: z.literal('function'),
  name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must match ^[a-zA-Z0-9_-]{1,64}$'),
  description: z.string().nullish(),
  parameters: z.record(z.string(), z.unknown()).nullish(),
  strict: z.boolean().nullish(),
});
const McpTool = z.looseObject({
  type: z.literal('mcp'),
  server_label: z.string().min(1),
  allowed_tools: z.union([z.array(z.string()), z.looseObject({ tool_names: z.array(z.string()).optional() })]).nullish(),
  require_approval: z.union([z.enum(['never', 'always']), z.record(z.string(), z.unknown())]).nullish(),
  server_url: z.string().optional(),
});

/** Every field the Responses API accepts that mix2api understands; anything else is a 400 naming it. */
export const ResponsesRequestSchema = z
  .object({
    model: z.string().min(1).max(INPUT_BOUNDS.modelChars),
    input: z.union([z.string(), z.array(InputItem).min(1).max(INPUT_BOUNDS.messages)]),
    instructions: z.string().nullish(),
    tools: z.array(z.union([FunctionTool, McpTool])).max(INPUT_BOUNDS.tools).optional(),
    tool_choice: z.union([z.enum(['auto', 'none', 'required']), z.looseObject({ type: z.literal('function'), name: z.string() })]).optional(),
    parallel_tool_calls: z.boolean().nullish(),
    stream: z.boolean().nullish(),
    background: z.boolean().nullish(),
    store: z.boolean().nullish(),
    previous_response_id: z.string().nullish(),
    temperature: z.number().nullish(),
    top_p: z.number().nullish(),
    max_output_tokens: z.number().int().positive().nullish(),
    metadata: z.record(z.string().max(INPUT_BOUNDS.metadataKeyChars), z.string().max(INPUT_BOUNDS.metadataValueChars)).nullish(),
    user: z.string().optional(),
    reasoning: z.looseObject({ effort: z.enum(['minimal', 'low', 'medium', 'high']).nullish(), summary: z.string().nullish() }).nullish(),
    text: z.looseObject({ format: z.looseObject({ type: z.enum(['text', 'json_object', 'json_schema']) }).optional() }).nullish(),
  })
  .strict();

export type ResponsesRequest = z.infer<typeof ResponsesRequestSchema>;

function textOf(content: string | Array<{ type: string; text?: string }>): string {
  return typeof content === 'string' ? content : content.map((p) => p.text ?? '').join('');
}

/** Responses input items as Chat Completions messages: consecutive function calls become one assistant turn. */
export function messagesOf(r: ResponsesRequest): ChatMessage[] {
  const out: ChatMessage[] = [];
  if (r.instructions) out.push({ role: 'system', content: r.instructions });
  if (typeof r.input === 'string') return [...out, { role: 'user', content: r.input }];
  for (const item of r.input) {
    if (item.type === 'function_call') {
      const call = { id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } };
      const last = out[out.length - 1];
      if (last?.role === 'assistant' && Array.isArray(last.tool_calls)) (last.tool_calls as unknown[]).push(call);
      else out.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (item.type === 'function_call_output') {
      out.push({ role: 'tool', tool_call_id: item.call_id, content: textOf(item.output) });
    } else if (item.type === 'mcp_approval_response') {
      continue; // decided on the waiting run, not sent upstream (see continueAfterApproval)
    } else {
      const content =
        typeof item.content === 'string'
          ? item.content
          : item.content.map((p) => (p.type === 'input_image' ? { type: 'image_url', image_url: { url: p.image_url ?? '', ...(p.detail ? { detail: p.detail } : {}) } } : { type: 'text', text: p.text }));
      out.push({ role: item.role, content });
    }
  }
  return out;
}

/** The Chat Completions body this request means. */
export function chatBodyOf(r: ResponsesRequest, history: ChatMessage[]): Record<string, unknown> {
  const tools = r.tools?.map((t) =>
    t.type === 'function'
      ? { type: 'function', function: { name: t.name, ...(t.description ? { description: t.description } : {}), ...(t.parameters ? { parameters: t.parameters } : {}), ...(t.strict != null ? { strict: t.strict } : {}) } }
      : {
          type: 'mcp',
          server_label: t.server_label,
          ...(t.allowed_tools ? { allowed_tools: Array.isArray(t.allowed_tools) ? t.allowed_tools : (t.allowed_tools.tool_names ?? []) } : {}),
          ...(t.require_approval ? { require_approval: t.require_approval } : {}),
        },
  );
  const format = r.text?.format;
  return {
    model: r.model,
    messages: [...history, ...messagesOf(r)],
    stream: true,
    ...(tools ? { tools } : {}),
    ...(r.tool_choice ? { tool_choice: typeof r.tool_choice === 'string' ? r.tool_choice : { type: 'function', function: { name: r.tool_choice.name } } } : {}),
    ...(r.parallel_tool_calls != null ? { parallel_tool_calls: r.parallel_tool_calls } : {}),
    ...(r.temperature != null ? { temperature: r.temperature } : {}),
    ...(r.top_p != null ? { top_p: r.top_p } : {}),
    ...(r.max_output_tokens != null ? { max_tokens: r.max_output_tokens } : {}),
    ...(r.metadata ? { metadata: r.metadata } : {}),
    ...(r.user ? { user: r.user } : {}),
    ...(r.reasoning?.effort ? { reasoning_effort: r.reasoning.effort } : {}),
    ...(format && format.type !== 'text' ? { response_format: format.type === 'json_object' ? { type: 'json_object' } : { type: 'json_schema', json_schema: { ...format, type: undefined } } } : {}),
  };
}

interface Issue {
  path: PropertyKey[];
  message: string;
  code?: string;
  errors?: Issue[][];
}

/** For a union that matched no branch, the branch issue that got furthest into the value. */
export function deepest(issue: Issue, base: PropertyKey[] = []): { path: PropertyKey[]; message: string } {
  const path = [...base, ...issue.path];
  if (issue.code !== 'invalid_union' || !issue.errors?.length) return { path, message: issue.message };
  let best = { path, message: issue.message };
  for (const branch of issue.errors)
    for (const i of branch) {
      const d = deepest(i, path);
      if (d.path.length > best.path.length) best = d;
    }
  return best;
}
