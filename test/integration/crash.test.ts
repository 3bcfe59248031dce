/**
 * Crash test: mix2api (`start`: worker + API in one process) runs as a child process and is killed
 * with SIGKILL mid-stream of an upstream call and while a tool runs, then started again on the same
 * port. The scripted upstream and a counting MCP server live in this process and survive the kill.
 * Every run must end, each tool side effect happen once per call, every answer be complete, every
 * reconnecting client (Last-Event-ID) get every event exactly once, and the runs move again within
 * seconds of the restart, not after the tool's 120 s timeout. And with a second process running, a
 * killed process's lease lapses and its streams and tools move to the live one within seconds,
 * before the 8-s heartbeat timeout that used to be the only way to notice a dead process.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { childMix2api, type ChildMix2api } from '../support/childMix2api';
import { COUNT_TOOL, startCountingMcpServer, type CountingMcpServer } from '../support/countingMcpServer';
import { freePort } from '../support/mcpServers';
import { labelIn, startScriptedUpstream, type RecordedRequest, type ScriptedUpstream } from '../support/scriptedUpstream';
import { newStreamLog, readInto, resume as resumeStream, type StreamLog } from '../support/streamLog';
import { testEnv, uniqueQueue } from '../support/stack';

jest.setTimeout(150_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stamp = Date.now().toString(36);

let dir: string;
let upstream: ScriptedUpstream;
let counter: CountingMcpServer;
let child: ChildMix2api;
let connection: Connection;
let temporal: Client;
let childConfig: Record<string, unknown>;

// ---- what the scripted model answers, per run label (the user message names it) ----
const LABEL = /crash run (\S+)/;
const userText = (label: string) => `crash run ${label}`;
const textA = (label: string) => Array.from({ length: 40 }, (_, k) => `${label}:${k} `).join('');
/** What a run labelled L… answers: a long stream (12 s). */
const textL = (label: string) => Array.from({ length: 120 }, (_, k) => `${label}:${k} `).join('');
/** What a run labelled C… answers once restarted: the same start, then something else. */
const textC = (label: string) => Array.from({ length: 40 }, (_, k) => (k < 3 ? `${label}:${k} ` : `${label}:other${k} `)).join('');
const callIdB = (label: string) => `call_${label.replace(/[^a-zA-Z0-9]/g, '')}`;
const toolResultB = (label: string) => `counted ${label} (effect 1 for this key)`;
const answerB = (label: string, toolText: string) => `${label} finished: ${toolText}`;

const labelOf = (req: RecordedRequest) => labelIn(req, LABEL);
const requestsFor = (label: string) => upstream.requests.filter((r) => labelOf(r) === label);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-crash-'));
  const env = testEnv();
  // Tool calls of runs labelled T… and U… work 15 s: long enough to start a second process meanwhile.
  [upstream, counter] = await Promise.all([startScriptedUpstream(), startCountingMcpServer({ workMs: (label) => (/^[TU]/.test(label) ? 15_000 : 3000) })]);
  upstream.setDefault((req) => {
    const label = labelOf(req);
    if (label.startsWith('L')) return { steps: [{ kind: 'text', text: textL(label), chunks: 120, delayMs: 100 }] };
    if (label.startsWith('A')) return { steps: [{ kind: 'text', text: textA(label), chunks: 40, delayMs: 100 }] };
    if (label.startsWith('C')) {
      const first = requestsFor(label).length <= 1;
      return { steps: [{ kind: 'text', text: first ? textA(label) : textC(label), chunks: 40, delayMs: 100 }] };
    }
    const tool = ((req.body.messages ?? []) as Array<{ role: string; content?: unknown }>).find((m) => m.role === 'tool');
    if (tool) return { steps: [{ kind: 'text', text: answerB(label, String(tool.content)), chunks: 6, delayMs: 20 }] };
    // Runs labelled U… call the same tool through a server declared `sideEffects: unsafe`.
    const server = label.startsWith('U') ? 'unsafe' : 'counter';
    return { steps: [{ kind: 'toolCalls', calls: [{ id: callIdB(label), name: `${server}__${COUNT_TOOL}`, arguments: JSON.stringify({ label }) }] }] };
  });
  childConfig = {
      temporal: { address: env.address, taskQueue: uniqueQueue('crash') },
      upstreams: [
        {
          name: 'scripted',
          baseURL: upstream.url,
          retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 },
          timeouts: { connectSeconds: 5, idleSeconds: 5, totalSeconds: 60 },
        },
      ],
      // A long tool timeout: recovery must come from heartbeats, not from it.
      mcpServers: [
        { name: 'counter', transport: 'http', url: counter.url, timeoutSeconds: 120 },
        { name: 'unsafe', transport: 'http', url: counter.url, timeoutSeconds: 120, sideEffects: 'unsafe' },
      ],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['counter', 'unsafe'] }],
      stream: { heartbeatSeconds: 1 },
  };
  child = childMix2api({ dir, port: await freePort(), config: childConfig });
  connection = await Connection.connect({ address: env.address });
  temporal = new Client({ connection });
  await child.start();
});

afterAll(async () => {
  await child?.kill();
  await counter?.close();
  await upstream?.close();
  await connection?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---- clients ----

async function post(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${child.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

/** POSTs a streaming run; resolves once the response headers are in, with the reading under way. */
async function startStreaming(label: string): Promise<{ log: StreamLog; first: Promise<'done' | 'cut'> }> {
  const res = await post({ model: 'agent', stream: true, messages: [{ role: 'user', content: userText(label) }] });
  expect(res.status).toBe(200);
  const log = newStreamLog(label, res.headers.get('x-run-id')!);
  return { log, first: readInto(res, log) };
}

/** Reconnects with Last-Event-ID until the stream ends with `[DONE]`, on this process unless told otherwise. */
const resume = (log: StreamLog, deadlineMs: number, url = child.url) => resumeStream(log, deadlineMs, url);

async function waitFor(what: string, check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

interface RunView {
  status: string;
  steps: Array<{ kind: string; attempt?: number }>;
  message: { content: string | null } | null;
  error: unknown;
}
async function getRun(runId: string, url = child.url): Promise<RunView> {
  // `[DONE]` may come before the workflow closes: the final model step announces the end live.
  await temporal.workflow.getHandle(runId).result().catch(() => undefined);
  const res = await fetch(`${url}/v1/runs/${runId}`);
  if (res.status !== 200) throw new Error(`GET /v1/runs/${runId}: ${res.status} ${await res.text()}`);
  return (await res.json()) as RunView;
}

// ---- diagnostics ----

/** A compact history: ms since start, event type, activity / task queue / attempt / failure. */
async function historyOf(runId: string): Promise<string> {
  const h = await temporal.workflow.getHandle(runId).fetchHistory();
  const ms = (t: unknown) => {
    const ts = t as { seconds?: unknown; nanos?: number } | null | undefined;
    return ts ? Number(ts.seconds ?? 0) * 1000 + Math.round((ts.nanos ?? 0) / 1e6) : 0;
  };
  const t0 = ms(h.events?.[0]?.eventTime);
  return (h.events ?? [])
    .map((e) => {
      const rec = e as unknown as Record<string, unknown>;
      const key = Object.keys(rec).find((k) => k.endsWith('EventAttributes') && rec[k]);
      const a = (key ? rec[key] : {}) as Record<string, { name?: string; message?: string } | number | string | undefined>;
      const bits = [`+${ms(e.eventTime) - t0}ms`, key?.replace(/EventAttributes$/, '') ?? '?'];
      for (const f of ['activityType', 'taskQueue', 'signalName', 'failure'] as const) {
        const v = a[f];
        if (v && typeof v === 'object') bits.push(`${f}=${v.name ?? v.message ?? ''}`);
      }
      for (const f of ['attempt', 'timeoutType', 'retryState'] as const) if (a[f] !== undefined && a[f] !== null) bits.push(`${f}=${String(a[f])}`);
      return bits.join(' ');
    })
    .join('\n');
}

/** What the children wrote to stderr (warnings), for the summary. */
function childWarnings(): string {
  const lines = child.output.filter((l) => / ! /.test(l));
  return lines.length > 0 ? `\nchild stderr:\n${lines.slice(-10).join('\n')}` : '';
}

async function withDiagnostics(runIds: () => string[], fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const parts = [`child output (tail):\n${child.tail(80)}`];
    for (const id of runIds()) parts.push(`history of ${id}:\n${await historyOf(id).catch((x: unknown) => String(x))}`);
    for await (const w of temporal.workflow.list({ query: `WorkflowType = 'processLeaseWorkflow' AND ExecutionStatus != 'Running'` })) {
      parts.push(`lease ${w.workflowId} ${w.status.name}:\n${await historyOf(w.workflowId).catch((x: unknown) => String(x))}`);
    }
    parts.push(`counter: effects ${JSON.stringify([...counter.sideEffects])} calls ${JSON.stringify([...counter.callsReceived])}`);
    console.error(parts.join('\n\n'));
    throw e;
  }
}

// ---- the two crash points ----

test('SIGKILL mid-stream of the upstream call: reconnecting clients get every event once, the runs complete', async () => {
  const labels = [0, 1, 2].map((i) => `A${i}-${stamp}`);
  // One more run whose upstream answers differently once restarted.
  const changed = `C0-${stamp}`;
  const clients: Array<{ log: StreamLog; first: Promise<'done' | 'cut'> }> = [];
  await withDiagnostics(
    () => clients.map((c) => c.log.runId),
    async () => {
      clients.push(...(await Promise.all([...labels, changed].map(startStreaming))));
      await waitFor('every client to receive 10 events', () => clients.every((c) => c.log.ids.length >= 10), 30_000);
      const killedAt = await child.kill();
      for (const c of clients) c.log.contentBeforeKill = c.log.content;
      expect(await Promise.all(clients.map((c) => c.first))).toEqual(['cut', 'cut', 'cut', 'cut']);
      const readyAt = await child.start();
      await Promise.all(clients.map((c) => resume(c.log, 90_000)));
      // The changed answer: the client keeps what it had, is told of the restart, gets the new rest
      // once; the run's message is the new answer.
      const c = clients.pop()!.log;
      expect(c.done).toBe(true);
      expect(new Set(c.ids).size).toBe(c.ids.length);
      expect(c.content.startsWith(c.contentBeforeKill!)).toBe(true);
      expect(c.content).toContain(`${changed}:other39`);
      expect(c.reasoning).toMatch(/restarting this step/);
      expect((await getRun(c.runId)).message?.content).toBe(textC(changed));
      const timings: string[] = [`restart ready ${readyAt - killedAt} ms after the kill`];

      for (const { log } of clients) {
        const full = textA(log.label);
        expect(log.contentBeforeKill!.length).toBeGreaterThan(0);
        expect(log.contentBeforeKill!.length).toBeLessThan(full.length); // the kill really was mid-stream
        expect(log.errors).toEqual([]);
        expect(log.done).toBe(true);
        expect(log.connections).toBeGreaterThanOrEqual(2);
        expect(new Set(log.ids).size).toBe(log.ids.length);
        expect(log.content).toBe(full);
        const run = await getRun(log.runId);
        expect(run.status).toBe('completed');
        expect(run.message?.content).toBe(full);
        // The step was started again upstream, soon after the restart.
        const again = requestsFor(log.label).filter((r) => r.receivedAt > killedAt);
        expect(again.length).toBeGreaterThanOrEqual(1);
        const moved = again[0]!.receivedAt - readyAt;
        timings.push(
          `${log.runId} ${log.label}: ${log.ids.length} events over ${log.connections} connections, ${log.refused.length} refused reconnects; ` +
            `upstream again ${again[0]!.receivedAt - killedAt} ms after the kill (${moved} ms after ready); upstream requests ${requestsFor(log.label).length}; steps ${JSON.stringify(run.steps.map((s) => [s.kind, s.attempt]))}`,
        );
        expect(moved).toBeLessThan(20_000);
      }
      console.log(`crash A (mid-stream):\n${timings.join('\n')}${childWarnings()}`);
    },
  );
});

test('SIGKILL while a tool runs: each side effect happens once, the runs complete within seconds of the restart', async () => {
  const labels = [0, 1, 2].map((i) => `B${i}-${stamp}`);
  const keyHeader = (label: string) => ({ 'idempotency-key': `crash-${label}` });
  const body = (label: string, stream: boolean) => ({ model: 'agent', stream, messages: [{ role: 'user', content: userText(label) }] });
  const runIds = new Map<string, string>();
  await withDiagnostics(
    () => [...runIds.values()],
    async () => {
      // B0, B1: plain JSON requests (the client retries the POST with its Idempotency-Key); B2: a stream.
      const firstPosts = labels.slice(0, 2).map((l) =>
        post(body(l, false), keyHeader(l)).then(
          async (r) => `${r.status} ${await r.text()}`,
          (e: unknown) => `failed: ${String(e)}`,
        ),
      );
      const streaming = await startStreaming(labels[2]!);
      runIds.set(labels[2]!, streaming.log.runId);
      await waitFor('all three tool calls in flight', () => labels.every((l) => counter.keysFor(l).some((k) => counter.inFlight.has(k))), 30_000);
      const killedAt = await child.kill();
      const firstResults = await Promise.all(firstPosts);
      expect(await streaming.first).toBe('cut');
      for (const r of firstResults) expect(r).toMatch(/^failed/); // the kill cut them; no answer yet
      const readyAt = await child.start();

      const finishedAt = new Map<string, number>();
      const answers = new Map<string, string | null>();
      await Promise.all([
        ...labels.slice(0, 2).map(async (l) => {
          const deadline = Date.now() + 90_000;
          for (;;) {
            const r = await post(body(l, false), keyHeader(l)).catch(() => null);
            if (r?.status === 200) {
              const j = (await r.json()) as { id: string; choices: Array<{ message: { content: string | null } }> };
              finishedAt.set(l, Date.now());
              runIds.set(l, j.id);
              answers.set(l, j.choices[0]!.message.content);
              return;
            }
            if (Date.now() > deadline) throw new Error(`the retried POST of ${l} never succeeded (last: ${r ? `${r.status} ${await r.text()}` : 'no connection'})`);
            await sleep(250);
          }
        }),
        resume(streaming.log, 90_000).then(() => {
          finishedAt.set(labels[2]!, Date.now());
          answers.set(labels[2]!, streaming.log.content);
        }),
      ]);

      const timings: string[] = [`restart ready ${readyAt - killedAt} ms after the kill`];
      for (const l of labels) {
        const runId = runIds.get(l)!;
        expect(answers.get(l)).toBe(answerB(l, toolResultB(l)));
        const keys = counter.keysFor(l);
        expect(keys).toEqual([`${runId}/0/${callIdB(l)}`]);
        expect(counter.sideEffects.get(keys[0]!)).toBe(1);
        expect(counter.effectsFor(l)).toBe(1);
        // The call really was made again after the restart (so the dedupe is what kept it to one effect).
        const calls = counter.callTimes.get(keys[0]!) ?? [];
        expect(calls.length).toBeGreaterThanOrEqual(2);
        expect(calls[calls.length - 1]!).toBeGreaterThan(readyAt - 1000);
        const run = await getRun(runId);
        expect(run.status).toBe('completed');
        expect(run.steps.map((s) => s.kind)).toEqual(['model', 'tool', 'model']);
        expect(run.message?.content).toBe(answerB(l, toolResultB(l)));
        const took = finishedAt.get(l)! - readyAt;
        timings.push(
          `${runId} ${l}: tool called again ${calls[1]! - killedAt} ms after the kill (${calls[1]! - readyAt} ms after ready), run finished ${finishedAt.get(l)! - killedAt} ms after the kill (${took} ms after ready); ` +
            `tool calls received ${calls.length}, side effects ${counter.sideEffects.get(keys[0]!)}`,
        );
        expect(took).toBeLessThan(25_000);
      }
      const s = streaming.log;
      expect(s.done).toBe(true);
      expect(s.errors).toEqual([]);
      expect(new Set(s.ids).size).toBe(s.ids.length);
      timings.push(`${s.runId} ${s.label} (stream): ${s.ids.length} events over ${s.connections} connections, ${s.refused.length} refused reconnects`);
      // mix2api sent the key both ways, equal.
      for (const m of counter.metas) expect(m['io.mix2api/idempotency-key']).toBe(m.idempotencyKey);
      console.log(`crash B (mid-tool):\n${timings.join('\n')}${childWarnings()}`);
    },
  );
});

test('SIGKILL of one of two processes: its lease lapses and its stream and tool calls move to the other at once, each event reaching the client once, no tool effect twice; an unsafe server\'s call is not repeated', async () => {
  const tools = [0, 1].map((i) => `T${i}-${stamp}`);
  const unsafe = `U0-${stamp}`;
  const long = `L0-${stamp}`;
  const clients: Array<{ log: StreamLog; first: Promise<'done' | 'cut'> }> = [];
  const other = childMix2api({ dir, port: await freePort(), config: childConfig, configName: 'other.yaml' });
  await withDiagnostics(
    () => clients.map((c) => c.log.runId),
    async () => {
      // The tool calls start while this process is the only one, so they run here.
      clients.push(...(await Promise.all([...tools, unsafe].map(startStreaming))));
      await waitFor('the tool calls in flight', () => [...tools, unsafe].every((l) => counter.keysFor(l).some((k) => counter.inFlight.has(k))), 30_000);
      await other.start();
      // The stream's model step runs on this process's own queue (its client is here).
      clients.push(await startStreaming(long));
      const stream = clients[clients.length - 1]!.log;
      await waitFor('the long stream to be under way', () => stream.ids.length >= 10, 30_000);
      const killedAt = await child.kill();
      stream.contentBeforeKill = stream.content;
      await Promise.all(clients.map((c) => c.first));
      await Promise.all(clients.map((c) => resume(c.log, 90_000, other.url)));

      const timings: string[] = [];
      expect(stream.errors).toEqual([]);
      expect(stream.done).toBe(true);
      expect(new Set(stream.ids).size).toBe(stream.ids.length);
      expect(stream.contentBeforeKill.length).toBeLessThan(textL(long).length);
      expect(stream.content).toBe(textL(long));
      const again = requestsFor(long).filter((r) => r.receivedAt > killedAt);
      expect(again.length).toBe(1);
      const moved = again[0]!.receivedAt - killedAt;
      timings.push(`${stream.runId} ${long}: upstream asked again ${moved} ms after the kill, first resumed content ${stream.resumedAt! - killedAt} ms after it`);
      // Moved by the lapse of the lease, well before the step's old heartbeat timeout (8 s).
      expect(moved).toBeLessThan(6000);
      expect(await historyOf(stream.runId)).toMatch(/stopped renewing its lease/);
      for (const l of tools) {
        const log = clients.find((c) => c.log.label === l)!.log;
        expect(log.done).toBe(true);
        expect(new Set(log.ids).size).toBe(log.ids.length);
        expect(log.content).toBe(answerB(l, toolResultB(l)));
        const keys = counter.keysFor(l);
        expect(keys).toHaveLength(1);
        expect(counter.sideEffects.get(keys[0]!)).toBe(1);
        const calls = counter.callTimes.get(keys[0]!) ?? [];
        expect(calls.length).toBe(2);
        timings.push(`${log.runId} ${l}: tool called again ${calls[1]! - killedAt} ms after the kill; run finished, side effects ${counter.sideEffects.get(keys[0]!)}`);
        expect(calls[1]! - killedAt).toBeLessThan(6000);
        expect(await historyOf(log.runId)).toMatch(/stopped renewing its lease/);
        expect((await getRun(log.runId, other.url)).status).toBe('completed');
      }
      // Declared unsafe: called once, and the model was told it may or may not have acted.
      const u = clients.find((c) => c.log.label === unsafe)!.log;
      expect(u.done).toBe(true);
      expect(counter.keysFor(unsafe).flatMap((k) => counter.callTimes.get(k) ?? [])).toHaveLength(1);
      expect(u.content).toMatch(new RegExp(`^${unsafe} finished: tool unsafe/${COUNT_TOOL} was interrupted .* may or may not have taken effect; it was not run again`));
      expect((await getRun(u.runId, other.url)).status).toBe('completed');
      console.log(`lease lapse (two processes):\n${timings.join('\n')}`);
    },
  ).finally(() => other.kill());
});
