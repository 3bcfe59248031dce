/**
 * LiveHub: the in-process fast path from a streaming `callModel` activity to the HTTP
 * connection waiting for the same run in this process. Best effort by design: the durable
 * log is the source of truth, and a relay drops whatever it already got from here.
 */
import type { RunEvent } from '../domain/events';

type Listener = (e: RunEvent) => void;

export class LiveHub {
  private readonly listeners = new Map<string, Set<Listener>>();

  /** Returns the unsubscribe function. */
  subscribe(runId: string, fn: Listener): () => void {
    let set = this.listeners.get(runId);
    if (!set) this.listeners.set(runId, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0) this.listeners.delete(runId);
    };
  }

  has(runId: string): boolean {
    return this.listeners.has(runId);
  }

  publish(runId: string, e: RunEvent): void {
    for (const fn of this.listeners.get(runId) ?? []) fn(e);
  }
}
