/**
 * StepLog: the events of one model step, in position order, across all its attempts. It is the
 * live buffer readers in the same process follow, the heartbeat details that carry the step's
 * progress to other processes, and, once the step completes, part of the activity's result:
 * the run's durable log gets a model step's output in one piece, not batch by batch.
 * Consecutive deltas share one `deltas` event, and plain content deltas are stored as strings,
 * so a long answer costs little more than its text.
 */
import type { Delta } from './chat';
import type { DeltaItem, RunEvent } from './events';
import { after, nextSeq, type Position } from './positions';

/** What a step has streamed so far: heartbeat details of `callModel` and a fallback's input. */
export interface StepProgress {
  step: number;
  events: RunEvent[];
}

/**
 * What a process's lease says of a step it streams: how far it got (`n`, its first free
 * position) and a digest of what is at positions 0..n-1 (`h`). It is all that outlives a
 * process killed mid-step: a retry elsewhere uses it to tell whether its answer repeats what
 * clients hold (see domain/stepAttempt), without the step's text ever being written anywhere.
 */
export interface StepTrace {
  step: number;
  n: number;
  h: string;
}

/** FNV-1a, two 32-bit lanes: incremental, so a trace costs nothing to take at any moment. */
export class TraceHash {
  private a = 0x811c9dc5;
  private b = 0x01000193 ^ 0x5bd1e995;
  add(s: string): void {
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      this.a = Math.imul(this.a ^ c, 16777619);
      this.b = Math.imul(this.b ^ c, 2246822519);
    }
    this.a = Math.imul(this.a ^ 0xff, 16777619);
  }
  get value(): string {
    return (this.a >>> 0).toString(16).padStart(8, '0') + (this.b >>> 0).toString(16).padStart(8, '0');
  }
}

/** How the log stores a delta: plain content as a string. */
export const deltaItem = (d: Delta): DeltaItem => (d.content !== undefined && Object.keys(d).length === 1 ? d.content : d);

/** One position's item as the trace hashes it. */
export const traceItem = (d: DeltaItem | RunEvent): string => (typeof d === 'string' ? d : JSON.stringify(d));

export class StepLog {
  readonly events: RunEvent[] = [];
  private next = 0;
  /** The digest of positions 0..next-1 while they are contiguous from 0; null once a gap or another attempt's event breaks them. */
  private hash: TraceHash | null = new TraceHash();

  constructor(
    readonly step: number,
    prior: readonly RunEvent[] = [],
  ) {
    for (const e of prior) {
      if (e.step !== step) continue;
      this.events.push(e.t === 'deltas' ? { ...e, d: [...e.d] } : e);
      this.next = Math.max(this.next, nextSeq(e));
    }
    // A seeded log's digest would need its positions in order; a trace of it is not needed.
    if (this.events.length > 0) this.hash = null;
  }

  /** Where the step is and a digest of what it holds, or null when the positions are not one attempt's run from 0. */
  trace(): StepTrace | null {
    return this.hash ? { step: this.step, n: this.next, h: this.hash.value } : null;
  }

  /** The first free position. */
  get nextSeq(): number {
    return this.next;
  }

  delta(d: Delta): void {
    const item = deltaItem(d);
    const last = this.events[this.events.length - 1];
    if (last?.t === 'deltas' && last.seq0 + last.d.length === this.next) last.d.push(item);
    else this.events.push({ t: 'deltas', step: this.step, seq0: this.next, d: [item] });
    this.hash?.add(traceItem(item));
    this.next++;
  }

  /** A non-delta event (a `retry`) at the next position. */
  event(make: (seq: number) => RunEvent): RunEvent {
    const e = make(this.next++);
    this.events.push(e);
    this.hash = null;
    return e;
  }

  /** Leaves positions up to `seq` unused (they may be held by clients of an earlier attempt). */
  skipTo(seq: number): void {
    if (seq > this.next) this.hash = null;
    this.next = Math.max(this.next, seq);
  }

  after(cursor: Position): RunEvent[] {
    const out: RunEvent[] = [];
    for (const e of this.events) {
      const part = after(e, cursor);
      if (part) out.push(part);
    }
    return out;
  }

  /** All content deltas so far, across attempts: what a client of this step holds. */
  content(): string {
    let s = '';
    for (const e of this.events) if (e.t === 'deltas') for (const d of e.d) s += typeof d === 'string' ? d : (d.content ?? '');
    return s;
  }

  /** Whether an attempt of this step was retried (the log holds output of several attempts). */
  hasRetry(): boolean {
    return this.events.some((e) => e.t === 'retry');
  }

  progress(): StepProgress {
    return { step: this.step, events: this.events };
  }
}
