/**
 * Implicit idempotency on the shipped defaults (no `idempotency` settings), as an edge gateway's
 * retries exercise it: the same tool-running request sent again (no Idempotency-Key, the same
 * body) after its run failed gets a new run that takes the earlier run's tool results instead of
 * running the tools again; sent again after its run completed (a regenerate), it is a new run with
 * a fresh answer; a different body is a different run. With `idempotency.replayCompleted` the
 * repeat after a completed run gets that run's answer without another upstream call.
 */
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { sseEvents } from '../support/sse';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, retry: { maxAttempts: 1 } }],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] }],
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
    }),
  });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const echo = (message: string) => ({ kind: 'toolCalls' as const, calls: [{ id: 'call_1', name: 'everything__echo', arguments: JSON.stringify({ message }) }] });
const post = (content: string, on = s) =>
  fetch(`${on.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'agent', messages: [{ role: 'user', content }] }) });

async function toolActivities(runId: string, on = s): Promise<number> {
  const h = await on.temporal.workflow.getHandle(runId).fetchHistory();
  return (h.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'callTool').length;
}

/** A failed run, then the gateway's retry of the same body: a new run that reuses the tool result. */
async function failThenRetry(on: Stack, content: string): Promise<string> {
  on.upstream.reset();
  on.upstream.enqueue({ steps: [echo('side effect')] }, { steps: [{ kind: 'fault', fault: 'http500' }] });
  const first = await post(content, on);
  expect(first.status).toBe(502);
  const firstRun = first.headers.get('x-run-id')!;
  expect(await toolActivities(firstRun, on)).toBe(1);

  // The gateway retries the same body: the model asks for the same call again.
  on.upstream.enqueue({ steps: [echo('side effect')] }, { steps: [{ kind: 'text', text: 'done' }] });
  const second = await post(content, on);
  expect(second.status).toBe(200);
  const secondRun = second.headers.get('x-run-id')!;
  expect(secondRun).not.toBe(firstRun);
  expect(((await second.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('done');
  expect(await toolActivities(secondRun, on)).toBe(0);
  const run = (await (await fetch(`${on.apiUrl}/v1/runs/${secondRun}`)).json()) as { steps: Array<{ kind: string; reused?: boolean }> };
  expect(run.steps.filter((x) => x.kind === 'tool')).toEqual([expect.objectContaining({ reused: true })]);
  // The model saw the earlier result as the tool's answer.
  const toolMsg = (on.upstream.requests[on.upstream.requests.length - 1]!.body.messages as Array<{ role: string; content: string }>).find((m) => m.role === 'tool');
  expect(toolMsg?.content).toContain('side effect');
  return secondRun;
}

const answerOf = async (r: Response) => ((await r.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;

test('shipped defaults: a retry after a failed run reuses its tool results; the same body after a completed run is a new run (a regenerate)', async () => {
  const secondRun = await failThenRetry(s, 'do it once');

  // Sent again after it completed: a fresh run, which asks the model (and runs its tool) anew.
  s.upstream.enqueue({ steps: [echo('side effect')] }, { steps: [{ kind: 'text', text: 'regenerated' }] });
  const calls = s.upstream.requests.length;
  const third = await post('do it once');
  expect(third.status).toBe(200);
  const thirdRun = third.headers.get('x-run-id')!;
  expect(thirdRun).not.toBe(secondRun);
  expect(await answerOf(third)).toBe('regenerated');
  expect(s.upstream.requests.length).toBe(calls + 2);
  expect(await toolActivities(thirdRun)).toBe(1);

  // Another body is another request.
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'other' }] });
  const other = await post('something else');
  expect(other.status).toBe(200);
  expect(other.headers.get('x-run-id')).not.toBe(secondRun);
});

test('with idempotency.replayCompleted, the same body after a completed run gets its answer with no upstream call', async () => {
  const r = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, retry: { maxAttempts: 1 } }],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] }],
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
      idempotency: { replayCompleted: true },
    }),
  });
  try {
    const secondRun = await failThenRetry(r, 'replay me');
    const calls = r.upstream.requests.length;
    const third = await post('replay me', r);
    expect(third.status).toBe(200);
    expect(third.headers.get('x-run-id')).toBe(secondRun);
    expect(await answerOf(third)).toBe('done');
    expect(r.upstream.requests.length).toBe(calls);
  } finally {
    await r.stop();
  }
});

test('two identical requests at once share one run', async () => {
  s.upstream.reset();
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'shared', delayMs: 300, chunks: 3 }] });
  const [a, b] = await Promise.all([post('at once'), post('at once')]);
  expect(a.headers.get('x-run-id')).toBe(b.headers.get('x-run-id'));
  expect(s.upstream.requests.length).toBe(1);
});

test('the same body sent again the moment a stream’s answer arrives (an eval loop) is a new run each time, not a join of the one still closing', async () => {
  s.upstream.reset();
  // The window is short (the answer's end comes live, a moment before the run closes), so each
  // of two bodies goes round six times, each request sent before the last one's [DONE].
  for (const content of ['again and again', 'once more']) {
    const body = JSON.stringify({ model: 'agent', stream: true, messages: [{ role: 'user', content }] });
    const runs: string[] = [];
    const answers: string[] = [];
    for (let i = 0; i < 6; i++) {
      s.upstream.enqueue({ steps: [{ kind: 'text', text: `answer ${i}` }] });
      const res = await fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      runs.push(res.headers.get('x-run-id')!);
      let text = '';
      for await (const e of sseEvents(res)) {
        const chunk = JSON.parse(e.data) as { choices: Array<{ delta: { content?: string }; finish_reason: string | null }> };
        text += chunk.choices[0]?.delta.content ?? '';
        if (chunk.choices[0]?.finish_reason) break;
      }
      answers.push(text);
    }
    expect(new Set(runs).size).toBe(6);
    expect(answers).toEqual([0, 1, 2, 3, 4, 5].map((i) => `answer ${i}`));
  }
});
