/**
 * Sessions: turns with the same X-Session-Id (or metadata.session_id) run one at a time as
 * child runs of a session actor, which continues-as-new before its history grows long.
 */
import { SESSION_QUERY, type SessionState } from '../../src/domain/run';
import { sessionWorkflowId } from '../../src/api/engine/startRun';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => s.upstream.reset());

const ask = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'test-model', messages: [{ role: 'user' as const, content }], ...extra });

test('turns of one session run one at a time as child runs', async () => {
  const slow = (text: string) => ({ steps: [{ kind: 'text' as const, text, chunks: 8, delayMs: 100 }] });
  s.upstream.enqueue(slow('first turn answer'), slow('second turn answer'), slow('third turn answer'));
  const session = { headers: { 'X-Session-Id': `serial-${Date.now()}` } };
  const later = (ms: number, content: string) => new Promise((r) => setTimeout(r, ms)).then(() => s.openai.chat.completions.create(ask(content), session));
  const [a, b, c] = await Promise.all([s.openai.chat.completions.create(ask('one'), session), later(150, 'two'), later(300, 'three')]);
  expect([a, b, c].map((r) => r.choices[0]!.message.content)).toEqual(['first turn answer', 'second turn answer', 'third turn answer']);
  const [r1, r2, r3] = s.upstream.requests;
  // Each turn's model call started only after the previous turn's ~0.8 s answer.
  expect(r2!.receivedAt - r1!.receivedAt).toBeGreaterThanOrEqual(750);
  expect(r3!.receivedAt - r2!.receivedAt).toBeGreaterThanOrEqual(750);
  const desc = await s.temporal.workflow.getHandle(a.id).describe();
  expect(desc.parentExecution?.workflowId).toMatch(/^session-/);
});

test('a long session continues-as-new and keeps counting its turns', async () => {
  const sessionId = `long-${Date.now()}`;
  const id = sessionWorkflowId('anonymous', sessionId);
  let firstRunId = '';
  let turns = 0;
  // The dev server suggests continue-as-new past 40 history events: a handful of turns.
  for (let i = 0; i < 20; i++) {
    s.upstream.enqueue({ steps: [{ kind: 'text', text: `answer ${i}` }] });
    // Half the turns name the session in metadata, as some clients can only do that.
    const extra = i % 2 === 0 ? { metadata: { session_id: sessionId } } : {};
    const headers: Record<string, string> = i % 2 === 0 ? {} : { 'X-Session-Id': sessionId };
    if (i === 0) headers['Idempotency-Key'] = `${sessionId}-turn-0`;
    const r = await s.openai.chat.completions.create(ask(`turn ${i}`, extra), { headers });
    expect(r.choices[0]!.message.content).toBe(`answer ${i}`);
    turns++;
    if (i === 0) firstRunId = (await s.temporal.workflow.getHandle(id).describe()).runId;
    else if ((await s.temporal.workflow.getHandle(id, firstRunId).describe()).status.name === 'CONTINUED_AS_NEW' && i >= 3) break;
  }
  const first = await s.temporal.workflow.getHandle(id, firstRunId).describe();
  expect(first.status.name).toBe('CONTINUED_AS_NEW');
  const state = await s.temporal.workflow.getHandle(id).query<SessionState>(SESSION_QUERY);
  expect(state.turns).toBe(turns);
  // A client retrying its first turn after the actor continued-as-new gets that turn's answer.
  const retried = await s.openai.chat.completions.create(ask('turn 0', { metadata: { session_id: sessionId } }), { headers: { 'Idempotency-Key': `${sessionId}-turn-0` } });
  expect(retried.choices[0]!.message.content).toBe('answer 0');
  expect(s.upstream.requests).toHaveLength(turns);
});

test('a bad session id is a 400', async () => {
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session-id': 'has spaces in it' },
    body: JSON.stringify(ask('x')),
  });
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: { param: string } }).error.param).toBe('X-Session-Id');
});
