/**
 * `mix2api start`, the embedded default, as a new user runs it: its own Temporal dev server (SQLite
 * file, Web UI), the demo model with its MCP tools, the real openai client, runs visible in
 * Temporal, a clean shutdown on SIGTERM, and a clear error when a port is taken.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import OpenAI from 'openai';
import { childMix2api, type ChildMix2api } from '../support/childMix2api';
import { freePort } from '../support/mcpServers';

let dir: string;
let app: ChildMix2api;
let temporalPort: number;
let uiPort: number;
let startMs = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-e2e-'));
  [temporalPort, uiPort] = [await freePort(), await freePort()];
  app = childMix2api({ dir, port: await freePort(), config: { temporal: { port: temporalPort, uiPort, dataDir: join(dir, 'data') } } });
  const t0 = Date.now();
  await app.start(60_000);
  startMs = Date.now() - t0;
});
afterAll(async () => {
  await app?.kill();
  rmSync(dir, { recursive: true, force: true });
});

test('it serves /healthz and the demo model to the openai client within a minute, and says what it is', async () => {
  expect(startMs).toBeLessThan(60_000);
  expect(await (await fetch(`${app.url}/healthz`)).json()).toEqual({ status: 'ok' });
  // Not a terminal: the child logs JSON lines; what it says is each line's `msg`.
  const msgOf = (l: string) => {
    try {
      return (JSON.parse(l.slice(l.indexOf('{'))) as { msg?: string }).msg ?? l;
    } catch {
      return l;
    }
  };
  const said = app.output.map(msgOf).join('\n');
  expect(said).toMatch(/demo mode: no upstream configured, serving the built-in demo model "mix2api-demo"/);
  const openai = new OpenAI({ baseURL: `${app.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  expect((await openai.models.list()).data.map((m) => m.id)).toEqual(['mix2api-demo']);
  const r = await openai.chat.completions.create({ model: 'mix2api-demo', messages: [{ role: 'user', content: 'hello there' }] });
  expect(r.choices[0]!.message.content).toMatch(/mix2api-demo.*You said: "hello there"/);
  const s = await openai.chat.completions.stream({ model: 'mix2api-demo', messages: [{ role: 'user', content: 'stream it' }] }).finalChatCompletion();
  expect(s.choices[0]!.message.content).toMatch(/You said: "stream it"/);

  // A real tool chain on the bundled MCP servers, visible in Temporal (and its Web UI is up).
  const tools = await openai.chat.completions.create({ model: 'mix2api-demo', messages: [{ role: 'user', content: "use echo to say 'hi from e2e'" }] });
  expect(tools.choices[0]!.message.content).toContain('Echo: hi from e2e');
  const connection = await Connection.connect({ address: `127.0.0.1:${temporalPort}` });
  try {
    const history = await new Client({ connection }).workflow.getHandle(tools.id).fetchHistory();
    const activities = (history.events ?? []).map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter(Boolean);
    expect(activities).toEqual(['callModel', 'callTool', 'callModel']);
  } finally {
    await connection.close();
  }
  expect((await fetch(`http://127.0.0.1:${uiPort}/`)).status).toBe(200);
});

test('a second start on the same ports fails fast with a clear error', async () => {
  const again = childMix2api({ dir, port: await freePort(), configName: 'again.yaml', config: { temporal: { port: temporalPort, uiPort, dataDir: join(dir, 'data2') } } });
  await expect(again.start(30_000)).rejects.toThrow(new RegExp(`port ${temporalPort} \\(Temporal frontend\\) is already in use`));
});

test('SIGTERM shuts everything down cleanly, dev server included', async () => {
  expect(await app.terminate()).toBe(0);
  const stillUp = await fetch(`http://127.0.0.1:${uiPort}/`).then(
    () => true,
    () => false,
  );
  expect(stillUp).toBe(false);
  expect(app.output.join('\n')).toMatch(/SIGTERM: shutting down/);
});
