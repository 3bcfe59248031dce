/**
 * `previous_response_id` reads the earlier run's start and close events, one each, and nothing a
 * worker must compute: it continues a finished run whose workers are all gone (a query, which
 * makes a worker replay the closed run's whole history, would wait for one and fail), after a
 * run with many steps as after a short one.
 */
import { Client, Connection } from '@temporalio/client';
import { startSystem, type RunningSystem } from '../../src/roles/system';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { startStack, testEnv, type Stack } from '../support/stack';

jest.setTimeout(60_000);

let s: Stack;
let apiOnly: RunningSystem | undefined;

afterAll(async () => {
  await apiOnly?.stop();
});

test('a finished response is continued with no worker running, after a five-step tool loop', async () => {
  s = await startStack({
    config: () => ({
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] }],
    }),
  });
  const echo = (n: number) => ({ steps: [{ kind: 'toolCalls' as const, calls: [{ name: 'everything__echo', arguments: JSON.stringify({ message: `round ${n}` }) }] }] });
  s.upstream.enqueue(echo(1), echo(2), echo(3), echo(4), { steps: [{ kind: 'text', text: 'the first answer' }] });
  const first = await s.openai.responses.create({ model: 'agent', input: 'start the conversation' });
  expect(first.output_text).toBe('the first answer');
  const config = s.config;
  await s.stop(); // the only worker of this task queue goes with it

  apiOnly = await startSystem({ config, temporalAddress: testEnv().address, roles: { worker: false, api: true } });
  const started = Date.now();
  const r = await fetch(`${apiOnly.apiUrl}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'agent', input: 'and then?', previous_response_id: first.id, background: true }),
  });
  const body = (await r.json()) as { id: string; status: string };
  expect(r.status).toBe(200);
  expect(body.status).toBe('in_progress');
  expect(Date.now() - started).toBeLessThan(3000);
  // The new run's input is the whole conversation: the first turn, its answer, the new turn.
  const runId = r.headers.get('x-run-id')!;
  const connection = await Connection.connect({ address: testEnv().address });
  const handle = new Client({ connection, namespace: config.temporal.namespace }).workflow.getHandle(runId);
  const history = await handle.fetchHistory();
  const input = JSON.stringify(history.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.map((p) => Buffer.from(p.data!).toString()));
  for (const part of ['start the conversation', 'the first answer', 'and then?']) expect(input).toContain(part);
  await handle.terminate('test done');
  await connection.close();
});
