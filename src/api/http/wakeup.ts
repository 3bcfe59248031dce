/**
 * Wakeup: a reader's doorbell. `fire()` from any source; `wait()` resolves on the next ring
 * (or at once if it rang since the last wait), on a timeout, or when the reader is stopped.
 * One pending wait at a time, and no listener outlives it.
 */
export class Wakeup {
  private rang = false;
  private resolve: (() => void) | null = null;

  readonly fire = (): void => {
    this.rang = true;
    this.resolve?.();
  };

  wait(timeoutMs: number | undefined, stop: AbortSignal): Promise<void> {
    if (this.rang || stop.aborted) {
      this.rang = false;
      return Promise.resolve();
    }
    return new Promise<void>((ok) => {
      const done = () => {
        if (timer) clearTimeout(timer);
        stop.removeEventListener('abort', done);
        this.resolve = null;
        this.rang = false;
        ok();
      };
      const timer = timeoutMs === undefined ? null : setTimeout(done, timeoutMs);
      stop.addEventListener('abort', done, { once: true });
      this.resolve = done;
    });
  }
}
