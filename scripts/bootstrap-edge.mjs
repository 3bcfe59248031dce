#!/usr/bin/env node
// Installs the two edge gateways the `test:edge` suite puts in front of mix2api, once, into
// .tools/ (git-ignored), from the registries only:
//   - one-api (github.com/songquanpeng/one-api) from the Go module proxy, built with placeholder
//     web assets (the module ships without its built UI) and the tiktoken files it needs offline
//     (github.com/pkoukk/tiktoken-go-loader, laid out as tiktoken's cache expects them);
//   - the LiteLLM proxy (litellm[proxy] from PyPI) in a venv.
// Fast when done: each part is skipped while its stamp names the pinned version.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
export const ONE_API_VERSION = 'v0.6.10';
const TIKTOKEN_LOADER_VERSION = 'v0.0.2';
export const LITELLM_VERSION = '1.108.7';
export const oneApiDir = join(root, '.tools', 'one-api');
export const litellmDir = join(root, '.tools', 'litellm');

// tiktoken-go finds a cached encoding under the SHA-1 of the URL it would download it from.
const TIKTOKEN_CACHE_NAMES = {
  'cl100k_base.tiktoken': '9b5ad71b2ce5302211f9c61530b329a4922fc6a4',
  'o200k_base.tiktoken': 'fb374d419588a4632f3f557e76b4b70aebbca790',
  'p50k_base.tiktoken': 'ec7223a39ce59f226a68acc30dc1af2788490e15',
  'r50k_base.tiktoken': '0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4',
};

function run(cmd, args, extra = {}) {
  return execFileSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...extra });
}

const stamped = (dir, want) => existsSync(join(dir, 'version')) && readFileSync(join(dir, 'version'), 'utf8').trim() === want;

/** Downloads a Go module into the module cache and returns its (read-only) folder. */
function goModuleDir(mod, version, cwd) {
  return JSON.parse(run('go', ['mod', 'download', '-json', `${mod}@${version}`], { cwd })).Dir;
}

function makeWritable(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    chmodSync(p, st.mode | 0o200);
    if (st.isDirectory()) makeWritable(p);
  }
}

function installOneApi() {
  if (stamped(oneApiDir, ONE_API_VERSION)) return;
  console.log(`[bootstrap-edge] building one-api ${ONE_API_VERSION} from the Go module proxy into .tools/one-api… (about 2 minutes the first time)`);
  rmSync(oneApiDir, { recursive: true, force: true });
  const src = join(oneApiDir, 'src');
  mkdirSync(oneApiDir, { recursive: true });
  // `go mod download` outside any module; a scratch folder keeps it from reading this repo.
  cpSync(goModuleDir('github.com/songquanpeng/one-api', ONE_API_VERSION, oneApiDir), src, { recursive: true });
  makeWritable(src);
  // The module embeds web/build/<theme>; its UI is not part of the published module.
  for (const theme of ['default', 'berry', 'air']) {
    mkdirSync(join(src, 'web', 'build', theme), { recursive: true });
    writeFileSync(join(src, 'web', 'build', theme, 'index.html'), '<!doctype html><title>one-api</title>\n');
  }
  run('go', ['build', '-trimpath', '-ldflags', '-s -w', '-o', join(oneApiDir, 'one-api'), '.'], {
    cwd: src,
    stdio: 'inherit',
    env: { ...process.env, CGO_ENABLED: '1', GOFLAGS: '-mod=mod' },
  });
  const cache = join(oneApiDir, 'tiktoken');
  mkdirSync(cache, { recursive: true });
  const assets = join(goModuleDir('github.com/pkoukk/tiktoken-go-loader', TIKTOKEN_LOADER_VERSION, oneApiDir), 'assets');
  for (const [file, name] of Object.entries(TIKTOKEN_CACHE_NAMES)) cpSync(join(assets, file), join(cache, name));
  rmSync(src, { recursive: true, force: true });
  writeFileSync(join(oneApiDir, 'version'), `${ONE_API_VERSION}\n`);
}

function installLiteLLM() {
  if (stamped(litellmDir, LITELLM_VERSION)) return;
  console.log(`[bootstrap-edge] installing litellm[proxy]==${LITELLM_VERSION} from PyPI into .tools/litellm… (about a minute the first time)`);
  rmSync(litellmDir, { recursive: true, force: true });
  run('python3', ['-m', 'venv', join(litellmDir, 'venv')], { stdio: 'inherit' });
  run(join(litellmDir, 'venv', 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', `litellm[proxy]==${LITELLM_VERSION}`], { stdio: 'inherit' });
  writeFileSync(join(litellmDir, 'version'), `${LITELLM_VERSION}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  installOneApi();
  installLiteLLM();
}
