/**
 * Wire shapes of the request bodies the API accepts. Unknown fields are kept (`loose`) and
 * forwarded to the upstream, as an OpenAI-compatible proxy should.
 */
import { z } from 'zod';

export const MessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
    content: z.union([z.string(), z.array(z.looseObject({ type: z.string() })), z.null()]).optional(),
    tool_call_id: z.string().optional(),
    tool_calls: z.array(z.looseObject({ id: z.string(), type: z.literal('function'), function: z.looseObject({ name: z.string(), arguments: z.string() }) })).optional(),
  })
  .loose();

export const FunctionToolSchema = z.looseObject({
  type: z.literal('function'),
  function: z.looseObject({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must match ^[a-zA-Z0-9_-]{1,64}$'),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});

export const McpToolRequestSchema = z.looseObject({
  type: z.literal('mcp'),
  // Optional: gateways that rebuild bodies (one-api with ENFORCE_INCLUDE_USAGE) drop it.
  server_label: z.string().min(1).optional(),
  allowed_tools: z.array(z.string()).optional(),
  require_approval: z.union([z.enum(['never', 'always']), z.record(z.string(), z.unknown())]).optional(),
});

export const ChatCompletionRequestSchema = z
  .object({
    model: z.string().min(1),
    messages: z.array(MessageSchema).min(1, 'messages must not be empty'),
    stream: z.boolean().optional(),
    stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
    n: z.literal(1, 'only n=1 is supported').nullish(),
    tools: z.array(z.union([FunctionToolSchema, McpToolRequestSchema])).optional(),
    metadata: z.record(z.string(), z.string()).nullish(),
  })
  .loose();

export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

/** `messages[0].role` — the OpenAI `param` of the first failing field. */
export function issueParam(path: readonly PropertyKey[]): string | null {
  if (path.length === 0) return null;
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}
