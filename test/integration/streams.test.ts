/**
 * Streams at scale, countably: a run's history is set by its steps, not by how long it streams
 * (a 60-s answer and a 1-s one); a reader on another API instance follows a step mid-way from
 * its heartbeats; a reader that joins a quiet run gets headers and a keepalive at once; a
 * client that reads nothing holds one socket buffer, then is cut off with `stream_stalled`.
 */
import { connect } from 'node:net';
import type { Script } from '../support/scriptedUpstream';
import { contentOf, sseEvents } from '../support/sse';
import { startStack, testEnv, uniqueQueue, type Stack } from '../support/stack';

let a: Stack;
let b: Stack;
const scripts = new Map<string, Script>();
const queue = uniqueQueue('streams');

/** A 60-s answer started before the other tests and checked by the last one. */
let long: Promise<{ runId: string; content: string; ids: string[] }>;
const LONG_TEXT = Array.from({ length: 120 }, (_, i) => `slow${i} `).join('');

const post = (s: Stack, body: unknown) =>
  fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const ask = (content: string, stream = true) => ({ model: 'test-model', stream, messages: [{ role: 'user', content }] });

async function readAll(res: Response): Promise<{ content: string; ids: string[]; data: string[] }> {
  const out = { content: '', ids: [] as string[], data: [] as string[] };
  for await (const e of sseEvents(res)) {
    out.data.push(e.data);
    if (e.id) out.ids.push(e.id);
    out.content += contentOf(e.data);
  }
  return out;
}

async function historyLength(s: Stack, runId: string): Promise<number> {
  await s.temporal.workflow.getHandle(runId).result();
  return (await s.temporal.workflow.getHandle(runId).fetchHistory()).events?.length ?? 0;
}

async function stepsOf(s: Stack, runId: string): Promise<number> {
  const run = (await (await fetch(`${s.apiUrl}/v1/runs/${runId}`)).json()) as { steps: unknown[] };
  return run.steps.length;
}

beforeAll(async () => {
  const temporal = { address: testEnv().address, taskQueue: queue, searchAttributes: true };
  const config = (url: string) => ({
    temporal,
    // One attempt may take the whole 60 s answer.
    upstreams: [{ name: 'scripted', baseURL: url, retry: { maxAttempts: 2, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 }, timeouts: { connectSeconds: 5, idleSeconds: 3, totalSeconds: 120 } }],
    stream: { heartbeatSeconds: 1, stallSeconds: 4 },
    loop: { keepaliveSeconds: 1 },
  });
  [a, b] = await Promise.all([startStack({ config }), startStack({ config })]);
  scripts.set('answer for sixty seconds', { steps: [{ kind: 'text', text: LONG_TEXT, chunks: 120, delayMs: 500 }] });
  // Requests of concurrent tests arrive in any order: each user message names its script.
  a.upstream.setDefault((req) => {
    const user = (req.body.messages as Array<{ content: string }>)[0]!.content;
    return scripts.get(user) ?? { steps: [{ kind: 'text', text: 'ok' }] };
  });
  long = (async () => {
    const res = await post(a, ask('answer for sixty seconds'));
    const runId = res.headers.get('x-run-id')!;
    return { runId, ...(await readAll(res)) };
  })();
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});

test('a 1-s answer and a tool-free run leave a history set by their steps', async () => {
  scripts.set('one second', { steps: [{ kind: 'text', text: Array.from({ length: 20 }, (_, i) => `w${i} `).join(''), chunks: 20, delayMs: 50 }] });
  const res = await post(a, ask('one second'));
  const runId = res.headers.get('x-run-id')!;
  expect((await readAll(res)).ids).toHaveLength(21); // 20 deltas and the finish
  const events = await historyLength(a, runId);
  const steps = await stepsOf(a, runId);
  expect(steps).toBe(1);
  expect(events).toBeLessThanOrEqual(20 + 10 * steps);
});

test('a reader on another instance follows a step mid-way from its heartbeats, every event once', async () => {
  const text = Array.from({ length: 40 }, (_, i) => `p${i} `).join('');
  scripts.set('follow me elsewhere', { steps: [{ kind: 'text', text, chunks: 40, delayMs: 100 }] });
  const first = await post(a, ask('follow me elsewhere'));
  const runId = first.headers.get('x-run-id')!;
  const ids: string[] = [];
  let got = '';
  for await (const e of sseEvents(first)) {
    ids.push(e.id!);
    got += contentOf(e.data);
    if (ids.length === 5) break; // the client leaves instance A...
  }
  // ...and comes back on instance B, which streams nothing of this run itself.
  const startedAt = Date.now();
  const resumed = await fetch(`${b.apiUrl}/v1/runs/${runId}/events`, { headers: { 'last-event-id': ids[ids.length - 1]! } });
  expect(resumed.status).toBe(200);
  let firstDeltaAt = 0;
  let done = false;
  for await (const e of sseEvents(resumed)) {
    if (e.data === '[DONE]') {
      done = true;
      continue;
    }
    const c = contentOf(e.data);
    if (c && !firstDeltaAt) firstDeltaAt = Date.now();
    if (e.id) ids.push(e.id);
    got += c;
  }
  const upstreamDoneAt = a.upstream.requests.find((r) => JSON.stringify(r.body.messages).includes('follow me elsewhere'))!.receivedAt + 40 * 100;
  expect(done).toBe(true);
  expect(got).toBe(text);
  expect(new Set(ids).size).toBe(ids.length);
  // Mid-step progress reached B before the step ended (from heartbeats, not from the result).
  expect(firstDeltaAt).toBeGreaterThan(startedAt);
  expect(firstDeltaAt).toBeLessThan(upstreamDoneAt - 500);
});

test('a reader that joins a quiet run gets headers and a keepalive at once', async () => {
  // Quiet for 2.5 s (the stack's upstream idle timeout is 3 s).
  scripts.set('quiet', { steps: [{ kind: 'text', text: 'first ' }, { kind: 'text', text: 'later', delayMs: 2500 }] });
  const first = await post(a, ask('quiet'));
  const runId = first.headers.get('x-run-id')!;
  let id = '';
  for await (const e of sseEvents(first)) {
    id = e.id!;
    break;
  }
  const t0 = Date.now();
  const resumed = await fetch(`${a.apiUrl}/v1/runs/${runId}/events`, { headers: { 'last-event-id': id } });
  expect(resumed.status).toBe(200);
  expect(Date.now() - t0).toBeLessThan(1000);
  const seen: Array<{ at: number; data: string }> = [];
  for await (const e of sseEvents(resumed)) seen.push({ at: Date.now() - t0, data: e.data });
  // The first line is a keepalive (an empty delta), long before the run says anything.
  expect(seen[0]!.at).toBeLessThan(1000);
  expect(JSON.parse(seen[0]!.data)).toMatchObject({ choices: [{ delta: {} }] });
  expect(seen.map((x) => contentOf(x.data)).join('')).toBe('later');
  expect(seen[seen.length - 1]!.data).toBe('[DONE]');
});

/** An HTTP/1.1 chunked body, decoded (what the client took before the connection closed). */
function dechunk(body: string): string {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = body.indexOf('\r\n', at);
    if (eol < 0) return out;
    const size = parseInt(body.slice(at, eol), 16);
    if (!(size > 0)) return out;
    out += body.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

/** `mix2api_streams_stalled_total{api}` on a stack's API process. */
async function stalls(s: Stack, api: string): Promise<number> {
  const text = await (await fetch(`${s.apiUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`mix2api_streams_stalled_total{api="${api}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

/**
 * POSTs `body` on a raw socket that is paused before it reads a byte: the kernel's receive buffer
 * stays at its initial size (it grows, by autotuning, only while the application reads), so the
 * server's writes back up whatever the machine's TCP limits. The socket reads again once the
 * server has counted its stall (inside the spell before it drops a client that still reads
 * nothing), and takes what the server still sends: the decoded body and the head.
 */
async function pausedUntilStalled(s: Stack, path: string, body: string, api: string): Promise<{ head: string; body: string }> {
  const url = new URL(`${s.apiUrl}${path}`);
  const before = await stalls(s, api);
  const raw = await new Promise<string>((ok, fail) => {
    const sock = connect(Number(url.port), url.hostname, () => {
      sock.write(`POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    });
    sock.pause();
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', fail);
    sock.on('close', () => ok(Buffer.concat(chunks).toString('utf8')));
    const watch = setInterval(() => {
      void stalls(s, api).then((n) => {
        if (n <= before) return;
        clearInterval(watch);
        sock.resume();
      });
    }, 100);
    sock.on('close', () => clearInterval(watch));
  });
  const head = raw.slice(0, raw.indexOf('\r\n\r\n'));
  return { head, body: dechunk(raw.slice(head.length + 4)) };
}

/** 30,000 deltas (~6 MB of SSE) as fast as the upstream can: far more than sockets buffer. */
const BIG = Array.from({ length: 30_000 }, (_, i) => `${String(i).padStart(5, '0')}${'x'.repeat(15)}`).join('');

test('a client that reads nothing holds a socket buffer, then is cut off with stream_stalled; the run goes on', async () => {
  scripts.set('a lot', { steps: [{ kind: 'text', text: BIG, chunks: 30_000 }] });
  const { head, body: received } = await pausedUntilStalled(a, '/v1/chat/completions', JSON.stringify(ask('a lot')), 'chat');
  const runId = /^x-run-id: (\S+)/im.exec(head)?.[1] ?? '';
  expect(received).toContain('"code":"stream_stalled"');
  expect(received).not.toContain('data: [DONE]');
  // It got the socket's worth, not the whole answer.
  const content = received
    .split('\n\n')
    .filter((b) => b.startsWith('id:') || b.startsWith('data:'))
    .map((b) => /^data: (.*)$/m.exec(b)?.[1] ?? '')
    .filter((d) => d.startsWith('{'))
    .map(contentOf)
    .join('');
  expect(content.length).toBeGreaterThan(0);
  expect(content.length).toBeLessThan(BIG.length);
  // The run itself finished with the whole answer.
  await a.temporal.workflow.getHandle(runId).result();
  const run = (await (await fetch(`${a.apiUrl}/v1/runs/${runId}`)).json()) as { status: string; message: { content: string } };
  expect(run.status).toBe('completed');
  expect(run.message.content).toBe(BIG);
}, 60_000);

test('a Responses client that reads nothing is cut off the same way, with an error event; the response completes', async () => {
  scripts.set('a lot, as a response', { steps: [{ kind: 'text', text: BIG, chunks: 30_000 }] });
  const body = JSON.stringify({ model: 'test-model', stream: true, input: 'a lot, as a response' });
  const { head, body: received } = await pausedUntilStalled(a, '/v1/responses', body, 'responses');
  const events = received
    .split('\n\n')
    .map((b) => /^data: (.*)$/m.exec(b)?.[1])
    .filter((d): d is string => !!d)
    .map((d) => JSON.parse(d) as { type: string; code?: string; sequence_number: number });
  const last = events[events.length - 1]!;
  // The event keeps its type, as OpenAI's `error` stream events do, and the stream stops there.
  expect(last).toMatchObject({ type: 'error', code: 'stream_stalled' });
  expect(events.some((e) => e.type === 'response.completed')).toBe(false);
  expect(last.sequence_number).toBe(events[events.length - 2]!.sequence_number + 1);
  const id = /^x-run-id: (\S+)/im.exec(head)?.[1] ?? '';
  await a.temporal.workflow.getHandle(id).result();
}, 60_000);

test('a 60-s answer leaves no more history than a 1-s one: the bound holds whatever the length', async () => {
  const r = await long;
  expect(r.content).toBe(LONG_TEXT);
  const events = await historyLength(a, r.runId);
  expect(await stepsOf(a, r.runId)).toBe(1);
  expect(events).toBeLessThanOrEqual(20 + 10 * 1);
}, 90_000);

test('a tool loop stays within 20 + 10 events per step', async () => {
  // Mixed client/server tools are covered elsewhere; here only the count: 2 model steps, 1 tool.
  const s = await startStack({
    config: () => ({
      mcpServers: [{ name: 'everything', transport: 'stdio', command: process.execPath, args: [require.resolve('@modelcontextprotocol/server-everything/dist/index.js'), 'stdio'] }],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] }],
    }),
  });
  try {
    s.upstream.enqueue(
      { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: JSON.stringify({ message: 'hi' }) }] }] },
      { steps: [{ kind: 'text', text: Array.from({ length: 50 }, (_, i) => `t${i} `).join(''), chunks: 50, delayMs: 20 }] },
    );
    const res = await post(s, { model: 'agent', stream: true, messages: [{ role: 'user', content: 'echo' }] });
    const runId = res.headers.get('x-run-id')!;
    await readAll(res);
    const steps = await stepsOf(s, runId);
    expect(steps).toBe(3);
    expect(await historyLength(s, runId)).toBeLessThanOrEqual(20 + 10 * steps);
  } finally {
    await s.stop();
  }
});
