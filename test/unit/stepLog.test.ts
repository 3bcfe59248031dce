/** The pure pieces of a model step's log: positions, the compact step log, and where each attempt writes. */
import type { RunEvent } from '../../src/domain/events';
import { START, after, continues, parsePosition } from '../../src/domain/positions';
import { RESTART_GAP, StepAttempt } from '../../src/domain/stepAttempt';
import { StepLog, type StepTrace } from '../../src/domain/stepLog';

const words = (text: string) => text.match(/\S+\s*/g) ?? [];
/** Streams `text` word by word as one attempt into `log`; returns the log's events. */
function stream(log: StepLog, text: string, o: { attempt?: number; exact?: boolean; continuation?: 'none' | 'prefill'; trace?: StepTrace } = {}): StepAttempt {
  const a = new StepAttempt(log, { attempt: o.attempt ?? 1, exact: o.exact ?? true, continuation: o.continuation ?? 'none', ...(o.trace ? { trace: o.trace } : {}) });
  for (const w of words(text)) a.add({ content: w });
  a.finish();
  return a;
}
/** What a client following the log from `from` receives: content and event ids. */
function read(events: readonly RunEvent[], from = START) {
  let cursor = from;
  let content = '';
  const ids: string[] = [];
  let retries = 0;
  for (const e of events) {
    const part = after(e, cursor);
    if (!part) continue;
    if (part.t === 'deltas') {
      part.d.forEach((d, i) => {
        content += typeof d === 'string' ? d : (d.content ?? '');
        ids.push(`${part.step}:${part.seq0 + i}`);
      });
      cursor = { step: part.step, seq: part.seq0 + part.d.length - 1 };
    } else if (part.t === 'retry') {
      retries++;
      cursor = { step: part.step, seq: part.seq };
    }
  }
  return { content, ids, retries, cursor };
}

test('positions: after() trims a deltas event to what the cursor lacks, and copies it', () => {
  const e: RunEvent = { t: 'deltas', step: 2, seq0: 5, d: ['a', 'b', 'c'] };
  expect(after(e, { step: 2, seq: 6 })).toEqual({ t: 'deltas', step: 2, seq0: 7, d: ['c'] });
  expect(after(e, { step: 2, seq: 7 })).toBeNull();
  expect(after(e, { step: 1, seq: 99 })).toEqual(e);
  expect(after(e, { step: 1, seq: 99 })).not.toBe(e);
  expect(after(e, { step: 3, seq: -1 })).toBeNull();
  const tool: RunEvent = { t: 'retry', step: 2, seq: 8, attempt: 2, reason: 'restart' };
  expect(after(tool, { step: 2, seq: 7 })).toBe(tool);
  expect(after(tool, { step: 2, seq: 8 })).toBeNull();
  expect(continues(tool, { step: 2, seq: 7 })).toBe(true);
  expect(continues(tool, { step: 2, seq: 6 })).toBe(false);
  expect(continues({ t: 'deltas', step: 0, seq0: 0, d: ['x'] }, START)).toBe(true);
  expect(parsePosition('3:41')).toEqual({ step: 3, seq: 41 });
  expect(parsePosition('3:x')).toBeNull();
  expect(parsePosition(`1:${'9'.repeat(20)}`)).toBeNull();
});

test('StepLog keeps consecutive deltas in one event, plain content as strings', () => {
  const log = new StepLog(0);
  log.delta({ content: 'Hel' });
  log.delta({ content: 'lo' });
  log.delta({ reasoning_content: 'hm' });
  log.event((seq) => ({ t: 'retry', step: 0, seq, attempt: 2, reason: 'restart' }));
  log.delta({ content: '!' });
  expect(log.events).toEqual([
    { t: 'deltas', step: 0, seq0: 0, d: ['Hel', 'lo', { reasoning_content: 'hm' }] },
    { t: 'retry', step: 0, seq: 3, attempt: 2, reason: 'restart' },
    { t: 'deltas', step: 0, seq0: 4, d: ['!'] },
  ]);
  expect(log.content()).toBe('Hello!');
  expect(log.nextSeq).toBe(5);
  // A log seeded from another process's heartbeat continues where it ends, without aliasing it.
  const copy = new StepLog(0, log.progress().events);
  copy.delta({ content: '?' });
  expect(copy.nextSeq).toBe(6);
  expect(log.events[2]).toEqual({ t: 'deltas', step: 0, seq0: 4, d: ['!'] });
});

test('a fresh attempt writes from 0; a retry notes itself and skips what clients already hold', () => {
  const log = new StepLog(1);
  const first = stream(log, 'The quick brown ');
  expect(first.prefill).toBeNull();
  expect(read(log.events).ids).toEqual(['1:0', '1:1', '1:2']);
  // The retry's answer repeats the start, then goes on: the client gets only the new part.
  stream(log, 'The quick brown fox jumps', { attempt: 2 });
  const all = read(log.events);
  expect(all.content).toBe('The quick brown fox jumps');
  expect(all.retries).toBe(1);
  // A client that held the first attempt's output gets the note and the rest, nothing twice.
  const rest = read(log.events, { step: 1, seq: 2 });
  expect(rest.content).toBe('fox jumps');
});

test('a retry with prefill continues the text clients hold and sends it as the prefill', () => {
  const log = new StepLog(0);
  stream(log, 'Once upon ');
  const retry = stream(log, 'a time', { attempt: 2, continuation: 'prefill' });
  expect(retry.prefill).toBe('Once upon ');
  expect(read(log.events).content).toBe('Once upon a time');
  expect(log.events.find((e) => e.t === 'retry')).toMatchObject({ reason: 'continue' });
});

test('a retry after a crash elsewhere puts its note past what the dead attempt may have streamed', () => {
  // The log is only the dead attempt's last heartbeat: its clients may hold a few more deltas.
  const heartbeat = new StepLog(0);
  stream(heartbeat, 'one two three ');
  const log = new StepLog(0, heartbeat.events);
  stream(log, 'one two three four', { attempt: 2, exact: false });
  const retry = log.events.find((e) => e.t === 'retry');
  expect(retry).toMatchObject({ seq: 3 + RESTART_GAP });
  // A client that had seen two deltas more than the heartbeat still gets the note and the new text.
  expect(read(log.events, { step: 0, seq: 4 })).toMatchObject({ retries: 1, content: 'four' });
});

test('a fallback attempt that repeats the log re-traces its positions and goes on seamlessly', () => {
  const log = new StepLog(0);
  stream(log, 'alpha beta gamma ');
  stream(log, 'alpha beta gamma delta epsilon'); // attempt 1 of the fallback activity
  const r = read(log.events);
  expect(r).toMatchObject({ content: 'alpha beta gamma delta epsilon', retries: 0 });
  expect(r.ids).toEqual(['0:0', '0:1', '0:2', '0:3', '0:4']);
  // A client of the dead instance that held one delta past the log drops the same delta again.
  expect(read(log.events, { step: 0, seq: 3 }).content).toBe('epsilon');
});

test('a fallback attempt that differs from the log jumps past it and announces the restart', () => {
  const log = new StepLog(0);
  stream(log, 'red green blue ');
  stream(log, 'red yellow');
  const retry = log.events.find((e) => e.t === 'retry');
  expect(retry).toMatchObject({ seq: 3 + RESTART_GAP, reason: 'restart' });
  // From the first difference on, every client gets the new text, whatever it held.
  expect(read(log.events, { step: 0, seq: 5 }).content).toBe('yellow');
  // Shorter than the log: the restart is announced too.
  const short = new StepLog(0);
  stream(short, 'a b c ');
  stream(short, 'a b ');
  expect(short.events.some((e) => e.t === 'retry')).toBe(true);
});

/** The trace of `text` streamed word by word, taken after its first `n` words (all when omitted). */
function traceOf(text: string, n?: number): StepTrace | null {
  const log = new StepLog(0);
  for (const w of words(text).slice(0, n)) log.delta({ content: w });
  return log.trace();
}

test('a step trace is a digest of positions 0..n-1: the same output gives the same trace, taken at any point', () => {
  const text = 'the quick brown fox jumps over the lazy dog';
  expect(traceOf(text)).toEqual(traceOf(text));
  expect(traceOf(text)!.n).toBe(9);
  // Taken mid-step, it is the trace of a step that streamed only that far: a retry can compare once it gets there.
  expect(traceOf(text, 4)).toEqual(traceOf('the quick brown fox '));
  // Another answer, another chunking of the same text, or a non-content delta: another trace.
  expect(traceOf('the quick brown cat')!.h).not.toBe(traceOf('the quick brown fox')!.h);
  expect(traceOf('the quick brownfox ')!.h).not.toBe(traceOf('the quick brown fox')!.h);
  const reasoning = new StepLog(0);
  reasoning.delta({ reasoning_content: 'the ' });
  expect(reasoning.trace()!.h).not.toBe(traceOf('the ')!.h);
});

test('a step trace exists only while the log is one attempt written from 0', () => {
  const retried = new StepLog(0);
  retried.delta({ content: 'a' });
  retried.event((seq) => ({ t: 'retry', step: 0, seq, attempt: 2, reason: 'restart' }));
  expect(retried.trace()).toBeNull();
  const skipped = new StepLog(0);
  skipped.delta({ content: 'a' });
  skipped.skipTo(RESTART_GAP);
  expect(skipped.trace()).toBeNull();
  expect(new StepLog(0, [{ t: 'deltas', step: 0, seq0: 0, d: ['a'] }]).trace()).toBeNull();
  expect(new StepLog(3).trace()).toEqual({ step: 3, n: 0, h: new StepLog(0).trace()!.h });
});

/** A step streamed by a process that is then killed: what its lease said of it, after `n` words. */
function deadAttempt(text: string, n: number): StepTrace {
  const log = new StepLog(0);
  const a = new StepAttempt(log, { attempt: 1, exact: true, continuation: 'none' });
  for (const w of words(text).slice(0, n)) a.add({ content: w });
  return log.trace()!;
}

test('a retry seeded only by a trace that repeats what clients hold takes the same positions: no seam, nothing twice', () => {
  const text = 'one two three four five six';
  const trace = deadAttempt(text, 3);
  const log = new StepLog(0);
  const a = new StepAttempt(log, { attempt: 2, exact: false, continuation: 'none', trace });
  const heldBack = words(text).slice(0, 2);
  for (const w of heldBack) a.add({ content: w });
  expect(log.events).toEqual([]); // still comparing: nothing reaches readers yet
  for (const w of words(text).slice(2)) a.add({ content: w });
  a.finish();
  const all = read(log.events);
  expect(all).toMatchObject({ content: text, retries: 0 });
  expect(all.ids).toEqual(['0:0', '0:1', '0:2', '0:3', '0:4', '0:5']);
  // The dead process's client held 0:0..0:3 (one delta past its last renewal): it gets the rest once.
  expect(read(log.events, { step: 0, seq: 3 }).content).toBe('five six');
});

test('a retry seeded only by a trace that differs, or is shorter, announces the restart past every held position and sends the whole new answer', () => {
  const trace = deadAttempt('one two three four', 3);
  const differs = new StepLog(0);
  stream(differs, 'one two tree four', { attempt: 2, exact: false, trace });
  const d = read(differs.events, { step: 0, seq: 2 + 5 });
  expect(differs.events.find((e) => e.t === 'retry')).toMatchObject({ seq: 3 + RESTART_GAP, reason: 'restart' });
  expect(d).toMatchObject({ retries: 1, content: 'one two tree four' });
  const shorter = new StepLog(0);
  const a = new StepAttempt(shorter, { attempt: 2, exact: false, continuation: 'none', trace });
  a.add({ content: 'one ' });
  a.finish();
  expect(read(shorter.events, { step: 0, seq: 2 })).toMatchObject({ retries: 1, content: 'one ' });
});
