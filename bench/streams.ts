/**
 * Sustained-streams benchmark: many long streams open at once. Every completion is 100 deltas
 * 200 ms apart (a 20-s answer). At each level (50, 200, 500, 1,000 concurrent streams, started
 * evenly over a 20-s ramp) it streams the same load straight from the upstream ("direct") and
 * through mix2api (`mix2api start`: embedded Temporal dev server, worker and API in one
 * process), and prints errors, TTFT p50/p99, the p99 of each stream's longest gap between two
 * chunks, total p50, mix2api's RSS per open stream, CPU of each process, history events per run,
 * and what the Temporal server did for the level (its own metrics): heartbeat RPCs per open
 * stream per minute, and persistence writes per run.
 *
 * The upstream, mix2api (with its dev server) and this load client are separate processes.
 * Run: `npm run bench:streams` (about 8 minutes). `STREAM_LEVELS=50,200` picks levels;
 * `STREAM_MIX_CONFIG='{"stream":{"heartbeatSeconds":5}}'` adds to mix2api's config.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { childMix2api } from '../test/support/childMix2api';
import { freePort } from '../test/support/mcpServers';
import { pct, printAligned, runBench } from './stats';
import { benchText } from './upstreamProcess';

const DELTAS = 100;
const DELAY_MS = 200;
const RAMP_MS = 20_000;
const LEVELS = (process.env.STREAM_LEVELS ?? '50,200,500,1000').split(',').map(Number);
const TEXT = benchText(DELTAS);
const root = join(__dirname, '..');

interface Sample {
  ttft: number;
  total: number;
  maxGap: number;
  runId: string | null;
}
interface Level {
  samples: Sample[];
  errors: string[];
  /** mix2api only: the highest RSS growth per open stream while the level was at its peak. */
  rssPerStreamKb: number;
  /** mix2api only: growth per open stream of its V8 heap in use, and of memory outside the heap (external and array buffers), at the level's peak. */
  heapPerStreamKb: number;
  externalPerStreamKb: number;
  peakOpen: number;
  cpu: Record<string, number>;
}

const agent = new Agent({ keepAlive: false, maxSockets: Infinity });

/** One streaming completion over plain HTTP, timed chunk by chunk. */
function oneStream(url: string, onOpen: (d: 1 | -1) => void): Promise<Sample> {
  return new Promise((ok, fail) => {
    const t0 = performance.now();
    let ttft = NaN;
    let last = 0;
    let maxGap = 0;
    let buf = '';
    let text = '';
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return fail(new Error(`HTTP ${res.statusCode}`));
      }
      onOpen(1);
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let cut: number;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!data || data === '[DONE]') continue;
          const content = (JSON.parse(data) as { choices?: Array<{ delta?: { content?: string } }> }).choices?.[0]?.delta?.content;
          if (!content) continue;
          const now = performance.now();
          if (Number.isNaN(ttft)) ttft = now - t0;
          else maxGap = Math.max(maxGap, now - last);
          last = now;
          text += content;
        }
      });
      res.on('end', () => {
        onOpen(-1);
        if (text !== TEXT) fail(new Error(`content mismatch (${text.length}/${TEXT.length} chars)`));
        else ok({ ttft, total: performance.now() - t0, maxGap, runId: (res.headers['x-run-id'] as string | undefined) ?? null });
      });
      res.on('error', (e) => {
        onOpen(-1);
        fail(e);
      });
    });
    req.on('error', fail);
    req.end(JSON.stringify({ model: 'bench-model', stream: true, messages: [{ role: 'user', content: 'bench' }] }));
  });
}

/** The heap figures of mix2api's own process metrics (`/metrics`), in KB. */
async function heapKb(metricsUrl: string): Promise<{ heap: number; external: number }> {
  const text = await (await fetch(metricsUrl)).text();
  const v = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN) / 1024;
  return { heap: v('nodejs_heap_size_used_bytes'), external: v('nodejs_external_memory_bytes') };
}

/** With STREAM_HEAP_SNAPSHOTS set, a V8 heap snapshot of mix2api (see main): the file it wrote. */
async function heapSnapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (const deadline = Date.now() + 180_000; Date.now() < deadline; ) {
    await new Promise((r) => setTimeout(r, 500));
    const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    // The file is complete when its size stops changing.
    if (file) {
      const size = statSync(join(dir, file)).size;
      await new Promise((r) => setTimeout(r, 1000));
      if (statSync(join(dir, file)).size === size && size > 0) return join(dir, file);
    }
  }
  throw new Error(`no heap snapshot from process ${pid} in ${dir} within 180 s (was it started with --heapsnapshot-signal=SIGUSR2?)`);
}

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}
const childPids = (pid: number) =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number);

interface Measured {
  pid: number;
  metricsUrl: string;
  snapshots?: string;
}

async function runLevel(url: string, n: number, procs: Record<string, number>, measured: Measured | null): Promise<Level> {
  const level: Level = { samples: [], errors: [], rssPerStreamKb: NaN, heapPerStreamKb: NaN, externalPerStreamKb: NaN, peakOpen: 0, cpu: {} };
  let open = 0;
  if (measured?.snapshots) console.log(`n=${n}: heap snapshot before the level: ${await heapSnapshot(measured.pid, measured.snapshots)}`);
  const base = measured ? rssKb(measured.pid) : NaN;
  const heapBase = measured ? await heapKb(measured.metricsUrl) : null;
  let heapRead: Promise<void> | null = null;
  let heapOpen = 0;
  let snapshotTaken = false;
  const cpu0 = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuSeconds(pid)]));
  const t0 = performance.now();
  const sampler = setInterval(() => {
    level.peakOpen = Math.max(level.peakOpen, open);
    if (measured && open >= 0.9 * n) {
      const per = (rssKb(measured.pid) - base) / open;
      if (!(per <= level.rssPerStreamKb)) level.rssPerStreamKb = per;
      if (!heapRead && open > heapOpen) {
        const at = open;
        heapRead = heapKb(measured.metricsUrl)
          .then((h) => {
            heapOpen = at;
            level.heapPerStreamKb = (h.heap - heapBase!.heap) / at;
            level.externalPerStreamKb = (h.external - heapBase!.external) / at;
          })
          .catch(() => undefined)
          .finally(() => (heapRead = null));
      }
      if (measured.snapshots && !snapshotTaken && open >= 0.98 * n) {
        snapshotTaken = true;
        const at = open;
        void heapSnapshot(measured.pid, measured.snapshots).then((f) => console.log(`n=${n}: heap snapshot with ${at} streams open: ${f} (compare: npx tsx bench/heapDiff.ts <before> ${f} ${at})`), (e: unknown) => console.error(`n=${n}: ${String(e)}`));
      }
    }
  }, 250);
  const all: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    const wait = t0 + (i * RAMP_MS) / n - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    all.push(
      oneStream(url, (d) => (open += d)).then(
        (s) => void level.samples.push(s),
        (e: unknown) => void level.errors.push(e instanceof Error ? e.message : String(e)),
      ),
    );
  }
  await Promise.all(all);
  clearInterval(sampler);
  const wall = (performance.now() - t0) / 1000;
  for (const [k, pid] of Object.entries(procs)) level.cpu[k] = (cpuSeconds(pid) - cpu0[k]!) / wall;
  return level;
}

function waitForLine(p: ChildProcess, re: RegExp): Promise<RegExpExecArray> {
  return new Promise((ok, fail) => {
    let out = '';
    p.stdout!.setEncoding('utf8');
    p.stdout!.on('data', (s: string) => {
      out += s;
      const m = re.exec(out);
      if (m) ok(m);
    });
    p.once('exit', (code) => fail(new Error(`exited with ${code} before printing ${re}`)));
  });
}

async function historyEvents(address: string, runIds: string[]): Promise<number[]> {
  const connection = await Connection.connect({ address });
  try {
    const client = new Client({ connection });
    return await Promise.all(runIds.map(async (id) => (await client.workflow.getHandle(id).fetchHistory()).events?.length ?? NaN));
  } finally {
    await connection.close();
  }
}

/** The dev server's counters this bench reads: heartbeat RPCs and persistence writes. */
async function serverCounters(url: string): Promise<{ heartbeats: number; writes: number }> {
  const text = await (await fetch(url)).text();
  let heartbeats = 0;
  let writes = 0;
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const op = /operation="([^"]+)"/.exec(m[2]!)?.[1] ?? '';
    const v = Number(m[3]);
    if (m[1] === 'service_requests' && /^RecordActivityTaskHeartbeat/.test(op)) heartbeats += v;
    if (m[1] === 'persistence_requests' && /^(Create|Update|Append|Conflict|Set|Put|Insert|Upsert|Delete|Complete|Range)/.test(op)) writes += v;
  }
  return { heartbeats, writes };
}

async function main(): Promise<void> {
  const watchdog = setTimeout(() => (console.error('bench watchdog fired; exiting'), process.exit(1)), 30 * 60_000);
  watchdog.unref();
  const dir = mkdtempSync(join(tmpdir(), 'mix2api-streams-'));
  // Heap snapshots of mix2api at each level's start and peak (each pauses it for seconds: a diagnosis, not a measurement).
  const snapshots = process.env.STREAM_HEAP_SNAPSHOTS ? join(dir, 'snapshots') : undefined;
  if (snapshots) mkdirSync(snapshots);
  const childOptions = [process.env.STREAM_CHILD_OPTIONS, snapshots && `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshots}`].filter(Boolean).join(' ');
  const upstreamProc = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'upstreamProcess.ts'), String(DELTAS), String(DELAY_MS)], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  const [temporalPort, uiPort, apiPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const serverMetrics = `http://127.0.0.1:${metricsPort}/metrics`;
  const upstreamUrl = (await waitForLine(upstreamProc, /listening (\S+)/))[1]!;
  const mix = childMix2api({
    dir,
    port: apiPort,
    config: {
      temporal: { address: 'embedded', port: temporalPort, uiPort, metricsPort, headless: true, dataDir: join(dir, 'data') },
      upstreams: [{ name: 'mock', baseURL: upstreamUrl, timeouts: { connectSeconds: 30, idleSeconds: 30, totalSeconds: 120 } }],
      models: [{ id: 'bench-model', upstream: 'mock', model: 'mock' }],
      // Capacity, not per-key limits, is what this measures: one caller opens every stream.
      server: { limits: { requestsPerMinute: 0, concurrentRuns: 0, openStreams: 0 } },
      ...(process.env.STREAM_MIX_CONFIG ? (JSON.parse(process.env.STREAM_MIX_CONFIG) as Record<string, unknown>) : {}),
    },
    ...(childOptions ? { env: { NODE_OPTIONS: childOptions } } : {}),
  });
  try {
    await mix.start(120_000);
    const mixPid = mix.pid!;
    const devPid = childPids(mixPid).find((p) => /temporal/.test(readFileSync(`/proc/${p}/cmdline`, 'utf8'))) ?? NaN;
    const procs = { mix2api: mixPid, temporal: devPid, upstream: upstreamProc.pid!, client: process.pid };
    console.log(`mix2api pid ${mixPid} (dev server ${devPid}), upstream ${upstreamUrl}; ${DELTAS} deltas ${DELAY_MS} ms apart, ramp ${RAMP_MS / 1000} s`);
    const targets = { direct: `${upstreamUrl}/chat/completions`, mix2api: `${mix.url}/v1/chat/completions` };
    // Warm-up: the first runs compile workflow code and open connections.
    for (const url of Object.values(targets)) await Promise.all(Array.from({ length: 5 }, () => oneStream(url, () => undefined)));
    const rows: string[][] = [];
    for (const n of LEVELS) {
      const d = await runLevel(targets.direct, n, procs, null);
      const before = await serverCounters(serverMetrics);
      const m = await runLevel(targets.mix2api, n, procs, { pid: mixPid, metricsUrl: `${mix.url}/metrics`, ...(snapshots ? { snapshots } : {}) });
      const after = await serverCounters(serverMetrics);
      const streamMinutes = m.samples.reduce((t, x) => t + x.total, 0) / 60_000;
      const runIds = m.samples.map((s) => s.runId).filter((id): id is string => id !== null);
      const hist = await historyEvents(`127.0.0.1:${temporalPort}`, runIds.filter((_, i) => i % Math.max(1, Math.floor(runIds.length / 20)) === 0));
      const f = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
      const tt = (l: Level, p: number) => pct(l.samples.map((s) => s.ttft), p);
      const gap = (l: Level) => pct(l.samples.map((s) => s.maxGap), 99);
      const tot = (l: Level) => pct(l.samples.map((s) => s.total), 50);
      console.log(
        `n=${n}: direct ${d.samples.length} ok, ${d.errors.length} errors; mix2api ${m.samples.length} ok, ${m.errors.length} errors` +
          `${m.errors.length ? ` (first: ${m.errors[0]})` : ''}; peak open ${m.peakOpen}; CPU share of one core during mix2api: ` +
          Object.entries(m.cpu).map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`).join(', '),
      );
      rows.push([
        String(n),
        `${d.errors.length}/${m.errors.length}`,
        `${f(tt(d, 50))}/${f(tt(d, 99))}`,
        `${f(tt(m, 50))}/${f(tt(m, 99))}`,
        `+${f(tt(m, 99) - tt(d, 99))}`,
        `${f(gap(d))}/${f(gap(m))}`,
        `${(gap(m) / DELAY_MS).toFixed(2)}x`,
        `${(tot(d) / 1000).toFixed(2)}/${(tot(m) / 1000).toFixed(2)}`,
        `${(tot(m) / tot(d)).toFixed(3)}x`,
        `${f(m.rssPerStreamKb)} (${f(m.heapPerStreamKb)}/${f(m.externalPerStreamKb)})`,
        hist.length ? `${Math.min(...hist)}-${Math.max(...hist)}` : '-',
        ((after.heartbeats - before.heartbeats) / streamMinutes).toFixed(2),
        ((after.writes - before.writes) / Math.max(1, m.samples.length)).toFixed(1),
      ]);
    }
    printAligned(
      ['streams', 'errors d/m', 'TTFT d p50/p99', 'TTFT m p50/p99', 'TTFT p99 m-d', 'max gap p99 d/m', 'gap/pacing', 'total p50 d/m s', 'total ratio', 'RSS KB/stream (heap/ext)', 'history events', 'heartbeats/stream/min', 'writes/run'],
      rows,
      `d = direct (upstream process), m = mix2api (\`mix2api start\`); ms unless noted; gap = longest pause between two chunks of a stream; pacing ${DELAY_MS} ms`,
    );
  } finally {
    await mix.terminate().catch(() => undefined);
    upstreamProc.kill('SIGTERM');
    // Snapshots stay for bench/heapDiff.ts; everything else goes.
    if (snapshots) {
      for (const f of readdirSync(dir)) if (f !== 'snapshots') rmSync(join(dir, f), { recursive: true, force: true });
      console.log(`heap snapshots kept in ${snapshots}`);
    } else rmSync(dir, { recursive: true, force: true });
  }
}

runBench(main);
