/**
 * A bulkhead for one upstream in one process: at most `max` calls in flight; a call over that
 * waits, in arrival order, up to `maxWaitMs` for a slot, then fails with `UpstreamBusyError`
 * (before anything was sent, so the step can be retried elsewhere or answered with a status).
 */
export class UpstreamBusyError extends Error {
  constructor(
    readonly upstream: string,
    readonly max: number,
    waitedMs: number,
  ) {
    super(`upstream ${upstream} is busy: ${max} calls in flight (upstreams[].maxConcurrent), none finished within ${Math.round(waitedMs / 1000)}s`);
    this.name = 'UpstreamBusyError';
  }
}

interface Waiter {
  grant: () => void;
}

export class Bulkhead {
  private active = 0;
  private readonly queue: Waiter[] = [];

  /** `max` 0: no bulkhead. */
  constructor(
    private readonly upstream: string,
    private readonly max: number,
    private readonly maxWaitMs: number,
  ) {}

  get inFlight(): number {
    return this.active;
  }

  /** A slot; the returned function gives it back (once). Rejects with UpstreamBusyError after the wait, or with the signal's reason. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.max <= 0) return () => undefined;
    if (this.active < this.max && this.queue.length === 0) {
      this.active++;
      return this.releaser();
    }
    const t0 = Date.now();
    await new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const leave = (e: unknown) => {
        const i = this.queue.indexOf(w);
        if (i >= 0) this.queue.splice(i, 1);
        signal?.removeEventListener('abort', onAbort);
        reject(e);
      };
      const timer = setTimeout(() => leave(new UpstreamBusyError(this.upstream, this.max, Date.now() - t0)), this.maxWaitMs);
      const onAbort = () => {
        clearTimeout(timer);
        leave(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(w);
    });
    // The slot was handed over by the releasing call (`active` unchanged).
    return this.releaser();
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.queue.shift();
      if (next) next.grant();
      else this.active--;
    };
  }
}
