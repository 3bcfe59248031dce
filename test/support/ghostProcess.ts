/**
 * A stand-in for a mix2api process that is about to be lost: a worker on its own instance queue
 * with its identity, holding a lease (`processLeaseWorkflow`) the caller renews by hand, and a
 * `callModel` that takes steps and never reports. `vanish()` stops renewals and the worker, as a
 * death would. Used by the lease-lapse test and the history recorder.
 */
import { CompleteAsyncError, Context, type Info } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { instanceIdentity } from '../../src/activities/lease';
import { waitFor } from './waitFor';

export interface Ghost {
  queue: string;
  leaseId: string;
  /** Renews the lease every `ms`, naming what `held()` says. */
  renew(held: () => unknown[], ms: number): void;
  /** Renewals stop and the worker goes, leaving what it took. */
  vanish(): Promise<void>;
}

/** `peerUrl`: the peer address its identity names (default none); `lapseSeconds`: its lease's (default 2). */
export async function startGhost(o: { address: string; client: Client; sharedQueue: string; queue: string; onStep: (info: Info, input: { step: number }) => void; peerUrl?: string; lapseSeconds?: number }): Promise<Ghost> {
  const native = await NativeConnection.connect({ address: o.address });
  let token: Uint8Array | null = null;
  const worker = await Worker.create({
    connection: native,
    taskQueue: o.queue,
    identity: instanceIdentity(o.queue, o.peerUrl ?? null),
    activities: {
      async holdLease() {
        token = Context.current().info.taskToken;
        throw new CompleteAsyncError();
      },
      async callModel(input: { step: number }) {
        o.onStep(Context.current().info, input);
        throw new CompleteAsyncError();
      },
    },
  });
  const running = worker.run();
  const leaseId = `lease-${o.queue}-1`;
  await o.client.workflow.start('processLeaseWorkflow', { taskQueue: o.sharedQueue, workflowId: leaseId, args: [{ queue: o.queue, lapseSeconds: o.lapseSeconds ?? 2 }] });
  await waitFor(async () => token !== null, 10_000);
  let timer: NodeJS.Timeout | null = null;
  return {
    queue: o.queue,
    leaseId,
    renew(held, ms) {
      timer = setInterval(() => void o.client.activity.heartbeat(token!, { held: held() }).catch(() => undefined), ms);
    },
    async vanish() {
      if (timer) clearInterval(timer);
      worker.shutdown();
      await running;
      await native.close();
    },
  };
}
