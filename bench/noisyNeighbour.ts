/**
 * Noisy-neighbour benchmark: does one abusive API key change another key's latency?
 *
 * mix2api runs as its own process (`mix2api start` against a headless dev server); a victim key
 * sends plain completions one after another while, phase by phase, an abuser (a process of its
 * own, so its client work does not share the victim's event loop) does one thing:
 *   idle        nothing (the baseline)
 *   slow-loris  400 sockets trickling header lines, 100 trickling a body
 *   no-reader   as many streams as the key may open, never read (long answers)
 *   at-limit    as many completions at once as the key may run (its fair share: the next row's baseline)
 *   flood       that, plus 500 requests in parallel, over and over, far past the key's limits
 *   idle-after  nothing again (drift of the machine over the run)
 * It prints the victim's p50/p95 per phase and their ratio to the idle baseline, plus what the
 * abuser got back. Run: `npm run bench:noisy` (NOISY_PHASES=flood,no-reader for some only).
 * Ratios only, no pass/fail.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startDevServer, type DevServer } from '../src/connectors/temporalDevServer';
import { childMix2api, type ChildMix2api } from '../test/support/childMix2api';
import { freePort } from '../test/support/mcpServers';
import { startScriptedUpstream, type ScriptedUpstream } from '../test/support/scriptedUpstream';
import { pct, printAligned, runBench } from './stats';

const PHASE_MS = 20_000;
const ROOT = resolve(__dirname, '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PHASES = ['idle', 'slow-loris', 'no-reader', 'at-limit', 'flood', 'idle-after'] as const;
/** The abuser key's concurrentRuns. */
const ABUSER_RUNS = 4;
type Phase = (typeof PHASES)[number];

// ---- the abuser (a child process: `tsx bench/noisyNeighbour.ts abuse <phase> <url>`) ----

async function abuse(phase: Phase, url: string): Promise<void> {
  const u = new URL(url);
  const stats: Record<string, number> = {};
  const count = (k: string) => (stats[k] = (stats[k] ?? 0) + 1);
  let stop = false;
  process.on('SIGTERM', () => {
    stop = true;
    // A pipe's writes are asynchronous: exit once the line is out.
    process.stdout.write(`stats ${JSON.stringify(stats)}\n`, () => process.exit(0));
  });
  const auth = 'Authorization: Bearer sk-abuser\r\n';
  if (phase === 'slow-loris') {
    const open = (body: boolean): void => {
      const sock: Socket = connect(Number(u.port), u.hostname);
      let n = 0;
      const t = setInterval(() => {
        if (body) sock.write(' ');
        else sock.write(`X-Slow-${n++}: y\r\n`);
      }, 1000);
      sock.on('connect', () => {
        sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}`);
        if (body) sock.write('Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{');
      });
      sock.on('data', () => count('answered'));
      sock.on('error', () => undefined);
      sock.on('close', () => {
        clearInterval(t);
        count('closed by server');
        if (!stop) open(body);
      });
    };
    for (let i = 0; i < 400; i++) open(false);
    for (let i = 0; i < 100; i++) open(true);
  } else if (phase === 'no-reader') {
    // Streams whose bodies are never read: the socket's buffers fill, the server must not care.
    const open = (): void => {
      const sock = connect(Number(u.port), u.hostname);
      const body = JSON.stringify({ model: 'bench-model', stream: true, messages: [{ role: 'user', content: 'long' }] });
      sock.on('connect', () => sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
      sock.pause(); // never reads
      sock.on('error', () => undefined);
      sock.on('close', () => {
        count('closed');
        if (!stop) setTimeout(open, 500);
      });
      count('opened');
    };
    for (let i = 0; i < 40; i++) open();
  } else if (phase === 'at-limit' || phase === 'flood') {
    // At its limit: as many completions at once as the key may run. The flood adds 500 more
    // lanes, each sending again as soon as it is answered (429s, mostly).
    const body = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'abuser' }] });
    const lane = async (): Promise<void> => {
      while (!stop) {
        const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer sk-abuser', 'content-type': 'application/json' }, body }).catch(() => null);
        count(r ? String(r.status) : 'failed');
        await r?.body?.cancel().catch(() => undefined);
      }
    };
    await Promise.all(Array.from({ length: ABUSER_RUNS + (phase === 'flood' ? 500 : 0) }, lane));
  }
  // Paused sockets are no reason for Node to stay up: this is (until SIGTERM).
  setInterval(() => undefined, 1000);
}

// ---- the bench ----

async function victimRequest(url: string): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk-victim', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'victim' }] }),
  });
  const j = (await r.json()) as { choices?: Array<{ message: { content: string } }> };
  if (r.status !== 200 || !j.choices?.[0]?.message.content) throw new Error(`victim got ${r.status}: ${JSON.stringify(j).slice(0, 200)}`);
  return performance.now() - t0;
}

function startAbuser(phase: Phase, url: string): ChildProcess & { stats: Promise<string> } {
  // Niced: on this one machine the abuser stands in for clients elsewhere, so its own client
  // work should take what CPU is left, not the server's.
  const child = spawn('nice', ['-n', '19', process.execPath, '--import', 'tsx', __filename, 'abuse', phase, url], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const stats = new Promise<string>((ok) => child.on('close', (code, signal) => ok(/stats (.*)/.exec(out)?.[1] ?? `(abuser exited: ${code ?? signal})`)));
  return Object.assign(child, { stats });
}

/** CPU seconds (user + system) a process has used so far, from /proc (NaN where there is none). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mix2api-noisy-'));
  let dev: DevServer | null = null;
  let upstream: ScriptedUpstream | null = null;
  let app: ChildMix2api | null = null;
  try {
    dev = await startDevServer({ root: ROOT, dbFile: join(dir, 'temporal.db'), port: await freePort(), headless: true });
    upstream = await startScriptedUpstream();
    // The victim's answer: 8 deltas, 10 ms apart. The abuser's long one: 2,000 deltas of 1 KB.
    upstream.setDefault((req) => {
      const last = JSON.stringify((req.body.messages as unknown[]).at(-1));
      return last.includes('long') ? { steps: [{ kind: 'text', text: 'x'.repeat(2_000_000), chunks: 2000, delayMs: 1 }] } : { steps: [{ kind: 'text', text: 'one two three four five six seven eight', chunks: 8, delayMs: 10 }] };
    });
    setInterval(() => (upstream!.requests.length = 0), 1000).unref();
    const port = await freePort();
    app = childMix2api({
      dir,
      port,
      role: 'start',
      config: {
        server: {
          apiKeys: [
            { name: 'victim', key: 'sk-victim', limits: { requestsPerMinute: 0 } },
            { name: 'abuser', key: 'sk-abuser', limits: { requestsPerMinute: 6000, concurrentRuns: ABUSER_RUNS, openStreams: 16 } },
          ],
        },
        temporal: { address: dev.address, taskQueue: 'noisy' },
        upstreams: [{ name: 'scripted', baseURL: upstream.url, timeouts: { connectSeconds: 5, idleSeconds: 30, totalSeconds: 120 } }],
        models: [{ id: 'bench-model', upstream: 'scripted', model: 'scripted' }],
      },
    });
    await app.start(60_000);
    for (let i = 0; i < 10; i++) await victimRequest(app.url); // warm-up

    const rows: string[][] = [];
    let base: { p50: number; p95: number } | null = null;
    let fair: { p50: number; p95: number } | null = null;
    // NOISY_PHASES=flood (say) measures only those, after the idle baseline.
    const only = process.env.NOISY_PHASES?.split(',');
    for (const phase of PHASES.filter((p) => !only || p === 'idle' || only.includes(p))) {
      const abuser = phase.startsWith('idle') ? null : startAbuser(phase, app.url);
      await sleep(abuser ? 3000 : 500); // let the abuse reach its steady state
      const samples: number[] = [];
      let errors = 0;
      const cpu0 = cpuSeconds(app.pid);
      const until = performance.now() + PHASE_MS;
      while (performance.now() < until) {
        try {
          samples.push(await victimRequest(app.url));
        } catch (e) {
          errors++;
          if (errors <= 3) console.error(`[${phase}] ${String(e)}`);
        }
      }
      const serverCpu = (cpuSeconds(app.pid) - cpu0) / (PHASE_MS / 1000);
      abuser?.kill('SIGTERM');
      const got = abuser ? await abuser.stats : '';
      const p50 = pct(samples, 50);
      const p95 = pct(samples, 95);
      if (phase === 'idle') base = { p50, p95 };
      if (phase === 'at-limit') fair = { p50, p95 };
      const vsFair = phase === 'flood' && fair ? `${(p50 / fair.p50).toFixed(2)} / ${(p95 / fair.p95).toFixed(2)}` : '-';
      rows.push([phase, String(samples.length), String(errors), p50.toFixed(0), p95.toFixed(0), (p50 / base!.p50).toFixed(2), (p95 / base!.p95).toFixed(2), vsFair, `${(serverCpu * 100).toFixed(0)}%`, got || '-']);
      await sleep(2000); // the abuse's leftovers drain
    }
    printAligned(
      ['phase', 'victim n', 'errors', 'p50 ms', 'p95 ms', 'p50/idle', 'p95/idle', 'p50/p95 vs at-limit', 'mix2api CPU', 'abuser got'],
      rows,
      `victim: sequential JSON completions (8 deltas, 10 ms apart) of key "victim"; abuser: key "abuser" (6000 rpm, ${ABUSER_RUNS} runs, 16 streams); mix2api CPU: share of one core`
    );
  } finally {
    await app?.terminate().catch(() => undefined);
    await upstream?.close().catch(() => undefined);
    await dev?.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === 'abuse') void abuse(process.argv[3] as Phase, process.argv[4]!);
else runBench(main);
