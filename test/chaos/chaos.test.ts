/**
 * The chaos suite (`npm run test:chaos`): the cluster topology of test/cluster (a Temporal server on
 * PostgreSQL, two `mix2api api`, two `mix2api worker`) under steady mixed load, with a seeded
 * schedule of faults: SIGKILL, SIGSTOP/SIGCONT and SIGTERM (a restart) of an api or a worker,
 * SIGKILL and SIGSTOP of the Temporal server, SIGKILL of PostgreSQL, and a kill of the workers timed
 * to land inside a tool call, after the tool acted and before its result came back. Clients behave
 * as real ones do: they retry a failed request with the same Idempotency-Key on the other API, and
 * resume a cut stream with Last-Event-ID on whichever API they reach.
 *
 * Afterwards every run must have ended with the right answer, every stream have delivered each event
 * once and its content whole, and the idempotency-honouring tool have acted exactly once per call.
 * A report per campaign prints the seed and the schedule (so a failure can be replayed), the runs,
 * the duplicated side effects, the stream repeats, the time from each fault until every stream in
 * flight moved again, and the errors clients saw by code.
 *
 * MIX2API_CHAOS_SEED (default 1), MIX2API_CHAOS_FAULTS (default 12; the full campaign is 100),
 * MIX2API_CHAOS_CLIENTS (default 4 concurrent clients).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childMix2api, type ChildMix2api } from '../support/childMix2api';
import { COUNT_TOOL, startCountingMcpServer, type CountingMcpServer } from '../support/countingMcpServer';
import { EVERYTHING, freePort, stdioServer } from '../support/mcpServers';
import { labelIn, startScriptedUpstream, type RecordedRequest, type ScriptedUpstream } from '../support/scriptedUpstream';
import { rng as seeded } from '../support/rng';
import { newStreamLog, readInto, resume, type StreamLog } from '../support/streamLog';
import { startTemporalCluster, type TemporalCluster } from '../cluster/temporalCluster';

const SEED = Number(process.env.MIX2API_CHAOS_SEED ?? 1);
const FAULTS = Number(process.env.MIX2API_CHAOS_FAULTS ?? 12);
const CLIENTS = Number(process.env.MIX2API_CHAOS_CLIENTS ?? 4);
jest.setTimeout((10 + FAULTS) * 60_000);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const stamp = Date.now().toString(36);

// ---- what the scripted model answers, per request kind (the label's first letter) ----
// S: a streamed 3-s answer. J: a JSON answer. K: streamed, one call of the counting tool (HTTP,
// honours the idempotency key). M: JSON, two rounds: the counting tool, then `echo` over stdio.
type Kind = 'S' | 'J' | 'K' | 'M';
const KINDS: Kind[] = ['S', 'J', 'K', 'M'];
const LABEL = /chaos run (\S+)/;
const longText = (label: string) => Array.from({ length: 30 }, (_, k) => `${label}:${k} `).join('');
const counted = (label: string) => `counted ${label} (effect 1 for this key)`;
function expected(label: string): string {
  switch (label[0] as Kind) {
    case 'S':
      return longText(label);
    case 'J':
      return `${label} ok`;
    case 'K':
      return `${label} done: ${counted(label)}`;
    case 'M':
      return `${label} done: ${counted(label)} | Echo: ${label}`;
  }
}

const labelOf = (req: RecordedRequest) => labelIn(req, LABEL);

let cluster: TemporalCluster;
let dir: string;
let upstream: ScriptedUpstream;
let counter: CountingMcpServer;
const apis: ChildMix2api[] = [];
const workers: ChildMix2api[] = [];
/** Set by an `inside-tool` fault: called at the next side effect, before the tool returns. */
let onNextEffect: (() => void) | null = null;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-chaos-'));
  [cluster, upstream, counter] = await Promise.all([
    startTemporalCluster(),
    startScriptedUpstream(),
    // 1.5 s of work, then the result held back 1 s: the window an `inside-tool` kill lands in.
    startCountingMcpServer({
      workMs: 1500,
      holdMs: 1000,
      onEffect: () => {
        const f = onNextEffect;
        onNextEffect = null;
        f?.();
      },
    }),
  ]);
  upstream.setDefault((req) => {
    const label = labelOf(req);
    const tools = ((req.body.messages ?? []) as Array<{ role: string; content?: unknown }>).filter((m) => m.role === 'tool').map((m) => String(m.content));
    const call = (name: string, args: Record<string, unknown>) => ({ steps: [{ kind: 'toolCalls' as const, calls: [{ id: `call_${label.replace(/\W/g, '')}_${tools.length}`, name, arguments: JSON.stringify(args) }] }] });
    const done = { steps: [{ kind: 'text' as const, text: `${label} done: ${tools.join(' | ')}`, chunks: 4, delayMs: 20 }] };
    switch (label[0]) {
      case 'S':
        return { steps: [{ kind: 'text', text: longText(label), chunks: 30, delayMs: 100 }] };
      case 'K':
        return tools.length === 0 ? call(`counter__${COUNT_TOOL}`, { label }) : done;
      case 'M':
        return tools.length === 0 ? call(`counter__${COUNT_TOOL}`, { label }) : tools.length === 1 ? call('everything__echo', { message: label }) : done;
      default:
        return { steps: [{ kind: 'text', text: `${label} ok` }] };
    }
  });
  const config = {
    temporal: { address: cluster.address, namespace: cluster.namespace, taskQueue: `chaos-${stamp}`, searchAttributes: true },
    upstreams: [{ name: 'scripted', baseURL: upstream.url, retry: { maxAttempts: 5, initialIntervalSeconds: 0.2, maxIntervalSeconds: 2 } }],
    mcpServers: [stdioServer('everything', EVERYTHING, ['stdio']), { name: 'counter', transport: 'http', url: counter.url, timeoutSeconds: 60 }],
    models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything', 'counter'] }],
    // One key carries every client here, as behind an edge gateway.
    server: { limits: { requestsPerMinute: 0, concurrentRuns: 0, openStreams: 0, sessions: 0 } },
  };
  for (const n of [0, 1]) workers.push(childMix2api({ dir, port: await freePort(), config, configName: `worker${n}.yaml`, role: 'worker' }));
  for (const n of [0, 1]) apis.push(childMix2api({ dir, port: await freePort(), config, configName: `api${n}.yaml`, role: 'api' }));
  for (const c of [...workers, ...apis]) await c.start(120_000);
});

afterAll(async () => {
  for (const c of [...apis, ...workers]) c.signal('SIGCONT');
  await Promise.all([...apis, ...workers].map((c) => c.kill()));
  await counter?.close();
  await upstream?.close();
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---- clients ----

interface Outcome {
  label: string;
  runId: string;
  content: string;
  ok: boolean;
  startedAt: number;
  endedAt?: number;
  /** When content arrived (streams), for the recovery figure. */
  progress: number[];
  stream?: StreamLog;
  /** What the client met on the way (connection errors, HTTP codes, error chunks), each retried. */
  met: string[];
}

const up = new Set<ChildMix2api>();
const liveApi = (i: number) => {
  const live = apis.filter((a) => up.has(a));
  return (live.length > 0 ? live[i % live.length]! : apis[i % 2]!).url;
};

/** One logical request, as a client that retries with the same Idempotency-Key would make it. */
async function request(label: string): Promise<Outcome> {
  const n = Number(/\d+/.exec(label)![0]);
  const stream = label[0] === 'S' || label[0] === 'K';
  const o: Outcome = { label, runId: '', content: '', ok: false, startedAt: Date.now(), progress: [], met: [] };
  const deadline = Date.now() + 240_000;
  let turn = n;
  while (Date.now() < deadline && !o.ok) {
    const url = liveApi(turn++);
    try {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': `chaos-${SEED}-${label}` },
        body: JSON.stringify({ model: 'agent', stream, messages: [{ role: 'user', content: `chaos run ${label}` }] }),
        signal: AbortSignal.timeout(stream ? 20_000 : 120_000),
      });
      if (res.status !== 200) {
        const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
        o.met.push(`${res.status} ${body.error?.code ?? ''}`.trim());
        if (res.status < 500 && res.status !== 429 && res.status !== 409) break;
      } else if (!stream) {
        const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
        o.runId = res.headers.get('x-run-id') ?? '';
        o.content = body.choices[0]!.message.content;
        o.progress.push(Date.now());
        o.ok = true;
      } else {
        o.runId = res.headers.get('x-run-id')!;
        const log = newStreamLog(label, o.runId);
        o.stream = log;
        let seen = 0;
        const watch = setInterval(() => {
          if (log.content.length > seen) o.progress.push(Date.now());
          seen = log.content.length;
        }, 50);
        try {
          if ((await readInto(res, log)) === 'cut') {
            o.met.push('stream cut');
            await resume(log, Math.max(1000, deadline - Date.now()), () => liveApi(turn++));
          }
        } finally {
          clearInterval(watch);
        }
        o.met.push(...log.errors.map((e) => `error chunk: ${e}`));
        o.content = log.content;
        o.ok = log.done;
      }
    } catch (e) {
      o.met.push(`connection: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!o.ok) await sleep(500);
  }
  o.endedAt = Date.now();
  return o;
}

/** Clients that keep sending until told to stop; resolves with every request's outcome. `tag` keeps labels apart between loads. */
function load(rand: () => number, tag: string): { stop(): void; done: Promise<Outcome[]> } {
  let stopping = false;
  let next = 0;
  const outcomes: Outcome[] = [];
  const client = async () => {
    while (!stopping) {
      const n = next++;
      outcomes.push(await request(`${KINDS[Math.floor(rand() * KINDS.length)]!}${tag}${n}-${stamp}`));
    }
  };
  return { stop: () => void (stopping = true), done: Promise.all(Array.from({ length: CLIENTS }, client)).then(() => outcomes) };
}

// ---- faults ----

type Fault = 'kill-api' | 'kill-worker' | 'stop-api' | 'stop-worker' | 'term-api' | 'term-worker' | 'kill-server' | 'stop-server' | 'kill-postgres' | 'inside-tool';
const FAULT_KINDS: Fault[] = ['kill-api', 'kill-worker', 'stop-api', 'stop-worker', 'term-api', 'term-worker', 'kill-server', 'stop-server', 'kill-postgres', 'inside-tool'];

async function restart(c: ChildMix2api): Promise<void> {
  up.delete(c);
  await c.start(120_000);
  up.add(c);
}

/** Runs one fault to its end (the part started again and serving); resolves with when it struck. */
async function inject(f: Fault, rand: () => number): Promise<number | null> {
  const pick = (xs: ChildMix2api[]) => xs[Math.floor(rand() * xs.length)]!;
  const pause = 1000 + Math.floor(rand() * 2000);
  switch (f) {
    case 'kill-api':
    case 'kill-worker': {
      const c = pick(f === 'kill-api' ? apis : workers);
      up.delete(c);
      const at = await c.kill();
      await sleep(pause);
      await restart(c);
      return at;
    }
    case 'stop-api':
    case 'stop-worker': {
      // Hung longer than its lease's lapse: its work moves, and it must give that work up when it wakes.
      const c = pick(f === 'stop-api' ? apis : workers);
      const at = Date.now();
      c.signal('SIGSTOP');
      await sleep(pause + 2000);
      c.signal('SIGCONT');
      return at;
    }
    case 'term-api':
    case 'term-worker': {
      const c = pick(f === 'term-api' ? apis : workers);
      up.delete(c);
      const at = Date.now();
      await c.terminate();
      await restart(c);
      return at;
    }
    case 'kill-server':
    case 'kill-postgres': {
      const part = f === 'kill-server' ? 'server' : 'postgres';
      const at = Date.now();
      cluster.faults!.signal(part, 'SIGKILL');
      await sleep(pause);
      await cluster.faults!.restart(part);
      return at;
    }
    case 'stop-server': {
      const at = Date.now();
      cluster.faults!.signal('server', 'SIGSTOP');
      await sleep(pause);
      cluster.faults!.signal('server', 'SIGCONT');
      return at;
    }
    case 'inside-tool': {
      // Both workers (tool calls run on the shared queue) die right after the tool acted.
      const struck = new Promise<number>((ok) => {
        onNextEffect = () => {
          const at = Date.now();
          for (const w of workers) {
            up.delete(w);
            w.signal('SIGKILL');
          }
          ok(at);
        };
      });
      const at = await Promise.race([struck, sleep(30_000).then(() => null)]);
      onNextEffect = null;
      if (at === null) return null;
      await sleep(pause);
      for (const w of workers) await w.kill(); // reaps the killed process
      for (const w of workers) await restart(w);
      return at;
    }
  }
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

test(`chaos campaign: ${FAULTS} seeded faults (seed ${SEED}) under mixed load; every run ends right, streams whole, tool effects once`, async () => {
  if (!cluster.faults) return void console.log('chaos: an external TEMPORAL_ADDRESS has no faults to inject; skipped');
  for (const c of [...apis, ...workers]) up.add(c);
  const rand = seeded(SEED);
  const clientRand = seeded(SEED + 1);
  const schedule: Array<{ fault: Fault; gapMs: number }> = Array.from({ length: FAULTS }, () => ({ fault: FAULT_KINDS[Math.floor(rand() * FAULT_KINDS.length)]!, gapMs: 1500 + Math.floor(rand() * 2500) }));
  console.log(`chaos seed ${SEED}, ${FAULTS} faults, ${CLIENTS} clients; schedule: ${schedule.map((s) => `${s.fault}+${s.gapMs}ms`).join(', ')}`);

  const l = load(clientRand, 'c');
  const struck: Array<{ fault: Fault; at: number; ms: number }> = [];
  const t0 = Date.now();
  await sleep(5000);
  for (const s of schedule) {
    await sleep(s.gapMs);
    const began = Date.now();
    const at = await inject(s.fault, rand);
    if (at !== null) struck.push({ fault: s.fault, at, ms: Date.now() - began });
  }
  await sleep(5000);
  l.stop();
  const stoppedAt = Date.now();
  const all = await l.done;
  const slowest = [...all].sort((a, b) => b.endedAt! - b.startedAt - (a.endedAt! - a.startedAt)).slice(0, 3);

  // ---- the report ----
  const wrong = all.filter((o) => !o.ok || o.content !== expected(o.label));
  const streams = all.filter((o) => o.stream);
  const repeats = streams.filter((o) => new Set(o.stream!.ids).size !== o.stream!.ids.length);
  const tooled = all.filter((o) => o.label[0] === 'K' || o.label[0] === 'M');
  const duplicated = tooled.filter((o) => counter.effectsFor(o.label) !== 1 || counter.keysFor(o.label).length !== 1);
  const recovery: Record<string, number[]> = {};
  for (const f of struck) {
    // Every stream that was streaming at the fault: how long until it moved again.
    const open = streams.filter((o) => o.label[0] === 'S' && o.startedAt < f.at && (o.endedAt ?? Infinity) > f.at && o.progress.some((t) => t < f.at));
    const moved = open.map((o) => (o.progress.find((t) => t > f.at) ?? o.endedAt ?? f.at) - f.at);
    if (moved.length > 0) (recovery[f.fault] ??= []).push(Math.max(...moved));
  }
  const allRecovery = Object.values(recovery).flat();
  const met = new Map<string, number>();
  for (const o of all) {
    for (const m of o.met) {
      const k = m.replace(/[0-9a-f]{32}|\d+/g, '#').slice(0, 80);
      met.set(k, (met.get(k) ?? 0) + 1);
    }
  }
  console.log(
    [
      `chaos report (seed ${SEED}): ${struck.length} faults struck of ${FAULTS} scheduled (${FAULT_KINDS.map((k) => `${k} ${struck.filter((s) => s.fault === k).length}`).join(', ')})`,
      `runs: ${all.length} started, ${all.filter((o) => o.ok).length} terminal, ${all.length - wrong.length} with the right answer`,
      `side effects (idempotency-honouring tool): ${tooled.length} runs, ${duplicated.length} not exactly once`,
      `streams: ${streams.length}, ${repeats.length} with a repeated event, ${streams.filter((o) => o.ok && o.content !== expected(o.label)).length} with a gap or repeat in content`,
      `recovery (fault → every open stream moving again), ms: all p50 ${pct(allRecovery, 50)} p99 ${pct(allRecovery, 99)}; ${Object.entries(recovery)
        .map(([k, v]) => `${k} p50 ${pct(v, 50)} max ${Math.max(...v)}`)
        .join('; ')}`,
      `what clients met (each retried): ${[...met].map(([k, v]) => `${k} ×${v}`).join('; ') || 'nothing'}`,
      `timing: faults ${struck.map((f) => `${f.fault} +${f.at - t0}ms (${f.ms} ms to restore)`).join(', ')}; load stopped +${stoppedAt - t0}ms, last run ended +${Date.now() - t0}ms; slowest runs: ${slowest.map((o) => `${o.label} ${o.endedAt! - o.startedAt} ms from +${o.startedAt - t0}ms (${o.met.join(' | ') || 'nothing met'})`).join('; ')}`,
      ...wrong.slice(0, 5).map((o) => `wrong: ${o.label} run ${o.runId} ok=${o.ok} content=${JSON.stringify(o.content.slice(0, 120))} met=${o.met.join(' | ')}`),
    ].join('\n'),
  );
  expect(all.length).toBeGreaterThan(FAULTS);
  expect(wrong.map((o) => o.label)).toEqual([]);
  expect(repeats.map((o) => o.label)).toEqual([]);
  expect(duplicated.map((o) => `${o.label}: ${counter.effectsFor(o.label)} effects, ${counter.keysFor(o.label).length} keys`)).toEqual([]);
});

test('rolling restart: SIGTERM of every process in turn under load fails no run and shows clients no error', async () => {
  for (const c of [...apis, ...workers]) up.add(c);
  const l = load(seeded(SEED + 2), 'r');
  await sleep(3000);
  for (const c of [...workers, ...apis]) {
    up.delete(c);
    await c.terminate();
    await restart(c);
    await sleep(1000);
  }
  await sleep(3000);
  l.stop();
  const all = await l.done;
  const wrong = all.filter((o) => !o.ok || o.content !== expected(o.label));
  const errors = all.flatMap((o) => o.met.filter((m) => m.startsWith('error chunk') || /^5\d\d/.test(m)).map((m) => `${o.label}: ${m}`));
  const cuts = all.reduce((n, o) => n + o.met.filter((m) => m === 'stream cut' || m.startsWith('connection')).length, 0);
  console.log(`rolling restart: ${all.length} runs, ${all.length - wrong.length} right; ${cuts} connections cut by a restarting api (resumed); errors: ${errors.join(' | ') || 'none'}`);
  for (const o of wrong.slice(0, 5)) console.log(`wrong: ${o.label} run ${o.runId} ok=${o.ok} content=${JSON.stringify(o.content.slice(0, 120))} met=${o.met.join(' | ')}`);
  expect(wrong.map((o) => `${o.label} ${o.met.join(' | ')}`)).toEqual([]);
  expect(errors).toEqual([]);
  const tooled = all.filter((o) => o.label[0] === 'K' || o.label[0] === 'M');
  expect(tooled.filter((o) => counter.effectsFor(o.label) !== 1).map((o) => o.label)).toEqual([]);
});
