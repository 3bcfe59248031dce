/**
 * A real Temporal server backed by PostgreSQL, for the cluster suite: a private PostgreSQL
 * (Debian's, in a temporary folder, on a free loopback port), the Temporal schema applied with
 * `temporal-sql-tool`, and `temporal-server` (frontend, history, matching and worker services)
 * from .tools/temporal-server (scripts/bootstrap-cluster.mjs). The `default` namespace and
 * mix2api's search attributes are created as an operator would. With TEMPORAL_ADDRESS set, that
 * server is used as it is (its namespace and search attributes must exist).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createServer } from 'node:net';
import { stringify } from 'yaml';
import { freePort } from '../support/mcpServers';

const root = resolve(__dirname, '..', '..');
const serverDir = join(root, '.tools', 'temporal-server');
const temporalCli = join(root, '.tools', 'temporal', 'bin', 'temporal');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const SEARCH_ATTRIBUTES = { Mix2apiModel: 'Keyword', Mix2apiKeyName: 'Keyword', Mix2apiTools: 'KeywordList' } as const;

export interface TemporalCluster {
  address: string;
  namespace: string;
  /** Where the server's and PostgreSQL's logs are (null against an external server). */
  logs: string | null;
  stop(): Promise<void>;
  /** Fault injection for the chaos suite (absent against an external server). */
  faults?: ClusterFaults;
}

/** The server and its database as processes to kill, stop and start again. */
export interface ClusterFaults {
  /** SIGKILL (or SIGSTOP) of the Temporal server's process, or of PostgreSQL's postmaster. */
  signal(part: 'server' | 'postgres', sig: 'SIGKILL' | 'SIGSTOP' | 'SIGCONT'): void;
  /** Starts a killed part again and waits until it serves (the server: a cluster health check). */
  restart(part: 'server' | 'postgres'): Promise<void>;
}

function postgresBin(): string {
  const base = '/usr/lib/postgresql';
  const v = existsSync(base) ? readdirSync(base).filter((d) => existsSync(join(base, d, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))[0] : undefined;
  if (!v) throw new Error('PostgreSQL is not installed: run `node scripts/bootstrap-cluster.mjs` (or set TEMPORAL_ADDRESS)');
  return join(base, v, 'bin');
}

/** initdb and postgres refuse to run as root: as root, they run as the `postgres` user. */
function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

function cli(args: string[]): string {
  return execFileSync(temporalCli, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function until(what: string, probe: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}

const ok = (f: () => unknown) => () => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

/** A free loopback port in 20000–32767. */
async function freeLowPort(): Promise<number> {
  for (;;) {
    const p = 20_000 + Math.floor(Math.random() * 12_768);
    const free = await new Promise<boolean>((ok) => {
      const s = createServer();
      s.once('error', () => ok(false));
      s.listen(p, '127.0.0.1', () => s.close(() => ok(true)));
    });
    if (free) return p;
  }
}

export async function startTemporalCluster(): Promise<TemporalCluster> {
  if (process.env.TEMPORAL_ADDRESS) {
    return { address: process.env.TEMPORAL_ADDRESS, namespace: process.env.TEMPORAL_NAMESPACE ?? 'default', logs: null, stop: async () => undefined };
  }
  const server = join(serverDir, 'bin', 'server');
  const sqlTool = join(serverDir, 'bin', 'sql');
  if (!existsSync(server) || !existsSync(sqlTool)) throw new Error('the Temporal server is not installed: run `node scripts/bootstrap-cluster.mjs` (npm run test:cluster does)');
  const pg = postgresBin();
  const dir = mkdtempSync(join(tmpdir(), 'mix2api-cluster-'));
  const data = join(dir, 'pg');
  const sock = join(dir, 'pgsock');
  mkdirSync(data, { mode: 0o700 });
  mkdirSync(sock);
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    for (const d of [dir, data, sock]) chownSync(d, uid, gid);
  }
  const pgPort = await freePort();
  const run = (cmd: string, args: string[]) => execFileSync(...asPostgres(cmd, args), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  run(join(pg, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8']);
  const startPostgres = () => run(join(pg, 'pg_ctl'), ['-D', data, '-l', join(dir, 'postgres.log'), '-o', `-p ${pgPort} -k ${sock} -c listen_addresses=127.0.0.1`, '-w', 'start']);
  startPostgres();
  const postmaster = () => Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const stopPostgres = () => {
    try {
      run(join(pg, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // already down
    }
  };
  let child: ChildProcess | null = null;
  try {
    run(join(pg, 'psql'), ['-X', '-q', '-h', sock, '-p', String(pgPort), '-U', 'postgres', '-d', 'postgres', '-c', "CREATE ROLE temporal LOGIN SUPERUSER PASSWORD 'temporal'"]);
    const sql = (db: string, ...args: string[]) =>
      execFileSync(sqlTool, ['--plugin', 'postgres12', '--ep', '127.0.0.1', '-p', String(pgPort), '-u', 'temporal', '--pw', 'temporal', '--db', db, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const [db, schema] of [['temporal', 'temporal'], ['temporal_visibility', 'visibility']] as const) {
      sql(db, 'create-database');
      sql(db, 'setup-schema', '-v', '0.0');
      sql(db, 'update-schema', '-d', join(serverDir, 'schema', schema, 'versioned'));
    }

    // Membership ports go into a smallint column: below 32768, so not from the ephemeral range.
    const port = () => freeLowPort();
    const [frontend, frontendM, frontendHttp, history, historyM, matching, matchingM, worker, workerM, metrics] = [
      await port(), await port(), await port(), await port(), await port(), await port(), await port(), await port(), await port(), await port(),
    ];
    const address = `127.0.0.1:${frontend}`;
    const store = (db: string) => ({
      sql: { pluginName: 'postgres12', databaseName: db, connectAddr: `127.0.0.1:${pgPort}`, connectProtocol: 'tcp', user: 'temporal', password: 'temporal', maxConns: 20, maxIdleConns: 20, maxConnLifetime: '1h' },
    });
    const svc = (grpcPort: number, membershipPort: number, extra: Record<string, unknown> = {}) => ({ rpc: { grpcPort, membershipPort, bindOnLocalHost: true, ...extra } });
    writeFileSync(join(dir, 'dynamicconfig.yaml'), stringify({ 'system.forceSearchAttributesCacheRefreshOnRead': [{ value: true, constraints: {} }] }));
    const config = {
      log: { stdout: true, level: 'warn' },
      persistence: { defaultStore: 'default', visibilityStore: 'visibility', numHistoryShards: 4, datastores: { default: store('temporal'), visibility: store('temporal_visibility') } },
      global: { membership: { maxJoinDuration: '30s', broadcastAddress: '127.0.0.1' }, metrics: { prometheus: { framework: 'tally', timerType: 'histogram', listenAddress: `127.0.0.1:${metrics}` } } },
      services: {
        frontend: svc(frontend, frontendM, { httpPort: frontendHttp }),
        history: svc(history, historyM),
        matching: svc(matching, matchingM),
        worker: svc(worker, workerM),
      },
      clusterMetadata: {
        enableGlobalNamespace: false,
        failoverVersionIncrement: 10,
        masterClusterName: 'active',
        currentClusterName: 'active',
        clusterInformation: { active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: address, httpAddress: `127.0.0.1:${frontendHttp}` } },
      },
      dcRedirectionPolicy: { policy: 'noop' },
      dynamicConfigClient: { filepath: join(dir, 'dynamicconfig.yaml'), pollInterval: '10s' },
    };
    writeFileSync(join(dir, 'temporal.yaml'), stringify(config));
    const log = join(dir, 'temporal-server.log');
    writeFileSync(log, '');
    let exited: Promise<void> = Promise.resolve();
    const spawnServer = () => {
      child = spawn('sh', ['-c', `exec "$0" --config-file "$1" --allow-no-auth start >>"$2" 2>&1`, server, join(dir, 'temporal.yaml'), log], { stdio: 'ignore' });
      const c = child;
      exited = new Promise<void>((r) => c.once('exit', () => r()));
    };
    const tail = () => readFileSync(log, 'utf8').split('\n').slice(-30).join('\n');
    const serving = () =>
      until('the Temporal frontend', ok(() => cli(['operator', 'cluster', 'health', '--address', address])), 90_000).catch((e: Error) => {
        throw new Error(`${e.message}\n${tail()}`);
      });
    spawnServer();
    await serving();
    cli(['operator', 'namespace', 'create', '-n', 'default', '--retention', '24h', '--address', address]);
    await until('the default namespace', ok(() => cli(['workflow', 'list', '-n', 'default', '--limit', '1', '--address', address])), 60_000);
    for (const [name, type] of Object.entries(SEARCH_ATTRIBUTES)) cli(['operator', 'search-attribute', 'create', '-n', 'default', '--name', name, '--type', type, '--address', address]);

    const faults: ClusterFaults = {
      signal(part, sig) {
        if (part === 'server') child?.kill(sig);
        else process.kill(postmaster(), sig);
      },
      async restart(part) {
        if (part === 'postgres') {
          // A killed postmaster may leave backends behind for a moment; pg_ctl refuses while they hold the lock.
          await until('PostgreSQL to start again', ok(() => startPostgres()), 30_000);
          return;
        }
        await Promise.race([exited, sleep(5_000)]);
        spawnServer();
        await serving();
      },
    };
    return {
      address,
      namespace: 'default',
      logs: dir,
      faults,
      async stop() {
        child?.kill('SIGCONT');
        child?.kill('SIGTERM');
        await Promise.race([exited, sleep(15_000)]);
        child?.kill('SIGKILL');
        stopPostgres();
        if (!process.env.MIX2API_KEEP_CLUSTER_LOGS) rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    (child as ChildProcess | null)?.kill('SIGKILL');
    stopPostgres();
    throw e;
  }
}
