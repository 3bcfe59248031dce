/**
 * A circuit breaker for one upstream, in one process. After `failures` consecutive retryable
 * failures it opens: calls skip the upstream (to a fallback, or fail at once as
 * `upstream_unavailable`) for `cooldownSeconds`. Then it lets one call through as a probe:
 * success closes it, failure opens it for another cool-down. An answer that is the caller's
 * fault (a 4xx) shows the upstream is up and counts as a success.
 */

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerSnapshot {
  state: BreakerState;
  consecutiveFailures: number;
  /** When an open breaker lets its next probe through (ISO time). */
  retryAt?: string;
}

export class Breaker {
  private state: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  private probing = false;

  constructor(
    readonly name: string,
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly log: (msg: string, fields: Record<string, unknown>) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether a call may go now. Taking the half-open probe is a claim: the caller must report
   * its outcome (`success`/`failure`/`abandon`).
   */
  allow(): boolean {
    if (this.threshold === 0 || this.state === 'closed') return true;
    if (this.state === 'open') {
      if (this.now() - this.openedAt < this.cooldownMs) return false;
      this.move('half_open');
    }
    if (this.probing) return false;
    this.probing = true;
    return true;
  }

  /** Milliseconds until an open breaker lets a probe through (0 when it would now). */
  waitMs(): number {
    return this.state === 'open' ? Math.max(0, this.cooldownMs - (this.now() - this.openedAt)) : 0;
  }

  success(): void {
    this.failures = 0;
    this.probing = false;
    if (this.state !== 'closed') this.move('closed');
  }

  failure(): void {
    this.failures++;
    this.probing = false;
    if (this.threshold === 0) return;
    if (this.state === 'half_open' || (this.state === 'closed' && this.failures >= this.threshold)) {
      this.openedAt = this.now();
      this.move('open');
    }
  }

  /** The call ended without saying anything about the upstream (cancelled, or our own bulkhead). */
  abandon(): void {
    this.probing = false;
  }

  snapshot(): BreakerSnapshot {
    // An open breaker past its cool-down reads as half open: the next call probes.
    const state = this.state === 'open' && this.waitMs() === 0 ? 'half_open' : this.state;
    return {
      state,
      consecutiveFailures: this.failures,
      ...(state === 'open' ? { retryAt: new Date(this.openedAt + this.cooldownMs).toISOString() } : {}),
    };
  }

  private move(to: BreakerState): void {
    const from = this.state;
    this.state = to;
    this.log(`upstream ${this.name}: circuit breaker ${from} -> ${to}`, { upstream: this.name, from, to, consecutiveFailures: this.failures });
  }
}
