/**
 * queryRun: a workflow query with a deadline, tried again once with a longer one. A query
 * answers in milliseconds, or in a replay's time when the run has left the worker's cache; one
 * the worker dropped (the SDK core drops a query buffered behind a run it evicts) would
 * otherwise hold the request until the server gives up on it. A second miss is the caller's
 * error: a 503 temporal_unavailable.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { temporalUnavailable } from './errors';

export const QUERY_DEADLINES_MS = [3000, 10_000] as const;

/** DEADLINE_EXCEEDED, or CANCELLED from a NativeConnection (the worker's, which the system's client shares) once the deadline is past. */
const missedDeadline = (e: unknown, deadline: number) => {
  const code = (e as { cause?: { code?: number } } | null)?.cause?.code;
  return code === 4 || (code === 1 && Date.now() >= deadline);
};

export async function queryRun<T, A extends unknown[] = []>(client: Client, handle: WorkflowHandle, name: string, ...args: A): Promise<T> {
  for (let i = 0; ; i++) {
    const deadline = Date.now() + QUERY_DEADLINES_MS[i]!;
    try {
      return await client.connection.withDeadline(deadline, () => handle.query<T, A>(name, ...args));
    } catch (e) {
      if (!missedDeadline(e, deadline)) throw e;
      if (i + 1 >= QUERY_DEADLINES_MS.length) throw temporalUnavailable();
    }
  }
}
