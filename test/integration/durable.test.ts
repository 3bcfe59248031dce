/**
 * Durable runs: resumable streams (Last-Event-ID / ?after=), the run API, idempotent POSTs,
 * cancel with saga compensation observed on server-memory, and approvals by API, by Temporal
 * signal and by timeout.
 */
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EVERYTHING, MEMORY, stdioServer } from '../support/mcpServers';
import { contentOf, sseEvents } from '../support/sse';
import { startStack, type Stack } from '../support/stack';
import { waitFor } from '../support/waitFor';

let s: Stack;
let dir: string;
const memoryFile = () => join(dir, 'memory.jsonl');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-durable-'));
  s = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, retry: { maxAttempts: 2, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 }, timeouts: { connectSeconds: 5, idleSeconds: 30, totalSeconds: 60 } }],
      mcpServers: [
        {
          ...stdioServer('memory', MEMORY, [], { MEMORY_FILE_PATH: join(dir, 'memory.jsonl') }),
          compensations: { create_entities: { tool: 'delete_entities', args: { entityNames: '$.args.entities[*].name' } } },
        },
        { ...stdioServer('guarded', EVERYTHING, ['stdio']), approval: { tools: ['get-sum'] } },
      ],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['memory', 'guarded'] }],
      loop: { approvalTimeoutSeconds: 6 },
    }),
  });
});
afterAll(async () => {
  await s?.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => s.upstream.reset());

const call = (name: string, args: unknown) => ({ name, arguments: JSON.stringify(args) });
const ask = (content: string) => ({ model: 'agent', messages: [{ role: 'user' as const, content }] });
const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${s.apiUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const getRun = async (id: string) => (await (await fetch(`${s.apiUrl}/v1/runs/${id}`)).json()) as Record<string, unknown> & { pending_approvals: Array<{ approvalId: string }>; steps: Array<Record<string, unknown>>; status: string };

test('a client that drops its stream resumes with Last-Event-ID and gets every event exactly once', async () => {
  const text = Array.from({ length: 30 }, (_, i) => `t${i}`).join(' ');
  s.upstream.enqueue({ steps: [{ kind: 'text', text, delayMs: 40 }] });
  const first = await post('/v1/chat/completions', { ...ask('long'), stream: true });
  const runId = first.headers.get('x-run-id')!;
  const ids: string[] = [];
  let got = '';
  for await (const e of sseEvents(first)) {
    ids.push(e.id!);
    got += contentOf(e.data);
    if (ids.length === 8) break; // the client goes away mid-answer
  }
  const resumed = await fetch(`${s.apiUrl}/v1/runs/${runId}/events`, { headers: { 'last-event-id': ids[ids.length - 1]! } });
  expect(resumed.status).toBe(200);
  let done = false;
  for await (const e of sseEvents(resumed)) {
    if (e.data === '[DONE]') done = true;
    else {
      if (e.id) ids.push(e.id);
      got += contentOf(e.data);
    }
  }
  expect(done).toBe(true);
  expect(got).toBe(text);
  expect(new Set(ids).size).toBe(ids.length);

  // After the run closed: ?after= replays the rest from its durable log.
  const tail = await fetch(`${s.apiUrl}/v1/runs/${runId}/events?after=0:27`);
  let rest = '';
  for await (const e of sseEvents(tail)) rest += contentOf(e.data);
  expect(rest).toBe('t28 t29');
});

test('GET /v1/runs/{id} shows steps with timings, usage and the final message', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [call('memory__create_entities', { entities: [{ name: 'Run', entityType: 'thing', observations: [] }] })] }], usage: { prompt_tokens: 3, completion_tokens: 2 } },
    { steps: [{ kind: 'text', text: 'stored' }], usage: { prompt_tokens: 4, completion_tokens: 1 } },
  );
  const r = await s.openai.chat.completions.create(ask('store'));
  const run = await getRun(r.id);
  expect(run).toMatchObject({ id: r.id, status: 'completed', model: 'agent', finish_reason: 'stop', usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } });
  expect((run.message as { content: string }).content).toBe('stored');
  expect(run.steps.map((x) => x.kind)).toEqual(['model', 'tool', 'model']);
  expect(run.steps[1]).toMatchObject({ server: 'memory', tool: 'create_entities', isError: false, ms: expect.any(Number) });
  const missing = await fetch(`${s.apiUrl}/v1/runs/chatcmpl-${'0'.repeat(32)}`);
  expect(missing.status).toBe(404);
  expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('run_not_found');
});

test('a retried POST with the same Idempotency-Key attaches to the same run; tools run once', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [call('memory__create_entities', { entities: [{ name: 'Idem', entityType: 'thing', observations: ['x'] }] })] }] },
    { steps: [{ kind: 'text', text: 'once', delayMs: 300 }] },
  );
  const headers = { 'idempotency-key': `key-${Date.now()}` };
  const [a, b] = await Promise.all([post('/v1/chat/completions', ask('idem'), headers), post('/v1/chat/completions', ask('idem'), headers)]);
  const ja = (await a.json()) as { id: string; choices: Array<{ message: { content: string } }> };
  const jb = (await b.json()) as { id: string; choices: Array<{ message: { content: string } }> };
  expect(ja.id).toBe(jb.id);
  expect(jb.choices[0]!.message.content).toBe('once');
  expect(s.upstream.requests).toHaveLength(2);
  // After the run has finished, the same key gets the same answer, not a second run.
  const again = (await (await post('/v1/chat/completions', ask('idem'), headers)).json()) as { id: string; choices: Array<{ message: { content: string } }> };
  expect(again.id).toBe(ja.id);
  expect(again.choices[0]!.message.content).toBe('once');
  expect(s.upstream.requests).toHaveLength(2);
  expect(readFileSync(memoryFile(), 'utf8').split('\n').filter((l) => l.includes('"Idem"'))).toHaveLength(1);
});

test('cancel stops the run, runs the compensation on the MCP server, and ends the stream cleanly', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [call('memory__create_entities', { entities: [{ name: 'Temp', entityType: 'thing', observations: ['undo me'] }] })] }] },
    { steps: [{ kind: 'text', text: 'thinking' }, { kind: 'fault', fault: 'stall' }] },
  );
  const res = await post('/v1/chat/completions', { ...ask('cancel me'), stream: true });
  const runId = res.headers.get('x-run-id')!;
  const reading = (async () => {
    const out: string[] = [];
    for await (const e of sseEvents(res)) out.push(e.data);
    return out;
  })();
  await waitFor(async () => existsSync(memoryFile()) && readFileSync(memoryFile(), 'utf8').includes('"Temp"') && s.upstream.requests.length === 2);
  const c = await post(`/v1/runs/${runId}/cancel`, {});
  expect(c.status).toBe(202);
  const data = await reading;
  expect(data[data.length - 1]).toBe('[DONE]');
  expect(data.some((d) => d.includes('"code":"run_cancelled"'))).toBe(true);
  expect(data.join('')).toContain('undo memory/delete_entities done');
  expect(readFileSync(memoryFile(), 'utf8')).not.toContain('"Temp"');
  const run = await getRun(runId);
  expect(run.status).toBe('cancelled');
  expect(run.steps.some((x) => x.kind === 'compensation' && x.tool === 'delete_entities' && x.isError === false)).toBe(true);
  const again = await post(`/v1/runs/${runId}/cancel`, {});
  expect(again.status).toBe(409);
});

test('a failing run compensates too, and the client gets the failure', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [call('memory__create_entities', { entities: [{ name: 'Doomed', entityType: 'thing', observations: [] }] })] }] },
    { steps: [{ kind: 'fault', fault: 'http500' }] },
    { steps: [{ kind: 'fault', fault: 'http500' }] },
  );
  const res = await post('/v1/chat/completions', ask('fail'));
  expect(res.status).toBe(502);
  expect(readFileSync(memoryFile(), 'utf8')).not.toContain('"Doomed"');
});

async function startGuarded(sum: { a: number; b: number }): Promise<{ runId: string; done: Promise<string[]>; approvalId: string }> {
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [call('guarded__get-sum', sum)] }] }, { steps: [{ kind: 'text', text: 'finished' }] });
  const res = await post('/v1/chat/completions', { ...ask('sum'), stream: true });
  const runId = res.headers.get('x-run-id')!;
  const done = (async () => {
    const out: string[] = [];
    for await (const e of sseEvents(res)) out.push(e.data);
    return out;
  })();
  const run = await waitFor(async () => {
    const r = await getRun(runId);
    return r.pending_approvals.length > 0 ? r : null;
  });
  return { runId, done, approvalId: run.pending_approvals[0]!.approvalId };
}

const toolResultSeen = () => (s.upstream.requests[1]!.body.messages as Array<{ role: string; content: string }>).find((m) => m.role === 'tool')!.content;

test('an approved call runs; deciding twice or an unknown id is refused', async () => {
  const { runId, done, approvalId } = await startGuarded({ a: 20, b: 22 });
  const ok = await post(`/v1/runs/${runId}/approvals/${approvalId}`, { approve: true });
  expect(ok.status).toBe(200);
  expect(await ok.json()).toMatchObject({ id: approvalId, approve: true });
  const data = await done;
  expect(data.join('')).toContain('approval needed: guarded/get-sum');
  expect(toolResultSeen()).toMatch(/42/);
  await waitFor(async () => (await getRun(runId)).status === 'completed');
  expect((await post(`/v1/runs/${runId}/approvals/${approvalId}`, { approve: false })).status).toBe(404);
});

test('a denial goes back to the model as the tool result', async () => {
  const { runId, done, approvalId } = await startGuarded({ a: 1, b: 2 });
  const bad = await post(`/v1/runs/${runId}/approvals/${approvalId}`, { approve: 'yes' });
  expect(bad.status).toBe(400);
  const unknown = await post(`/v1/runs/${runId}/approvals/apr_9_9`, { approve: true });
  expect(unknown.status).toBe(404);
  await post(`/v1/runs/${runId}/approvals/${approvalId}`, { approve: false, reason: 'not today' });
  await done;
  expect(toolResultSeen()).toMatch(/did not approve.*not today/);
});

test('a Temporal signal approves, as from the Temporal UI or CLI', async () => {
  const { runId, done, approvalId } = await startGuarded({ a: 5, b: 5 });
  await s.temporal.workflow.getHandle(runId).signal('approve', { approvalId, approve: true });
  await done;
  expect(toolResultSeen()).toMatch(/10/);
});

test('an approval nobody decides is denied at the timeout', async () => {
  const { done } = await startGuarded({ a: 7, b: 7 });
  const data = await done;
  expect(data.join('')).toContain('(timed out)');
  expect(toolResultSeen()).toMatch(/no decision within 6s/);
});
