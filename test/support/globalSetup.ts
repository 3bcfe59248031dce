/**
 * Starts one real Temporal dev server (headless, its own SQLite file) and bundles the
 * workflows once for the whole integration suite (twice: with and without encryption's failure
 * converter). Test files read the address from `.data/test-env.json`.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { DefaultLogger, bundleWorkflowCode } from '@temporalio/worker';
import { workflowInterceptorModules } from '../../src/roles/workers';
import { ENCRYPTED_FAILURE_CONVERTER } from '../../src/connectors/payloadCodec';
import { startDevServer } from '../../src/connectors/temporalDevServer';

const root = join(__dirname, '..', '..');

function freePort(): Promise<number> {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => ok(p));
    });
  });
}

export default async function globalSetup(): Promise<void> {
  // One folder per run, so two suites on one machine never share a server or a bundle.
  const dir = join(root, '.data', `test-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const bundle = (failureConverterPath?: string) =>
    bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), workflowInterceptorModules: workflowInterceptorModules(false), failureConverterPath, logger: new DefaultLogger('WARN') });
  const [server, plain, encrypted] = await Promise.all([
    // A low continue-as-new suggestion lets the session tests cross it in a few turns.
    startDevServer({ root, dbFile: join(dir, 'temporal.db'), port, headless: true, dynamicConfig: { 'limit.historyCount.suggestContinueAsNew': 40 } }),
    bundle(),
    // The SDK bakes the workflows' failure converter into the bundle, so stacks with encryption
    // keys need a bundle of their own (test/support/stack picks it); the others keep the default
    // converter, whose failures stay plain text as they do without keys.
    bundle(ENCRYPTED_FAILURE_CONVERTER),
  ]);
  const bundlePath = join(dir, 'workflow-bundle.js');
  const encryptedBundlePath = join(dir, 'workflow-bundle-encrypted.js');
  writeFileSync(bundlePath, plain.code);
  writeFileSync(encryptedBundlePath, encrypted.code);
  const envFile = join(dir, 'test-env.json');
  writeFileSync(envFile, JSON.stringify({ address: server.address, bundlePath, encryptedBundlePath }));
  process.env.MIX2API_TEST_ENV_FILE = envFile;
  (globalThis as { __temporal?: typeof server; __testDir?: string }).__temporal = server;
  (globalThis as { __testDir?: string }).__testDir = dir;
}
