/**
 * Tool selection: the model gets the tools a step needs, within the limits, without losing a tool
 * it is using; the client's tools pass untouched; the same input always yields the same offer.
 */
import { estimateTokens } from '../../src/domain/contextGuard';
import { trimDescription, trimSchema } from '../../src/domain/schemaTrim';
import { selectTools, type ToolSelectionSettings } from '../../src/domain/toolSelection';
import { TASKS, fakeCatalog } from '../support/toolCatalog';

const catalog = fakeCatalog();
const RANK: ToolSelectionSettings = { strategy: 'rank', maxTools: 20, budgetTokens: 8000, schemaTokens: 300 };
const clientTool = { type: 'function', function: { name: 'show_chart', description: 'Render a chart in the UI.', parameters: { type: 'object', title: 'kept', properties: {} } } };
const user = (content: string) => ({ role: 'user', content });
const ask = (message: string, s: Partial<ToolSelectionSettings> = {}, clientTools: unknown[] = []) =>
  selectTools({ clientTools, serverTools: catalog, messages: [user(message)] }, { ...RANK, ...s });
const callOf = (name: string, id = 'c1') => ({ role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name, arguments: '{}' } }] });
const catalogIndex = (name: string) => catalog.findIndex((t) => t.function.name === name);

test('the catalog has 300 tools with unique names, in catalog order', () => {
  const names = catalog.map((t) => t.function.name);
  expect(new Set(names).size).toBe(300);
  expect([...names].sort()).toEqual(names);
  for (const task of TASKS) expect(names).toContain(task.tool);
});

test("'all' offers every tool as it is", () => {
  const offer = selectTools({ clientTools: [clientTool], serverTools: catalog, messages: [user('hi')] }, { ...RANK, strategy: 'all' });
  expect(offer.tools).toHaveLength(301);
  offer.tools.forEach((t, i) => expect(t).toBe(i === 0 ? clientTool : catalog[i - 1]));
  expect(offer.offered).toEqual(catalog.map((t) => t.function.name));
  expect(offer.heldBack).toEqual([]);
  expect(offer.tokens).toBe(offer.fullTokens);
  expect(offer.fullTokens).toBe([clientTool, ...catalog].reduce((sum, t) => sum + estimateTokens(t), 0));
});

test('client tools come first and untouched, and count against maxTools', () => {
  const before = JSON.stringify(clientTool);
  const offer = ask('open an issue in the repo about the crash', { maxTools: 5 }, [clientTool, clientTool]);
  expect(offer.tools[0]).toBe(clientTool);
  expect(offer.tools[1]).toBe(clientTool);
  expect(JSON.stringify(clientTool)).toBe(before);
  expect(offer.tools).toHaveLength(5);
  expect(offer.offered).toHaveLength(3);
});

test('picks github__create_issue for "open an issue in the repo about the crash"', () => {
  const offer = ask('open an issue in the repo about the crash');
  expect(offer.offered).toContain('github__create_issue');
  expect(offer.offered.length + offer.heldBack.length).toBe(300);
  expect(offer.heldBack).not.toContain('github__create_issue');
});

test('offered tools are trimmed, in catalog order', () => {
  const offer = ask('list the pods and show me the logs of the api pod');
  const indexes = offer.offered.map(catalogIndex);
  expect([...indexes].sort((a, b) => a - b)).toEqual(indexes);
  offer.tools.forEach((t, i) => {
    const original = catalog[indexes[i]!]!;
    expect(t).toEqual({
      type: 'function',
      function: {
        name: original.function.name,
        description: trimDescription(original.function.description, 300),
        parameters: trimSchema(original.function.parameters, RANK.schemaTokens).schema,
      },
    });
  });
  expect(offer.tokens).toBe(offer.tools.reduce<number>((sum, t) => sum + estimateTokens(t), 0));
  expect(offer.tokens).toBeLessThan(offer.fullTokens);
});

test('the limits hold: maxTools and budgetTokens', () => {
  for (const [maxTools, budgetTokens] of [[20, 100000], [8, 100000], [40, 1500], [300, 700], [1, 100000], [0, 100000]] as const) {
    const offer = ask('show me the logs of the pod, then email the report to ana and post in the channel', { maxTools, budgetTokens }, [clientTool]);
    expect(offer.tools.length).toBeLessThanOrEqual(Math.max(1, maxTools));
    const serverTokens = offer.tools.slice(1).reduce<number>((sum, t) => sum + estimateTokens(t), 0);
    expect(serverTokens).toBeLessThanOrEqual(budgetTokens);
  }
});

test('a tool too large for what is left of the budget is passed over for smaller ones', () => {
  const tool = (name: string, props: number) => ({
    type: 'function' as const,
    function: {
      name,
      description: 'Build a sales report.',
      // Nested fields: they make the tool large, not its words many.
      parameters: { type: 'object', properties: { options: { type: 'object', properties: Object.fromEntries(Array.from({ length: props }, (_, i) => [`field${i}`, { type: 'string' }])) } } },
    },
  });
  // The large one matches best (its name says report twice), the small ones after it.
  const serverTools = [tool('a__report_report', 200), tool('b__report', 1), tool('c__report', 1), tool('d__other', 1)];
  const messages = [user('a sales report please')];
  expect(selectTools({ clientTools: [], serverTools, messages }, { ...RANK, maxTools: 1, budgetTokens: 1e6 }).offered).toEqual(['a__report_report']);
  const small = estimateTokens(selectTools({ clientTools: [], serverTools: [serverTools[1]!], messages: [user('report')] }, RANK).tools[0]);
  const offer = selectTools({ clientTools: [], serverTools, messages }, { ...RANK, budgetTokens: 2 * small + 1 });
  expect(offer.offered).toEqual(['b__report', 'c__report']);
  expect(offer.heldBack).toEqual(['a__report_report', 'd__other']);
});

test('a tool the conversation called stays offered, even ranked last with the limits full', () => {
  const messages = [
    user('drag the card to the done column'),
    callOf('browser__drag'),
    { role: 'tool', tool_call_id: 'c1', content: 'dragged' },
    // A result named by its tool, without its call in context (the call was trimmed away).
    { role: 'tool', tool_call_id: 'c0', name: 'fs__touch', content: 'ok' },
    user('now open an issue in the repo about the crash'),
  ];
  const offer = selectTools({ clientTools: [clientTool], serverTools: catalog, messages }, { ...RANK, maxTools: 1, budgetTokens: 1 });
  expect(offer.offered).toEqual(['browser__drag', 'fs__touch']);
  expect(offer.heldBack).not.toContain('browser__drag');
  expect(offer.tools[0]).toBe(clientTool);
  expect(offer.tools).toHaveLength(3);
});

test('an earlier turn decides when the last message gives no hint', () => {
  const messages = [
    user('the checkout page crashes on Safari'),
    { role: 'assistant', content: 'Shall I open a GitHub issue in acme/web about it?' },
    user('yes please'),
  ];
  const offer = selectTools({ clientTools: [], serverTools: catalog, messages }, RANK);
  expect(offer.offered).toContain('github__create_issue');
});

test('with no hint at all, the first tools of the catalog, within the limits', () => {
  const offer = ask('ok', { maxTools: 6 });
  expect(offer.offered).toEqual(catalog.slice(0, 6).map((t) => t.function.name));
  // But a called tool is hint enough: nothing is added to it.
  const called = selectTools({ clientTools: [], serverTools: catalog, messages: [callOf('k8s__list_pods'), user('ok')] }, RANK);
  expect(called.offered).toEqual(['k8s__list_pods']);
});

test('only tools that match are offered', () => {
  const offer = ask('postgres vacuum', { maxTools: 50 });
  expect(offer.offered.length).toBeLessThan(50);
  expect(offer.offered).toContain('postgres__vacuum_table');
  for (const name of offer.offered) expect(name.startsWith('postgres__')).toBe(true);
});

test('deterministic: the same input yields the same offer, with or without what was kept from earlier calls', () => {
  const messages = [user('check the pods'), callOf('k8s__list_pods'), { role: 'tool', tool_call_id: 'c1', content: 'web-1 Running\napi-2 CrashLoopBackOff' }, user('why does api-2 crash?')];
  const first = selectTools({ clientTools: [clientTool], serverTools: catalog, messages }, RANK);
  expect(selectTools({ clientTools: [clientTool], serverTools: catalog, messages }, RANK)).toEqual(first);
  const fresh = JSON.parse(JSON.stringify(catalog)) as typeof catalog;
  expect(selectTools({ clientTools: [clientTool], serverTools: fresh, messages }, RANK)).toEqual(first);
});

describe('scripted tasks: a user message and the one right tool among 300', () => {
  const hits = (messages: (message: string) => Array<{ role: string; content?: unknown }>) =>
    TASKS.filter((t) => selectTools({ clientTools: [], serverTools: catalog, messages: messages(t.message) }, RANK).offered.includes(t.tool));

  it(`offers the right tool for at least 95% of the ${TASKS.length} tasks (maxTools 20)`, () => {
    expect(TASKS.length).toBeGreaterThanOrEqual(40);
    expect(hits((m) => [user(m)]).length / TASKS.length).toBeGreaterThanOrEqual(0.95);
  });

  it('and for at least 90% of them after an unrelated turn with a long tool result', () => {
    const log = Array.from({ length: 200 }, (_, i) => `line ${i}: GET /api/orders/${i} 200 12ms`).join('\n');
    const earlier = [
      { role: 'system', content: 'You are the platform team assistant.' },
      user('check the k8s pods in prod'),
      callOf('k8s__list_pods'),
      { role: 'tool', tool_call_id: 'c1', content: log },
      { role: 'assistant', content: 'All pods are running; web-7f9c restarted 3 times.' },
    ];
    expect(hits((m) => [...earlier, user(m)]).length / TASKS.length).toBeGreaterThanOrEqual(0.9);
  });
});
