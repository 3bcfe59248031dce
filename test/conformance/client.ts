/**
 * MCP conformance-suite client: `client.ts <server-url>` with MCP_CONFORMANCE_SCENARIO set, as
 * `@modelcontextprotocol/conformance client --command ...` invokes it (the URL is appended last).
 * Drives OUR McpPool (one `http` server at that URL) so the suite checks our connector, not the bare SDK.
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { McpServerSchema } from '../../src/config/mcpSchema';
import { McpPool } from '../../src/connectors/mcp/pool';

const SERVER = 'conformance';
const CALL = { timeoutMs: 15_000, idempotencyKey: 'conformance' };

type Handler = (pool: McpPool) => Promise<void>;

function resultText(result: CallToolResult): string {
  return result.content.map((c) => (c.type === 'text' ? c.text : `[${c.type}]`)).join('\n');
}

async function callExpecting(pool: McpPool, tool: string, args: Record<string, unknown>, expected: string) {
  const result = await pool.callTool(SERVER, tool, args, CALL);
  const text = resultText(result);
  console.log(`${tool}(${JSON.stringify(args)}) -> ${text}`);
  if (result.isError || !text.includes(expected)) throw new Error(`unexpected ${tool} result: ${text}`);
}

/** Lists tools and requires `name` among them. */
async function requireTool(pool: McpPool, name: string): Promise<void> {
  const tools = (await pool.listTools(SERVER)).map((t) => t.name);
  console.log(`tools: ${tools.join(', ') || '(none)'}`);
  if (!tools.includes(name)) throw new Error(`server does not offer tool ${name}`);
}

const scenarios: Record<string, Handler> = {
  // Handshake (the pool connects lazily on first use) plus a tools/list on the new session.
  initialize: async (pool) => {
    console.log(`tools: ${(await pool.listTools(SERVER)).length}`);
  },
  tools_call: async (pool) => {
    await requireTool(pool, 'add_numbers');
    await callExpecting(pool, 'add_numbers', { a: 5, b: 3 }, 'is 8');
  },
  // The server closes the tools/call SSE stream after a priming event (id + retry: 500) and answers on the
  // GET stream the client must reopen after `retry` ms with Last-Event-ID.
  'sse-retry': async (pool) => {
    await requireTool(pool, 'test_reconnection');
    await callExpecting(pool, 'test_reconnection', {}, 'completed successfully');
  },
};

async function main(): Promise<void> {
  const url = process.argv[process.argv.length - 1];
  const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
  const handler = scenarios[scenario];
  if (!url || !/^https?:\/\//.test(url)) throw new Error('usage: client.ts <server-url>');
  if (!handler) throw new Error(`unsupported scenario "${scenario}" (have: ${Object.keys(scenarios).join(', ')})`);
  const cfg = McpServerSchema.parse({ name: SERVER, transport: 'http', url, timeoutSeconds: 15 });
  const pool = new McpPool([cfg], process.env, {
    clientName: 'mix2api-conformance',
    clientVersion: '0.1.0',
    connectTimeoutMs: 10_000,
    onLog: (e) => console.error(`[pool ${e.level}] ${e.message}`),
  });
  try {
    await handler(pool);
  } finally {
    await pool.closeAll();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(`conformance client failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    process.exit(1);
  },
);
