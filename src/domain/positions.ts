/**
 * Positions in a run's event log. An event sits at `step:seq` (a `deltas` event spans
 * `seq0 … seq0 + d.length - 1`); positions only grow, so a client's last event id is a cursor
 * and `after(e, cursor)` is everything of `e` that client does not have yet.
 */
import type { RunEvent } from './events';

export interface Position {
  step: number;
  seq: number;
}

/** Before the first event of a run. */
export const START: Position = { step: -1, seq: -1 };

export function comparePositions(a: Position, b: Position): number {
  return a.step - b.step || a.seq - b.seq;
}

export function firstPosition(e: RunEvent): Position {
  return { step: e.step, seq: e.t === 'deltas' ? e.seq0 : e.seq };
}

export function lastPosition(e: RunEvent): Position {
  return { step: e.step, seq: e.t === 'deltas' ? e.seq0 + e.d.length - 1 : e.seq };
}

/** The first free seq of the event's step after it. */
export function nextSeq(e: RunEvent): number {
  return lastPosition(e).seq + 1;
}

/**
 * The part of `e` after `cursor`, or null when the cursor already covers it. A `deltas` event
 * comes back as a copy: the live log appends to its last event in place.
 */
export function after(e: RunEvent, cursor: Position): RunEvent | null {
  if (e.t !== 'deltas') return comparePositions(firstPosition(e), cursor) > 0 ? e : null;
  if (e.step < cursor.step) return null;
  const skip = e.step > cursor.step ? 0 : Math.max(0, cursor.seq + 1 - e.seq0);
  if (skip >= e.d.length) return null;
  return { ...e, seq0: e.seq0 + skip, d: e.d.slice(skip) };
}

/** Whether `e` starts exactly where `cursor` ends, so nothing can be missing in between. */
export function continues(e: RunEvent, cursor: Position): boolean {
  const first = firstPosition(e);
  if (cursor.step === START.step) return first.step === 0 && first.seq === 0;
  return first.step === cursor.step && first.seq === cursor.seq + 1;
}

export function formatPosition(p: Position): string {
  return `${p.step}:${p.seq}`;
}

export function parsePosition(s: string | undefined | null): Position | null {
  if (!s) return null;
  const m = /^(\d{1,9}):(\d{1,12})$/.exec(s.trim());
  return m ? { step: Number(m[1]), seq: Number(m[2]) } : null;
}
