/**
 * The key ledger's one activity: which of its leased workflows are still running. A lease whose
 * workflow is gone or closed is stale (it closed without releasing, e.g. it was terminated).
 */
import { Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';

/** Describes in flight at once. */
const CONCURRENCY = 8;

export function createLimitActivities() {
  return {
    async liveLeases(ids: string[]): Promise<string[]> {
      const client = Context.current().client;
      const alive: string[] = [];
      const queue = [...ids];
      const worker = async () => {
        for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
          try {
            const d = await client.workflow.getHandle(id).describe();
            if (d.status.name === 'RUNNING') alive.push(id);
          } catch (e) {
            // Only "no such workflow" proves a lease stale; any other failure keeps it.
            if (!(e instanceof WorkflowNotFoundError)) alive.push(id);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(CONCURRENCY, ids.length) }, worker));
      return alive;
    },
  };
}
