/**
 * Publishes one model step's deltas: each delta at once to the in-process LiveHub, and in
 * coarse batches (one log item per `batchMs`) to the run's durable WorkflowStream, so a
 * 2,000-token answer costs a handful of history events, not thousands.
 */
import type { WorkflowStreamClient } from '@temporalio/workflow-streams/client';
import type { LiveHub } from '../connectors/liveHub';
import type { Delta } from '../domain/chat';
import { EVENTS_TOPIC, type RunEvent } from '../domain/events';

export class DeltaPublisher {
  private pending: Delta[] = [];
  private pendingSeq0: number;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly runId: string,
    private readonly step: number,
    private seq: number,
    private readonly stream: WorkflowStreamClient,
    private readonly live: LiveHub,
    private readonly batchMs: number,
  ) {
    this.pendingSeq0 = seq;
  }

  get nextSeq(): number {
    return this.seq;
  }

  delta(d: Delta): void {
    const seq = this.seq++;
    this.live.publish(this.runId, { t: 'deltas', step: this.step, seq0: seq, d: [d] });
    if (this.pending.length === 0) this.pendingSeq0 = seq;
    this.pending.push(d);
    this.timer ??= setTimeout(() => this.flushPending(), this.batchMs);
  }

  /** Moves the next position on to `seq` without publishing (positions the log already has). */
  skipTo(seq: number): void {
    if (seq <= this.seq) return;
    this.flushPending();
    this.seq = seq;
  }

  /** A non-delta event at the next position (e.g. `retry`), durable right away. */
  event(make: (seq: number) => RunEvent): void {
    this.flushPending();
    const e = make(this.seq++);
    this.live.publish(this.runId, e);
    this.stream.topic<RunEvent>(EVENTS_TOPIC).publish(e, { forceFlush: true });
  }

  private flushPending(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length === 0) return;
    const e: RunEvent = { t: 'deltas', step: this.step, seq0: this.pendingSeq0, d: this.pending };
    this.pending = [];
    this.stream.topic<RunEvent>(EVENTS_TOPIC).publish(e, { forceFlush: true });
  }

  /** Everything published so far is in workflow history when this resolves. */
  async close(): Promise<void> {
    this.flushPending();
    await this.stream[Symbol.asyncDispose]();
  }
}
