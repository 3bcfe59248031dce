/**
 * Which server-side MCP tools a request gets: the servers bound to its model plus the ones it
 * names OpenAI-style (`{"type":"mcp","server_label":…}`), each narrowed by `allowed_tools`. Only
 * configured servers can be named; a request never brings its own command or URL.
 */
import type { Config } from '../../config/load';
import type { RunMcpServer } from '../../domain/run';
import { badRequest } from '../http/errors';
import type { ChatCompletionRequest } from './request';

export interface RequestTools {
  servers: RunMcpServer[];
  /** The request's own function tools, forwarded to the upstream. */
  clientTools: unknown[] | undefined;
}

export function resolveTools(config: Config, body: ChatCompletionRequest): RequestTools {
  const model = config.models.find((m) => m.id === body.model);
  const wanted = new Map<string, { allow?: string[]; approval?: string[] }>();
  for (const name of model?.mcpServers ?? []) wanted.set(name, {});
  const clientTools: unknown[] = [];
  (body.tools ?? []).forEach((t, i) => {
    if (t.type !== 'mcp') {
      clientTools.push(t);
      return;
    }
    if (t.server_label === undefined) {
      // What a gateway that re-serialises tools leaves of `{"type":"mcp","server_label":…}`:
      // nothing names a server, so the model's own servers stand for it.
      if (model?.mcpServers.length) return;
      throw badRequest(
        'an "mcp" tool without server_label; if a gateway rewrote the request, bind the MCP servers to the model instead (models[].mcpServers)',
        `tools[${i}].server_label`,
        'mcp_server_label_missing',
      );
    }
    if (!config.mcpServers.some((s) => s.name === t.server_label)) {
      throw badRequest(`MCP server "${t.server_label}" is not configured on this server`, `tools[${i}].server_label`, 'mcp_server_not_found');
    }
    wanted.set(t.server_label, { allow: t.allowed_tools, approval: requestedApproval(t.require_approval) });
  });
  const servers = [...wanted.entries()].map(([name, w]) => runMcpServer(config.mcpServers.find((s) => s.name === name)!, w));
  return { servers, clientTools: body.tools ? clientTools : undefined };
}

/** A configured MCP server as a run uses it, with what a request adds (its `allowed_tools`, more approvals). */
export function runMcpServer(cfg: Config['mcpServers'][number], add: { allow?: string[]; deny?: string[]; approval?: string[] } = {}): RunMcpServer {
  // The config's policy is a floor: a request can ask for more approvals, never fewer.
  const fromConfig = cfg.approval === 'always' ? ['*'] : cfg.approval === 'never' ? [] : cfg.approval.tools;
  const approval = [...new Set([...fromConfig, ...(add.approval ?? [])])];
  return {
    name: cfg.name,
    timeoutSeconds: cfg.timeoutSeconds,
    maxOutputBytes: cfg.maxOutputBytes,
    ...(add.allow ? { allow: add.allow } : {}),
    ...(add.deny ? { deny: add.deny } : {}),
    ...(approval.length > 0 ? { approval } : {}),
    ...(Object.keys(cfg.compensations).length > 0 ? { compensations: cfg.compensations } : {}),
    ...(cfg.sideEffects === 'unsafe' ? { unsafe: true as const } : {}),
  };
}

/** OpenAI's `require_approval`: "always" | "never" | { always: { tool_names } }. */
function requestedApproval(r: unknown): string[] {
  if (r === 'always') return ['*'];
  const names = (r as { always?: { tool_names?: unknown } } | undefined)?.always?.tool_names;
  return Array.isArray(names) ? names.filter((n): n is string => typeof n === 'string') : [];
}
