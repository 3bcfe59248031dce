/**
 * The lease's blind spots, on the real Temporal dev server: model steps that no renewal of their
 * process's lease ever named. A step taken in the instant before the renewal that would name it
 * (or handed to a frozen process's open poll) has no heartbeat timeout, so before these paths
 * existed it waited for its start-to-close timeout (the step's whole budget, 65 s here).
 *
 * - A lost process (here a stand-in worker that takes the step and vanishes, its lease renewed
 *   but never naming the step): when its lease lapses, the sweep finds the step by the worker
 *   identity that took it and fails it as ProcessLost, and the run moves it at once.
 * - A process that finds its lease gone while it lives (a frozen process woken up; here its
 *   lease workflow is terminated under it, so nothing released its step) hands its steps back.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { defaultPayloadConverter } from '@temporalio/common';
import type { ChatCompletionInput } from '../../src/domain/run';
import { startGhost } from '../support/ghostProcess';
import { newStreamLog, readInto } from '../support/streamLog';
import { startStack, testEnv, uniqueQueue, type Stack } from '../support/stack';
import { waitFor } from '../support/waitFor';

jest.setTimeout(60_000);

let s: Stack;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => s.upstream.reset());

const historyText = async (workflowId: string) => JSON.stringify((await s.temporal.workflow.getHandle(workflowId).fetchHistory()).events);

/** A real run's start input (answered with `text`), for runs the test starts itself. */
async function seedInput(text: string): Promise<ChatCompletionInput> {
  s.upstream.setDefault({ steps: [{ kind: 'text', text, chunks: 2 }] });
  const first = await s.openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'hello' }] }).withResponse();
  const started = await s.temporal.workflow.getHandle(first.response.headers.get('x-run-id')!).fetchHistory();
  return defaultPayloadConverter.fromPayload<ChatCompletionInput>(started.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!);
}

test('a step a lost process took but its lease never named moves when the lease lapses (the sweep), long before its start-to-close timeout', async () => {
  // A real run, to copy its start input.
  const seed = await seedInput('swept answer');

  // The stand-in for the lost process: its own instance queue and identity, a lease it renews
  // with nothing named, and a `callModel` that takes the step and never reports.
  let taken = false;
  const ghost = await startGhost({ address: testEnv().address, client: s.temporal, sharedQueue: s.config.temporal.taskQueue, queue: uniqueQueue('ghost'), onStep: () => (taken = true) });
  const lease = s.temporal.workflow.getHandle(ghost.leaseId);
  ghost.renew(() => [], 500);
  try {
    const runId = `sweep-${uniqueQueue()}`;
    const run = await s.temporal.workflow.start('chatCompletionWorkflow', { taskQueue: s.config.temporal.taskQueue, workflowId: runId, args: [{ ...seed, liveTaskQueue: ghost.queue }] });
    await waitFor(async () => taken, 10_000);
    // The process is gone: its renewals stop, and its worker with them.
    const lostAt = Date.now();
    await ghost.vanish();
    const result = (await run.result()) as { message?: { content?: string } };
    const movedInMs = Date.now() - lostAt;
    expect(result.message?.content).toBe('swept answer');
    // Lapse (2 s) + the sweep + the new attempt; the start-to-close backstop is 65 s.
    expect(movedInMs).toBeLessThan(15_000);
    expect(await historyText(runId)).toMatch(/stopped renewing its lease/);
    console.log(`unnamed step moved ${movedInMs} ms after its process was lost`);
  } finally {
    await ghost.vanish().catch(() => undefined);
    await lease.terminate().catch(() => undefined);
  }
});

test('a process whose lease is gone while it lives hands its unreleased steps back: the stream moves and reaches the client whole, once', async () => {
  const text = Array.from({ length: 40 }, (_, i) => `w${i} `).join('');
  s.upstream.setDefault({ steps: [{ kind: 'text', text, chunks: 40, delayMs: 100 }] });
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'long' }] }) });
  expect(res.status).toBe(200);
  const log = newStreamLog('lost-lease', res.headers.get('x-run-id')!);
  const reading = readInto(res, log);
  await waitFor(async () => log.content.length > 0, 10_000);
  // Nothing releases this process's steps: its lease workflow is simply gone.
  await s.temporal.workflow.getHandle(`lease-${s.system.instanceQueue}-1`).terminate('the test takes the lease away');
  const lostAt = Date.now();
  expect(await reading).toBe('done');
  expect(log.content).toBe(text);
  expect(new Set(log.ids).size).toBe(log.ids.length);
  expect(log.errors).toEqual([]);
  expect(Date.now() - lostAt).toBeLessThan(15_000);
  expect(await historyText(log.runId)).toMatch(/lost its lease/);
  // The process took a new lease and goes on.
  await waitFor(async () => s.system.lease.holding, 10_000);
});

/** A port nothing listens on: what a process's peer address answers once the process has exited. */
async function closedPortUrl(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
  const { port } = srv.address() as AddressInfo;
  await new Promise((ok) => srv.close(ok));
  return `http://127.0.0.1:${port}`;
}

/** A run whose first model step a ghost process takes (it never reports), with its seed input copied from a real run. */
async function ghostRun(o: { renewing: boolean }) {
  const seed = await seedInput('moved answer');
  let held: unknown[] = [];
  // A long lapse (30 s): only an early end of the lease moves the step within the test's bounds.
  const ghost = await startGhost({
    address: testEnv().address,
    client: s.temporal,
    sharedQueue: s.config.temporal.taskQueue,
    queue: uniqueQueue('gone'),
    peerUrl: await closedPortUrl(),
    lapseSeconds: 30,
    onStep: (info, input) => (held = [[info.workflowExecution!.workflowId, info.workflowExecution!.runId, info.activityId, info.attempt, input.step, 0, '']]),
  });
  ghost.renew(() => held, 300);
  const runId = `chatcmpl-${randomUUID().replace(/-/g, "")}`;
  const run = await s.temporal.workflow.start('chatCompletionWorkflow', { taskQueue: s.config.temporal.taskQueue, workflowId: runId, args: [{ ...seed, liveTaskQueue: ghost.queue }] });
  await waitFor(async () => held.length > 0, 10_000);
  const lostAt = Date.now();
  if (!o.renewing) await ghost.vanish();
  // A reader on this stack's API follows the run; the step's holder is the ghost, at its peer address.
  // (Its headers come with the first event: the reader is not awaited here.)
  const reader = new AbortController();
  const log = newStreamLog('gone', runId);
  const reading = fetch(`${s.apiUrl}/v1/runs/${runId}/events`, { signal: reader.signal }).then((res) => (res.status === 200 ? readInto(res, log) : `status ${res.status}`)).catch(() => 'aborted');
  return { ghost, run, runId, log, lostAt, reader, reading, lease: s.temporal.workflow.getHandle(ghost.leaseId) };
}

test('a reader that finds the holder’s peer address refusing connections ends its lease at once: the step moves long before the lapse', async () => {
  const g = await ghostRun({ renewing: false });
  try {
    expect(await g.reading).toBe('done');
    expect(g.log.content).toBe('moved answer');
    const movedInMs = Date.now() - g.lostAt;
    // The lapse is 30 s; the early end waits one quiet renewal period (300 ms + 200 ms) after the refusal.
    expect(movedInMs).toBeLessThan(15_000);
    expect(await historyText(g.ghost.leaseId)).toMatch(/refuses connections and stopped renewing its lease/);
    console.log(`a refusing holder's step moved ${movedInMs} ms after the loss (lapse 30 s)`);
  } finally {
    await g.lease.terminate().catch(() => undefined);
  }
});

test('a holder that refuses connections but still renews its lease keeps it: nothing moves', async () => {
  const g = await ghostRun({ renewing: true });
  try {
    // The reader asks the refusing peer again and again; the renewals say the process lives.
    await new Promise((ok) => setTimeout(ok, 4000));
    expect(g.log.content).toBe('');
    expect(await historyText(g.runId)).not.toMatch(/stopped renewing/);
    expect(await historyText(g.ghost.leaseId)).not.toMatch(/refuses connections/);
  } finally {
    g.reader.abort();
    await g.run.terminate().catch(() => undefined);
    await g.lease.terminate().catch(() => undefined);
    await g.ghost.vanish().catch(() => undefined);
  }
});
