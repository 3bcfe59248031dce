/**
 * LiveHub: what this process knows of its runs as they happen, for the readers in this
 * process. Per run: the log of the model step a `callModel` here is streaming (one log across
 * the step's attempts), the live `end` a final step announces, and the workflow events this
 * process's workflow worker made (pushed through a sink). Readers are woken, not fed: each keeps
 * its own cursor into these shared logs, so a reader that falls behind costs no memory here.
 * Best effort by design: the run's durable log is the source of truth.
 */
import type { EndEvent, RunEvent } from '../domain/events';
import { StepLog } from '../domain/stepLog';

/** The model step a run is streaming in this process. */
export interface LiveStep {
  log: StepLog;
  end?: EndEvent;
}

export interface LiveView {
  step?: LiveStep;
  pushed: readonly RunEvent[];
  /** A model call in this process is writing `step` now. */
  streaming: boolean;
}

/** Pushed workflow events kept per run; a reader further behind reads the durable log. */
const MAX_PUSHED = 256;

interface Channel {
  step?: LiveStep;
  pushed: RunEvent[];
  listeners: Set<() => void>;
  /** Model calls in this process writing to `step`. */
  writers: number;
}

export class LiveHub {
  private readonly runs = new Map<string, Channel>();

  /** Calls `wake` whenever something of the run changes here; returns the unsubscribe. */
  subscribe(runId: string, wake: () => void): () => void {
    const ch = this.channel(runId);
    ch.listeners.add(wake);
    return () => {
      ch.listeners.delete(wake);
      this.gc(runId, ch);
    };
  }

  view(runId: string): LiveView | undefined {
    const ch = this.runs.get(runId);
    return ch && { step: ch.step, pushed: ch.pushed, streaming: ch.writers > 0 };
  }

  /**
   * The log a model call of `step` writes to: the one an earlier attempt in this process left
   * (`exact`: it holds everything that attempt streamed), else a new one seeded with `prior`.
   * Pair with `releaseStep`.
   */
  openStep(runId: string, step: number, prior: readonly RunEvent[] = []): { log: StepLog; exact: boolean } {
    const ch = this.channel(runId);
    ch.writers++;
    if (ch.step?.log.step === step) {
      ch.step.end = undefined;
      return { log: ch.step.log, exact: true };
    }
    ch.step = { log: new StepLog(step, prior) };
    this.changed(runId);
    return { log: ch.step.log, exact: prior.length === 0 };
  }

  releaseStep(runId: string): void {
    const ch = this.runs.get(runId);
    if (!ch) return;
    ch.writers = Math.max(0, ch.writers - 1);
    // Readers that trusted this call to move the run look elsewhere once it stops.
    if (ch.writers === 0) this.changed(runId);
    this.gc(runId, ch);
  }

  /** The step's last model call ended the run with this. */
  ended(runId: string, end: EndEvent): void {
    const ch = this.runs.get(runId);
    if (ch?.step?.log.step !== end.step) return;
    ch.step.end = end;
    this.changed(runId);
  }

  /** A workflow event, as this process's workflow worker made it. Kept only while someone listens. */
  pushed(runId: string, e: RunEvent): void {
    const ch = this.runs.get(runId);
    if (!ch || ch.listeners.size === 0) return;
    ch.pushed.push(e);
    if (ch.pushed.length > MAX_PUSHED) ch.pushed.splice(0, ch.pushed.length - MAX_PUSHED);
    this.changed(runId);
  }

  changed(runId: string): void {
    const ch = this.runs.get(runId);
    if (ch) for (const wake of ch.listeners) wake();
  }

  /** Runs this process holds anything of (for tests and metrics). */
  get size(): number {
    return this.runs.size;
  }

  private channel(runId: string): Channel {
    let ch = this.runs.get(runId);
    if (!ch) this.runs.set(runId, (ch = { pushed: [], listeners: new Set(), writers: 0 }));
    return ch;
  }

  private gc(runId: string, ch: Channel): void {
    if (ch.listeners.size === 0 && ch.writers === 0 && this.runs.get(runId) === ch) this.runs.delete(runId);
  }
}
