/**
 * The two kinds of worker: the shared one (workflows + every activity, on the shared task
 * queue; in `mix2api start` it is in the API's process, so runs start eagerly there) and the
 * per-API-instance live one (only the streaming `callModel`, so its deltas reach this
 * instance's HTTP connections in-process).
 */
import { randomUUID } from 'node:crypto';
import { Worker, type InjectedSinks, type NativeConnection, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import type { Config } from '../config/load';
import type { LiveHub } from '../connectors/liveHub';
import type { RunSinks } from '../workflows/sinks';

export interface WorkerOptions {
  config: Config;
  native: NativeConnection;
  deps: ActivityDeps & { live: LiveHub };
  /** A prebuilt workflow bundle (tests); default: bundle `src/workflows` at start. */
  workflowBundle?: WorkflowBundleOption;
}

function workflowOptions(o: WorkerOptions) {
  const sinks: InjectedSinks<RunSinks> = {
    live: { event: { fn: (info, e) => o.deps.live.pushed(info.workflowId, e), callDuringReplay: false } },
  };
  return {
    ...(o.workflowBundle ? { workflowBundle: o.workflowBundle } : { workflowsPath: require.resolve('../workflows') }),
    sinks,
    // A run's next workflow task goes to the worker that ran the last one; if that worker died,
    // wait this long (default 10 s) before any worker may take it.
    stickyQueueScheduleToStartTimeout: '3 seconds' as const,
  };
}

export async function createSharedWorker(o: WorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: o.native,
    namespace: o.config.temporal.namespace,
    taskQueue: o.config.temporal.taskQueue,
    ...workflowOptions(o),
    activities: createActivities(o.deps),
    shutdownGraceTime: '5 seconds',
  });
}

export function liveTaskQueueName(config: Config): string {
  return `${config.temporal.taskQueue}-live-${randomUUID().slice(0, 8)}`;
}

export async function createLiveWorker(o: WorkerOptions, taskQueue: string): Promise<Worker> {
  const { callModel } = createActivities(o.deps);
  return Worker.create({
    connection: o.native,
    namespace: o.config.temporal.namespace,
    taskQueue,
    activities: { callModel },
    shutdownGraceTime: '5 seconds',
  });
}
