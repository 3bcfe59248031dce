/**
 * The workflow bundle a worker runs, built once per version of the code and kept on disk.
 *
 * Bundling `src/workflows` (webpack, inside the SDK) takes seconds on a small machine, and a
 * worker that bundles at start pays it on every start, including the restart after a crash that
 * its open runs wait on. So the bundle is kept under `<dir>/workflow-bundle-<key>.js`, where the
 * key is a hash of everything that goes into it: every source file of this package, the lock file
 * (the versions of what it imports from node_modules), the SDK's version and the bundle's options
 * (its interceptor modules and failure converter). Any change to any of them is a new key, so a
 * stale bundle is never run; past the newest four, older bundles are deleted when one is written.
 * A folder that cannot be written costs the cache, not the start.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { bundleWorkflowCode, DefaultLogger, type WorkflowBundleOption } from '@temporalio/worker';

export interface BundleOptions {
  /** Where bundles are kept; null: bundle without keeping it. */
  dir: string | null;
  workflowInterceptorModules: string[];
  failureConverterPath?: string;
  /** Told when the cache cannot be written (the start goes on). */
  warn?: (msg: string) => void;
}

const PREFIX = 'workflow-bundle-';
const KEEP = 4;
const SOURCE = /\.(ts|js|mjs|cjs|json)$/;

/** The package's own source files (the folder holding `workflows/`), sorted, as relative paths. */
function sourceFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (SOURCE.test(name)) out.push(p);
    }
  };
  walk(root);
  return out;
}

/** The key of the bundle `o` would build: see the module comment for what it covers. */
export function bundleKey(o: BundleOptions, workflowsPath = require.resolve('../workflows')): string {
  const src = dirname(dirname(workflowsPath));
  const pkgRoot = dirname(src);
  const h = createHash('sha256');
  const part = (name: string, data: string | Buffer) => h.update(`${name}\0${data.length}\0`).update(data);
  part('sdk', readFileSync(require.resolve('@temporalio/worker/package.json')));
  part('options', JSON.stringify([o.workflowInterceptorModules.map((m) => relative(pkgRoot, m)), o.failureConverterPath ? relative(pkgRoot, o.failureConverterPath) : null]));
  for (const f of sourceFiles(src)) part(relative(pkgRoot, f), readFileSync(f));
  const lock = join(pkgRoot, 'package-lock.json');
  if (existsSync(lock)) part('lock', readFileSync(lock));
  return h.digest('hex').slice(0, 20);
}

/**
 * Keeps the newest few bundles (processes with other options, tracing or encryption, may share
 * the folder) and drops what a process killed mid-write left.
 */
function prune(dir: string): void {
  const now = Date.now();
  const files = readdirSync(dir)
    .filter((n) => n.startsWith(PREFIX))
    .map((n) => ({ p: join(dir, n), tmp: n.endsWith('.tmp'), mtime: statSync(join(dir, n)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  const kept = files.filter((f) => !f.tmp).slice(0, KEEP);
  for (const f of files) if (f.tmp ? now - f.mtime > 10 * 60_000 : !kept.includes(f)) rmSync(f.p, { force: true });
}

export async function workflowBundle(o: BundleOptions): Promise<WorkflowBundleOption> {
  const workflowsPath = require.resolve('../workflows');
  const key = o.dir ? bundleKey(o, workflowsPath) : '';
  const file = o.dir ? join(o.dir, `${PREFIX}${key}.js`) : '';
  if (o.dir && existsSync(file)) return { codePath: file };
  const { code } = await bundleWorkflowCode({
    workflowsPath,
    workflowInterceptorModules: o.workflowInterceptorModules,
    failureConverterPath: o.failureConverterPath,
    logger: new DefaultLogger('WARN'),
  });
  if (o.dir) {
    try {
      mkdirSync(o.dir, { recursive: true });
      // Written whole, then renamed: a process killed mid-write leaves no half bundle under the key.
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, code);
      renameSync(tmp, file);
      prune(o.dir);
    } catch (e) {
      o.warn?.(`workflow bundle not kept in ${o.dir} (${(e as Error).message}): the next start bundles again`);
    }
  }
  return { code };
}
