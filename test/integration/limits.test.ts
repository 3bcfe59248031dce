/**
 * Per-key limits: concurrent runs and sessions counted by the key's ledger workflow across two
 * API replicas, requests per minute and open streams per process; every refusal a 429
 * `rate_limit_exceeded` with Retry-After, before any run starts, and other keys unaffected.
 */
import { startStack, testEnv, uniqueQueue, type Stack } from '../support/stack';
import { waitFor } from '../support/waitFor';
import { ledgerIdOf } from '../../src/api/http/limits';
import { sessionWorkflowId } from '../../src/api/engine/startRun';
import { LEDGER_QUERY, type LedgerView } from '../../src/domain/limits';

const KEYS = {
  runs: { concurrentRuns: 2 },
  rpm: { requestsPerMinute: 3 },
  streams: { openStreams: 1 },
  sessions: { sessions: 1 },
  stale: { concurrentRuns: 1 },
  flood: { concurrentRuns: 1, requestsPerMinute: 0 },
  // Limits high enough never to refuse: its ledger exists (the shipped defaults are no limits, and no ledger).
  other: { concurrentRuns: 100, sessions: 100 },
};
type KeyName = keyof typeof KEYS;

let s: Stack;
let s2: Stack;
const queue = uniqueQueue('limits');
beforeAll(async () => {
  const config = () => ({
    server: { port: 0, apiKeys: Object.entries(KEYS).map(([name, limits]) => ({ name, key: `sk-${name}`, limits })) },
    temporal: { address: testEnv().address, taskQueue: queue, searchAttributes: true },
  });
  // Two API replicas (each with its worker) on one task queue: they share Temporal, not memory.
  s = await startStack({ config });
  s2 = await startStack({ config });
  for (const x of [s, s2]) x.upstream.setDefault({ steps: [{ kind: 'text', text: 'slow answer in ten pieces', chunks: 10, delayMs: 250 }] });
});
afterAll(async () => {
  await s2?.stop();
  await s?.stop();
});

const body = (stream: boolean) => JSON.stringify({ model: 'test-model', stream, messages: [{ role: 'user', content: 'hi' }] });

function post(at: Stack, key: KeyName, o: { stream?: boolean; headers?: Record<string, string>; signal?: AbortSignal } = {}) {
  return fetch(`${at.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer sk-${key}`, 'content-type': 'application/json', ...o.headers },
    body: body(o.stream ?? false),
    signal: o.signal,
  });
}

/** A streaming request whose run is under way: its headers (and first chunk) have arrived. */
async function openStream(at: Stack, key: KeyName, headers?: Record<string, string>) {
  const res = await post(at, key, { stream: true, headers });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  await reader.read();
  return { res, runId: res.headers.get('x-run-id')!, drain: async () => { while (!(await reader.read()).done); } };
}

async function expect429(res: Response, limit: string) {
  expect(res.status).toBe(429);
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  const e = ((await res.json()) as { error: { type: string; code: string; message: string; param: unknown } }).error;
  expect(e).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded', param: null });
  expect(e.message).toContain(limit);
  return retryAfter;
}

async function runsOf(key: KeyName): Promise<number> {
  const c = await s.temporal.workflow.count(`WorkflowType = 'chatCompletionWorkflow' AND Mix2apiKeyName = '${key}' AND TaskQueue = '${queue}'`);
  return c.count;
}

test('concurrentRuns holds across two replicas; the refused request starts no run; other keys go on; a finished run frees its slot', async () => {
  const one = await openStream(s, 'runs');
  const two = await openStream(s2, 'runs');
  // Each replica's lease reaches the ledger within its flush (0.1 s); near the cap a replica reads it first.
  await new Promise((ok) => setTimeout(ok, 400));
  await expect429(await post(s, 'runs'), 'limits.concurrentRuns 2');
  await expect429(await post(s2, 'runs', { stream: true }), 'limits.concurrentRuns 2');
  const other = await post(s, 'other');
  expect(other.status).toBe(200);
  await waitFor(async () => (await runsOf('runs')) === 2);
  expect(await runsOf('runs')).toBe(2);
  await Promise.all([one.drain(), two.drain()]);
  // Each run hands its lease back as it closes.
  const ledger = s.temporal.workflow.getHandle(ledgerIdOf('runs', queue));
  await waitFor(async () => (await ledger.query<LedgerView, [string]>(LEDGER_QUERY, 'reader')).runs === 0);
  const again = await post(s2, 'runs');
  expect(again.status).toBe(200);
  expect(((await again.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('slow answer in ten pieces');
}, 60_000);

test('requestsPerMinute: the 4th request in a minute is a 429 with the wait until the next one; other keys are not charged', async () => {
  const models = (key: KeyName) => fetch(`${s.apiUrl}/v1/models`, { headers: { authorization: `Bearer sk-${key}` } });
  for (let i = 0; i < 3; i++) expect((await models('rpm')).status).toBe(200);
  const wait = await expect429(await models('rpm'), 'limits.requestsPerMinute');
  expect(wait).toBeLessThanOrEqual(20);
  expect((await models('other')).status).toBe(200);
});

test('openStreams: a second open stream of the key is refused, a JSON request is not', async () => {
  const open = await openStream(s, 'streams');
  await expect429(await post(s, 'streams', { stream: true }), 'limits.openStreams 1');
  const json = await post(s, 'streams');
  expect(json.status).toBe(200);
  await open.drain();
  // Its slot is free once the first stream has closed.
  await waitFor(async () => {
    const r = await post(s, 'streams', { stream: true });
    await r.body?.cancel();
    return r.status === 200;
  });
}, 30_000);

test('sessions: a new session over the cap is refused; the open session takes its next turn', async () => {
  const first = await post(s, 'sessions', { headers: { 'x-session-id': 'one' } });
  expect(first.status).toBe(200);
  await new Promise((ok) => setTimeout(ok, 400));
  await expect429(await post(s2, 'sessions', { headers: { 'x-session-id': 'two' } }), 'limits.sessions 1');
  const next = await post(s2, 'sessions', { headers: { 'x-session-id': 'one' } });
  expect(next.status).toBe(200);
}, 30_000);

test('a run that closes without handing its lease back (terminated) is swept from the ledger', async () => {
  const run = await openStream(s, 'stale');
  await s.temporal.workflow.getHandle(run.runId).terminate('test: a run that never releases');
  await run.res.body?.cancel().catch(() => undefined);
  await expect429(await post(s, 'stale'), 'limits.concurrentRuns 1');
  // Swept while at the cap (every 15 s), then the slot is free again.
  await waitFor(async () => (await post(s, 'stale')).status === 200, 40_000);
}, 60_000);

test('a flood of 300 parallel requests over the cap: all refused, none reaches the ledger', async () => {
  const held = await openStream(s, 'flood');
  const ledger = s.temporal.workflow.getHandle(ledgerIdOf('flood', queue));
  await new Promise((ok) => setTimeout(ok, 400));
  const before = (await ledger.fetchHistory()).events?.length ?? 0;
  const results = await Promise.all(Array.from({ length: 300 }, () => post(s, 'flood').then(async (r) => ({ status: r.status, code: ((await r.json()) as { error?: { code: string } }).error?.code }))));
  expect(results.filter((r) => r.status === 429 && r.code === 'rate_limit_exceeded')).toHaveLength(300);
  expect(await runsOf('flood')).toBe(1);
  const after = (await ledger.fetchHistory()).events?.length ?? 0;
  console.log(`flood of 300: ledger history ${before} → ${after} events`);
  // Refusals are decided in the API process: the ledger's history does not move.
  expect(after - before).toBe(0);
  await held.drain();
}, 60_000);

test('a session registers its own lease when it starts, and hands it back when it idles out', async () => {
  // The key's ledger exists once the key has had a run.
  expect((await post(s, 'other')).status).toBe(200);
  const ledger = s.temporal.workflow.getHandle(ledgerIdOf('other', queue));
  await waitFor(async () => (await ledger.query<LedgerView, [string]>(LEDGER_QUERY, 'reader').catch(() => null)) !== null);
  // A session no API process admitted (as when a turn restarts one that idled out meanwhile).
  const id = sessionWorkflowId('other', 'direct');
  await s.temporal.workflow.start('sessionWorkflow', { workflowId: id, taskQueue: queue, args: [{ sessionId: 'direct', keyName: 'other', idleSeconds: 2, ledger: ledger.workflowId }] });
  const sessions = async () => (await ledger.query<LedgerView, [string]>(LEDGER_QUERY, 'workflow')).sessionIds;
  await waitFor(async () => (await sessions()).includes(id));
  await waitFor(async () => !(await sessions()).includes(id));
}, 30_000);
