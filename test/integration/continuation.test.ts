/**
 * A retried model call that continues from what was already streamed (assistant prefill),
 * and `loop.onDisconnect: cancel`.
 */
import { contentOf, sseEvents } from '../support/sse';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, continuation: 'prefill', retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 } }],
      loop: { onDisconnect: 'cancel' },
    }),
  });
});
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => s.upstream.reset());

test('a stream cut mid-answer continues from the published prefix instead of starting over', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'The answer is' }, { kind: 'fault', fault: 'drop' }] }, { steps: [{ kind: 'text', text: ' forty-two.' }] });
  const final = await s.openai.chat.completions.stream({ model: 'test-model', messages: [{ role: 'user', content: 'q' }] }).finalChatCompletion();
  expect(final.choices[0]!.message.content).toBe('The answer is forty-two.');
  const retried = s.upstream.requests[1]!.body.messages as Array<{ role: string; content: string; prefix?: boolean }>;
  expect(retried[retried.length - 1]).toEqual({ role: 'assistant', content: 'The answer is', prefix: true });
  const run = (await (await fetch(`${s.apiUrl}/v1/runs/${final.id}`)).json()) as { message: { content: string } };
  expect(run.message.content).toBe('The answer is forty-two.');
});

test('a second cut continues from everything streamed so far, not just the last attempt', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'text', text: 'AAA ' }, { kind: 'fault', fault: 'drop' }] },
    { steps: [{ kind: 'text', text: 'BBB ' }, { kind: 'fault', fault: 'drop' }] },
    { steps: [{ kind: 'text', text: 'CCC.' }] },
  );
  const final = await s.openai.chat.completions.stream({ model: 'test-model', messages: [{ role: 'user', content: 'q' }] }).finalChatCompletion();
  expect(final.choices[0]!.message.content).toBe('AAA BBB CCC.');
  const third = s.upstream.requests[2]!.body.messages as Array<{ role: string; content: string }>;
  expect(third[third.length - 1]).toMatchObject({ role: 'assistant', content: 'AAA BBB ' });
});

test('with onDisconnect: cancel, a client that leaves cancels its run', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: Array.from({ length: 50 }, (_, i) => `w${i}`).join(' '), delayMs: 100 }] });
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'long' }] }),
  });
  const runId = res.headers.get('x-run-id')!;
  let n = 0;
  for await (const e of sseEvents(res)) if (contentOf(e.data) && ++n === 3) break;
  const handle = s.temporal.workflow.getHandle(runId);
  const deadline = Date.now() + 15000;
  let status = '';
  while (Date.now() < deadline) {
    status = (await handle.describe()).status.name;
    if (status !== 'RUNNING') break;
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(status).toBe('CANCELLED');
});

test('cancellation reaches a streaming step without heartbeats: the upstream call stops within a second', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: Array.from({ length: 100 }, (_, i) => `c${i}`).join(' '), chunks: 100, delayMs: 100 }] });
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'cancel me' }] }),
  });
  const runId = res.headers.get('x-run-id')!;
  let n = 0;
  for await (const e of sseEvents(res)) if (contentOf(e.data) && ++n === 3) break;
  const req = s.upstream.requests[s.upstream.requests.length - 1]!;
  const cancelledAt = Date.now();
  await s.temporal.workflow.getHandle(runId).cancel();
  const deadline = Date.now() + 5000;
  while (req.abandonedAt === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  // The step's process heard of it from Temporal at once (checkHeld), not at its next heartbeat.
  expect(req.abandonedAt).toBeDefined();
  expect(req.abandonedAt! - cancelledAt).toBeLessThan(1000);
  // The run asked once and ended cancelled. (Whether the step's own cancel report lands in the history
  // is a race: the run does not wait for it, as activities are cancelled with TRY_CANCEL.)
  const handle = s.temporal.workflow.getHandle(runId);
  await handle.result().catch(() => undefined);
  expect((await handle.describe()).status.name).toBe('CANCELLED');
  const h = await handle.fetchHistory();
  expect(h.events?.filter((e) => e.activityTaskCancelRequestedEventAttributes).length).toBe(1);
});
