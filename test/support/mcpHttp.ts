/**
 * Streamable HTTP hosting for the test suite's in-process MCP servers: one SDK session per client,
 * started by an `initialize` POST, found again by its `mcp-session-id`. `open` makes the server
 * of a new session from its first request (null: nothing serves that path, 404).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

/** What `McpServer` and the low-level `Server` have in common here. */
export interface Connectable {
  connect(transport: Transport): Promise<void>;
  close(): Promise<void>;
}

export interface McpHttp<S extends Connectable> {
  port: number;
  /** The open sessions' servers. */
  servers(): S[];
  close(): Promise<void>;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as unknown) : undefined;
}

function rpcError(res: ServerResponse, status: number, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

export async function startMcpHttp<S extends Connectable>(open: (req: IncomingMessage) => S | null): Promise<McpHttp<S>> {
  const sessions = new Map<string, { transport: StreamableHTTPServerTransport; mcp: S }>();
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const sid = req.headers['mcp-session-id'];
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    const known = typeof sid === 'string' ? sessions.get(sid) : undefined;
    if (known) return known.transport.handleRequest(req, res, body);
    if (typeof sid === 'string') return rpcError(res, 404, 'Session not found');
    if (req.method !== 'POST' || !isInitializeRequest(body)) return rpcError(res, 400, 'Bad Request: no session');
    const mcp = open(req);
    if (!mcp) return rpcError(res, 404, `nothing serves ${req.url}`);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void sessions.set(id, { transport, mcp }),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await mcp.connect(transport);
    return transport.handleRequest(req, res, body);
  };
  const http = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) rpcError(res, 500, e instanceof Error ? e.message : String(e));
      else res.destroy();
    });
  });
  await new Promise<void>((ok, fail) => {
    http.once('error', fail);
    http.listen(0, '127.0.0.1', () => ok());
  });
  return {
    port: (http.address() as AddressInfo).port,
    servers: () => [...sessions.values()].map((s) => s.mcp),
    close: async () => {
      await Promise.all([...sessions.values()].map((s) => s.mcp.close().catch(() => undefined)));
      http.closeAllConnections();
      await new Promise<void>((ok) => http.close(() => ok()));
    },
  };
}
