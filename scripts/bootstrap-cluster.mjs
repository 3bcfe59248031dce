#!/usr/bin/env node
// Installs what `npm run test:cluster` runs, once, from the registries only:
//   - the Temporal server and its SQL schema tool, `go install`ed from the Go module proxy
//     (go.temporal.io/server) into .tools/temporal-server (git-ignored), with the module's
//     PostgreSQL schema next to them; about 7 minutes and 350 MB of modules the first time;
//   - PostgreSQL from Debian (`apt-get install postgresql`) when no initdb is on the machine.
// With TEMPORAL_ADDRESS set the suite runs against that server instead and needs neither.
// Fast when done: the server is skipped while its stamp names the pinned version.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// v1.32.2 and later need a newer Go toolchain than Debian's image has.
export const TEMPORAL_SERVER_VERSION = 'v1.32.1';
export const serverDir = join(root, '.tools', 'temporal-server');

const run = (cmd, args, extra = {}) => execFileSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...extra });
const stamped = (dir, want) => existsSync(join(dir, 'version')) && readFileSync(join(dir, 'version'), 'utf8').trim() === want;

function installServer() {
  if (stamped(serverDir, TEMPORAL_SERVER_VERSION)) return;
  console.log(`[bootstrap-cluster] building the Temporal server ${TEMPORAL_SERVER_VERSION} from the Go module proxy into .tools/temporal-server… (about 7 minutes the first time)`);
  rmSync(serverDir, { recursive: true, force: true });
  const bin = join(serverDir, 'bin');
  mkdirSync(bin, { recursive: true });
  const env = { ...process.env, GOBIN: bin, CGO_ENABLED: '0' };
  for (const cmd of ['cmd/server', 'cmd/tools/sql']) run('go', ['install', `go.temporal.io/server/${cmd}@${TEMPORAL_SERVER_VERSION}`], { cwd: serverDir, env, stdio: 'inherit' });
  // `go mod download` outside any module (the scratch folder keeps it from reading this repo).
  const mod = JSON.parse(run('go', ['mod', 'download', '-json', `go.temporal.io/server@${TEMPORAL_SERVER_VERSION}`], { cwd: serverDir })).Dir;
  cpSync(join(mod, 'schema', 'postgresql', 'v12'), join(serverDir, 'schema'), { recursive: true });
  writeFileSync(join(serverDir, 'version'), `${TEMPORAL_SERVER_VERSION}\n`);
}

/** The folder holding PostgreSQL's initdb and pg_ctl, or null. */
export function postgresBin() {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const versions = readdirSync(base).filter((v) => existsSync(join(base, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(base, versions[0], 'bin') : null;
}

function installPostgres() {
  if (postgresBin()) return;
  if (process.getuid?.() !== 0) {
    console.error('[bootstrap-cluster] PostgreSQL is missing: install it (apt-get install postgresql) or set TEMPORAL_ADDRESS');
    process.exit(1);
  }
  console.log('[bootstrap-cluster] installing PostgreSQL from Debian…');
  run('apt-get', ['update', '-q'], { stdio: 'inherit' });
  run('apt-get', ['install', '-y', '-q', 'postgresql'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

if (process.argv[1] === fileURLToPath(import.meta.url) && !process.env.TEMPORAL_ADDRESS) {
  installPostgres();
  installServer();
}
