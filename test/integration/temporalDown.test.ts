/**
 * Temporal going away under a running mix2api: requests that need it get a 503
 * `temporal_unavailable` with Retry-After at once (not after the gRPC client's retries), /readyz
 * says what is down, and what needs no Temporal (/v1/models, /healthz) still answers. A Temporal
 * dev server of its own, so the suite's server stays up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseConfig } from '../../src/config/load';
import { startDevServer, type DevServer } from '../../src/connectors/temporalDevServer';
import { startSystem, type RunningSystem } from '../../src/roles/system';
import { freePort } from '../support/mcpServers';
import { startScriptedUpstream, type ScriptedUpstream } from '../support/scriptedUpstream';
import { testEnv, uniqueQueue } from '../support/stack';
import { waitFor } from '../support/waitFor';

const dir = mkdtempSync(join(tmpdir(), 'mix2api-down-'));
let server: DevServer;
let port: number;
const startServer = () => startDevServer({ root: resolve(__dirname, '..', '..'), dbFile: join(dir, 'temporal.db'), port, headless: true });
let system: RunningSystem;
let upstream: ScriptedUpstream;

beforeAll(async () => {
  upstream = await startScriptedUpstream();
  port = await freePort();
  server = await startServer();
  const config = parseConfig(
    {
      server: { port: 0 },
      temporal: { address: server.address, taskQueue: uniqueQueue('down') },
      upstreams: [{ name: 'scripted', baseURL: upstream.url }],
      models: [{ id: 'test-model', upstream: 'scripted', model: 'scripted' }],
    },
    {},
  );
  system = await startSystem({ config, temporalAddress: server.address, roles: { worker: true, api: true }, workflowBundle: { codePath: testEnv().bundlePath } });
}, 90_000);

afterAll(async () => {
  // The test brings Temporal back, so the workers can shut down cleanly.
  await system?.stop();
  await upstream?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

const ask = (content: string) =>
  fetch(`${system.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content }] }) });

test('with Temporal gone, a completion is a 503 with Retry-After at once; /readyz names what is down', async () => {
  expect((await ask('before')).status).toBe(200);
  await server.stop();
  const ready = await waitFor(async () => {
    const r = await fetch(`${system.apiUrl}/readyz`);
    const j = (await r.json()) as { status: string; checks: Record<string, boolean> };
    return r.status === 503 ? j : null;
  });
  expect(ready).toMatchObject({ status: 'not_ready', checks: { temporal: false, workers: false } });

  const t0 = Date.now();
  const r = await ask('while down');
  const ms = Date.now() - t0;
  expect(r.status).toBe(503);
  expect(r.headers.get('retry-after')).toBe('1');
  expect(((await r.json()) as { error: { code: string } }).error.code).toBe('temporal_unavailable');
  // Before this, the same request waited out ~20 s of gRPC retries.
  expect(ms).toBeLessThan(2000);
  const runs = await fetch(`${system.apiUrl}/v1/runs/chatcmpl-00000000000000000000000000000000`);
  expect(runs.status).toBe(503);
  // What needs no Temporal still answers.
  expect((await fetch(`${system.apiUrl}/v1/models`)).status).toBe(200);
  expect((await fetch(`${system.apiUrl}/healthz`)).status).toBe(200);

  // Back on the same port and database: the next health check reopens the door.
  server = await startServer();
  await waitFor(async () => (await fetch(`${system.apiUrl}/readyz`)).status === 200, 30_000);
  expect((await ask('after')).status).toBe(200);
}, 90_000);
