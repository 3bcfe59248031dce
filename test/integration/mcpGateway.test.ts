/**
 * The MCP gateway (`/mcp`) through the MCP SDK's own `Client` over Streamable HTTP: tools/list
 * under mix2api's names and deny rules, tools/call as one durable workflow per call (seen in
 * Temporal), progress notifications, the idempotency key in `_meta`, cancellation, and the
 * security rules (keys, sessions per key, Origin).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { COUNT_TOOL, startCountingMcpServer, type CountingMcpServer } from '../support/countingMcpServer';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
let counter: CountingMcpServer;
const clients: Client[] = [];

beforeAll(async () => {
  counter = await startCountingMcpServer({ workMs: 3000 });
  counter.addTool('undo_count');
  s = await startStack({
    config: () => ({
      server: { port: 0, apiKeys: [{ name: 'a', key: 'sk-a' }, { name: 'b', key: 'sk-b' }, { name: 'c', key: 'sk-c', gatewayServers: ['everything'] }] },
      mcpServers: [{ ...stdioServer('everything', EVERYTHING, ['stdio']), tools: { deny: ['get-env'] }, approval: { tools: ['get-sum'] } }, { name: 'counter', transport: 'http', url: counter.url, timeoutSeconds: 60, compensations: { [COUNT_TOOL]: { tool: 'undo_count', args: { label: '$.args.label' } } } }],
      mcpGateway: { allowedOrigins: ['https://ide.example'], listChangedPollSeconds: 0.5 },
    }),
  });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await s?.stop();
  await counter?.close();
});

async function connect(key: string, headers: Record<string, string> = {}, approve?: (message: string) => boolean): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(`${s.apiUrl}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}`, ...headers } } });
  const client = new Client({ name: 'gateway-test', version: '1.0.0' }, approve ? { capabilities: { elicitation: {} } } : {});
  if (approve) client.setRequestHandler(ElicitRequestSchema, async (r) => ({ action: 'accept', content: { approve: approve(r.params.message) } }));
  await client.connect(transport);
  clients.push(client);
  return { client, transport };
}

const text = (r: object) => (((r as { content?: unknown }).content ?? []) as Array<{ type: string; text?: string }>).map((c) => c.text ?? '').join('');

test('tools/list: every configured server under mix2api names, deny rules applied', async () => {
  const { client } = await connect('sk-a');
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  expect(names).toEqual(expect.arrayContaining(['everything__echo', 'everything__get-sum', `counter__${COUNT_TOOL}`]));
  expect(names).not.toContain('everything__get-env');
  expect(tools.find((t) => t.name === 'everything__echo')!.inputSchema).toMatchObject({ type: 'object', properties: { message: expect.anything() } });
});

test('a key limited to some servers (gatewayServers) lists and calls only their tools', async () => {
  const { client } = await connect('sk-c');
  const names = (await client.listTools()).tools.map((t) => t.name);
  expect(names).toContain('everything__echo');
  expect(names.filter((n) => n.startsWith('counter__'))).toEqual([]);
  const r = await client.callTool({ name: `counter__${COUNT_TOOL}`, arguments: { label: 'not for c' } }).catch((e: unknown) => e);
  expect(String(r)).toMatch(/Unknown tool/);
  expect(counter.keysFor('not for c')).toEqual([]);
});

test('tools/call: one workflow per call, in Temporal, with the tool result', async () => {
  const { client } = await connect('sk-a');
  const r = await client.callTool({ name: 'everything__echo', arguments: { message: 'through the gateway' } });
  expect(r.isError).toBe(false);
  expect(text(r)).toContain('through the gateway');
  const runId = (r._meta as Record<string, string>)['mix2api/runId']!;
  expect(runId).toMatch(/^mcpcall-[0-9a-f]{32}$/);
  const d = await s.temporal.workflow.getHandle(runId).describe();
  expect(d.type).toBe('mcpToolCallWorkflow');
  expect(d.status.name).toBe('COMPLETED');
  const bad = await client.callTool({ name: 'everything__nope', arguments: {} }).catch((e: unknown) => e);
  expect(String(bad)).toMatch(/Unknown tool/);
});

test('progress while a slow tool runs; the same _meta idempotency key joins the first call, one side effect', async () => {
  const { client } = await connect('sk-a');
  const progress: number[] = [];
  const params = { name: `counter__${COUNT_TOOL}`, arguments: { label: 'gw-once' }, _meta: { idempotencyKey: 'gw-key-1' } };
  const [first, second] = await Promise.all([client.callTool(params, undefined, { onprogress: (p) => progress.push(p.progress), timeout: 30_000 }), client.callTool(params, undefined, { timeout: 30_000 })]);
  expect(text(first)).toContain('gw-once');
  expect(text(second)).toBe(text(first));
  expect((first._meta as Record<string, string>)['mix2api/runId']).toBe((second._meta as Record<string, string>)['mix2api/runId']);
  expect(counter.effectsFor('gw-once')).toBe(1);
  expect(progress.length).toBeGreaterThanOrEqual(2);
  expect(progress).toEqual([...progress].sort((x, y) => x - y));
});

test('cancellation: a client that cancels its call cancels the workflow', async () => {
  const { client } = await connect('sk-a');
  const abort = new AbortController();
  const call = client.callTool({ name: `counter__${COUNT_TOOL}`, arguments: { label: 'gw-cancel' } }, undefined, { signal: abort.signal, onprogress: () => undefined, timeout: 30_000 });
  const deadline = Date.now() + 10_000;
  while (counter.keysFor('gw-cancel').length === 0 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 50));
  abort.abort();
  await expect(call).rejects.toThrow();
  const key = counter.keysFor('gw-cancel')[0]!;
  const runId = key.split('/')[0]!;
  let status = '';
  for (let i = 0; i < 100 && status !== 'CANCELLED'; i++) {
    status = (await s.temporal.workflow.getHandle(runId).describe()).status.name;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  expect(status).toBe('CANCELLED');
  // Whether the cancel reached the tool or the tool finished first, the work may have been done:
  // its declared undo ran, in the same run.
  const hist = await s.temporal.workflow.getHandle(runId).fetchHistory();
  const scheduled = (hist.events ?? []).map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean);
  expect(scheduled).toEqual(['callTool', 'callTool']);
  expect(counter.addedCalls).toContainEqual({ tool: 'undo_count', args: { label: 'gw-cancel' } });
});

test('approval: a tool the server guards asks the client (elicitation); its answer decides, in the run', async () => {
  const asked: string[] = [];
  let answer = true;
  const { client } = await connect('sk-a', {}, (m) => (asked.push(m), answer));
  const yes = await client.callTool({ name: 'everything__get-sum', arguments: { a: 2, b: 3 } });
  expect(yes.isError).toBe(false);
  expect(text(yes)).toContain('5');
  expect(asked[0]).toMatch(/everything\/get-sum/);
  answer = false;
  const no = await client.callTool({ name: 'everything__get-sum', arguments: { a: 1, b: 1 } });
  expect(no.isError).toBe(true);
  expect(text(no)).toMatch(/not approved/);
  expect(asked).toHaveLength(2);
  // Unguarded tools ask nothing.
  await client.callTool({ name: 'everything__echo', arguments: { message: 'no question' } });
  expect(asked).toHaveLength(2);
  const hist = await s.temporal.workflow.getHandle((no._meta as Record<string, string>)['mix2api/runId']!).fetchHistory();
  expect(hist.events?.some((e) => e.workflowExecutionUpdateAcceptedEventAttributes)).toBe(true);
  expect(hist.events?.some((e) => e.activityTaskScheduledEventAttributes)).toBe(false); // the tool never ran
});

test('notifications/tools/list_changed: a tool added on a server reaches the gateway client, and its list', async () => {
  const { client } = await connect('sk-a');
  let changed = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    changed++;
  });
  expect((await client.listTools()).tools.map((t) => t.name)).not.toContain('counter__added_later');
  await new Promise((ok) => setTimeout(ok, 1000)); // the poller has read the list once
  counter.addTool('added_later');
  const deadline = Date.now() + 15_000;
  while (changed === 0 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 100));
  expect(changed).toBeGreaterThanOrEqual(1);
  expect((await client.listTools()).tools.map((t) => t.name)).toContain('counter__added_later');
  expect(text(await client.callTool({ name: 'counter__added_later', arguments: {} }))).toBe('added_later ok');
});

test('security: keys required, a session belongs to its key, foreign Origins refused', async () => {
  const anonymous = await fetch(`${s.apiUrl}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
  expect(anonymous.status).toBe(401);
  const { transport } = await connect('sk-a');
  const stolen = await fetch(`${s.apiUrl}/mcp`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk-b', 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': transport.sessionId!, 'mcp-protocol-version': '2025-11-25' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  expect(stolen.status).toBe(404);
  const evil = await fetch(`${s.apiUrl}/mcp`, { method: 'POST', headers: { authorization: 'Bearer sk-a', origin: 'https://evil.example', 'content-type': 'application/json' }, body: '{}' });
  expect(evil.status).toBe(403);
  expect(((await evil.json()) as { error: { code: string } }).error.code).toBe('origin_not_allowed');
  const { client } = await connect('sk-b', { origin: 'https://ide.example' });
  expect((await client.listTools()).tools.length).toBeGreaterThan(0);
});
