/**
 * StepAttempt: where one attempt of a model step puts what it streams, given what earlier
 * attempts already put in the step's log (which clients may hold). The rules, in one place:
 *
 * - A fresh step writes from position 0.
 * - A retry (attempt > 1) adds a `retry` event, then either continues the text clients have
 *   (assistant prefill) or restarts, swallowing the restarted answer while it repeats what
 *   clients hold and passing everything from the first difference on.
 * - A first attempt that finds the log non-empty (the shared-queue fallback after the API
 *   instance that ran the step died, or a prestarted call the run did not adopt) re-traces the
 *   log's positions while it repeats the log, so clients that resume see no seam; it carries on
 *   at the log's end when it matches it exactly, and otherwise jumps past every position a
 *   client of the earlier attempt could hold and announces the restart.
 * - When the log is only what an earlier attempt's last heartbeat said (`exact: false`), its
 *   clients may hold more; a retry's note then goes past every position they could hold.
 * - When all that is known of an earlier attempt is its trace (how far it got and a digest of
 *   its positions; a process that was killed leaves nothing else), the new attempt holds back its
 *   first `n` deltas: if they hash to the trace they are what clients hold and take the same
 *   positions, so the stream goes on seamlessly; otherwise the restart is announced past every
 *   position a client could hold, and clients get the whole new answer after the note.
 */
import type { Delta } from './chat';
import { PrefixSkipper } from './prefixSkipper';
import { TraceHash, deltaItem, traceItem, type StepLog, type StepTrace } from './stepLog';

/**
 * More deltas than an earlier attempt can have streamed past what the log knows of it (its
 * last heartbeat): a restart that differs starts this far on, so no client drops it as seen.
 */
export const RESTART_GAP = 10_000;

export interface AttemptOptions {
  attempt: number;
  continuation: 'none' | 'prefill';
  /** The log holds everything earlier attempts streamed (they ran in this process). */
  exact: boolean;
  /** The trace of an earlier attempt whose log is lost (its process was killed); the log is then empty. */
  trace?: Pick<StepTrace, 'n' | 'h'>;
}

export class StepAttempt {
  /** The content to continue from (sent as an assistant prefill), or null for a restart. */
  readonly prefill: string | null;
  private aligned: boolean;
  /** While aligned: the position of the log the new output is re-tracing. */
  private pos: number;
  private readonly logEnd: number;
  private readonly skipper: PrefixSkipper;
  /** While comparing with a trace: the deltas held back and their digest. */
  private held: { deltas: Delta[]; hash: TraceHash; n: number; h: string } | null = null;

  constructor(
    private readonly log: StepLog,
    private readonly o: AttemptOptions,
  ) {
    const held = log.content();
    this.logEnd = log.nextSeq;
    this.pos = 0;
    this.prefill = o.attempt > 1 && o.continuation === 'prefill' && held !== '' ? held : null;
    this.skipper = new PrefixSkipper(this.prefill !== null ? '' : held);
    // Re-tracing positions only works over the output of one attempt.
    this.aligned = o.attempt === 1 && log.nextSeq > 0 && !log.hasRetry();
    if (o.trace && o.trace.n > 0 && log.nextSeq === 0) {
      this.held = { deltas: [], hash: new TraceHash(), n: o.trace.n, h: o.trace.h };
      this.aligned = false;
    } else if (o.attempt > 1) {
      if (!o.exact) log.skipTo(this.logEnd + RESTART_GAP);
      this.retry(this.prefill !== null ? 'continue' : 'restart');
    } else if (log.nextSeq > 0 && !this.aligned) this.diverge();
  }

  /** One delta the client may see (server-side tool calls already filtered out). */
  add(forClient: Delta): void {
    const held = this.held;
    if (held) {
      held.deltas.push(forClient);
      held.hash.add(traceItem(deltaItem(forClient)));
      if (held.deltas.length === held.n) this.release(held.hash.value === held.h);
      return;
    }
    const visible = this.skipper.pass(forClient);
    if (this.aligned) {
      if (!visible) {
        this.pos++; // a repeat of the delta the log has at this position
        return;
      }
      if (!this.skipper.matchedAll || this.pos !== this.logEnd) this.diverge();
      else this.aligned = false; // past the log, on a delta boundary: its positions go on
    }
    if (visible) this.log.delta(visible);
  }

  /** The upstream's answer is complete. */
  finish(): void {
    if (this.held) this.release(false); // shorter than what clients hold
    if (this.aligned && this.pos < this.logEnd) this.diverge(); // shorter than the log
  }

  /** Ends the comparison with the trace: the held-back deltas go to the log, at the trace's positions when they match it. */
  private release(matches: boolean): void {
    const deltas = this.held!.deltas;
    this.held = null;
    if (!matches) {
      this.log.skipTo(this.o.trace!.n + RESTART_GAP);
      this.retry('restart');
    }
    for (const d of deltas) this.log.delta(d);
  }

  private diverge(): void {
    this.aligned = false;
    this.log.skipTo(this.logEnd + RESTART_GAP);
    this.retry('restart');
  }

  private retry(reason: 'continue' | 'restart'): void {
    this.log.event((seq) => ({ t: 'retry', step: this.log.step, seq, attempt: this.o.attempt, reason }));
  }
}
