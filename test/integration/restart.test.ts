/**
 * Restart of the embedded default: `mix2api start` as `npm start` runs it (`node dist/cli.js`) on
 * its own dev server, killed as a whole (kill -9 of mix2api and of its dev server) mid-stream and
 * started again on the same data. The process it replaces named its instance queue under
 * `temporal.dataDir`, so the new one ends that lease at once: the step moves as soon as the new
 * process runs, not when the old lease would lapse (set to 60 s here, so only the take-over can
 * move it in time). The reconnecting client gets every event once and the whole answer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childMix2api, type ChildMix2api } from '../support/childMix2api';
import { freePort } from '../support/mcpServers';
import { labelIn, startScriptedUpstream, type ScriptedUpstream } from '../support/scriptedUpstream';
import { newStreamLog, readInto, resume } from '../support/streamLog';

jest.setTimeout(120_000);

const LABEL = /restart run (\S+)/;
const text = (label: string) => Array.from({ length: 60 }, (_, k) => `${label}:${k} `).join('');

let dir: string;
let upstream: ScriptedUpstream;
let solo: ChildMix2api;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-restart-'));
  upstream = await startScriptedUpstream();
  upstream.setDefault((req) => ({ steps: [{ kind: 'text', text: text(labelIn(req, LABEL)), chunks: 60, delayMs: 100 }] }));
  solo = childMix2api({
    dir,
    port: await freePort(),
    entry: 'dist',
    config: {
      temporal: { address: 'embedded', port: await freePort(), headless: true, dataDir: join(dir, 'data') },
      upstreams: [{ name: 'scripted', baseURL: upstream.url }],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted' }],
      liveness: { renewSeconds: 1, lapseSeconds: 60 },
    },
  });
  await solo.start();
});

afterAll(async () => {
  // SIGTERM: a clean shutdown also stops the embedded dev server.
  await solo?.terminate().catch(() => undefined);
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('kill -9 of `mix2api start` and its dev server mid-stream: started again, it takes over the dead process\'s step at once (long before its lease would lapse); the client gets every event once', async () => {
  const label = `R-${Date.now().toString(36)}`;
  const res = await fetch(`${solo.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'agent', stream: true, messages: [{ role: 'user', content: `restart run ${label}` }] }),
  });
  expect(res.status).toBe(200);
  const log = newStreamLog(label, res.headers.get('x-run-id')!);
  const first = readInto(res, log);
  const deadline = Date.now() + 30_000;
  while (log.ids.length < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  expect(log.ids.length).toBeGreaterThanOrEqual(10);

  const killedAt = await solo.kill({ withChildren: true });
  expect(await first).toBe('cut');
  const readyAt = await solo.start();
  await resume(log, 60_000, solo.url);

  const again = upstream.requests.filter((r) => labelIn(r, LABEL) === label && r.receivedAt > killedAt);
  expect(again.length).toBe(1);
  // Without the take-over the step would wait for the 60-s lapse (or the 10-minute start-to-close).
  expect(again[0]!.receivedAt - readyAt).toBeLessThan(10_000);
  expect(solo.output.some((l) => l.includes('the previous process on this data is gone'))).toBe(true);
  expect(log.errors).toEqual([]);
  expect(log.done).toBe(true);
  expect(new Set(log.ids).size).toBe(log.ids.length);
  expect(log.content).toBe(text(label));
  console.log(`restart: ready ${readyAt - killedAt} ms after the kill, upstream asked again ${again[0]!.receivedAt - killedAt} ms after it`);
});
