/**
 * Payload encryption: with keys configured, every payload Temporal stores for a run is
 * AES-256-GCM ciphertext (nothing of the prompt or the tool's output is readable in history),
 * and so are failures' messages and stack traces, while runs, streams, queries, resumed streams,
 * failed runs' errors and replay work as before; a key rotates (runs written under the old key
 * stay readable); and `/codec` decodes for the Temporal CLI, as it would for the Web UI.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { Client, WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { ENCRYPTED_ENCODING, KEY_ID_METADATA, payloadEncryption, payloadsFromJson, payloadsToJson } from '../../src/connectors/payloadCodec';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { contentOf, sseEvents } from '../support/sse';
import { startStack, testEnv, uniqueQueue, type Stack } from '../support/stack';

const run = promisify(execFile);
const TEMPORAL = resolve(__dirname, '..', '..', '.tools', 'temporal', 'bin', 'temporal');
const oldKey = { id: 'k1', key: randomBytes(32).toString('base64') };
const newKey = { id: 'k2', key: randomBytes(32).toString('base64') };
const taskQueue = uniqueQueue('encrypted');
const SECRET = 'zebra-violet-secret';
/** The rotated stack's data converter, as an operator's own Temporal client would hold it. */
const { dataConverter } = payloadEncryption([newKey, oldKey].map((k) => ({ id: k.id, key: Buffer.from(k.key, 'base64') })));

const stackWith = (keys: Array<{ id: string; key: string }>, apiKey?: string) =>
  startStack({
    apiKey,
    config: (url) => ({
      temporal: { address: testEnv().address, taskQueue, searchAttributes: true },
      upstreams: [{ name: 'scripted', baseURL: url }],
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] }],
      encryption: { keys, codecCorsOrigins: ['http://ui.example:8233'] },
      ...(apiKey ? { server: { port: 0, apiKeys: [{ name: 'ops', key: apiKey }] } } : {}),
    }),
  });

/**
 * Every payload of a run's history, wherever it sits in the events, with where it sits. Search
 * attributes are left out: Temporal indexes them, so no codec ever touches them (mix2api's are
 * the model id and the key name); so is a marker's own bookkeeping, which the SDK core writes
 * (a local activity's sequence number, type and times; its result is encrypted).
 */
function payloadsOf(value: unknown, path = '', out: Array<temporal.api.common.v1.IPayload & { path: string }> = []): Array<temporal.api.common.v1.IPayload & { path: string }> {
  if (!value || typeof value !== 'object' || ArrayBuffer.isView(value)) return out;
  const o = value as Record<string, unknown>;
  if ('data' in o && 'metadata' in o && ArrayBuffer.isView(o.data)) out.push({ ...(o as temporal.api.common.v1.IPayload), path });
  else for (const [k, v] of Object.entries(o)) if (k !== 'searchAttributes' && !(path.endsWith('markerRecordedEventAttributes.details') && k === 'data')) payloadsOf(v, `${path}.${k}`, out);
  return out;
}
const text = (u: Uint8Array | null | undefined) => Buffer.from(u ?? []).toString();

async function toolLoop(s: Stack, words: string): Promise<string> {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: JSON.stringify({ message: words }) }] }] },
    { steps: [{ kind: 'text', text: `the tool said ${words}` }] },
  );
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: `please echo ${words}` }] }).withResponse();
  expect(r.data.choices[0]!.message.content).toBe(`the tool said ${words}`);
  return r.response.headers.get('x-run-id')!;
}

let oldRun: string;
let s: Stack;

beforeAll(async () => {
  // A run written under the old key alone; then the stack that rotated to the new key.
  const before = await stackWith([oldKey]);
  try {
    oldRun = await toolLoop(before, `${SECRET}-old`);
  } finally {
    await before.stop();
  }
  s = await stackWith([newKey, oldKey]);
});
afterAll(() => s?.stop());

test('history holds ciphertext only; the run, its stream, queries and a resumed stream work', async () => {
  const runId = await toolLoop(s, SECRET);
  const history = await s.temporal.workflow.getHandle(runId).fetchHistory();
  const raw = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
  expect(raw.includes(SECRET)).toBe(false);
  const payloads = payloadsOf(history.events);
  expect(payloads.length).toBeGreaterThan(10);
  expect(payloads.filter((p) => text(p.metadata?.encoding) !== ENCRYPTED_ENCODING || text(p.metadata?.[KEY_ID_METADATA]) !== 'k2').map((p) => p.path)).toEqual([]);

  // The run API (a query) and a stream resumed from the durable log read it decrypted.
  const state = (await (await fetch(`${s.apiUrl}/v1/runs/${runId}`)).json()) as { message: { content: string }; steps: unknown[] };
  expect(state.message.content).toBe(`the tool said ${SECRET}`);
  const resumed: string[] = [];
  for await (const e of sseEvents(await fetch(`${s.apiUrl}/v1/runs/${runId}/events?after=0:0`))) resumed.push(e.data);
  expect(resumed.map(contentOf).join('')).toContain(`the tool said ${SECRET}`);

  s.upstream.enqueue({ steps: [{ kind: 'text', text: `streamed ${SECRET}`, delayMs: 5 }] });
  const streamed = await s.openai.chat.completions.stream({ model: 'agent', messages: [{ role: 'user', content: 'stream' }] }).finalChatCompletion();
  expect(streamed.choices[0]!.message.content).toBe(`streamed ${SECRET}`);

  // The recorded history replays against the workflow code through the codec.
  const replay = await Worker.runReplayHistory({ workflowBundle: { codePath: testEnv().encryptedBundlePath }, dataConverter, replayName: 'encrypted', sinks: { live: { event: { fn: () => undefined } } } }, history, runId);
  expect(replay).toBeUndefined();
});

test('a failed run: no failure message or stack trace is readable in history; the client gets its error, /codec reads them', async () => {
  const marker = `${SECRET}-failed`;
  // The upstream's error bodies echo the prompt: on a retried 500, then on a final 400.
  s.upstream.enqueue(
    { steps: [{ kind: 'fault', fault: 'http500', message: `cannot serve "${marker}"` }] },
    { steps: [{ kind: 'fault', fault: 'http400', message: `rejected "${marker}"` }] },
  );
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'agent', messages: [{ role: 'user', content: `say ${marker}` }] }) });
  expect(res.status).toBe(400);
  expect(await res.json()).toEqual({ error: { message: `upstream scripted: rejected "${marker}"`, type: 'invalid_request_error', param: null, code: null } });
  const runId = res.headers.get('x-run-id')!;

  // As Temporal stores it (a client without the codec). The run's failure, its activity's and the
  // upstream's within, and the retried attempt's: each an "Encoded failure" line, its message and
  // stack trace ciphertext.
  const history = await s.temporal.workflow.getHandle(runId).fetchHistory();
  const chain: temporal.api.failure.v1.IFailure[] = [];
  for (let f = history.events!.at(-1)!.workflowExecutionFailedEventAttributes!.failure; f; f = f.cause) chain.push(f);
  const retried = history.events!.map((e) => e.activityTaskStartedEventAttributes?.lastFailure).find(Boolean);
  expect([...chain, retried].map((f) => [f?.message, f?.stackTrace, text(f?.encodedAttributes?.metadata?.encoding)])).toEqual(Array(4).fill(['Encoded failure', '', ENCRYPTED_ENCODING]));
  // Nowhere else either: every string field as JSON text, and the wire bytes (payloads' too).
  expect(JSON.stringify(history).includes(marker)).toBe(false);
  expect(Buffer.from(temporal.api.history.v1.History.encode(history).finish()).includes(marker)).toBe(false);

  // `/codec/decode` (the Web UI's and CLI's way) reads the encoded attributes like any payload.
  const decoded = await fetch(`${s.apiUrl}/codec/decode`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payloadsToJson([chain[0]!.encodedAttributes!])) });
  const [attrs] = payloadsFromJson(await decoded.json())!;
  expect(JSON.parse(text(attrs!.data))).toMatchObject({ message: `upstream scripted: rejected "${marker}"`, stack_trace: expect.stringContaining('workflows/chatCompletion') });

  // A Temporal client with the codec sees the messages.
  const withCodec = new Client({ connection: s.temporal.connection, namespace: s.config.temporal.namespace, dataConverter });
  const failed = (await withCodec.workflow.getHandle(runId).result().catch((e: unknown) => e)) as WorkflowFailedError;
  expect(failed).toBeInstanceOf(WorkflowFailedError);
  expect(failed.cause?.message).toBe(`upstream scripted: rejected "${marker}"`);
  expect((failed.cause?.cause as Error | undefined)?.cause).toMatchObject({ message: expect.stringContaining(`rejected "${marker}"`) });
});

test('a run written under the rotated-out key stays readable', async () => {
  const history = await s.temporal.workflow.getHandle(oldRun).fetchHistory();
  expect(new Set(payloadsOf(history.events).map((p) => text(p.metadata?.[KEY_ID_METADATA])))).toEqual(new Set(['k1']));
  const state = (await (await fetch(`${s.apiUrl}/v1/runs/${oldRun}`)).json()) as { message: { content: string } };
  expect(state.message.content).toBe(`the tool said ${SECRET}-old`);
});

test('/codec decodes for the Temporal CLI (as the Web UI would use it), behind the API keys', async () => {
  const runId = await toolLoop(s, `${SECRET}-cli`);
  const show = (extra: string[]) => run(TEMPORAL, ['workflow', 'show', '-w', runId, '--address', testEnv().address, '-o', 'json', ...extra], { maxBuffer: 32 * 1024 * 1024 });
  // The CLI prints payloads' data as base64: what is readable is what decodes to it.
  const readable = async (extra: string[]) => {
    const out = (await show(extra)).stdout;
    return [...out.matchAll(/"data":\s*"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString()).join('\n');
  };
  expect(await readable([])).not.toContain(`${SECRET}-cli`);
  expect(await readable(['--codec-endpoint', `${s.apiUrl}/codec`])).toContain(`${SECRET}-cli`);

  // A browser's preflight from an allowed origin, and not from another.
  const preflight = (origin: string) => fetch(`${s.apiUrl}/codec/decode`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });
  const ok = await preflight('http://ui.example:8233');
  expect(ok.status).toBe(204);
  expect(ok.headers.get('access-control-allow-origin')).toBe('http://ui.example:8233');
  expect((await preflight('http://elsewhere.example')).status).toBe(403);

  // Garbage is a clear 400, not a 500.
  const bad = await fetch(`${s.apiUrl}/codec/decode`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ payloads: [{ metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING).toString('base64'), [KEY_ID_METADATA]: Buffer.from('k2').toString('base64') }, data: 'AAAA' }] }) });
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('codec_error');

  // With API keys, the codec wants one (the CLI's --codec-auth).
  const keyed = await stackWith([newKey], 'ops-secret-key');
  try {
    const body = JSON.stringify({ payloads: [] });
    expect((await fetch(`${keyed.apiUrl}/codec/encode`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).status).toBe(401);
    expect((await fetch(`${keyed.apiUrl}/codec/encode`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer ops-secret-key' }, body })).status).toBe(200);
    expect(await readable(['--codec-endpoint', `${keyed.apiUrl}/codec`, '--codec-auth', 'Bearer ops-secret-key'])).toContain(`${SECRET}-cli`);
  } finally {
    await keyed.stop();
  }
});

test('without keys there is no /codec', async () => {
  const plain = await startStack();
  try {
    expect((await fetch(`${plain.apiUrl}/codec/decode`, { method: 'POST' })).status).toBe(404);
  } finally {
    await plain.stop();
  }
});

