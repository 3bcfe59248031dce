/**
 * `npm run bench:selection`: tool selection on 300 tools (test/support/toolCatalog: 10 servers ×
 * 30, schemas as zod, pydantic and hand-written servers send them), against offering every tool,
 * in the same run. Per task of the scripted set (the one right tool is known): is the right tool
 * offered, the estimated tokens of the offered tools, and the time one selection takes, with the
 * same tool objects as the call before (memoised) and with new ones (what a step's activity gets).
 */
import { estimateTokens } from '../src/domain/contextGuard';
import { selectTools, type ServerTool } from '../src/domain/toolSelection';
import { fakeCatalog, TASKS } from '../test/support/toolCatalog';
import { pct } from './stats';

const tools = fakeCatalog() as ServerTool[];
const settings = { strategy: 'rank' as const, maxTools: Number(process.env.SELECT_MAX_TOOLS ?? 20), budgetTokens: Number(process.env.SELECT_BUDGET ?? 4000), schemaTokens: 300 };
const every = estimateTokens(tools);
const select = (message: string, serverTools = tools) => selectTools({ clientTools: [], serverTools, messages: [{ role: 'user', content: message }] }, settings);
for (let i = 0; i < 3; i++) for (const t of TASKS) select(t.message); // warm-up
let right = 0;
const tokens: number[] = [];
const ms: number[] = [];
for (const t of TASKS) {
  const t0 = performance.now();
  const o = select(t.message);
  ms.push(performance.now() - t0);
  if (o.offered.includes(t.tool)) right++;
  tokens.push(o.tokens);
}
// What a step's activity sees: its input deserialized, so new tool objects every step (no memo hits).
const cold: number[] = [];
for (const t of TASKS) {
  const fresh = JSON.parse(JSON.stringify(tools)) as ServerTool[];
  const t0 = performance.now();
  select(t.message, fresh);
  cold.push(performance.now() - t0);
}
const mean = tokens.reduce((a, b) => a + b, 0) / tokens.length;
console.log(`300 tools, ${TASKS.length} tasks, maxTools ${settings.maxTools}, budgetTokens ${settings.budgetTokens}`);
console.log(`right tool offered: ${right}/${TASKS.length} (${((100 * right) / TASKS.length).toFixed(1)}%)`);
console.log(`tool tokens per step: ${Math.round(mean)} (max ${Math.max(...tokens)}) vs every tool ${every}: ${((100 * mean) / every).toFixed(1)}%`);
console.log(`selection + trimming per step, same tool objects: p50 ${pct(ms, 50).toFixed(2)} ms, p99 ${pct(ms, 99).toFixed(2)} ms`);
console.log(`selection + trimming per step, new tool objects (as a step's activity has them): p50 ${pct(cold, 50).toFixed(2)} ms, p99 ${pct(cold, 99).toFixed(2)} ms`);
