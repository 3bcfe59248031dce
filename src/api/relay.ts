/**
 * RunRelay: the events of one run, in position order, each exactly once, from three sources:
 * the in-process LiveHub (fast path), the durable WorkflowStream (any instance, any time), and
 * the closed run's event query (the tail a poll could miss when the run completes).
 */
import type { Client } from '@temporalio/client';
import type { LiveHub } from '../connectors/liveHub';
import { comparePositions, type Position, type RunEvent } from '../domain/events';
import { EVENTS_QUERY } from '../domain/run';

const START: Position = { step: -1, seq: -1 };
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));
/** How often the durable log is read while it is needed (a resumed client, a quiet live path). */
const DURABLE_POLL_MS = 250;

/** The part of `e` after `cursor`, or null when the client already has all of it. */
export function after(e: RunEvent, cursor: Position): RunEvent | null {
  if (e.t !== 'deltas') return comparePositions({ step: e.step, seq: e.seq }, cursor) > 0 ? e : null;
  if (e.step < cursor.step) return null;
  if (e.step > cursor.step) return e;
  const skip = Math.max(0, cursor.seq + 1 - e.seq0);
  if (skip >= e.d.length) return null;
  return skip === 0 ? e : { ...e, seq0: e.seq0 + skip, d: e.d.slice(skip) };
}

/** Whether `e` starts exactly where the client's cursor ends (nothing in between can be missing). */
function continues(e: RunEvent, cursor: Position): boolean {
  const first = { step: e.step, seq: e.t === 'deltas' ? e.seq0 : e.seq };
  if (cursor.step === START.step) return first.step === 0 && first.seq === 0;
  return first.step === cursor.step && first.seq === cursor.seq + 1;
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
  // Durable events arrive complete and in order; live ones may start ahead of the cursor (a
  // resumed client, a new step after tools), so they wait in `held` until they continue it.
  const queue: Array<{ e: RunEvent; live: boolean }> = [];
  let held: RunEvent[] = [];
  let wake: (() => void) | null = null;
  let sourcesDone = false;
  let failure: unknown = null;
  const finished = new AbortController();
  const stop = AbortSignal.any([o.signal, finished.signal]);
  const stopped = () => stop.aborted;
  // Pending Temporal calls (long polls) end with the relay, and never outlive the connection.
  // Each call gets a signal of its own: the client leaves its abort listener on the signal it is
  // given, so sharing `stop` across polls would pile listeners up for as long as the relay lives.
  const guarded = async <T>(fn: () => Promise<T>): Promise<T> => {
    const call = new AbortController();
    const abort = () => call.abort();
    stop.addEventListener('abort', abort, { once: true });
    try {
      return await o.client.connection.withAbortSignal(call.signal, fn);
    } finally {
      stop.removeEventListener('abort', abort);
    }
  };
  let durableStarted = false;
  let silence: NodeJS.Timeout | null = null;
  const push = (e: RunEvent, live = false) => {
    queue.push({ e, live });
    wake?.();
  };

  // Polls the run's log with a query, not the stream library's long-poll update: queries leave
  // no trace in the run's history (an update is two events per poll, and updates replayed after
  // a worker crash proved fragile), and the live path already carries the latency-sensitive part.
  const durable = async () => {
    if (durableStarted || stopped()) return;
    durableStarted = true;
    const handle = o.client.workflow.getHandle(o.runId);
    let seen: Position = START;
    let failures = 0;
    while (!stopped()) {
      try {
        const events = await guarded(() => handle.query<RunEvent[], [Position]>(EVENTS_QUERY, seen));
        failures = 0;
        for (const e of events) {
          push(e);
          if (comparePositions(lastPosition(e), seen) > 0) seen = lastPosition(e);
        }
        if (events.some((e) => e.t === 'end' || e.t === 'error')) return;
        await sleep(DURABLE_POLL_MS);
      } catch {
        // A closed run ends polling (the tail query delivers the rest); anything else is retried.
        if (stopped() || ++failures > 20) return;
        const open = await guarded(() => handle.describe())
          .then((d) => d.status.name === 'RUNNING')
          .catch(() => true);
        if (!open) return;
        await sleep(Math.min(2000, 100 * 2 ** failures));
      }
    }
  };
  const armSilence = () => {
    if (silence) clearTimeout(silence);
    if (!durableStarted && !stopped()) silence = setTimeout(() => void durable(), o.liveSilenceMs ?? 1000);
  };
  const unsubscribe =
    o.live?.subscribe(o.runId, (e) => {
      armSilence();
      push(e, true);
    }) ?? (() => undefined);
  o.signal.addEventListener('abort', unsubscribe, { once: true });
  // Whatever a poll could miss when the run closes, the closed run's query has.
  const tail = async () => {
    const handle = o.client.workflow.getHandle(o.runId);
    await guarded(() => handle.result()).catch(() => undefined);
    if (stopped()) return;
    for (const e of await guarded(() => handle.query<RunEvent[], [Position]>(EVENTS_QUERY, START))) push(e);
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
        const ready: RunEvent[] = [];
        const first = after(next.e, cursor);
        if (!first) continue;
        if (next.live && !continues(first, cursor)) {
          held.push(first);
          void durable();
          continue;
        }
        ready.push(first);
        while (ready.length > 0) {
          const part = ready.shift()!;
          cursor = lastPosition(part);
          yield part;
          if (part.t === 'end' || part.t === 'error') return;
          // Held live events that now continue the cursor go next; the ones it passed are dropped.
          held = held.map((h) => after(h, cursor)).filter((h): h is RunEvent => h !== null);
          const i = held.findIndex((h) => continues(h, cursor));
          if (i >= 0) ready.push(...held.splice(i, 1));
        }
      }
    } finally {
      finished.abort();
      if (silence) clearTimeout(silence);
      unsubscribe();
    }
  })();
}
