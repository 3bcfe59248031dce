/**
 * Tool-loop benchmark: one run = 4 model calls and 3 MCP tool calls in sequence (the model calls
 * server-everything `echo` three times, then answers with text). Compares mix2api (non-streaming
 * POST /v1/chat/completions; a Temporal workflow with one activity per model call and per tool call)
 * with a plain in-process loop (the same openai client against the scripted upstream directly, plus
 * an McpPool on its own server-everything over stdio), sequentially and at concurrency 4.
 * Prints p50/p99 per run, the time mix2api adds per step, ratios and the workflow history size.
 * Run: `npx tsx bench/toolLoop.ts`. Numbers only — no pass/fail.
 */
import { setMaxListeners } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { parseConfig } from '../src/config/load';
import { McpPool } from '../src/connectors/mcp/pool';
import { toolResultToText } from '../src/connectors/mcp/toolResult';
import { startDevServer, type DevServer } from '../src/connectors/temporalDevServer';
import type { ChatCompletionResult } from '../src/domain/run';
import { buildToolCatalog, toOpenAiTool } from '../src/domain/toolNames';
import { installLogger } from '../src/roles/logging';
import { startSystem, type RunningSystem } from '../src/roles/system';
import { EVERYTHING, stdioServer } from '../test/support/mcpServers';
import { startScriptedUpstream, type RecordedRequest, type ScriptedUpstream } from '../test/support/scriptedUpstream';
import { freePort } from '../test/support/mcpServers';
import { pct, printAligned, runBench } from './stats';

const TOOL_CALLS = 3; // per run; plus one more model call for the final answer
const STEPS = TOOL_CALLS + 1 + TOOL_CALLS; // 4 model calls + 3 tool calls
const MODES: Array<{ name: string; concurrency: number; runs: number }> = [
  { name: 'sequential', concurrency: 1, runs: 20 },
  { name: 'concurrency 4', concurrency: 4, runs: 20 },
];
const WARMUP = 3;
const UPSTREAM_DELAY_MS = 0; // per scripted delta; the same for both targets
const REQUEST_TIMEOUT_MS = 30_000; // one HTTP request (a whole mix2api run, or one baseline model call)
const TOOL_TIMEOUT_MS = 10_000;
const MODE_BUDGET_MS = 60_000; // one target in one mode
const WATCHDOG_MS = 290_000; // whole bench, incl. startup and cleanup (< 5 min)
const FINAL = 'Echoed three times.';
const SERVER = 'everything';
const TOOL = 'echo';

type Target = 'baseline' | 'mix2api';
interface Result { ms: number[]; ids: string[]; errors: string[]; wallMs: number; aborted: boolean; loopP99: number; cpu: { node: number; temporal: number } }

/** CPU seconds a process has used so far, from /proc (Linux); NaN elsewhere. */
function procCpuSeconds(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in USER_HZ (100 on Linux)
  } catch {
    return NaN;
  }
}
let temporalPid: number | undefined;

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T | void> =>
  Promise.race([p, new Promise<void>((r) => setTimeout(() => (console.error(`  ${what}: gave up after ${ms} ms`), r()), ms).unref())]);

const toolResults = (req: RecordedRequest): number =>
  (Array.isArray(req.body.messages) ? (req.body.messages as Array<{ role?: unknown }>) : []).filter((m) => m.role === 'tool').length;

/** The scripted model: a tool call while fewer than 3 tool results are in the conversation, then text. */
function scriptedModel(req: RecordedRequest) {
  const done = toolResults(req);
  if (done < TOOL_CALLS) {
    const args = JSON.stringify({ message: `bench echo ${done + 1}` });
    return { steps: [{ kind: 'toolCalls' as const, calls: [{ name: `${SERVER}__${TOOL}`, arguments: args }], delayMs: UPSTREAM_DELAY_MS }] };
  }
  return { steps: [{ kind: 'text' as const, text: FINAL, delayMs: UPSTREAM_DELAY_MS }] };
}

/** One run through mix2api: a single non-streaming request; the loop runs inside the workflow. */
async function mix2apiRun(client: OpenAI, signal: AbortSignal): Promise<{ ms: number; id: string }> {
  const t0 = performance.now();
  const r = await client.chat.completions.create(
    { model: 'agent', messages: [{ role: 'user', content: 'bench mix2api' }] },
    { signal, timeout: REQUEST_TIMEOUT_MS },
  );
  const ms = performance.now() - t0;
  const content = r.choices[0]?.message.content;
  if (content !== FINAL) throw new Error(`unexpected answer (${r.choices[0]?.finish_reason}): ${String(content).slice(0, 120)}`);
  return { ms, id: r.id };
}

/** One run of the baseline: the same loop, in this process, without Temporal. */
async function baselineRun(
  client: OpenAI,
  pool: McpPool,
  tools: ChatCompletionTool[],
  runNo: number,
  signal: AbortSignal,
): Promise<{ ms: number; id: string }> {
  const t0 = performance.now();
  const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'bench baseline' }];
  for (let step = 0; step <= TOOL_CALLS + 1; step++) {
    const r = await client.chat.completions.create({ model: 'scripted', messages, tools }, { signal, timeout: REQUEST_TIMEOUT_MS });
    const msg = r.choices[0]?.message;
    const calls = (msg?.tool_calls ?? []).flatMap((c) => (c.type === 'function' ? [c] : []));
    if (calls.length === 0) {
      if (msg?.content !== FINAL) throw new Error(`unexpected answer: ${String(msg?.content).slice(0, 120)}`);
      return { ms: performance.now() - t0, id: r.id };
    }
    messages.push({ role: 'assistant', content: msg?.content ?? null, tool_calls: calls });
    const outcomes = await Promise.all(
      calls.map(async (c) => {
        const tool = c.function.name.slice(`${SERVER}__`.length);
        const args = JSON.parse(c.function.arguments || '{}') as Record<string, unknown>;
        const res = await pool.callTool(SERVER, tool, args, { signal, timeoutMs: TOOL_TIMEOUT_MS, idempotencyKey: `bench/${runNo}/${c.id}` });
        return toolResultToText(res, 65536).text;
      }),
    );
    calls.forEach((c, i) => messages.push({ role: 'tool', tool_call_id: c.id, content: outcomes[i]! }));
  }
  throw new Error(`no text answer after ${TOOL_CALLS + 2} model calls`);
}

async function runMode(one: (runNo: number, signal: AbortSignal) => Promise<{ ms: number; id: string }>, n: number, concurrency: number, signal: AbortSignal): Promise<Result> {
  const res: Result = { ms: [], ids: [], errors: [], wallMs: 0, aborted: false, loopP99: NaN, cpu: { node: NaN, temporal: NaN } };
  const cpu0 = process.cpuUsage();
  const tcpu0 = procCpuSeconds(temporalPid);
  let next = 0;
  const loop = monitorEventLoopDelay({ resolution: 10 }); // client, baseline and mix2api share this process
  loop.enable();
  const t0 = performance.now();
  const lane = async () => {
    while (next < n && !signal.aborted) {
      const runNo = next++;
      try {
        // Per run, so listeners the openai and MCP SDKs leave on a signal do not pile up on the mode's.
        const r = await one(runNo, AbortSignal.any([signal]));
        res.ms.push(r.ms);
        res.ids.push(r.id);
      } catch (e) {
        res.errors.push(e instanceof Error ? e.message : String(e));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  res.wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  res.cpu = { node: (cpu.user + cpu.system) / 1e6, temporal: procCpuSeconds(temporalPid) - tcpu0 };
  loop.disable();
  res.loopP99 = loop.percentile(99) / 1e6;
  res.aborted = signal.aborted;
  return res;
}

/** CPU seconds used during the phase, as a share of one core over its wall time. */
const cpuShare = (r: Result, who: 'node' | 'temporal'): string => `${((100 * r.cpu[who]) / (r.wallMs / 1000)).toFixed(0)}%`;

/** Event type of a history event, from whichever `...EventAttributes` field it carries. */
function eventKind(e: object): string {
  const key = Object.entries(e).find(([k, v]) => k.endsWith('EventAttributes') && v)?.[0] ?? 'unknown';
  return key.replace(/EventAttributes$/, '');
}

async function main(): Promise<void> {
  const watchdog = setTimeout(() => (console.error('bench watchdog fired; exiting'), process.exit(1)), WATCHDOG_MS);
  watchdog.unref();
  installLogger('ERROR');
  setMaxListeners(64);
  const root = process.cwd();
  // TOOLLOOP_DATA_DIR moves the dev server's SQLite file (e.g. to a tmpfs, to take disk sync latency out).
  const dataDir = process.env.TOOLLOOP_DATA_DIR ? resolve(process.env.TOOLLOOP_DATA_DIR, 'bench-tools') : join(root, '.data', 'bench-tools');
  rmSync(dataDir, { recursive: true, force: true });

  let dev: DevServer | undefined;
  let upstream: ScriptedUpstream | undefined;
  let system: RunningSystem | undefined;
  let pool: McpPool | undefined;
  let connection: Connection | undefined;
  try {
    dev = await startDevServer({ root, dbFile: join(dataDir, 'temporal.db'), port: await freePort(), headless: true });
    temporalPid = dev.process.pid;
    upstream = await startScriptedUpstream();
    upstream.setDefault(scriptedModel);
    const config = parseConfig(
      {
        server: { port: 0 },
        temporal: { address: dev.address, taskQueue: 'bench-tools' },
        upstreams: [{ name: 'scripted', baseURL: upstream.url }],
        mcpServers: [{ ...stdioServer(SERVER, EVERYTHING, ['stdio']), timeoutSeconds: TOOL_TIMEOUT_MS / 1000 }],
        models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: [SERVER] }],
      },
      {},
    );
    let t0 = performance.now();
    system = await startSystem({ config, temporalAddress: dev.address, roles: { worker: true, api: true } });
    console.log(`mix2api started in ${(performance.now() - t0).toFixed(0)} ms (Temporal ${dev.address})`);
    connection = await Connection.connect({ address: dev.address });
    const temporal = new Client({ connection, namespace: config.temporal.namespace });

    t0 = performance.now();
    pool = new McpPool([...config.mcpServers], config.env, { clientName: 'mix2api-bench' });
    const tools: ChatCompletionTool[] = buildToolCatalog([{ server: SERVER, tools: await pool.listTools(SERVER) }]).entries.map(toOpenAiTool);
    console.log(`baseline McpPool connected, ${tools.length} tools, in ${(performance.now() - t0).toFixed(0)} ms`);

    const mix2api = new OpenAI({ baseURL: `${system.apiUrl!}/v1`, apiKey: 'none', maxRetries: 0 });
    const direct = new OpenAI({ baseURL: upstream.url, apiKey: 'none', maxRetries: 0 });
    const runs: Record<Target, (runNo: number, signal: AbortSignal) => Promise<{ ms: number; id: string }>> = {
      baseline: (runNo, signal) => baselineRun(direct, pool!, tools, runNo, signal),
      mix2api: (_runNo, signal) => mix2apiRun(mix2api, signal),
    };

    for (const t of ['baseline', 'mix2api'] as const) {
      upstream.requests.length = 0;
      const w = await runMode(runs[t], WARMUP, 1, AbortSignal.timeout(60_000));
      console.log(`warm-up ${t}: ${w.ms.length}/${WARMUP} ok (${w.ms.map((m) => m.toFixed(0)).join(', ')} ms)` +
        `${w.errors.length ? `, errors: ${w.errors.join('; ')}` : ''}, ${upstream.requests.length} upstream requests`);
      if (t === 'mix2api') describeUpstreamRequests(upstream.requests, tools);
    }

    const rows: Array<{ name: string; r: Record<Target, Result> }> = [];
    for (const { name, concurrency, runs: n } of MODES) {
      const r = {} as Record<Target, Result>;
      for (const t of ['baseline', 'mix2api'] as const) {
        r[t] = await runMode(runs[t], n, concurrency, AbortSignal.timeout(MODE_BUDGET_MS));
        const e = r[t].errors;
        console.log(`${name} ${t}: ${r[t].ms.length}/${n} ok in ${(r[t].wallMs / 1000).toFixed(1)} s, event-loop delay p99 ${r[t].loopP99.toFixed(0)} ms, ` +
          `CPU ${cpuShare(r[t], 'node')} this process + ${cpuShare(r[t], 'temporal')} Temporal server` +
          `${r[t].aborted ? ' (ABORTED: mode budget)' : ''}${e.length ? `, ${e.length} errors, first: ${e[0]}` : ''}`);
      }
      rows.push({ name, r });
    }
    printTable(rows);
    await withTimeout(printHistories(temporal, rows), 30_000, 'history fetch');
  } finally {
    console.log('cleaning up…');
    if (system) await withTimeout(system.stop(), 20_000, 'system.stop');
    if (pool) await withTimeout(pool.closeAll(), 5_000, 'pool.closeAll');
    if (connection) await withTimeout(connection.close(), 5_000, 'connection.close');
    if (upstream) await withTimeout(upstream.close(), 5_000, 'upstream.close');
    if (dev) await withTimeout(dev.stop(), 10_000, 'devServer.stop');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** What the upstream saw from mix2api's warm-up, next to what the baseline sends. */
function describeUpstreamRequests(reqs: RecordedRequest[], baselineTools: ChatCompletionTool[]): void {
  const first = reqs[0];
  if (!first) return;
  const same = JSON.stringify(first.body.tools) === JSON.stringify(baselineTools);
  const keys = Object.keys(first.body).sort().join(',');
  const last = reqs.find((q) => toolResults(q) === TOOL_CALLS);
  const roles = last ? (last.body.messages as Array<{ role: string }>).map((m) => m.role).join(',') : '-';
  console.log(`  mix2api → upstream: ${reqs.length / WARMUP} requests per run, body keys [${keys}], stream=${String(first.body.stream)}, ` +
    `tools ${same ? 'identical to' : 'DIFFERENT from'} the baseline's; final request roles [${roles}]`);
}

type HistoryEvent = NonNullable<Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>['events']>[number];
type Ts = { seconds?: { toString(): string } | number | null; nanos?: number | null } | null | undefined;
const tsMs = (ts: Ts): number => (ts ? Number(String(ts.seconds ?? 0)) * 1000 + (ts.nanos ?? 0) / 1e6 : NaN);

/** Where one run's time went, from its history's event times (server clock, ms). */
function timings(events: HistoryEvent[]): Record<string, number> {
  const at = new Map<string, number>();
  for (const e of events) at.set(String(e.eventId), tsMs(e.eventTime));
  const out: Record<string, number> = {};
  const add = (k: string, v: number) => (out[k] = (out[k] ?? 0) + v);
  const actType = new Map<string, string>();
  for (const e of events) {
    const t = tsMs(e.eventTime);
    const id = String(e.eventId);
    if (e.workflowExecutionStartedEventAttributes) out.start = t;
    if (e.workflowExecutionCompletedEventAttributes) out.end = t;
    const sched = e.activityTaskScheduledEventAttributes;
    if (sched) actType.set(id, sched.activityType?.name ?? '?');
    const started = e.activityTaskStartedEventAttributes;
    if (started) add(`${actType.get(String(started.scheduledEventId))} queue`, t - at.get(String(started.scheduledEventId))!);
    const done = e.activityTaskCompletedEventAttributes;
    if (done) add(`${actType.get(String(done.scheduledEventId))} run`, t - at.get(String(done.startedEventId))!);
    const wftStarted = e.workflowTaskStartedEventAttributes;
    if (wftStarted) add('wft queue', t - at.get(String(wftStarted.scheduledEventId))!);
    const wftDone = e.workflowTaskCompletedEventAttributes;
    if (wftDone) add('wft run', t - at.get(String(wftDone.startedEventId))!);
  }
  out.workflow = out.end! - out.start!;
  delete out.start;
  delete out.end;
  return out;
}

async function printHistories(temporal: Client, rows: Array<{ name: string; r: Record<Target, Result> }>): Promise<void> {
  const counts: number[] = [];
  let breakdown = '';
  const perMode: string[] = [];
  for (const { name, r } of rows) {
    const all: Array<Record<string, number>> = [];
    const toolMs: number[] = [];
    for (const [i, id] of r.mix2api.ids.entries()) {
      const events = (await temporal.workflow.getHandle(id).fetchHistory()).events ?? [];
      counts.push(events.length);
      const result = (await temporal.workflow.getHandle(id).result()) as ChatCompletionResult;
      for (const st of result.steps) if (st.kind === 'tool' && st.ms !== undefined) toolMs.push(st.ms);
      all.push({ client: r.mix2api.ms[i]!, ...timings(events) });
      if (!breakdown) {
        const kinds = new Map<string, number>();
        const acts = new Map<string, number>();
        for (const e of events) {
          const kind = eventKind(e);
          kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
          const act = e.activityTaskScheduledEventAttributes?.activityType?.name;
          if (act) acts.set(act, (acts.get(act) ?? 0) + 1);
        }
        breakdown = `  one run (${id}): ${events.length} events; activities ${[...acts].map(([k, v]) => `${k}×${v}`).join(', ')}\n` +
          `  by type: ${[...kinds].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`;
      }
    }
    for (const t of all) t['outside workflow'] = t.client! - t.workflow!;
    const keys = ['client', 'outside workflow', 'workflow', 'wft queue', 'wft run', 'listTools queue', 'listTools run',
      'callModel queue', 'callModel run', 'callTool queue', 'callTool run'];
    perMode.push(`  ${name.padEnd(13)} ${keys.map((k) => `${k} ${pct(all.map((t) => t[k] ?? 0), 50).toFixed(0)}`).join(', ')}; ` +
      `MCP call inside callTool p50/p99 ${pct(toolMs, 50)}/${pct(toolMs, 99)} per call`);
  }
  console.log(`\nhistory events per mix2api run (${counts.length} runs): min ${Math.min(...counts)}, p50 ${pct(counts, 50)}, max ${Math.max(...counts)}`);
  if (breakdown) console.log(breakdown);
  console.log('where a mix2api run\'s time goes (p50 over runs of per-run sums, ms; "queue" = scheduled→started, "run" = started→completed,' +
    ' wft = workflow tasks; from history event times):');
  for (const l of perMode) console.log(l);
}

function printTable(rows: Array<{ name: string; r: Record<Target, Result> }>): void {
  const f = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
  const f1 = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');
  const x = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}x` : '-');
  const header = ['mode', 'ok b/m', 'baseline p50/p99', 'mix2api p50/p99', `+per step p50 (/${STEPS})`, 'p50 ratio', 'p99 ratio', 'runs/s b/m'];
  const lines = rows.map(({ name, r }) => {
    const [b50, b99, m50, m99] = [pct(r.baseline.ms, 50), pct(r.baseline.ms, 99), pct(r.mix2api.ms, 50), pct(r.mix2api.ms, 99)];
    const rps = (t: Target) => r[t].ms.length / (r[t].wallMs / 1000);
    return [name, `${r.baseline.ms.length}/${r.mix2api.ms.length}`, `${f(b50)}/${f(b99)}`, `${f(m50)}/${f(m99)}`, f1((m50 - b50) / STEPS),
      x(m50 / b50), x(m99 / b99), `${rps('baseline').toFixed(1)}/${rps('mix2api').toFixed(1)}`];
  });
  printAligned(header, lines, `one run = ${TOOL_CALLS + 1} model calls + ${TOOL_CALLS} tool calls (${STEPS} steps); b = baseline (in-process loop), m = mix2api; ` +
    'times in ms per run; ratios = mix2api / baseline');
}

runBench(main);
