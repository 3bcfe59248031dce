/**
 * Implicit idempotency, as an edge gateway's retries exercise it: the same tool-running request
 * sent again (no Idempotency-Key, the same body) after its run failed gets a new run that takes
 * the earlier run's tool results instead of running the tools again; sent again after its run
 * completed, it gets that run's answer without another upstream call; a different body is a
 * different run.
 */
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, retry: { maxAttempts: 1 } }],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] }],
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
      idempotency: { implicitSeconds: 300 },
    }),
  });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});

const echo = (message: string) => ({ kind: 'toolCalls' as const, calls: [{ id: 'call_1', name: 'everything__echo', arguments: JSON.stringify({ message }) }] });
const post = (content: string) =>
  fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'agent', messages: [{ role: 'user', content }] }) });

async function toolActivities(runId: string): Promise<number> {
  const h = await s.temporal.workflow.getHandle(runId).fetchHistory();
  return (h.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'callTool').length;
}

test('a retry after a failed run reuses its tool results; a retry after a completed run gets its answer', async () => {
  s.upstream.reset();
  s.upstream.enqueue({ steps: [echo('side effect')] }, { steps: [{ kind: 'fault', fault: 'http500' }] });
  const first = await post('do it once');
  expect(first.status).toBe(502);
  const firstRun = first.headers.get('x-run-id')!;
  expect(await toolActivities(firstRun)).toBe(1);

  // The gateway retries the same body: the model asks for the same call again.
  s.upstream.enqueue({ steps: [echo('side effect')] }, { steps: [{ kind: 'text', text: 'done' }] });
  const second = await post('do it once');
  expect(second.status).toBe(200);
  const secondRun = second.headers.get('x-run-id')!;
  expect(secondRun).not.toBe(firstRun);
  expect(((await second.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('done');
  expect(await toolActivities(secondRun)).toBe(0);
  const run = (await (await fetch(`${s.apiUrl}/v1/runs/${secondRun}`)).json()) as { steps: Array<{ kind: string; reused?: boolean }> };
  expect(run.steps.filter((x) => x.kind === 'tool')).toEqual([expect.objectContaining({ reused: true })]);
  // The model saw the earlier result as the tool's answer.
  const toolMsg = (s.upstream.requests[s.upstream.requests.length - 1]!.body.messages as Array<{ role: string; content: string }>).find((m) => m.role === 'tool');
  expect(toolMsg?.content).toContain('side effect');

  // Sent again after it completed: the same run and answer, no upstream call.
  const calls = s.upstream.requests.length;
  const third = await post('do it once');
  expect(third.status).toBe(200);
  expect(third.headers.get('x-run-id')).toBe(secondRun);
  expect(((await third.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('done');
  expect(s.upstream.requests.length).toBe(calls);

  // Another body is another request.
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'other' }] });
  const other = await post('something else');
  expect(other.status).toBe(200);
  expect(other.headers.get('x-run-id')).not.toBe(secondRun);
});

test('two identical requests at once share one run', async () => {
  s.upstream.reset();
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'shared', delayMs: 300, chunks: 3 }] });
  const [a, b] = await Promise.all([post('at once'), post('at once')]);
  expect(a.headers.get('x-run-id')).toBe(b.headers.get('x-run-id'));
  expect(s.upstream.requests.length).toBe(1);
});
