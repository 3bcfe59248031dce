/**
 * The split topology of docker-compose.yml: `mix2api worker` and `mix2api api` as separate
 * processes against one Temporal. Workflows and MCP tools run in the worker; the API streams
 * model calls on its own live queue.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { childMix2api, type ChildMix2api } from '../support/childMix2api';
import { EVERYTHING, freePort, stdioServer } from '../support/mcpServers';
import { startScriptedUpstream, type ScriptedUpstream } from '../support/scriptedUpstream';
import { testEnv, uniqueQueue } from '../support/stack';

let dir: string;
let upstream: ScriptedUpstream;
let worker: ChildMix2api;
let api: ChildMix2api;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-roles-'));
  upstream = await startScriptedUpstream();
  const config = {
    temporal: { address: testEnv().address, taskQueue: uniqueQueue('roles') },
    upstreams: [{ name: 'scripted', baseURL: upstream.url }],
    models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] }],
    mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
  };
  worker = childMix2api({ dir, port: await freePort(), config, configName: 'worker.yaml', role: 'worker' });
  api = childMix2api({ dir, port: await freePort(), config, configName: 'api.yaml', role: 'api' });
  await Promise.all([worker.start(60_000), api.start(60_000)]);
});
afterAll(async () => {
  await Promise.all([api?.kill(), worker?.kill()]);
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a tool loop and a stream work across an api process and a worker process', async () => {
  const openai = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"split roles"}' }] }] },
    { steps: [{ kind: 'text', text: 'done across processes' }] },
  );
  const r = await openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'go' }] });
  expect(r.choices[0]!.message.content).toBe('done across processes');
  expect((upstream.requests[1]!.body.messages as Array<{ role: string; content: string }>).find((m) => m.role === 'tool')!.content).toContain('split roles');

  upstream.enqueue({ steps: [{ kind: 'text', text: 'streamed from the api process', delayMs: 10 }] });
  const s = await openai.chat.completions.stream({ model: 'agent', messages: [{ role: 'user', content: 'stream' }] }).finalChatCompletion();
  expect(s.choices[0]!.message.content).toBe('streamed from the api process');
  // The api process says where it is; the worker never opens an HTTP port.
  expect(api.output.join('\n')).toMatch(/API: +http:\/\/127\.0\.0\.1:\d+\/v1/);
  expect(worker.output.join('\n')).not.toMatch(/API:/);
});
