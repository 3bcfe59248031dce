/**
 * Long-polls a run's history (`GetWorkflowExecutionHistory` with `waitNewEvent`) and calls
 * `onChange` whenever it grows: the durable log changes only in workflow tasks, and each
 * leaves events, so a reader learns of every change without polling the log. `closed` turns
 * true once the run's last event has been seen.
 */
import type { Client } from '@temporalio/client';

export interface HistoryWatch {
  closed: boolean;
}

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

export function watchHistory(client: Client, runId: string, stop: AbortSignal, onChange: () => void): HistoryWatch {
  const state: HistoryWatch = { closed: false };
  void (async () => {
    let token: Uint8Array | undefined;
    let failures = 0;
    while (!stop.aborted) {
      const call = new AbortController();
      const abort = () => call.abort();
      stop.addEventListener('abort', abort, { once: true });
      try {
        const r = await client.connection.withAbortSignal(call.signal, () =>
          client.workflowService.getWorkflowExecutionHistory({
            namespace: client.options.namespace,
            execution: { workflowId: runId },
            waitNewEvent: true,
            skipArchival: true,
            ...(token ? { nextPageToken: token } : {}),
          }),
        );
        failures = 0;
        if (r.history?.events?.length) onChange();
        if (!r.nextPageToken?.length) {
          state.closed = true;
          onChange();
          return;
        }
        token = r.nextPageToken;
      } catch {
        if (stop.aborted) return;
        // Temporal away for a moment, or the long poll's own deadline: go on after a pause.
        await sleep(Math.min(2000, 100 * 2 ** Math.min(++failures, 5)));
      } finally {
        stop.removeEventListener('abort', abort);
      }
    }
  })();
  return state;
}
