/**
 * RunRelay: the events of one run, in position order, each exactly once, from three sources:
 * the in-process LiveHub (fast path), the durable WorkflowStream (any instance, any time), and
 * the closed run's event query (the tail a poll could miss when the run completes).
 */
import type { Client } from '@temporalio/client';
import { WorkflowStreamClient } from '@temporalio/workflow-streams/client';
import type { LiveHub } from '../connectors/liveHub';
import { EVENTS_TOPIC, comparePositions, type Position, type RunEvent } from '../domain/events';
import { EVENTS_QUERY } from '../domain/run';

const START: Position = { step: -1, seq: -1 };

/** The part of `e` after `cursor`, or null when the client already has all of it. */
export function after(e: RunEvent, cursor: Position): RunEvent | null {
  if (e.t !== 'deltas') return comparePositions({ step: e.step, seq: e.seq }, cursor) > 0 ? e : null;
  if (e.step < cursor.step) return null;
  if (e.step > cursor.step) return e;
  const skip = Math.max(0, cursor.seq + 1 - e.seq0);
  if (skip >= e.d.length) return null;
  return skip === 0 ? e : { ...e, seq0: e.seq0 + skip, d: e.d.slice(skip) };
}

export function lastPosition(e: RunEvent): Position {
  return { step: e.step, seq: e.t === 'deltas' ? e.seq0 + e.d.length - 1 : e.seq };
}

export interface RelayOptions {
  client: Client;
  live: LiveHub | null;
  runId: string;
  from?: Position | null;
  signal: AbortSignal;
  /**
   * With a live channel, the durable log is only polled once the live path has been quiet this
   * long (a tool step, a retry elsewhere): polling costs the run a workflow task per batch.
   */
  liveSilenceMs?: number;
}

/**
 * Yields events until the run's `end`/`error` event. Call it before the run starts (it
 * subscribes to the LiveHub at once, so no live delta is missed) and iterate once it exists.
 */
export function relayRun(o: RelayOptions): AsyncGenerator<RunEvent> {
  const queue: RunEvent[] = [];
  let wake: (() => void) | null = null;
  let sourcesDone = false;
  let failure: unknown = null;
  const finished = new AbortController();
  const stopped = () => o.signal.aborted || finished.signal.aborted;
  let durableStarted = false;
  let silence: NodeJS.Timeout | null = null;
  const push = (e: RunEvent) => {
    queue.push(e);
    wake?.();
  };

  const durable = async () => {
    if (durableStarted || stopped()) return;
    durableStarted = true;
    const sub = WorkflowStreamClient.create(o.client, o.runId).topic<RunEvent>(EVENTS_TOPIC).subscribe(0, { pollCooldown: 50 });
    try {
      for await (const item of sub) {
        if (stopped()) break;
        push(item.data);
      }
    } catch {
      // The tail query below still delivers everything once the run closes.
    }
  };
  const armSilence = () => {
    if (silence) clearTimeout(silence);
    if (!durableStarted && !stopped()) silence = setTimeout(() => void durable(), o.liveSilenceMs ?? 1000);
  };
  const unsubscribe =
    o.live?.subscribe(o.runId, (e) => {
      armSilence();
      push(e);
    }) ?? (() => undefined);
  // Whatever a poll could miss when the run closes, the closed run's query has.
  const tail = async () => {
    const handle = o.client.workflow.getHandle(o.runId);
    await handle.result().catch(() => undefined);
    if (stopped()) return;
    for (const e of await handle.query<RunEvent[], [Position]>(EVENTS_QUERY, START)) push(e);
  };

  return (async function* () {
    let cursor = o.from ?? START;
    // The run exists by the time the caller iterates; the durable sources start here.
    if (o.live) armSilence();
    else void durable();
    void tail().then(
      () => undefined,
      (e: unknown) => {
        if (!stopped()) failure = e;
      },
    ).finally(() => {
      sourcesDone = true;
      wake?.();
    });
    try {
      for (;;) {
        if (o.signal.aborted) return;
        const next = queue.shift();
        if (!next) {
          if (sourcesDone) {
            if (failure) throw failure;
            return;
          }
          await new Promise<void>((r) => (wake = r));
          wake = null;
          continue;
        }
        const part = after(next, cursor);
        if (!part) continue;
        cursor = lastPosition(part);
        yield part;
        if (part.t === 'end' || part.t === 'error') return;
      }
    } finally {
      finished.abort();
      if (silence) clearTimeout(silence);
      unsubscribe();
    }
  })();
}
