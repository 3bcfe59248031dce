/**
 * Schema of one `mcpServers[]` entry: how mix2api reaches an MCP server and which of its tools the
 * model may see. Values in `env` and `headers` may be `env:VAR` references (see ./secrets).
 */
import { z } from 'zod';

const stringMap = z.record(z.string(), z.string());

/** Tool names as the MCP server spells them; `*` matches any run of characters. */
const ToolFilterSchema = z
  .object({
    allow: z.array(z.string().min(1)).optional(),
    deny: z.array(z.string().min(1)).optional(),
  })
  .strict();

/** A tool that undoes another one (saga-style), with arguments templated from the original call. */
const CompensationSchema = z
  .object({
    tool: z.string().min(1),
    args: stringMap.default({}),
  })
  .strict();

const ApprovalSchema = z.union([
  z.enum(['never', 'always']),
  z.object({ tools: z.array(z.string().min(1)) }).strict(),
]);

export const McpServerSchema = z
  .object({
    /** Short, because it prefixes every tool name the model sees (`<name>__<tool>`, 64 chars max). */
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,32}$/, 'letters, digits, _ and - (1-32 characters)'),
    transport: z.enum(['stdio', 'http', 'sse']),
    command: z.string().min(1).optional(),
    args: z.array(z.string()).default([]),
    env: stringMap.optional(),
    cwd: z.string().min(1).optional(),
    url: z.url({ protocol: /^https?$/ }).optional(),
    headers: stringMap.optional(),
    tools: ToolFilterSchema.optional(),
    /** Per tool call, reset whenever the server reports progress. */
    timeoutSeconds: z.number().positive().max(3600).default(60),
    /**
     * Tool output beyond this many UTF-8 bytes is cut before it reaches the model. At most 1 MiB:
     * the result is an activity result, and Temporal refuses payloads over 2 MB.
     */
    maxOutputBytes: z.number().int().positive().max(1024 * 1024).default(65536),
    approval: ApprovalSchema.default('never'),
    compensations: z.record(z.string(), CompensationSchema).default({}),
    /**
     * `idempotent`: its tools honour the idempotency key in `_meta` (or have no side effects), so a
     * call interrupted by a lost process or connection is run again with the same key. `unsafe`:
     * such a call is never repeated; the model is told the call may or may not have taken effect.
     */
    sideEffects: z.enum(['idempotent', 'unsafe']).default('idempotent'),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const problem = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
    if (cfg.transport === 'stdio') {
      if (!cfg.command) problem('command', 'required when transport is "stdio"');
      if (cfg.url !== undefined) problem('url', 'only for transport "http" or "sse"');
      if (cfg.headers !== undefined) problem('headers', 'only for transport "http" or "sse"');
    } else {
      if (!cfg.url) problem('url', `required when transport is "${cfg.transport}"`);
      if (cfg.command !== undefined) problem('command', 'only for transport "stdio"');
      if (cfg.args.length > 0) problem('args', 'only for transport "stdio"');
      if (cfg.env !== undefined) problem('env', 'only for transport "stdio"');
      if (cfg.cwd !== undefined) problem('cwd', 'only for transport "stdio"');
    }
  });

export type McpServerConfig = z.infer<typeof McpServerSchema>;
/** What a YAML author may write (defaults not yet applied). */
export type McpServerInput = z.input<typeof McpServerSchema>;
