/**
 * Recovery benchmark: kill -9 and measure how soon the work moves again. Three scenarios, each
 * `RECOVERY_KILLS` times (default 20):
 *
 * - **stream**: two `mix2api start` processes on one Temporal dev server; a client streams a
 *   6-s answer from one of them, which is killed mid-stream; the client reconnects to the other
 *   (`GET /v1/runs/{id}/events`, Last-Event-ID). Then the killed one starts again.
 * - **tool**: the same two processes; a run calls a 2-s MCP tool; 0.5 s into the call the process
 *   running it (found from the activity's worker identity) is killed; the client reads on from whichever
 *   process is left.
 * - **restart**: `mix2api start` as `npm start` runs it (`node dist/cli.js`, without npm itself) on
 *   its embedded dev server, killed as a whole (mix2api and its dev server, kill -9 both)
 *   mid-stream, then started again on the same data.
 *
 * It reports, p50 and max: kill → the work moving again (the upstream asked again, or the tool
 * called again), kill → the first byte of new content the client did not have, kill → the run
 * complete (`[DONE]`); for restart also ready → first new byte. Every answer is checked (each
 * event once, the text whole, each tool effect once). Run: `npm run bench:recovery`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { parseIdentity } from '../src/activities/lease';
import { startDevServer } from '../src/connectors/temporalDevServer';
import { childMix2api, type ChildMix2api } from '../test/support/childMix2api';
import { COUNT_TOOL, startCountingMcpServer } from '../test/support/countingMcpServer';
import { freePort } from '../test/support/mcpServers';
import { startScriptedUpstream, type RecordedRequest } from '../test/support/scriptedUpstream';
import { contentOf, sseEvents } from '../test/support/sse';
import { pct, printAligned, runBench } from './stats';

const KILLS = Number(process.env.RECOVERY_KILLS ?? 20);
const SCENARIOS = new Set((process.env.RECOVERY_SCENARIOS ?? 'stream,tool,restart').split(','));
const CHUNKS = 60;
const CHUNK_MS = 100;
const TOOL_MS = 2000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const LABEL = /recovery (\S+)/;
const textOf = (label: string) => Array.from({ length: CHUNKS }, (_, k) => `${label}:${k} `).join('');
const labelOf = (r: RecordedRequest) => {
  const user = ((r.body.messages ?? []) as Array<{ role: string; content?: unknown }>).find((m) => m.role === 'user');
  return LABEL.exec(typeof user?.content === 'string' ? user.content : '')?.[1] ?? '?';
};

interface Reader {
  runId: string;
  ids: Set<string>;
  dupes: number;
  content: string;
  done: boolean;
  /** Time of the first content on a connection after the first. */
  resumedAt?: number;
  connections: number;
  chunks: number;
}

async function readInto(res: Response, r: Reader): Promise<void> {
  r.connections++;
  try {
    for await (const e of sseEvents(res)) {
      if (e.data === '[DONE]') {
        r.done = true;
        return;
      }
      if (e.id) {
        if (r.ids.has(e.id)) r.dupes++;
        r.ids.add(e.id);
      }
      const text = contentOf(e.data);
      if (text) {
        r.chunks++;
        if (r.connections > 1) r.resumedAt ??= Date.now();
      }
      r.content += text;
    }
  } catch {
    // cut with its process
  }
}

async function startRun(url: string, label: string, lastId = () => ''): Promise<{ reader: Reader; first: Promise<void> }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'agent', stream: true, messages: [{ role: 'user', content: `recovery ${label}` }] }),
  });
  if (res.status !== 200) throw new Error(`POST: ${res.status} ${await res.text()}${lastId()}`);
  const reader: Reader = { runId: res.headers.get('x-run-id')!, ids: new Set(), dupes: 0, content: '', done: false, connections: 0, chunks: 0 };
  return { reader, first: readInto(res, reader) };
}

async function resume(url: string, r: Reader, deadlineMs = 60_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!r.done) {
    const last = [...r.ids].pop();
    try {
      const res = await fetch(`${url}/v1/runs/${r.runId}/events`, { headers: last ? { 'last-event-id': last } : {} });
      if (res.status === 200) await readInto(res, r);
      else await res.body?.cancel();
    } catch {
      // not up yet
    }
    if (r.done) return;
    if (Date.now() > deadline) throw new Error(`run ${r.runId} did not finish in time`);
    await sleep(100);
  }
}

async function waitFor(what: string, check: () => boolean, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Row {
  moved: number[];
  firstByte: number[];
  complete: number[];
  readyToByte: number[];
  problems: string[];
}
const newRow = (): Row => ({ moved: [], firstByte: [], complete: [], readyToByte: [], problems: [] });

function check(row: Row, r: Reader, want: string, what: string): void {
  if (r.dupes > 0) row.problems.push(`${what}: ${r.dupes} events twice`);
  if (r.content !== want) row.problems.push(`${what}: text differs (${r.content.length} vs ${want.length} chars)`);
}

async function main(): Promise<void> {
  const watchdog = setTimeout(() => (console.error('bench watchdog fired; exiting'), process.exit(1)), 40 * 60_000);
  watchdog.unref();
  const dir = mkdtempSync(join(tmpdir(), 'mix2api-recovery-'));
  const upstream = await startScriptedUpstream();
  const counter = await startCountingMcpServer({ workMs: TOOL_MS });
  upstream.setDefault((req) => {
    const label = labelOf(req);
    if (!label.startsWith('tool')) return { steps: [{ kind: 'text', text: textOf(label), chunks: CHUNKS, delayMs: CHUNK_MS }] };
    const tool = ((req.body.messages ?? []) as Array<{ role: string; content?: unknown }>).find((m) => m.role === 'tool');
    if (tool) return { steps: [{ kind: 'text', text: `done: ${String(tool.content)}`, chunks: 4, delayMs: 20 }] };
    return { steps: [{ kind: 'toolCalls', calls: [{ id: `call_${label.replace(/\W/g, '')}`, name: `counter__${COUNT_TOOL}`, arguments: JSON.stringify({ label }) }] }] };
  });
  const base = (temporal: Record<string, unknown>) => ({
    temporal,
    upstreams: [{ name: 'scripted', baseURL: upstream.url, retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 }, timeouts: { connectSeconds: 5, idleSeconds: 10, totalSeconds: 60 } }],
    mcpServers: [{ name: 'counter', transport: 'http', url: counter.url, timeoutSeconds: 60 }],
    models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['counter'] }],
    ...(process.env.RECOVERY_MIX_CONFIG ? (JSON.parse(process.env.RECOVERY_MIX_CONFIG) as Record<string, unknown>) : {}),
  });
  const rows: Record<string, Row> = { stream: newRow(), tool: newRow(), restart: newRow() };
  const dev = await startDevServer({ dbFile: join(dir, 'shared.db'), port: await freePort(), headless: true });
  const connection = await Connection.connect({ address: dev.address });
  const temporal = new Client({ connection });
  const pair: ChildMix2api[] = [];
  let n = 0;
  try {
    const cfg = base({ address: dev.address, taskQueue: 'recovery' });
    for (const i of [0, 1]) pair.push(childMix2api({ dir, port: await freePort(), config: cfg, configName: `p${i}.yaml` }));
    await Promise.all(pair.map((p) => p.start(120_000)));

    // ---- stream: kill the process streaming the step ----
    for (let k = 0; SCENARIOS.has('stream') && k < KILLS; k++) {
      const [victim, other] = k % 2 === 0 ? [pair[0]!, pair[1]!] : [pair[1]!, pair[0]!];
      const label = `s${k}-${++n}`;
      const { reader, first } = await startRun(victim.url, label);
      await waitFor('10 chunks', () => reader.chunks >= 10);
      const killedAt = await victim.kill();
      await first;
      await resume(other.url, reader);
      const doneAt = Date.now();
      const again = upstream.requests.filter((r) => labelOf(r) === label && r.receivedAt > killedAt);
      const row = rows.stream!;
      if (again[0]) row.moved.push(again[0].receivedAt - killedAt);
      else row.problems.push(`${label}: upstream never asked again`);
      if (reader.resumedAt) row.firstByte.push(reader.resumedAt - killedAt);
      row.complete.push(doneAt - killedAt);
      check(row, reader, textOf(label), label);
      await victim.start(120_000);
    }

    // ---- tool: kill the process running the tool ----
    for (let k = 0; SCENARIOS.has('tool') && k < KILLS; k++) {
      const entry = pair[k % 2]!;
      const label = `tool${k}-${++n}`;
      const { reader, first } = await startRun(entry.url, label);
      await waitFor('the tool call', () => counter.keysFor(label).some((key) => counter.inFlight.has(key)));
      // Mid-call (a kill in the first few ms, before a renewal names the call, falls to the 8-s heartbeat timeout).
      await sleep(500);
      const d = await temporal.workflow.getHandle(reader.runId).describe();
      const holder = parseIdentity(d.raw.pendingActivities?.find((a) => a.activityType?.name === 'callTool')?.lastWorkerIdentity)?.peerUrl;
      const victim = pair.find((p) => p.url === holder);
      if (!victim) throw new Error(`no process runs the tool of ${label} (identity ${holder})`);
      const other = pair.find((p) => p !== victim)!;
      const killedAt = await victim.kill();
      if (victim === entry) {
        await first;
        await resume(other.url, reader);
      } else await first;
      const doneAt = Date.now();
      const row = rows.tool!;
      const key = counter.keysFor(label)[0]!;
      const calls = counter.callTimes.get(key) ?? [];
      if (calls[1]) row.moved.push(calls[1] - killedAt);
      else row.problems.push(`${label}: the tool was not called again (keys ${JSON.stringify(counter.keysFor(label))}, calls ${JSON.stringify(calls.map((t) => t - killedAt))})`);
      row.complete.push(doneAt - killedAt);
      if (counter.sideEffects.get(key) !== 1) row.problems.push(`${label}: ${counter.sideEffects.get(key)} side effects`);
      if (!reader.done || reader.dupes > 0) row.problems.push(`${label}: stream incomplete or events twice`);
      await victim.start(120_000);
    }
    await Promise.all(pair.map((p) => p.kill()));

    // ---- restart: kill -9 `mix2api start` with its embedded dev server, start it again ----
    const solo = childMix2api({ dir, port: await freePort(), config: base({ address: 'embedded', port: await freePort(), headless: true, dataDir: join(dir, 'solo') }), configName: 'solo.yaml', entry: 'dist' });
    pair.push(solo);
    await solo.start(120_000);
    for (let k = 0; SCENARIOS.has('restart') && k < KILLS; k++) {
      const label = `r${k}-${++n}`;
      const { reader, first } = await startRun(solo.url, label);
      await waitFor('10 chunks', () => reader.chunks >= 10);
      const killedAt = await solo.kill({ withChildren: true });
      await first;
      const readyAt = await solo.start(120_000);
      await resume(solo.url, reader);
      const doneAt = Date.now();
      const row = rows.restart!;
      const again = upstream.requests.filter((r) => labelOf(r) === label && r.receivedAt > killedAt);
      if (again[0]) row.moved.push(again[0].receivedAt - killedAt);
      if (reader.resumedAt) {
        row.firstByte.push(reader.resumedAt - killedAt);
        row.readyToByte.push(reader.resumedAt - readyAt);
      }
      row.complete.push(doneAt - killedAt);
      check(row, reader, textOf(label), label);
    }
  } finally {
    // SIGTERM, not SIGKILL: `mix2api start` stops its embedded dev server only on a clean shutdown.
    for (const p of pair) await p.terminate().catch(() => undefined);
    await connection.close();
    await dev.stop();
    await counter.close();
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const f = (v: number[]) => (v.length ? `${(pct(v, 50) / 1000).toFixed(2)}/${(Math.max(...v) / 1000).toFixed(2)}` : '-');
  printAligned(
    ['kill of', 'kills', 'moving again p50/max', 'first new byte p50/max', 'complete p50/max', 'ready→byte p50/max', 'problems'],
    Object.entries(rows).map(([k, r]) => [k, String(r.complete.length), f(r.moved), f(r.firstByte), f(r.complete), f(r.readyToByte), String(r.problems.length)]),
    `seconds after kill -9; stream: a ${(CHUNKS * CHUNK_MS) / 1000}-s answer killed after 10 chunks; tool: a ${TOOL_MS / 1000}-s tool; moving again = upstream asked again (tool: the tool called again)`,
  );
  for (const [k, r] of Object.entries(rows)) for (const p of r.problems.slice(0, 5)) console.log(`${k}: ${p}`);
}

runBench(main);
