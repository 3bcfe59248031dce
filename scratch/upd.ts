import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load';
import { startDevServer } from '../src/connectors/temporalDevServer';
import { startSystem } from '../src/roles/system';
import { installLogger } from '../src/roles/logging';
import { KeyLimiter, ledgerIdOf } from '../src/api/limits';
import { freePort } from '../test/support/mcpServers';
import { Client, Connection } from '@temporalio/client';
import { LEDGER_ACQUIRE_UPDATE } from '../src/domain/limits';
async function main() {
  installLogger('ERROR');
  const dir = mkdtempSync(join(tmpdir(), 'upd-'));
  const dev = await startDevServer({ root: '/work/main', dbFile: join(dir, 't.db'), port: await freePort(), headless: true });
  const config = parseConfig({ server: { port: 0 }, temporal: { address: dev.address, taskQueue: 'u' }, upstreams: [{ name: 's', baseURL: 'http://127.0.0.1:9/v1' }] }, {});
  const sys = await startSystem({ config, temporalAddress: dev.address, roles: { worker: true, api: true } });
  const conn = await Connection.connect({ address: dev.address });
  const client = new Client({ connection: conn });
  const lim = new KeyLimiter(config, client);
  const t: number[] = [];
  for (let i = 0; i < 40; i++) { const t0 = performance.now(); await lim.acquire('k', [{ id: `r${i}`, kind: 'run' }]); t.push(performance.now() - t0); }
  t.sort((a, b) => a - b); console.log('updateWithStart p50', t[20].toFixed(1), 'p90', t[36].toFixed(1));
  const h = client.workflow.getHandle(ledgerIdOf('k', 'u'));
  const u: number[] = [];
  for (let i = 0; i < 40; i++) { const t0 = performance.now(); await h.executeUpdate(LEDGER_ACQUIRE_UPDATE, { args: [{ leases: [{ id: `x${i}`, kind: 'run' }], limits: { concurrentRuns: 1000, sessions: 1000 } }] }); u.push(performance.now() - t0); }
  u.sort((a, b) => a - b); console.log('executeUpdate p50', u[20].toFixed(1), 'p90', u[36].toFixed(1));
  const q: number[] = [];
  for (let i = 0; i < 40; i++) { const t0 = performance.now(); await h.query('mix2api.leases'); q.push(performance.now() - t0); }
  q.sort((a, b) => a - b); console.log('query p50', q[20].toFixed(1));
  const s: number[] = [];
  for (let i = 0; i < 40; i++) { const t0 = performance.now(); await h.signal('mix2api.release', [`x${i}`]); s.push(performance.now() - t0); }
  s.sort((a, b) => a - b); console.log('signal p50', s[20].toFixed(1));
  await sys.stop(); await conn.close(); await dev.stop(); process.exit(0);
}
void main();
