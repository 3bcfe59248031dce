/** RunMerger: every event once, in position order, from the durable log, step logs and pushed workflow events. */
import type { EndEvent, RunEvent } from '../../src/domain/events';
import { RunMerger } from '../../src/domain/merge';
import { formatPosition, lastPosition } from '../../src/domain/positions';

const deltas = (step: number, seq0: number, ...d: string[]): RunEvent => ({ t: 'deltas', step, seq0, d });
const started = (step: number, seq: number): RunEvent => ({ t: 'tool_started', step, seq, callId: 'c', server: 's', tool: 't', arguments: '{}' });
const finished = (step: number, seq: number): RunEvent => ({ t: 'tool_finished', step, seq, callId: 'c', server: 's', tool: 't', ms: 1, isError: false, preview: '' });
const end = (step: number, seq: number): EndEvent => ({ t: 'end', step, seq, finishReason: 'stop', message: { role: 'assistant', content: 'x' } });
const ids = (events: RunEvent[]) => events.map((e) => formatPosition(lastPosition(e)));

test('a fresh reader follows step 0 at once and stops at the end', () => {
  const m = new RunMerger();
  expect(ids(m.fromStep(0, [deltas(0, 0, 'a', 'b')]))).toEqual(['0:1']);
  // The same log again, grown: only the new part.
  expect(m.fromStep(0, [deltas(0, 0, 'a', 'b', 'c')])).toEqual([deltas(0, 2, 'c')]);
  expect(ids(m.fromStep(0, [deltas(0, 0, 'a', 'b', 'c')], end(0, 3)))).toEqual(['0:3']);
  expect(m.done).toBe(true);
  expect(m.fromDurable([deltas(0, 0, 'a', 'b', 'c'), end(0, 3)], m.beginRead())).toEqual([]);
});

test("a later step's output waits for a durable read begun after it was seen", () => {
  const m = new RunMerger();
  m.fromStep(0, [deltas(0, 0, 'a')]);
  // Step 1 streams here, but the tool events of step 0 may not have reached this reader.
  expect(m.fromStep(1, [deltas(1, 0, 'x', 'y')])).toEqual([]);
  expect(m.needsRead()).toBe(true);
  const epoch = m.beginRead();
  expect(m.needsRead()).toBe(false);
  // A read begun *before* the step was seen would not do; this one was begun after.
  expect(ids(m.fromDurable([deltas(0, 0, 'a'), started(0, 1), finished(0, 2)], epoch))).toEqual(['0:1', '0:2']);
  expect(ids(m.fromStep(1, [deltas(1, 0, 'x', 'y')]))).toEqual(['1:1']);
});

test('a read begun before the step was seen does not release it', () => {
  const m = new RunMerger();
  m.fromStep(0, [deltas(0, 0, 'a')]);
  const early = m.beginRead();
  expect(m.fromStep(1, [deltas(1, 0, 'x')])).toEqual([]);
  m.fromDurable([deltas(0, 0, 'a')], early);
  expect(m.fromStep(1, [deltas(1, 0, 'x')])).toEqual([]);
  expect(m.needsRead()).toBe(true);
});

test('pushed workflow events follow only when they continue the cursor', () => {
  const m = new RunMerger();
  m.fromStep(0, [deltas(0, 0, 'a', 'b')]);
  expect(ids(m.fromPushed([started(0, 2), finished(0, 3)]))).toEqual(['0:2', '0:3']);
  // A gap (0:4 was made in another process): wait for the durable log, once.
  expect(m.fromPushed([started(0, 5)])).toEqual([]);
  expect(m.needsRead()).toBe(true);
  const epoch = m.beginRead();
  m.fromDurable([], epoch); // not committed yet
  expect(m.fromPushed([started(0, 5)])).toEqual([]);
  expect(m.needsRead()).toBe(false); // no second read until the history changes
  expect(m.waiting).toBe(true);
  expect(ids(m.fromDurable([started(0, 4), started(0, 5)], m.beginRead()))).toEqual(['0:4', '0:5']);
  expect(m.waiting).toBe(false);
  expect(m.fromPushed([started(0, 5)])).toEqual([]);
});

test('a resumed reader gets nothing twice across sources that overlap', () => {
  const m = new RunMerger({ step: 0, seq: 1 });
  const step0 = [deltas(0, 0, 'a', 'b', 'c', 'd')];
  expect(m.fromDurable(step0, m.beginRead())).toEqual([deltas(0, 2, 'c', 'd')]);
  // The same step again, from a heartbeat and from the live log: already delivered.
  expect(m.fromStep(0, step0)).toEqual([]);
  expect(m.fromPushed(step0)).toEqual([]);
  // A retry that jumped: in order, from the step log.
  const jumped = [...step0, { t: 'retry', step: 0, seq: 10_004, attempt: 2, reason: 'restart' } as RunEvent, deltas(0, 10_005, 'e')];
  expect(ids(m.fromStep(0, jumped))).toEqual(['0:10004', '0:10005']);
  expect(m.cursor).toEqual({ step: 0, seq: 10_005 });
});

test('stale step logs are ignored; an error ends the reader', () => {
  const m = new RunMerger({ step: 2, seq: 0 });
  expect(m.fromStep(1, [deltas(1, 0, 'old')])).toEqual([]);
  const err: RunEvent = { t: 'error', step: 3, seq: 0, error: { status: 502, message: 'x', type: 'upstream_error', code: null, param: null } };
  expect(m.fromDurable([err, started(3, 1)], m.beginRead())).toEqual([err]);
  expect(m.done).toBe(true);
  expect(m.needsRead()).toBe(false);
});
