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

export class StepLog {
  readonly events: RunEvent[] = [];
  private next = 0;

  constructor(
    readonly step: number,
    prior: readonly RunEvent[] = [],
  ) {
    for (const e of prior) {
      if (e.step !== step) continue;
      this.events.push(e.t === 'deltas' ? { ...e, d: [...e.d] } : e);
      this.next = Math.max(this.next, nextSeq(e));
    }
  }

  /** The first free position. */
  get nextSeq(): number {
    return this.next;
  }

  delta(d: Delta): void {
    const item: DeltaItem = d.content !== undefined && Object.keys(d).length === 1 ? d.content : d;
    const last = this.events[this.events.length - 1];
    if (last?.t === 'deltas' && last.seq0 + last.d.length === this.next) last.d.push(item);
    else this.events.push({ t: 'deltas', step: this.step, seq0: this.next, d: [item] });
    this.next++;
  }

  /** A non-delta event (a `retry`) at the next position. */
  event(make: (seq: number) => RunEvent): RunEvent {
    const e = make(this.next++);
    this.events.push(e);
    return e;
  }

  /** Leaves positions up to `seq` unused (they may be held by clients of an earlier attempt). */
  skipTo(seq: number): void {
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
