/**
 * RunMerger: one reader's cursor over a run, fed from three kinds of source, each ordered:
 *
 * - the durable log (the workflow's query): complete up to the moment it was read;
 * - a model step's log (the live buffer in this process, or another process's last
 *   heartbeat): complete from the step's first position up to now;
 * - workflow events pushed live as the workflow makes them (tool started, approvals, …),
 *   possibly with gaps (a workflow task that ran in another process pushes nothing here).
 *
 * It hands out every event once, in position order, and says when it needs a durable read to
 * go on: a model step's output may only follow the cursor once every event before that step
 * is known, which is true of any durable read begun after the step was seen (a step starts
 * only after the workflow task that scheduled it, and everything before, is committed); a
 * pushed workflow event may only follow the cursor when it continues it exactly.
 */
import type { EndEvent, RunEvent } from './events';
import { START, after, comparePositions, continues, lastPosition, type Position } from './positions';

export class RunMerger {
  cursor: Position;
  /** The run's `end` or `error` has been handed out. */
  done = false;
  private readsBegun = 0;
  private readsDone = 0;
  /** Model step → the number of durable reads begun when it was first seen. */
  private readonly stepSeenAt = new Map<number, number>();
  /** The first pushed event that did not continue the cursor, and when it was seen. */
  private gap: { at: Position; seenAt: number } | null = null;

  constructor(from: Position | null = null) {
    this.cursor = from ?? START;
  }

  /** Call before reading the durable log; pass the returned epoch to `fromDurable`. */
  beginRead(): number {
    return ++this.readsBegun;
  }

  fromDurable(events: readonly RunEvent[], epoch: number): RunEvent[] {
    this.readsDone = Math.max(this.readsDone, epoch);
    return this.take(events);
  }

  /** A model step's events so far, from its first position; `end` once it ended the run. */
  fromStep(step: number, events: readonly RunEvent[], end?: EndEvent): RunEvent[] {
    if (this.done || this.cursor.step > step) return [];
    const first = this.cursor.step === START.step && step === 0; // nothing comes before step 0's output
    if (this.cursor.step < step && !first) {
      let seenAt = this.stepSeenAt.get(step);
      if (seenAt === undefined) this.stepSeenAt.set(step, (seenAt = this.readsBegun));
      if (this.readsDone <= seenAt) return [];
    }
    return this.take(end ? [...events, end] : events);
  }

  /** Workflow events pushed live, in the order the workflow made them. */
  fromPushed(events: readonly RunEvent[]): RunEvent[] {
    const out: RunEvent[] = [];
    for (const e of events) {
      if (this.done) break;
      const part = after(e, this.cursor);
      if (!part) continue;
      if (!continues(part, this.cursor)) {
        const at = lastPosition(part);
        if (!this.gap || comparePositions(this.gap.at, at) !== 0) this.gap = { at, seenAt: this.readsBegun };
        break;
      }
      out.push(...this.take([part]));
    }
    return out;
  }

  /**
   * Whether a durable read would let the cursor move: a step or a pushed event is waiting and
   * no read has begun since it was seen. (A pushed event still waiting after such a read waits
   * for the run's history to change, not for another read.)
   */
  needsRead(): boolean {
    if (this.done) return false;
    if (this.gap && this.gap.seenAt === this.readsBegun) return true;
    for (const [step, seenAt] of this.stepSeenAt) if (step > this.cursor.step && seenAt === this.readsBegun) return true;
    return false;
  }

  /** Something is waiting that the durable log must catch up with. */
  get waiting(): boolean {
    if (this.done) return false;
    return this.gap !== null || [...this.stepSeenAt.keys()].some((s) => s > this.cursor.step);
  }

  private take(events: readonly RunEvent[]): RunEvent[] {
    const out: RunEvent[] = [];
    for (const e of events) {
      if (this.done) break;
      const part = after(e, this.cursor);
      if (!part) continue;
      this.cursor = lastPosition(part);
      out.push(part);
      if (part.t === 'end' || part.t === 'error') this.done = true;
    }
    if (this.gap && comparePositions(this.cursor, this.gap.at) >= 0) this.gap = null;
    return out;
  }
}
