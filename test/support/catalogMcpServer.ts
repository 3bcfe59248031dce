/**
 * Many MCP servers in one test process: each catalog entry is a server at `/<name>/mcp`
 * (Streamable HTTP, one SDK session per client) listing its tools with their JSON Schemas as
 * given, and answering every call with `<tool> ok` while recording it. Stands for the ten servers
 * a user attaches, so a run can list hundreds of real MCP tools.
 */
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { startMcpHttp } from './mcpHttp';

export interface CatalogTool {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
}

export interface CatalogMcpServers {
  /** The endpoint of one server of the catalog. */
  urlOf(server: string): string;
  calls: Array<{ server: string; tool: string; args: Record<string, unknown> }>;
  close(): Promise<void>;
}

export async function startCatalogMcpServers(catalog: Record<string, CatalogTool[]>): Promise<CatalogMcpServers> {
  const calls: CatalogMcpServers['calls'] = [];
  const http = await startMcpHttp((req) => {
    const server = /^\/([^/]+)\/mcp/.exec(req.url ?? '')?.[1] ?? '';
    const tools = catalog[server];
    if (!tools) return null;
    const mcp = new Server({ name: server, version: '1.0.0' }, { capabilities: { tools: {} } });
    mcp.setRequestHandler(ListToolsRequestSchema, () => ({ tools }));
    mcp.setRequestHandler(CallToolRequestSchema, (req) => {
      calls.push({ server, tool: req.params.name, args: req.params.arguments ?? {} });
      return { content: [{ type: 'text' as const, text: `${req.params.name} ok` }] };
    });
    return mcp;
  });
  return { urlOf: (server) => `http://127.0.0.1:${http.port}/${server}/mcp`, calls, close: http.close };
}
