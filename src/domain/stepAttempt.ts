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
 */
import type { Delta } from './chat';
import { PrefixSkipper } from './prefixSkipper';
import type { StepLog } from './stepLog';

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
}

export class StepAttempt {
  /** The content to continue from (sent as an assistant prefill), or null for a restart. */
  readonly prefill: string | null;
  private aligned: boolean;
  /** While aligned: the position of the log the new output is re-tracing. */
  private pos: number;
  private readonly logEnd: number;
  private readonly skipper: PrefixSkipper;

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
    if (o.attempt > 1) {
      if (!o.exact) log.skipTo(this.logEnd + RESTART_GAP);
      this.retry(this.prefill !== null ? 'continue' : 'restart');
    } else if (log.nextSeq > 0 && !this.aligned) this.diverge();
  }

  /** One delta the client may see (server-side tool calls already filtered out). */
  add(forClient: Delta): void {
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
    if (this.aligned && this.pos < this.logEnd) this.diverge(); // shorter than the log
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
