/**
 * Launches the `temporal` CLI dev server as a child process (SQLite file, optional Web UI),
 * waits until its frontend answers, and stops it. Used by `mix2api start` and by the tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { Connection } from '@temporalio/client';

/** Search attributes mix2api sets on runs, so the Web UI can filter by them. */
export const SEARCH_ATTRIBUTES: Record<string, string> = {
  Mix2apiModel: 'Keyword',
  Mix2apiKeyName: 'Keyword',
  Mix2apiTools: 'KeywordList',
};

/**
 * Every workflow task is a few SQLite writes; the default rollback journal with full syncs makes
 * each one wait on the disk. WAL keeps a killed server's data intact and cuts that wait.
 */
const DEFAULT_PRAGMAS: Record<string, string> = { journal_mode: 'wal', synchronous: 'normal' };

/**
 * Server settings for a short hot path; a cluster wants the same (see docs/topology.md, "Temporal
 * settings"). Eager workflow start hands a run's first workflow task to the starting process in
 * the start call's answer; eager activity execution hands an activity scheduled on the
 * workflow's own queue to the worker that scheduled it. The transfer queue is how new tasks
 * reach matching: read at most 20 times a second by default, it adds ~30 ms to every step.
 */
export const LATENCY_DYNAMIC_CONFIG: Record<string, string | number | boolean> = {
  'system.enableEagerWorkflowStart': true,
  'system.enableActivityEagerExecution': true,
  'history.transferProcessorMaxPollRPS': 1000,
};

export interface DevServerOptions {
  /** Path of the `temporal` binary; default `.tools/temporal/bin/temporal` under `root`. */
  executable?: string;
  root?: string;
  dbFile: string;
  port: number;
  uiPort?: number;
  /** `--metrics-port`: the server's own Prometheus metrics. */
  metricsPort?: number;
  headless: boolean;
  /** The Web UI's remote codec (`--ui-codec-endpoint`), so it shows encrypted payloads decoded. */
  uiCodecEndpoint?: string;
  namespace?: string;
  readyTimeoutMs?: number;
  /** `--dynamic-config-value` pairs over LATENCY_DYNAMIC_CONFIG, e.g. a low `limit.historyCount.suggestContinueAsNew` in tests. */
  dynamicConfig?: Record<string, string | number | boolean>;
  /** `--sqlite-pragma` values; default WAL with synchronous=NORMAL (safe against process crashes). */
  sqlitePragmas?: Record<string, string>;
  /** Where the server's own log lines go; default: discarded. */
  log?: (line: string) => void;
}

export interface DevServer {
  address: string;
  uiUrl: string | null;
  process: ChildProcess;
  stop(): Promise<void>;
}

export class PortInUseError extends Error {
  constructor(readonly port: number, what: string) {
    super(`port ${port} (${what}) is already in use; stop whatever holds it or choose another port`);
    this.name = 'PortInUseError';
  }
}

export function assertPortFree(port: number, what: string, host = '127.0.0.1'): Promise<void> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => fail(e.code === 'EADDRINUSE' ? new PortInUseError(port, what) : e));
    srv.listen(port, host, () => srv.close(() => ok()));
  });
}

export function defaultTemporalPath(root = process.cwd()): string {
  return join(root, '.tools', 'temporal', 'bin', 'temporal');
}

/** Resolves when a TCP connection to `port` on loopback is accepted; fails when refused. */
function portOpen(port: number): Promise<void> {
  return new Promise((ok, fail) => {
    const sock = connect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      ok();
    });
    sock.once('error', fail);
  });
}

export async function startDevServer(o: DevServerOptions): Promise<DevServer> {
  const exe = o.executable ?? defaultTemporalPath(o.root);
  if (!existsSync(exe)) throw new Error(`temporal CLI not found at ${exe}; run \`npm run bootstrap\``);
  await assertPortFree(o.port, 'Temporal frontend');
  if (!o.headless && o.uiPort) await assertPortFree(o.uiPort, 'Temporal Web UI');
  mkdirSync(resolve(o.dbFile, '..'), { recursive: true });
  const args = ['server', 'start-dev', '--db-filename', o.dbFile, '--port', String(o.port), '--ip', '127.0.0.1', '--log-level', 'warn'];
  if (o.metricsPort) args.push('--metrics-port', String(o.metricsPort));
  if (o.headless) args.push('--headless');
  else if (o.uiPort) args.push('--ui-port', String(o.uiPort));
  if (!o.headless && o.uiCodecEndpoint) args.push('--ui-codec-endpoint', o.uiCodecEndpoint);
  if (o.namespace && o.namespace !== 'default') args.push('--namespace', o.namespace);
  for (const [k, v] of Object.entries(SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${k}=${v}`);
  for (const [k, v] of Object.entries(o.sqlitePragmas ?? DEFAULT_PRAGMAS)) args.push('--sqlite-pragma', `${k}=${v}`);
  for (const [k, v] of Object.entries({ ...LATENCY_DYNAMIC_CONFIG, ...o.dynamicConfig })) args.push('--dynamic-config-value', `${k}=${JSON.stringify(v)}`);
  const child = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const recent: string[] = [];
  const lines = (buf: Buffer) =>
    buf
      .toString()
      .split('\n')
      .filter(Boolean)
      .forEach((l) => {
        recent.push(l);
        if (recent.length > 20) recent.shift();
        o.log?.(l);
      });
  child.stdout?.on('data', lines);
  child.stderr?.on('data', lines);
  let exited: string | null = null;
  child.once('error', (e) => (exited = `temporal dev server could not start: ${e.message}`));
  child.once('exit', (code, sig) => (exited = `temporal dev server exited (${sig ?? code}): ${recent.slice(-5).join(' | ')}`));
  const address = `127.0.0.1:${o.port}`;
  // Loaded only now: the server starts while the client library loads.
  const { Connection } = await import('@temporalio/client');
  const deadline = Date.now() + (o.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (exited) throw new Error(exited);
    let conn: Connection | null = null;
    try {
      // The port first: a gRPC attempt on a closed port puts the address into gRPC's reconnect
      // backoff (1 s, shared by every channel to it), which would hold up the next attempt too.
      await portOpen(o.port);
      conn = await Connection.connect({ address, connectTimeout: 1000 });
      await conn.workflowService.describeNamespace({ namespace: o.namespace ?? 'default' });
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`temporal dev server not ready after ${o.readyTimeoutMs ?? 60_000} ms: ${String(e)}`);
      }
      // Often: a restart's open runs wait on this (the frontend listens about 0.1 s after the spawn).
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await conn?.close().catch(() => undefined);
    }
  }
  const stop = () =>
    new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(kill);
        done();
      });
      child.kill('SIGTERM');
    });
  return { address, uiUrl: o.headless ? null : `http://localhost:${o.uiPort ?? o.port + 1000}`, process: child, stop };
}
