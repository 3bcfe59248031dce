/**
 * `mix2api start` as a child process (worker + API in one process, against an external Temporal),
 * so a test can SIGKILL it and start it again on the same port. The child is node itself with the
 * tsx loader (`node --import tsx`), not the `tsx` CLI: that one runs the script in a grandchild,
 * which a SIGKILL of the CLI would leave running.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';

const root = resolve(__dirname, '..', '..');
const TSX_LOADER = pathToFileURL(join(root, 'node_modules', 'tsx', 'dist', 'loader.mjs')).href;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ChildMix2api {
  /** `http://127.0.0.1:<port>`, the same for every start. */
  url: string;
  /** Every line the children printed, prefixed with `[<start #> <pid>]`. */
  output: string[];
  readonly pid: number | undefined;
  /** Spawns the child and resolves with `Date.now()` once `GET /readyz` answers 200. */
  start(timeoutMs?: number): Promise<number>;
  /**
   * SIGKILL, and wait for the exit. Resolves with `Date.now()` at the kill. `withChildren`: its
   * child processes too (an embedded dev server), first, as a crash of the whole takes them.
   */
  kill(o?: { withChildren?: boolean }): Promise<number>;
  /** SIGTERM (a clean shutdown), and wait for the exit; resolves with the exit code. */
  terminate(): Promise<number | null>;
  /** Sends a signal (SIGSTOP / SIGCONT: a hung process) to the running child, if any. */
  signal(sig: NodeJS.Signals): void;
  /** The last `n` output lines, for failure messages. */
  tail(n?: number): string;
}

/**
 * `entry`: `tsx` (default) runs src/cli.ts through tsx; `dist` runs what `npm start` runs,
 * `node dist/cli.js` (transpiled here first, as its prestart does).
 */
const childPids = (pid: number): number[] =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);

export function childMix2api(o: { dir: string; port: number; config: Record<string, unknown>; configName?: string; role?: 'start' | 'api' | 'worker'; env?: Record<string, string>; entry?: 'tsx' | 'dist' }): ChildMix2api {
  const configFile = join(o.dir, o.configName ?? 'mix2api.yaml');
  writeFileSync(configFile, stringify({ ...o.config, server: { ...(o.config.server as object | undefined), port: o.port } }));
  const url = `http://127.0.0.1:${o.port}`;
  const output: string[] = [];
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let starts = 0;

  const capture = (tag: string, stream: NodeJS.ReadableStream | null) => {
    let partial = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (s: string) => {
      const lines = (partial + s).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) output.push(`${tag} ${l}`);
    });
    stream?.on('end', () => partial && output.push(`${tag} ${partial}`));
  };

  const ready = async (): Promise<boolean> => {
    try {
      const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
      await r.body?.cancel();
      return r.status === 200;
    } catch {
      return false;
    }
  };

  return {
    url,
    output,
    get pid() {
      return child?.pid;
    },
    async start(timeoutMs = 90_000) {
      if (child && child.exitCode === null && child.signalCode === null) throw new Error('the child is running already');
      const n = ++starts;
      if (o.entry === 'dist' && n === 1) execFileSync(process.execPath, ['scripts/transpile.mjs'], { cwd: root });
      const args = o.entry === 'dist' ? ['--enable-source-maps', 'dist/cli.js'] : ['--import', TSX_LOADER, 'src/cli.ts'];
      const proc = spawn(process.execPath, [...args, o.role ?? 'start'], {
        cwd: root,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, MIX2API_CONFIG: configFile, ...o.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = proc;
      const tag = `[${n} ${proc.pid}]`;
      capture(tag, proc.stdout);
      capture(`${tag} !`, proc.stderr);
      let exitInfo: string | null = null;
      exited = new Promise((ok) =>
        proc.once('exit', (code, signal) => {
          exitInfo = `exited (code ${code}, signal ${signal})`;
          output.push(`${tag} ${exitInfo}`);
          ok();
        }),
      );
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (exitInfo) throw new Error(`mix2api child ${exitInfo} before it was ready:\n${this.tail()}`);
        // Ready when it says so (the API listens before its workers run) and, with an HTTP side, answers.
        if (output.some((l) => l.startsWith(tag) && l.includes('ready.')) && (o.role === 'worker' || (await ready()))) return Date.now();
        if (Date.now() > deadline) throw new Error(`mix2api child not ready within ${timeoutMs} ms:\n${this.tail()}`);
        await sleep(100);
      }
    },
    async kill(k = {}) {
      const at = Date.now();
      if (child && child.exitCode === null && child.signalCode === null) {
        if (k.withChildren && child.pid) for (const pid of childPids(child.pid)) process.kill(pid, 'SIGKILL');
        child.kill('SIGKILL');
        await exited;
      }
      return at;
    },
    async terminate() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
      const proc = child;
      proc.kill('SIGTERM');
      await exited;
      return proc.exitCode;
    },
    signal(sig) {
      if (child && child.exitCode === null && child.signalCode === null) child.kill(sig);
    },
    tail(n = 60) {
      return output.slice(-n).join('\n');
    },
  };
}
