/**
 * Wire shapes of the request bodies the API accepts. Unknown fields are kept (`loose`) and
 * forwarded to the upstream, as an OpenAI-compatible proxy should.
 */
import { z } from 'zod';
import { MAX_OPENAI_TOOLS } from '../../domain/toolNames';

/** Input bounds (docs/configuration.md): each over-limit field is a 400 naming its `param`. */
export const INPUT_BOUNDS = {
  messages: 4096,
  /** OpenAI's own cap on function tools. */
  tools: MAX_OPENAI_TOOLS,
  contentParts: 1024,
  toolCallsPerMessage: 128,
  idChars: 256,
  modelChars: 256,
  /** OpenAI's metadata rules: 16 pairs, keys up to 64 characters, values up to 512. */
  metadataPairs: 16,
  metadataKeyChars: 64,
  metadataValueChars: 512,
  descriptionChars: 16_384,
} as const;
const B = INPUT_BOUNDS;
const id = () => z.string().max(B.idChars, `at most ${B.idChars} characters`);

export const MessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
    content: z.union([z.string(), z.array(z.looseObject({ type: z.string() })).max(B.contentParts, `at most ${B.contentParts} content parts`), z.null()]).optional(),
    tool_call_id: id().optional(),
    tool_calls: z
      .array(z.looseObject({ id: id(), type: z.literal('function'), function: z.looseObject({ name: id(), arguments: z.string() }) }))
      .max(B.toolCallsPerMessage, `at most ${B.toolCallsPerMessage} tool calls per message`)
      .optional(),
  })
  .loose();

export const FunctionToolSchema = z.looseObject({
  type: z.literal('function'),
  function: z.looseObject({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must match ^[a-zA-Z0-9_-]{1,64}$'),
    description: z.string().max(B.descriptionChars, `at most ${B.descriptionChars} characters`).optional(),
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
    model: z.string().min(1).max(B.modelChars, `at most ${B.modelChars} characters`),
    messages: z.array(MessageSchema).min(1, 'messages must not be empty').max(B.messages, `at most ${B.messages} messages`),
    stream: z.boolean().optional(),
    stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
    n: z.literal(1, 'only n=1 is supported').nullish(),
    tools: z.array(z.union([FunctionToolSchema, McpToolRequestSchema])).max(B.tools, `at most ${B.tools} tools`).optional(),
    metadata: z
      .record(z.string().max(B.metadataKeyChars, `keys of at most ${B.metadataKeyChars} characters`), z.string().max(B.metadataValueChars, `values of at most ${B.metadataValueChars} characters`))
      .refine((m) => Object.keys(m).length <= B.metadataPairs, `at most ${B.metadataPairs} pairs`)
      .nullish(),
  })
  .loose();

export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

/** `messages[0].role` — the OpenAI `param` of the first failing field. */
export function issueParam(path: readonly PropertyKey[]): string | null {
  if (path.length === 0) return null;
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`)).join('');
}
