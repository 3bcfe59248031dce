/**
 * The MCP gateway at `/mcp` (Streamable HTTP, the MCP SDK's server): one endpoint for a team's
 * tools. `tools/list` serves the configured MCP servers' tools under mix2api's names
 * (`<server>__<tool>`) and each server's allow/deny rules; `tools/call` runs as a durable workflow
 * per call (`mcpToolCallWorkflow`, in the Temporal UI as `mcp <server>/<tool>`), with the same
 * retries, heartbeats and idempotency key as a chat run's tool step. Sessions belong to the API
 * key that opened them; a browser Origin must be a loopback one or listed in
 * `mcpGateway.allowedOrigins`.
 */
import { createHash, randomUUID } from 'node:crypto';
import express, { type Request, type Response } from 'express';
import { WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ErrorCode, isInitializeRequest, ListToolsRequestSchema, McpError, SetLevelRequestSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Config } from '../../config/load';
import { APPROVE_UPDATE, GATEWAY_APPROVAL_ID, approvalNeeded, type ApprovalDecision, type ToolOutcome } from '../../domain/run';
import type { CatalogEntry } from '../../domain/toolNames';
import { ApiError } from '../http/errors';
import { runMcpServer } from '../engine/tools';

/** How long a tools/list answer is reused before the servers are asked again. */
export const CATALOG_TTL_MS = 10_000;
/** The pace of `notifications/progress` while a call runs (when the client sent a progressToken). */
export const PROGRESS_INTERVAL_MS = 1000;
/** Open sessions per process; the oldest is closed beyond this. */
export const MAX_SESSIONS = 1000;

export interface GatewayDeps {
  config: Config;
  client: Client;
}

const rpcError = (res: Response, status: number, code: number, message: string) => res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });

export function createMcpGateway(d: GatewayDeps): express.Router {
  const servers = d.config.mcpServers.map((cfg) => runMcpServer(cfg, { allow: cfg.tools?.allow, deny: cfg.tools?.deny }));
  const taskQueue = d.config.temporal.taskQueue;
  let catalog: { at: number; entries: Promise<CatalogEntry[]> } | null = null;
  const entries = (fresh = false): Promise<CatalogEntry[]> => {
    if (!catalog || fresh || Date.now() - catalog.at > CATALOG_TTL_MS) {
      const read = d.client.workflow.execute('mcpListToolsWorkflow', {
        taskQueue,
        workflowId: `mcp-tools-list-${randomUUID()}`,
        args: [{ servers: servers.map((s) => ({ name: s.name, allow: s.allow, deny: s.deny })), clientToolCount: 0 }],
      }) as Promise<CatalogEntry[]>;
      catalog = { at: Date.now(), entries: read };
      read.catch(() => {
        if (catalog?.entries === read) catalog = null;
      });
    }
    return catalog.entries;
  };

  /** The servers a key sees through the gateway: its `gatewayServers`, else all. */
  const visibleTo = (keyName: string): ((e: CatalogEntry) => boolean) => {
    const only = d.config.server.apiKeys.find((k) => k.name === keyName)?.gatewayServers;
    return only ? (e) => only.includes(e.server) : () => true;
  };

  const serverFor = (keyName: string): Server => {
    const visible = visibleTo(keyName);
    const server = new Server({ name: 'mix2api', version: '1' }, { capabilities: { tools: { listChanged: true }, logging: {} } });
    // The gateway logs nothing to its clients (its log is the process's); the level is accepted as asked.
    server.setRequestHandler(SetLevelRequestSchema, async () => ({}));
    server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: (await entries()).filter(visible).map((e) => ({ name: e.name, description: e.description, inputSchema: { type: 'object' as const, ...e.inputSchema }, ...(e.annotations ? { annotations: e.annotations } : {}) })),
    }));
    server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
      const name = request.params.name;
      const find = (list: CatalogEntry[]) => list.find((e) => e.name === name && visible(e));
      const entry = find(await entries()) ?? find(await entries(true));
      if (!entry) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
      const run = servers.find((s) => s.name === entry.server)!;
      // A client's idempotency key (`_meta.idempotencyKey`) makes a retry join the first call's run.
      const key = request.params._meta?.idempotencyKey;
      const workflowId = typeof key === 'string' && key.length > 0 && key.length <= 255 ? `mcpcall-${createHash('sha256').update(`${keyName}\n${key}`).digest('hex').slice(0, 32)}` : `mcpcall-${randomUUID().replace(/-/g, '')}`;
      const handle = await d.client.workflow.start('mcpToolCallWorkflow', {
        taskQueue,
        workflowId,
        workflowIdConflictPolicy: 'USE_EXISTING',
        staticSummary: `mcp ${entry.server}/${entry.tool}`,
        args: [{ server: run, tool: entry.tool, arguments: JSON.stringify(request.params.arguments ?? {}), inputSchema: entry.inputSchema, keyName, approvalTimeoutSeconds: d.config.loop.approvalTimeoutSeconds }],
      });
      if (approvalNeeded(run, entry.tool)) void askApproval(server, handle, entry, request.params.arguments, extra.signal);
      const token = request.params._meta?.progressToken;
      const started = Date.now();
      const ticker =
        token === undefined
          ? null
          : setInterval(() => {
              const seconds = Math.round((Date.now() - started) / 1000);
              void extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: seconds, message: `${entry.server}/${entry.tool} running for ${seconds} s (run ${workflowId})` } }).catch(() => undefined);
            }, PROGRESS_INTERVAL_MS);
      // The client's notifications/cancelled aborts this request: the run is cancelled with it.
      const onAbort = () => void handle.cancel().catch(() => undefined);
      extra.signal.addEventListener('abort', onAbort, { once: true });
      try {
        const out = (await handle.result()) as ToolOutcome;
        return { content: [{ type: 'text', text: out.text }], isError: out.isError, _meta: { 'mix2api/runId': workflowId } };
      } catch (e) {
        if (extra.signal.aborted) throw new McpError(ErrorCode.RequestTimeout, 'cancelled by the client');
        throw new McpError(ErrorCode.InternalError, `the tool call's run failed: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        if (ticker) clearInterval(ticker);
        extra.signal.removeEventListener('abort', onAbort);
      }
    });
    return server;
  };

  /**
   * A call that needs approval asks the client (MCP elicitation) when it can answer one; the
   * answer decides the run's approval. Otherwise the run waits for a decision from the Temporal
   * UI/CLI (the approve signal) or its timeout, which denies.
   */
  const askApproval = async (server: Server, handle: WorkflowHandle, entry: CatalogEntry, args: unknown, signal: AbortSignal): Promise<void> => {
    if (!server.getClientCapabilities()?.elicitation) return;
    try {
      const answer = await server.elicitInput(
        {
          message: `Allow ${entry.server}/${entry.tool} with ${JSON.stringify(args ?? {}).slice(0, 500)}?`,
          requestedSchema: { type: 'object', properties: { approve: { type: 'boolean', title: 'Approve', description: 'Run this tool call' } }, required: ['approve'] },
        },
        { signal },
      );
      const approve = answer.action === 'accept' && answer.content?.approve === true;
      const decision: ApprovalDecision = { approvalId: GATEWAY_APPROVAL_ID, approve, ...(approve ? {} : { reason: `the client answered ${answer.action}` }) };
      // The run registers its approval a moment after it starts: until then the update is refused.
      for (let i = 0; i < 50; i++) {
        try {
          await handle.executeUpdate(APPROVE_UPDATE, { args: [decision] });
          return;
        } catch (e) {
          if (!(e instanceof WorkflowUpdateFailedError) || !/no pending approval/.test(e.cause?.message ?? '')) return;
          await new Promise((ok) => setTimeout(ok, 100));
        }
      }
    } catch {
      // The client could not answer (or left): the run's own timeout decides.
    }
  };

  const sessions = new Map<string, { transport: StreamableHTTPServerTransport; keyName: string; server: Server }>();
  // While sessions are open: read the catalog again now and then, and tell them when its names changed.
  const pollMs = d.config.mcpGateway.listChangedPollSeconds * 1000;
  let poller: NodeJS.Timeout | null = null;
  let known: string | null = null;
  const namesOf = (list: CatalogEntry[]) => list.map((e) => e.name).sort().join('\n');
  const poll = async () => {
    try {
      const now = namesOf(await entries(true));
      if (known !== null && now !== known) for (const s of sessions.values()) void s.server.sendToolListChanged().catch(() => undefined);
      known = now;
    } catch {
      // the servers are away this time; the next poll tries again
    }
  };
  const watchSessions = () => {
    if (pollMs > 0 && sessions.size > 0 && !poller) {
      void poll();
      poller = setInterval(() => void poll(), pollMs);
      poller.unref();
    } else if (sessions.size === 0 && poller) {
      clearInterval(poller);
      poller = null;
      known = null;
    }
  };
  const allowedOrigins = new Set(d.config.mcpGateway.allowedOrigins);
  const originAllowed = (origin: string) => {
    if (allowedOrigins.has(origin)) return true;
    // Pages served from this machine itself (an IDE's local web view) are as trusted as its processes.
    try {
      return ['localhost', '127.0.0.1', '[::1]'].includes(new URL(origin).hostname);
    } catch {
      return false;
    }
  };
  const r = express.Router();
  // The MCP spec's security rules: a browser's Origin must be one the operator allows (DNS
  // rebinding), and a session is only ever used by the key that opened it.
  r.use((req, _res, next) => {
    const origin = req.header('origin');
    next(origin !== undefined && !originAllowed(origin) ? new ApiError(403, `Origin ${origin} is not allowed (mcpGateway.allowedOrigins)`, 'invalid_request_error', 'origin_not_allowed') : undefined);
  });
  r.all('/', async (req: Request, res: Response) => {
    const keyName = String(res.locals.keyName ?? 'anonymous');
    const sid = req.header('mcp-session-id');
    if (sid !== undefined) {
      const s = sessions.get(sid);
      if (!s || s.keyName !== keyName) return void rpcError(res, 404, -32001, 'Session not found');
      return void (await s.transport.handleRequest(req, res, req.body));
    }
    if (req.method !== 'POST' || !isInitializeRequest(req.body)) return void rpcError(res, 400, -32000, 'Bad Request: no valid session id (send initialize first)');
    const server = serverFor(keyName);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, keyName, server });
        if (sessions.size > MAX_SESSIONS) void sessions.values().next().value?.transport.close();
        watchSessions();
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
      watchSessions();
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  return r;
}
