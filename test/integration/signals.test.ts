/**
 * mix2api owns its process signals. The Temporal SDK's Runtime, left to its defaults, also shuts
 * every worker down on SIGINT, SIGTERM, SIGQUIT and SIGUSR2; on SIGUSR2 (Node's
 * `--heapsnapshot-signal`, nodemon's restart) that left an API taking requests no worker would
 * ever run: `/readyz` said `workers: false` and every new run waited forever at its first
 * workflow task. Here `mix2api start` runs with a heap snapshot on SIGUSR2, as one would take to
 * look at its memory: it writes the snapshot and goes on serving.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childMix2api, type ChildMix2api } from '../support/childMix2api';
import { freePort } from '../support/mcpServers';
import { startScriptedUpstream, type ScriptedUpstream } from '../support/scriptedUpstream';
import { waitFor } from '../support/waitFor';

jest.setTimeout(120_000);

let dir: string;
let upstream: ScriptedUpstream;
let mix: ChildMix2api;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-signals-'));
  upstream = await startScriptedUpstream();
  mix = childMix2api({
    dir,
    port: await freePort(),
    entry: 'dist',
    env: { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}` },
    config: {
      temporal: { address: 'embedded', port: await freePort(), headless: true, dataDir: join(dir, 'data') },
      upstreams: [{ name: 'scripted', baseURL: upstream.url }],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted' }],
    },
  });
  await mix.start();
});

afterAll(async () => {
  await mix?.terminate().catch(() => undefined);
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ask = async (content: string) => {
  const res = await fetch(`${mix.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'agent', messages: [{ role: 'user', content }] }),
    signal: AbortSignal.timeout(20_000),
  });
  return ((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;
};

test('SIGUSR2 (a heap snapshot) leaves the workers running: still ready, and a new run answers', async () => {
  upstream.enqueue({ steps: [{ kind: 'text', text: 'before' }] }, { steps: [{ kind: 'text', text: 'after' }] });
  expect(await ask('one')).toBe('before');
  process.kill(mix.pid!, 'SIGUSR2');
  await waitFor(async () => readdirSync(dir).some((f) => f.endsWith('.heapsnapshot')), 60_000);
  // The SDK's handler shut the workers down within moments of the signal; give it time to show.
  await new Promise((r) => setTimeout(r, 2000));
  const ready = await fetch(`${mix.url}/readyz`);
  expect(await ready.json()).toMatchObject({ status: 'ready', checks: { workers: true } });
  expect(await ask('two')).toBe('after');
});
