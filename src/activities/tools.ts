/**
 * MCP activities: `listTools` (the run's tool catalog) and `callTool` (one tool call). Tool
 * failures the model can act on — bad arguments, unknown tool, `isError`, a timeout — come back
 * as results; only transport failures are thrown, and Temporal retries those.
 */
import { Context, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import Ajv, { type ValidateFunction } from 'ajv';
import Ajv2020 from 'ajv/dist/2020';
import { McpTimeoutError, McpToolError, McpTransportError, type McpPool } from '../connectors/mcp/pool';
import { cappedStructured, toolResultToText } from '../connectors/mcp/toolResult';
import { MAX_OPENAI_TOOLS, MAX_SELECTABLE_TOOLS, ToolLimitError, assertToolLimit, buildToolCatalog, filterTools, type CatalogEntry } from '../domain/toolNames';
import type { Metrics, ToolCallOutcome } from '../telemetry/metrics';
import { failSpan, tracer, withSpan } from '../telemetry/tracing';
import { heldActivity, type HeldCalls } from './lease';
import { toolTotalSeconds, wireError, type CallToolInput, type ListToolsInput, type ToolOutcome } from '../domain/run';

export interface ToolDeps {
  pool: McpPool;
  metrics: Metrics;
  /** The calls this process's lease names (so they move at once if the process is lost). */
  heldCalls?: HeldCalls;
}

const HEARTBEAT_MS = 2000;
// MCP tool schemas are JSON Schema 2020-12 unless they name another dialect ($schema).
const OPTIONS = { strict: false, allErrors: false, validateSchema: false, logger: false } as const;
const ajv2020 = new Ajv2020(OPTIONS);
const ajv07 = new Ajv(OPTIONS);
const validators = new Map<string, ValidateFunction | { uncompilable: string }>();

/** A validator for the tool's schema, or why no validator can be made from it. */
export function validatorFor(schema: Record<string, unknown>): ValidateFunction | { uncompilable: string } {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (!v) {
    const { $schema, ...rest } = schema;
    const draft07 = typeof $schema === 'string' && /draft-0[4-7]/.test($schema);
    const order = draft07 ? [ajv07, ajv2020] : [ajv2020, ajv07];
    let why = '';
    for (const a of order) {
      try {
        v = a.compile(rest);
        break;
      } catch (e) {
        why ||= e instanceof Error ? e.message : String(e);
      }
    }
    v ??= { uncompilable: why.slice(0, 300) };
    validators.set(key, v);
  }
  return v;
}

const warned = new Set<string>();
/** Once per tool and process: a tool whose input schema cannot be compiled will refuse its calls. */
function warnUncompilable(server: string, tools: ReadonlyArray<{ name: string; inputSchema?: unknown }>): void {
  for (const t of tools) {
    const v = validatorFor((t.inputSchema ?? {}) as Record<string, unknown>);
    if (!('uncompilable' in v) || warned.has(`${server}/${t.name}`)) continue;
    warned.add(`${server}/${t.name}`);
    log.warn(`MCP tool ${server}/${t.name}: its input schema cannot be compiled (${v.uncompilable}); its calls will be refused`);
  }
}

function argumentProblem(input: CallToolInput): { args: Record<string, unknown> } | { problem: string } {
  let args: unknown;
  try {
    args = input.arguments.trim() === '' ? {} : JSON.parse(input.arguments);
  } catch {
    return { problem: `arguments are not valid JSON: ${input.arguments.slice(0, 200)}` };
  }
  if (!args || typeof args !== 'object' || Array.isArray(args)) return { problem: 'arguments must be a JSON object' };
  const validate = validatorFor(input.inputSchema);
  // Unchecked arguments are not passed on: the model hears why, the operator saw the warning when the tools were listed.
  if ('uncompilable' in validate) return { problem: `the tool's input schema cannot be compiled (${validate.uncompilable}), so its arguments cannot be checked; the call was not made` };
  if (!validate(args)) {
    const why = (validate.errors ?? []).map((e) => `${e.instancePath || '(root)'} ${e.message ?? ''}`.trim()).join('; ');
    return { problem: `arguments do not match the tool's input schema: ${why}` };
  }
  return { args: args as Record<string, unknown> };
}

export function createToolActivities(deps: ToolDeps) {
  return {
    async listTools(input: ListToolsInput): Promise<CatalogEntry[]> {
      const lists = [];
      for (const s of input.servers) {
        try {
          const tools = await deps.pool.listTools(s.name);
          const kept = filterTools(tools, { allow: s.allow, deny: s.deny });
          warnUncompilable(s.name, kept);
          lists.push({ server: s.name, tools: kept });
        } catch (e) {
          if (e instanceof McpToolError) {
            throw ApplicationFailure.create({ type: 'McpConfig', message: e.message, nonRetryable: true, details: [wireError(500, e.message, 'server_error', 'mcp_server_error')] });
          }
          throw ApplicationFailure.create({ type: 'McpTransport', message: `MCP server ${s.name}: ${e instanceof Error ? e.message : String(e)}`, details: [wireError(502, `MCP server ${s.name} is unreachable`, 'upstream_error', 'mcp_unavailable')] });
        }
      }
      const catalog = buildToolCatalog(lists);
      try {
        assertToolLimit(catalog.entries.length + input.clientToolCount, input.servers.map((s) => s.name), input.selecting ? MAX_SELECTABLE_TOOLS : MAX_OPENAI_TOOLS);
      } catch (e) {
        if (!(e instanceof ToolLimitError)) throw e;
        throw ApplicationFailure.create({ type: 'ToolLimit', message: e.message, nonRetryable: true, details: [wireError(400, `${e.message} (limit ${e.limit})`, 'invalid_request_error', 'too_many_tools', 'tools')] });
      }
      return catalog.entries;
    },

    async callTool(input: CallToolInput): Promise<ToolOutcome> {
      const ctx = Context.current();
      const started = Date.now();
      const span = tracer().startSpan(`execute_tool ${input.tool}`, {
        attributes: { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': input.tool, 'gen_ai.tool.call.id': input.callId, 'mcp.method.name': 'tools/call', 'mix2api.mcp.server': input.server, 'mix2api.run_id': input.runId },
      });
      const count = (o: ToolCallOutcome) => {
        const labels = { server: input.server, tool: input.tool };
        const ms = Date.now() - started;
        deps.metrics.toolCalls.inc({ ...labels, outcome: o });
        if (o !== 'invalid_arguments') deps.metrics.toolDuration.observe(labels, ms / 1000);
        span.setAttributes({ 'mix2api.tool.outcome': o, 'mix2api.tool.ms': ms });
        if (o === 'ok') span.end();
        else failSpan(span, o, o);
      };
      const outcome = (text: string, isError: boolean, truncated = false, o: ToolCallOutcome = isError ? 'tool_error' : 'ok'): ToolOutcome => {
        count(o);
        return { text, isError, truncated, ms: Date.now() - started };
      };
      const checked = argumentProblem(input);
      if ('problem' in checked) return outcome(checked.problem, true, false, 'invalid_arguments');
      ctx.heartbeat();
      const beat = setInterval(() => ctx.heartbeat(), HEARTBEAT_MS);
      const unhold = deps.heldCalls?.hold(heldActivity());
      try {
        // Within the tool's span, so an HTTP MCP server is sent its trace context.
        const result = await withSpan(span, () => deps.pool.callTool(input.server, input.tool, checked.args, {
          signal: ctx.cancellationSignal,
          timeoutMs: input.timeoutSeconds * 1000,
          // Progress keeps a call alive, but never past the point where Temporal would retry it.
          maxTotalTimeoutMs: toolTotalSeconds(input.timeoutSeconds) * 1000,
          idempotencyKey: input.idempotencyKey,
        }));
        const r = toolResultToText(result, input.maxOutputBytes);
        const structured = cappedStructured(result, input.maxOutputBytes);
        return { ...outcome(r.text, r.isError, r.truncated), ...(structured ? { structured } : {}) };
      } catch (e) {
        if (ctx.cancellationSignal.aborted) {
          count('cancelled');
          throw e;
        }
        if (e instanceof McpToolError) return outcome(`tool error: ${e.message}`, true);
        // A timed-out call may have had effects: report it to the model rather than run it again.
        if (e instanceof McpTimeoutError) return outcome(`the tool did not answer within ${input.timeoutSeconds}s`, true, false, 'timeout');
        count('transport_error');
        const retryable = !(e instanceof McpTransportError) || e.retryable;
        throw ApplicationFailure.create({ type: 'McpTransport', message: `MCP server ${input.server}: ${e instanceof Error ? e.message : String(e)}`, nonRetryable: !retryable });
      } finally {
        clearInterval(beat);
        unhold?.();
      }
    },
  };
}
