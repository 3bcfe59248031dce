#!/usr/bin/env node
// Transpiles src/ to dist/ for `npm start` (esbuild, one file per file, as tsx does on the fly),
// only when a source file changed since the last time: `node dist/cli.js` loads in about a second
// less than `tsx src/cli.ts` on a small machine, and a restart's open runs wait on that second.
// No type check here (`npm test` and `npm run build` do that).
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'src');
const dist = join(root, 'dist');
const marker = join(dist, '.transpiled');

function tsFiles(dir) {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      return statSync(p).isDirectory() ? tsFiles(p) : p.endsWith('.ts') ? [p] : [];
    });
}

const files = tsFiles(src);
const h = createHash('sha256');
h.update(readFileSync(join(root, 'node_modules', 'esbuild', 'package.json')));
h.update(readFileSync(join(root, 'tsconfig.json')));
h.update(readFileSync(fileURLToPath(import.meta.url)));
for (const f of files) h.update(`${relative(src, f)}\0`).update(readFileSync(f));
const key = h.digest('hex');

if (!existsSync(marker) || readFileSync(marker, 'utf8') !== key) {
  // Whole: a file deleted from src must not linger in dist.
  rmSync(dist, { recursive: true, force: true });
  await build({
    entryPoints: files, outdir: dist, outbase: src, format: 'cjs', platform: 'node', target: 'node20', sourcemap: true,
    // import() as require(), as tsc's CommonJS output has it (a native import() needs file extensions).
    supported: { 'dynamic-import': false }, logLevel: 'warning',
  });
  writeFileSync(marker, key);
}
