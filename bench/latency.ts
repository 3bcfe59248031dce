/**
 * Latency benchmark: streams the same scripted completion (64 deltas, 20 ms apart) straight from the
 * scripted upstream ("direct") and through mix2api (Temporal workflow + live worker), at concurrency
 * 1, 8 and 32, and prints TTFT / total-time percentiles, throughput and mix2api/direct ratios.
 * Run: `npx tsx bench/latency.ts` (or `npm run bench`; `BENCH_LIMITS=off` without per-key run and
 * session caps; `BENCH_CONCURRENCY=32` for one level only; `BENCH_TELEMETRY=compare` also runs a
 * second mix2api with metrics on, JSON logs at info and `/metrics` scraped every second, against
 * the first with metrics off and no logs, in A-B-B-A order). Ratios only — no pass/fail.
 */
import { setMaxListeners } from 'node:events';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import OpenAI from 'openai';
import { parseConfig } from '../src/config/load';
import { startDevServer, type DevServer } from '../src/connectors/temporalDevServer';
import { startSystem, type RunningSystem } from '../src/roles/system';
import { createLogger } from '../src/telemetry/log';
import { Metrics } from '../src/telemetry/metrics';
import pino from 'pino';
import { startScriptedUpstream, type ScriptedUpstream } from '../test/support/scriptedUpstream';
import { freePort } from '../test/support/mcpServers';
import { pct, printAligned, runBench } from './stats';

const ALL_LEVELS: Array<{ concurrency: number; requests: number }> = [
  { concurrency: 1, requests: 30 },
  { concurrency: 8, requests: 64 },
  { concurrency: 32, requests: 128 },
];
const only = process.env.BENCH_CONCURRENCY ? Number(process.env.BENCH_CONCURRENCY) : null;
const LEVELS = only === null ? ALL_LEVELS : ALL_LEVELS.filter((l) => l.concurrency === only);
const WARMUP = 3;
const LEVEL_BUDGET_MS = 170_000; // both targets of one level, < 3 min
const REQUEST_TIMEOUT_MS = 60_000;
const WATCHDOG_MS = 12 * 60_000; // whole bench, incl. startup and cleanup
const COMPARE_TELEMETRY = process.env.BENCH_TELEMETRY === 'compare';
const TEXT = Array.from({ length: 64 }, (_, i) => `word${i}`).join(' ');

type Target = 'direct' | 'mix2api';
interface Sample { ttft: number; total: number }
interface Result { samples: Sample[]; errors: string[]; wallMs: number; aborted: boolean; loopP99: number }

async function oneRequest(client: OpenAI, signal: AbortSignal): Promise<Sample> {
  const t0 = performance.now();
  let ttft = NaN;
  let text = '';
  const stream = await client.chat.completions.create(
    { model: 'bench-model', stream: true, messages: [{ role: 'user', content: 'bench' }] },
    { signal, timeout: REQUEST_TIMEOUT_MS },
  );
  for await (const chunk of stream) {
    const content = chunk.choices[0]?.delta?.content;
    if (content) {
      if (Number.isNaN(ttft)) ttft = performance.now() - t0;
      text += content;
    }
  }
  if (text !== TEXT) throw new Error(`content mismatch (${text.length}/${TEXT.length} chars)`);
  return { ttft, total: performance.now() - t0 };
}

async function runLevel(client: OpenAI, n: number, concurrency: number, signal: AbortSignal): Promise<Result> {
  const res: Result = { samples: [], errors: [], wallMs: 0, aborted: false, loopP99: NaN };
  let next = 0;
  const loop = monitorEventLoopDelay({ resolution: 10 }); // client and mix2api share this process
  loop.enable();
  const t0 = performance.now();
  const lane = async () => {
    while (next < n && !signal.aborted) {
      next++;
      try {
        res.samples.push(await oneRequest(client, signal));
      } catch (e) {
        res.errors.push(e instanceof Error ? e.message : String(e));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  res.wallMs = performance.now() - t0;
  loop.disable();
  res.loopP99 = loop.percentile(99) / 1e6;
  res.aborted = signal.aborted;
  return res;
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T | void> =>
  Promise.race([p, new Promise<void>((r) => setTimeout(() => (console.error(`  ${what}: gave up after ${ms} ms`), r()), ms).unref())]);

async function main(): Promise<void> {
  const watchdog = setTimeout(() => (console.error('bench watchdog fired; exiting'), process.exit(1)), WATCHDOG_MS);
  watchdog.unref();
  Runtime.install({ logger: new DefaultLogger('WARN') });
  // Up to 32 in-flight requests share one level signal (and the upstream's close signal): not a leak.
  setMaxListeners(256);
  const root = process.cwd();
  const dataDir = join(root, '.data', 'bench');
  rmSync(dataDir, { recursive: true, force: true });

  let dev: DevServer | undefined;
  let upstream: ScriptedUpstream | undefined;
  let system: RunningSystem | undefined;
  let observed: RunningSystem | undefined;
  let scraper: NodeJS.Timeout | undefined;
  try {
    dev = await startDevServer({ root, dbFile: join('.data', 'bench', 'temporal.db'), port: await freePort(), headless: true });
    upstream = await startScriptedUpstream();
    upstream.setDefault({ steps: [{ kind: 'text', text: TEXT, chunks: 64, delayMs: 20 }] });
    const [address, upstreamUrl] = [dev.address, upstream.url];
    const raw = (taskQueue: string, metricsOn: boolean) => ({
      // BENCH_LIMITS=off: no run or session caps (so no ledger), to measure what they cost.
      server: { port: 0, ...(process.env.BENCH_LIMITS === 'off' ? { limits: { concurrentRuns: 0, sessions: 0 } } : {}) },
      temporal: { address, taskQueue },
      upstreams: [{ name: 'scripted', baseURL: upstreamUrl }],
      models: [{ id: 'bench-model', upstream: 'scripted', model: 'scripted' }],
      stream: { heartbeatSeconds: 2 },
      metrics: { enabled: metricsOn },
    });
    // Compared: metrics off and no logs, against metrics on (scraped) with JSON logs at info.
    const config = parseConfig(raw('bench', !COMPARE_TELEMETRY), {});
    const t0 = performance.now();
    system = await startSystem({ config, temporalAddress: dev.address, roles: { worker: true, api: true } });
    if (COMPARE_TELEMETRY) {
      const oc = parseConfig(raw('bench-observed', true), {});
      observed = await startSystem({
        config: oc,
        temporalAddress: dev.address,
        roles: { worker: true, api: true },
        logger: createLogger({ level: 'info', format: 'json' }, pino.destination({ dest: '/dev/null', sync: false })),
        metrics: new Metrics({ models: ['bench-model'], processMetrics: true }),
      });
      const url = `${observed.apiUrl!}/metrics`;
      scraper = setInterval(() => void fetch(url).then((r) => r.text()).catch(() => undefined), 1000);
    }
    console.log(`mix2api started in ${(performance.now() - t0).toFixed(0)} ms (Temporal ${dev.address})`);

    const clients: Record<Target, OpenAI> = {
      direct: new OpenAI({ baseURL: upstream.url, apiKey: 'none', maxRetries: 0 }),
      mix2api: new OpenAI({ baseURL: `${system.apiUrl!}/v1`, apiKey: 'none', maxRetries: 0 }),
    };
    const observedClient = observed ? new OpenAI({ baseURL: `${observed.apiUrl!}/v1`, apiKey: 'none', maxRetries: 0 }) : null;
    if (observedClient) await runLevel(observedClient, WARMUP, 1, AbortSignal.timeout(60_000));
    for (const t of ['direct', 'mix2api'] as const) {
      const w = await runLevel(clients[t], WARMUP, 1, AbortSignal.timeout(60_000));
      console.log(`warm-up ${t}: ${w.samples.length}/${WARMUP} ok${w.errors.length ? `, errors: ${w.errors.join('; ')}` : ''}`);
    }

    const rows: Array<{ c: number; r: Record<Target, Result> }> = [];
    for (const { concurrency, requests } of LEVELS) {
      const signal = AbortSignal.timeout(LEVEL_BUDGET_MS);
      const r = {} as Record<Target, Result>;
      for (const t of ['direct', 'mix2api'] as const) {
        r[t] = await runLevel(clients[t], requests, concurrency, signal);
        const e = r[t].errors;
        console.log(`c=${concurrency} ${t}: ${r[t].samples.length}/${requests} ok in ${(r[t].wallMs / 1000).toFixed(1)} s, event-loop delay p99 ${r[t].loopP99.toFixed(0)} ms` +
          `${r[t].aborted ? ' (ABORTED: level budget)' : ''}${e.length ? `, ${e.length} errors, first: ${e[0]}` : ''}`);
      }
      rows.push({ c: concurrency, r });
      if (observedClient) {
        // A-B-B-A: off (the run above), on, on, off, so drift over the run cancels out.
        const on1 = await runLevel(observedClient, requests, concurrency, AbortSignal.timeout(LEVEL_BUDGET_MS));
        const on2 = await runLevel(observedClient, requests, concurrency, AbortSignal.timeout(LEVEL_BUDGET_MS));
        const off2 = await runLevel(clients.mix2api, requests, concurrency, AbortSignal.timeout(LEVEL_BUDGET_MS));
        printTelemetry(concurrency, [r.mix2api, off2], [on1, on2]);
      }
    }
    printTable(rows);
  } finally {
    console.log('cleaning up…');
    if (scraper) clearInterval(scraper);
    if (observed) await withTimeout(observed.stop(), 20_000, 'observed.stop');
    if (system) await withTimeout(system.stop(), 20_000, 'system.stop');
    if (upstream) await withTimeout(upstream.close(), 5_000, 'upstream.close');
    if (dev) await withTimeout(dev.stop(), 10_000, 'devServer.stop');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Metrics and logs on against off: throughput and latency ratios (on / off). */
function printTelemetry(c: number, off: Result[], on: Result[]): void {
  const all = (rs: Result[]) => rs.flatMap((r) => r.samples);
  const rps = (rs: Result[]) => all(rs).length / (rs.reduce((a, r) => a + r.wallMs, 0) / 1000);
  const errors = [...off, ...on].reduce((a, r) => a + r.errors.length, 0);
  const [offT, onT] = [pct(all(off).map((s) => s.total), 50), pct(all(on).map((s) => s.total), 50)];
  const [offF, onF] = [pct(all(off).map((s) => s.ttft), 50), pct(all(on).map((s) => s.ttft), 50)];
  console.log(
    `c=${c} telemetry on/off: rps ${rps(on).toFixed(2)}/${rps(off).toFixed(2)} = ${(rps(on) / rps(off)).toFixed(3)}x, ` +
      `total p50 ${onT.toFixed(0)}/${offT.toFixed(0)} ms = ${(onT / offT).toFixed(3)}x, TTFT p50 ${onF.toFixed(0)}/${offF.toFixed(0)} ms = ${(onF / offF).toFixed(3)}x; ${errors} errors`,
  );
}

function printTable(rows: Array<{ c: number; r: Record<Target, Result> }>): void {
  const f = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
  const x = (v: number) => (Number.isFinite(v) ? `${v.toFixed(2)}x` : '-');
  const header = ['c', 'ok d/m', 'TTFT d p50/p99', 'TTFT m p50/p99', '+TTFT p50/p99', 'total p50 d/m', '+total p50',
    'rps d/m', 'TTFT ratio', 'total ratio', 'rps ratio'];
  const lines = rows.map(({ c, r }) => {
    const tt = (t: Target) => r[t].samples.map((s) => s.ttft);
    const to = (t: Target) => r[t].samples.map((s) => s.total);
    const rps = (t: Target) => r[t].samples.length / (r[t].wallMs / 1000);
    const [d50, d99, m50, m99] = [pct(tt('direct'), 50), pct(tt('direct'), 99), pct(tt('mix2api'), 50), pct(tt('mix2api'), 99)];
    const [dt, mt] = [pct(to('direct'), 50), pct(to('mix2api'), 50)];
    return [String(c), `${r.direct.samples.length}/${r.mix2api.samples.length}`, `${f(d50)}/${f(d99)}`, `${f(m50)}/${f(m99)}`,
      `${f(m50 - d50)}/${f(m99 - d99)}`, `${f(dt)}/${f(mt)}`, f(mt - dt), `${rps('direct').toFixed(2)}/${rps('mix2api').toFixed(2)}`,
      x(m50 / d50), x(mt / dt), x(rps('mix2api') / rps('direct'))];
  });
  printAligned(header, lines, 'd = direct (scripted upstream), m = mix2api; times in ms; ratios = mix2api / direct');
}

runBench(main);
