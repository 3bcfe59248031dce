/**
 * queryRun: a workflow query with a deadline, tried again once with a longer one. A query
 * answers in milliseconds, or in a replay's time when the run has left the worker's cache; one
 * the worker dropped (the SDK core drops a query buffered behind a run it evicts) would
 * otherwise hold the request until the server gives up on it. A second miss is the caller's
 * error (DEADLINE_EXCEEDED, which the API answers as 503 temporal_unavailable).
 */
import type { Client, WorkflowHandle } from '@temporalio/client';

export const QUERY_DEADLINES_MS = [3000, 10_000] as const;

const missedDeadline = (e: unknown) => (e as { cause?: { code?: number } } | null)?.cause?.code === 4;

export async function queryRun<T, A extends unknown[] = []>(client: Client, handle: WorkflowHandle, name: string, ...args: A): Promise<T> {
  for (let i = 0; ; i++) {
    const ms = QUERY_DEADLINES_MS[i]!;
    try {
      return await client.connection.withDeadline(Date.now() + ms, () => handle.query<T, A>(name, ...args));
    } catch (e) {
      if (i + 1 >= QUERY_DEADLINES_MS.length || !missedDeadline(e)) throw e;
    }
  }
}
