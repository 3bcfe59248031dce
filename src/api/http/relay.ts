/**
 * relayRun: one reader's events of a run, in position order, each exactly once (the rules are
 * in domain/merge). Where they come from:
 * - this process's LiveHub: the model step streaming here and the workflow events made here,
 *   pushed the moment they exist;
 * - the run's durable log (the `mix2api.events` query), read when the merger needs it or the
 *   run's history has changed;
 * - the run's history, long-polled (`waitNewEvent`), which says when the durable log may have
 *   changed: only while this process cannot see the run move, so a live stream costs no polls;
 * - a model step streaming in another process: asked of that process (./peer), which answers
 *   what the reader lacks as soon as there is some; or the step's last heartbeat, when it failed
 *   and waits for its retry.
 * The generator is pulled: it reads nothing new while its consumer is busy writing.
 */
import type { Client } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { LiveHub, LiveView } from '../../connectors/liveHub';
import type { EndEvent, RunEvent } from '../../domain/events';
import { parseIdentity, reportGone } from '../../activities/lease';
import { peerSecret, readPeer } from './peer';
import type { Config } from '../../config/load';
import { RunMerger } from '../../domain/merge';
import type { Position } from '../../domain/positions';
import type { StepProgress } from '../../domain/stepLog';
import { EVENTS_QUERY } from '../../domain/run';
import { ApiError } from './errors';
import { queryRun } from './query';
import { watchHistory, type HistoryWatch } from './historyWatch';
import { Wakeup } from './wakeup';

/** How long the live path may be quiet before the reader starts watching the run's history. */
const LIVE_SILENCE_MS = 1000;
/** Events per durable read. */
const PAGE = 500;
/** Consecutive failed durable reads before the reader gives up. */
const MAX_READ_FAILURES = 20;
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

export interface RelayOptions {
  client: Client;
  live: LiveHub | null;
  runId: string;
  from?: Position | null;
  signal: AbortSignal;
  /** The caller just started this run: its durable log is empty, nothing to read at first. */
  fresh?: boolean;
  /** How often a model step streaming in another process is looked for (and how long one read of it waits). */
  heartbeatMs: number;
  /** What this deployment's instances present to each other (./peer). */
  peerSecret: string;
  /** The lease's renewal period (`liveness.renewSeconds`), for ending a refusing peer's lease early. */
  renewMs: number;
}

/** The relay settings every reader of this deployment shares, from its config. */
export function relaySettings(config: Config): Pick<RelayOptions, 'heartbeatMs' | 'peerSecret' | 'renewMs'> {
  return { heartbeatMs: config.stream.heartbeatSeconds * 1000, peerSecret: peerSecret(config), renewMs: config.liveness.renewSeconds * 1000 };
}

/** Whether a model call in this process is writing the step the reader is at (or a later one). */
function streamingHere(view: LiveView | undefined, cursor: Position): boolean {
  return Boolean(view?.streaming && view.step && view.step.log.step >= cursor.step);
}

/**
 * Yields events until the run's `end` or `error` event. Call it before starting the run (it
 * subscribes to the LiveHub at once, so nothing live is missed) and iterate once the run exists.
 */
export async function* relayRun(o: RelayOptions): AsyncGenerator<RunEvent> {
  const merger = new RunMerger(o.from);
  const wake = new Wakeup();
  let lastLive = Date.now();
  const unsubscribe =
    o.live?.subscribe(o.runId, () => {
      lastLive = Date.now();
      wake.fire();
    }) ?? (() => undefined);
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  o.signal.addEventListener('abort', onAbort, { once: true });
  const handle = o.client.workflow.getHandle(o.runId);
  let dirty = !o.fresh;
  /** A model step may be streaming in another process. */
  let remote = !o.fresh;
  let history: HistoryWatch | null = null;
  let finalRead = false;
  const watch = (): HistoryWatch =>
    (history ??= watchHistory(o.client, o.runId, stop.signal, () => {
      dirty = true;
      remote = true;
      wake.fire();
    }));
  if (!o.fresh) watch();
  let failures = 0;
  /** The peer that streams the step the reader is at, while it does. */
  const peer: PeerCursor = { url: null };

  try {
    for (;;) {
      if (stop.signal.aborted) return;
      const view = o.live?.view(o.runId);
      if (view?.step) yield* merger.fromStep(view.step.log.step, view.step.log.events, view.step.end);
      if (view) yield* merger.fromPushed(view.pushed);
      if (merger.done) return;

      if (dirty || merger.needsRead()) {
        dirty = false;
        const epoch = merger.beginRead();
        let events: RunEvent[];
        try {
          events = await guarded(o.client, stop.signal, () => queryRun<RunEvent[], [Position, number]>(o.client, handle, EVENTS_QUERY, merger.cursor, PAGE));
          failures = 0;
        } catch (e) {
          if (stop.signal.aborted) return;
          if (++failures > MAX_READ_FAILURES) throw e;
          dirty = true;
          await sleep(Math.min(2000, 50 * 2 ** failures));
          continue;
        }
        yield* merger.fromDurable(events, epoch);
        if (merger.done) return;
        if (events.length >= PAGE) dirty = true;
        continue;
      }

      if ((history as HistoryWatch | null)?.closed) {
        // One more read after the close, then the run really has nothing more to say.
        if (!finalRead) {
          finalRead = true;
          dirty = true;
          continue;
        }
        throw new ApiError(500, 'the run closed without a final event (terminated or timed out)', 'server_error', 'run_terminated');
      }

      let waited = false;
      if (remote && !streamingHere(view, merger.cursor)) {
        const p = await remoteProgress(o, peer, merger.cursor, stop.signal);
        remote = p !== null;
        waited = p?.waited === true;
        if (p && (p.events.length > 0 || p.end)) yield* merger.fromStep(p.step, p.events, p.end);
        if (merger.done) return;
        // A peer's answer is a long poll: ask again at once.
        if (waited) continue;
      }

      // Something waits for the durable log, or the live path is quiet while no model call here
      // is writing the reader's step: follow the history. (A call here that is slow to its first
      // token is not quiet: its run cannot move on until it ends, and its end wakes the reader.)
      const here = streamingHere(view, merger.cursor);
      if (!history && (merger.waiting || (!here && Date.now() - lastLive >= LIVE_SILENCE_MS))) {
        watch();
        dirty = true;
        remote = true;
        continue;
      }
      const timeout = remote && !here ? o.heartbeatMs : history || here ? undefined : Math.max(1, LIVE_SILENCE_MS - (Date.now() - lastLive));
      await wake.wait(timeout, stop.signal);
    }
  } finally {
    stop.abort();
    o.signal.removeEventListener('abort', onAbort);
    unsubscribe();
  }
}

/**
 * A Temporal call that ends with the reader. Each call gets a signal of its own: the client
 * leaves its abort listener on the signal it is given, so sharing one across calls would pile
 * listeners up for as long as the reader lives.
 */
async function guarded<T>(client: Client, stop: AbortSignal, fn: () => Promise<T>): Promise<T> {
  const call = new AbortController();
  const abort = () => call.abort();
  stop.addEventListener('abort', abort, { once: true });
  try {
    return await client.connection.withAbortSignal(call.signal, fn);
  } finally {
    stop.removeEventListener('abort', abort);
  }
}

interface PeerCursor {
  url: string | null;
  /** Its instance queue (whose lease a refusal ends early). */
  queue?: string;
}

interface RemoteProgress extends StepProgress {
  end?: EndEvent;
  /** The answer came from the step's process (a long poll: the reader may ask again at once). */
  waited?: boolean;
}

/**
 * The progress of the run's pending model call: asked of the process that streams it, found
 * from the activity's worker identity; or its last heartbeat (a failed attempt waiting for its
 * retry). Null when no model call is pending.
 */
async function remoteProgress(o: RelayOptions, peer: PeerCursor, cursor: Position, stop: AbortSignal, found = false): Promise<RemoteProgress | null> {
  const from = cursor.step < 0 ? { step: 0, seq: -1 } : cursor;
  if (peer.url) {
    const d = await readPeer(peer.url, o.peerSecret, o.runId, from, o.heartbeatMs, stop);
    if (d === 'refused') {
      if (peer.queue) void reportGone(o.client, peer.queue, o.renewMs);
    } else if (d) return { step: d.step, events: d.events, ...(d.end ? { end: d.end } : {}), waited: true };
    peer.url = null;
  }
  const { client, runId } = o;
  try {
    const d = await guarded(client, stop, () => client.workflow.getHandle(runId).describe());
    const pending = d.raw.pendingActivities?.find((a) => a.activityType?.name === 'callModel');
    if (!pending) return null;
    const payload = pending.heartbeatDetails?.payloads?.[0];
    if (!payload) {
      const holder = parseIdentity(pending.lastWorkerIdentity);
      // Started there (not a retry waiting for its turn): read it from there from now on.
      if (holder?.peerUrl && pending.state === PENDING_STARTED && !found) {
        peer.url = holder.peerUrl;
        peer.queue = holder.queue;
        return remoteProgress(o, peer, cursor, stop, true);
      }
      return { step: -1, events: [] };
    }
    // Through the codec: with encryption on, heartbeats are ciphertext too.
    const p = await decodeFromPayloadsAtIndex<Partial<StepProgress>>(client.options.loadedDataConverter, 0, [payload]);
    return typeof p?.step === 'number' && Array.isArray(p.events) ? { step: p.step, events: p.events } : { step: -1, events: [] };
  } catch {
    return { step: -1, events: [] }; // try again at the next beat
  }
}

/** Temporal's `PENDING_ACTIVITY_STATE_STARTED`. */
const PENDING_STARTED = 2;
