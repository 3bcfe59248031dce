/**
 * The cluster topology for real: a Temporal server on PostgreSQL (./temporalCluster), two
 * `mix2api api` replicas and two `mix2api worker` replicas, each its own process, sharing one
 * task queue. The scripted upstream and a counting MCP server live in this process and outlive
 * every kill.
 * - both workers take work;
 * - a stream started on api A resumes on api B with Last-Event-ID after A is SIGKILLed, every
 *   event once;
 * - a tool loop survives a SIGKILL of the worker running its tool: the other worker finishes it,
 *   and the tool's side effect happens once.
 * `npm run test:cluster`; TEMPORAL_ADDRESS runs it against another server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { childMix2api, type ChildMix2api } from '../support/childMix2api';
import { COUNT_TOOL, startCountingMcpServer, type CountingMcpServer } from '../support/countingMcpServer';
import { EVERYTHING, freePort, stdioServer } from '../support/mcpServers';
import { labelIn, startScriptedUpstream, type RecordedRequest, type ScriptedUpstream } from '../support/scriptedUpstream';
import { contentOf, sseEvents } from '../support/sse';
import { startTemporalCluster, type TemporalCluster } from './temporalCluster';

jest.setTimeout(240_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stamp = Date.now().toString(36);
const LABEL = /cluster run (\S+)/;
const userText = (label: string) => `cluster run ${label}`;
const longText = (label: string) => Array.from({ length: 40 }, (_, k) => `${label}:${k} `).join('');

let cluster: TemporalCluster;
let dir: string;
let upstream: ScriptedUpstream;
let counter: CountingMcpServer;
let temporal: Client;
let connection: Connection;
const apis: ChildMix2api[] = [];
const workers: ChildMix2api[] = [];
/** Each worker's own /metrics listener (metrics.port). */
const workerMetrics: string[] = [];

const labelOf = (req: RecordedRequest) => labelIn(req, LABEL);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-cluster-test-'));
  [cluster, upstream, counter] = await Promise.all([startTemporalCluster(), startScriptedUpstream(), startCountingMcpServer({ workMs: 4000 })]);
  upstream.setDefault((req) => {
    const label = labelOf(req);
    const tool = ((req.body.messages ?? []) as Array<{ role: string; content?: unknown }>).find((m) => m.role === 'tool');
    if (label.startsWith('S')) return { steps: [{ kind: 'text', text: longText(label), chunks: 40, delayMs: 100 }] };
    if (tool) return { steps: [{ kind: 'text', text: `${label} done: ${String(tool.content)}` }] };
    if (label.startsWith('K')) return { steps: [{ kind: 'toolCalls', calls: [{ name: `counter__${COUNT_TOOL}`, arguments: JSON.stringify({ label }) }] }] };
    return { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: JSON.stringify({ message: label }) }] }] };
  });
  const config = {
    temporal: { address: cluster.address, namespace: cluster.namespace, taskQueue: `cluster-${stamp}`, searchAttributes: true },
    upstreams: [{ name: 'scripted', baseURL: upstream.url, retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 } }],
    mcpServers: [stdioServer('everything', EVERYTHING, ['stdio']), { name: 'counter', transport: 'http', url: counter.url, timeoutSeconds: 120 }],
    models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything', 'counter'] }],
    stream: { heartbeatSeconds: 1 },
  };
  for (const n of [0, 1]) {
    const metricsPort = await freePort();
    workerMetrics.push(`http://127.0.0.1:${metricsPort}/metrics`);
    workers.push(childMix2api({ dir, port: await freePort(), config: { ...config, metrics: { port: metricsPort, host: '127.0.0.1' } }, configName: `worker${n}.yaml`, role: 'worker' }));
  }
  for (const n of [0, 1]) apis.push(childMix2api({ dir, port: await freePort(), config, configName: `api${n}.yaml`, role: 'api' }));
  // One at a time: each bundles or compiles on start, and the machine may have two cores.
  for (const c of [...workers, ...apis]) await c.start(120_000);
  connection = await Connection.connect({ address: cluster.address });
  temporal = new Client({ connection, namespace: cluster.namespace });
});

afterAll(async () => {
  await Promise.all([...apis, ...workers].map((c) => c.kill()));
  await connection?.close();
  await Promise.all([counter?.close(), upstream?.close()]);
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Whether a worker identity (`mix2api <instance queue> [peer url] <pid>`) is this child's. */
const isOf = (c: ChildMix2api, identity: string | null | undefined) => !!identity && identity.startsWith('mix2api ') && identity.endsWith(` ${c.pid}`);
const whose = (identity: string) => {
  const i = workers.findIndex((w) => isOf(w, identity));
  return i >= 0 ? `worker${i}` : apis.some((a) => isOf(a, identity)) ? 'api' : identity;
};

/** Who started each workflow task and activity task of a run, from its history. */
async function identities(runId: string): Promise<Array<{ kind: 'workflow' | 'activity'; identity: string; activity?: string; attempt?: number }>> {
  const h = await temporal.workflow.getHandle(runId).fetchHistory();
  const scheduled = new Map<string, string>();
  const out: Array<{ kind: 'workflow' | 'activity'; identity: string; activity?: string; attempt?: number }> = [];
  for (const e of h.events ?? []) {
    if (e.activityTaskScheduledEventAttributes) scheduled.set(String(e.eventId), e.activityTaskScheduledEventAttributes.activityType?.name ?? '?');
    const w = e.workflowTaskStartedEventAttributes;
    if (w?.identity) out.push({ kind: 'workflow', identity: w.identity });
    const a = e.activityTaskStartedEventAttributes;
    if (a?.identity) out.push({ kind: 'activity', identity: a.identity, activity: scheduled.get(String(a.scheduledEventId)), attempt: a.attempt ?? 1 });
  }
  return out;
}

async function chat(api: ChildMix2api, label: string): Promise<{ status: number; runId: string; content: string }> {
  const res = await fetch(`${api.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'agent', messages: [{ role: 'user', content: userText(label) }] }),
  });
  const body = (await res.json()) as { choices?: Array<{ message: { content: string } }> };
  return { status: res.status, runId: res.headers.get('x-run-id') ?? '', content: body.choices?.[0]?.message.content ?? JSON.stringify(body) };
}

test('both workers take work: tool loops through both api replicas run their workflow and activity tasks on both workers', async () => {
  const labels = Array.from({ length: 12 }, (_, i) => `W${i}-${stamp}`);
  const answers = await Promise.all(labels.map((l, i) => chat(apis[i % 2]!, l)));
  for (const [i, a] of answers.entries()) {
    expect(a.status).toBe(200);
    expect(a.content).toContain(`${labels[i]} done:`);
    expect(a.content).toContain(labels[i]); // the echo tool's output came back
  }
  const seen = (await Promise.all(answers.map((a) => identities(a.runId)))).flat();
  // Workflow tasks and tool calls run on the workers (the shared queue), both of them.
  for (const id of ['worker0', 'worker1']) {
    expect(seen.filter((s) => whose(s.identity) === id && s.kind === 'workflow').length).toBeGreaterThan(0);
    expect(seen.filter((s) => whose(s.identity) === id && s.activity === 'callTool').length).toBeGreaterThan(0);
  }
  expect(seen.filter((s) => s.kind === 'workflow' || s.activity === 'callTool').map((s) => whose(s.identity)).filter((w) => !w.startsWith('worker'))).toEqual([]);
  // Each worker's own /metrics counts the tool calls it ran; together, every run's one call.
  const echoCalls = await Promise.all(
    workerMetrics.map(async (url) => {
      const text = await (await fetch(url)).text();
      const line = text.split('\n').find((l) => l.startsWith('mix2api_tool_calls_total{') && l.includes('tool="echo"') && l.includes('outcome="ok"'));
      return line ? Number(line.split(' ').pop()) : 0;
    }),
  );
  expect(echoCalls.every((n) => n > 0)).toBe(true);
  expect(echoCalls.reduce((a, b) => a + b, 0)).toBe(labels.length);
});

test('a stream started on api A resumes on api B with Last-Event-ID after A is killed: every event once, the whole answer', async () => {
  const [a, b] = apis as [ChildMix2api, ChildMix2api];
  const label = `S0-${stamp}`;
  const res = await fetch(`${a.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'agent', stream: true, messages: [{ role: 'user', content: userText(label) }] }),
  });
  expect(res.status).toBe(200);
  const runId = res.headers.get('x-run-id')!;
  const ids: string[] = [];
  let content = '';
  let done = false;
  const read = async (r: Response, stopAfter?: number) => {
    try {
      for await (const e of sseEvents(r)) {
        if (e.data === '[DONE]') {
          done = true;
          return;
        }
        expect((JSON.parse(e.data) as { error?: unknown }).error).toBeUndefined();
        if (e.id) ids.push(e.id);
        content += contentOf(e.data);
        if (stopAfter !== undefined && ids.length >= stopAfter) return;
      }
    } catch {
      // the connection died with its process
    }
  };
  await read(res, 8);
  expect(content.length).toBeGreaterThan(0);
  const killedAt = await a.kill();
  const before = content;

  const deadline = Date.now() + 90_000;
  let reconnects = 0;
  while (!done) {
    if (Date.now() > deadline) throw new Error(`the stream did not finish on api B; got ${JSON.stringify(content)}\n${b.tail(40)}`);
    const r = await fetch(`${b.url}/v1/runs/${runId}/events`, { headers: { 'last-event-id': ids[ids.length - 1]! } });
    expect(r.status).toBe(200);
    reconnects++;
    await read(r);
    if (!done) await sleep(250);
  }
  console.log(`api A killed after ${before.length} of ${longText(label).length} characters; the stream ended on api B ${Date.now() - killedAt} ms later, after ${reconnects} reconnect(s)`);
  expect(before.length).toBeLessThan(longText(label).length);
  expect(content).toBe(longText(label));
  expect(new Set(ids).size).toBe(ids.length);
  expect(reconnects).toBeGreaterThanOrEqual(1);
  // The step A was streaming ran again on a worker (A's live queue had no poller left).
  const seen = await identities(runId);
  const model = seen.filter((s) => s.activity === 'callModel');
  expect(model.some((s) => whose(s.identity).startsWith('worker'))).toBe(true);
});

test('a tool loop survives a SIGKILL of the worker running its tool: the other worker finishes it, the side effect happens once', async () => {
  const api = apis[1]!;
  const label = `K0-${stamp}`;
  const answer = chat(api, label);
  const deadline = Date.now() + 30_000;
  while (counter.keysFor(label).length === 0 || counter.inFlight.size === 0) {
    if (Date.now() > deadline) throw new Error('the tool call never reached the MCP server');
    await sleep(50);
  }
  let runId: string | undefined;
  for await (const w of temporal.workflow.list({ query: `WorkflowType = 'chatCompletionWorkflow' AND ExecutionStatus = 'Running'` })) runId ??= w.workflowId;
  expect(runId).toBeDefined();
  const d = await temporal.workflow.getHandle(runId!).describe();
  const pending = d.raw.pendingActivities?.find((p) => p.activityType?.name === 'callTool');
  const victim = workers.find((w) => isOf(w, pending?.lastWorkerIdentity));
  expect(victim).toBeDefined();
  const survivor = workers.find((w) => w !== victim)!;
  const killedAt = await victim!.kill();

  const a = await answer;
  console.log(`worker killed mid-tool; the answer came ${Date.now() - killedAt} ms later`);
  expect(a.status).toBe(200);
  expect(a.runId).toBe(runId);
  expect(a.content).toContain(`${label} done:`);
  expect(counter.effectsFor(label)).toBe(1);
  // The victim's call failed when its lease lapsed; the call ran again on the survivor.
  const tool = (await identities(runId!)).filter((s) => s.activity === 'callTool');
  expect(tool.map((s) => whose(s.identity))).toEqual([`worker${workers.indexOf(victim!)}`, `worker${workers.indexOf(survivor)}`]);
});

test('while PostgreSQL is down, requests get 503 temporal_unavailable with Retry-After, never a 500; once it is back they run again', async () => {
  const api = apis[1]!; // apis[0] was killed above
  const ask = async (label: string, stream: boolean) => {
    const res = await fetch(`${api.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': `pg-${label}` },
      body: JSON.stringify({ model: 'agent', stream, messages: [{ role: 'user', content: userText(label) }] }),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    return { status: res.status, retryAfter: res.headers.get('retry-after'), code: res.status === 200 ? null : ((JSON.parse(text) as { error?: { code?: string } }).error?.code ?? text.slice(0, 100)) };
  };
  cluster.faults!.signal('postgres', 'SIGKILL');
  let answers: Array<Awaited<ReturnType<typeof ask>>>;
  try {
    await sleep(500);
    answers = await Promise.all(Array.from({ length: 6 }, (_, i) => ask(`P${i}-${stamp}`, i % 2 === 0)));
  } finally {
    await cluster.faults!.restart('postgres');
  }
  console.log(`PostgreSQL down: ${answers.map((a) => `${a.status} ${a.code ?? ''}`).join(', ')}`);
  expect(answers.filter((a) => a.status !== 200)).toEqual(answers.filter((a) => a.status !== 200).map(() => ({ status: 503, retryAfter: '1', code: 'temporal_unavailable' })));
  expect(answers.some((a) => a.status === 503)).toBe(true);
  // Back: the same requests (same keys) run to their answers.
  const label = `P1-${stamp}`;
  const deadline = Date.now() + 60_000;
  let again = await chat(api, label).catch(() => null);
  while (again?.status !== 200 && Date.now() < deadline) {
    await sleep(1000);
    again = await chat(api, label).catch(() => null);
  }
  expect(again?.status).toBe(200);
  expect(again?.content).toContain(`${label} done:`);
});
