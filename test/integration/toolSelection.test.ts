/**
 * Many tools, one context: a run on ten real MCP servers (300 tools over Streamable HTTP) is
 * answered, not refused; each step offers at most `maxTools`, the relevant tool among them, the
 * called tool again on the next step; what was held back and the tool instruction's version are
 * on the run. A small catalog is offered whole and untouched.
 */
import { startCatalogMcpServers, type CatalogMcpServers, type CatalogTool } from '../support/catalogMcpServer';
import { fakeCatalog } from '../support/toolCatalog';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
let mcp: CatalogMcpServers;
const catalog: Record<string, CatalogTool[]> = {};
for (const t of fakeCatalog()) {
  const [server, tool] = t.function.name.split('__') as [string, string];
  (catalog[server] ??= []).push({ name: tool, description: t.function.description, inputSchema: t.function.parameters });
}
const servers = Object.keys(catalog);

beforeAll(async () => {
  mcp = await startCatalogMcpServers(catalog);
  s = await startStack({
    config: () => ({
      mcpServers: servers.map((name) => ({ name, transport: 'http', url: mcp.urlOf(name) })),
      models: [
        { id: 'many', upstream: 'scripted', model: 'scripted', mcpServers: servers, toolSelection: { maxTools: 20, budgetTokens: 4000 }, toolInstruction: { version: 'tools-v2', text: 'Call one tool at a time.', everySteps: 1 } },
        { id: 'few', upstream: 'scripted', model: 'scripted', mcpServers: ['fs'] },
      ],
    }),
  });
});
afterAll(async () => {
  await s?.stop();
  await mcp?.close();
});
beforeEach(() => s.upstream.reset());

type Sent = { messages: Array<{ role: string; content?: unknown }>; tools?: Array<{ function: { name: string; parameters: unknown } }> };
const sent = (i: number) => s.upstream.requests[i]!.body as unknown as Sent;

test('300 tools: answered; each step offers at most maxTools, the relevant and the called ones, and says so on the run', async () => {
  const args = JSON.stringify({ owner: 'acme', repo: 'api', title: 'Crash on start' });
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [{ name: 'github__create_issue', arguments: args }] }] }, { steps: [{ kind: 'text', text: 'Filed.' }] });
  const r = await s.openai.chat.completions.create({ model: 'many', messages: [{ role: 'user', content: 'open an issue in the repo about the crash' }] });
  expect(r.choices[0]!.message.content).toBe('Filed.');
  expect(mcp.calls).toContainEqual({ server: 'github', tool: 'create_issue', args: JSON.parse(args) });
  for (const i of [0, 1]) {
    const names = sent(i).tools!.map((t) => t.function.name);
    expect(names.length).toBeLessThanOrEqual(20);
    expect(names).toContain('github__create_issue');
  }
  // The instruction: after the client's messages' lead on every step, and again last (everySteps: 1) from step 1.
  expect(sent(0).messages[0]).toEqual({ role: 'system', content: 'Call one tool at a time.' });
  expect(sent(1).messages.at(-1)).toEqual({ role: 'system', content: 'Call one tool at a time.' });
  const run = (await (await fetch(`${s.apiUrl}/v1/runs/${r.id}`)).json()) as { steps: Array<{ kind: string; tools?: { offered: string[]; heldBack: number }; instruction?: string }> };
  const model = run.steps.filter((x) => x.kind === 'model');
  expect(model[0]!.tools!.heldBack).toBe(300 - model[0]!.tools!.offered.length);
  expect(model[0]!.tools!.offered).toContain('github__create_issue');
  expect(model.map((x) => x.instruction)).toEqual(['tools-v2', 'tools-v2']);
});

test('a catalog that fits is offered whole and untouched, with nothing recorded as held back', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'ok' }] });
  const r = await s.openai.chat.completions.create({ model: 'few', messages: [{ role: 'user', content: 'hi' }] });
  const names = sent(0).tools!.map((t) => t.function.name);
  expect(names).toEqual(catalog.fs!.map((t) => `fs__${t.name}`).sort());
  expect(sent(0).tools!.find((t) => t.function.name === `fs__${catalog.fs![0]!.name}`)!.function.parameters).toEqual(expect.objectContaining({ type: 'object' }));
  const run = (await (await fetch(`${s.apiUrl}/v1/runs/${r.id}`)).json()) as { steps: Array<{ tools?: unknown }> };
  expect(run.steps[0]!.tools).toBeUndefined();
});
