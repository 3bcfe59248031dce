/**
 * `processLeaseWorkflow`: one process's lease (see activities/lease). It holds the `holdLease`
 * activity on the process's instance queue; the process renews it once a second. When renewals
 * stop, the activity's heartbeat timeout ends it, and what the last renewal named is released
 * to live processes. A lease handed back (shutdown) ends quietly; a rotated one continues as new.
 */
import * as wf from '@temporalio/workflow';
import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/common';
import type { createLeaseActivities } from '../activities/lease';
import type { HeldEntry, LeaseInput, LostStep } from '../domain/lease';
import { FailureType } from '../domain/run';

/** How often one call or step may move after its process was lost before its failure stands. */
export const MAX_MOVES = 3;

/** What the lost attempt left, when this failure says its process was lost (see activities/lease). */
export function lostIn(e: unknown): LostStep | null {
  if (!(e instanceof ActivityFailure) || !(e.cause instanceof ApplicationFailure) || e.cause.type !== FailureType.ProcessLost) return null;
  const d = e.cause.details?.[0] as Partial<LostStep> | undefined;
  return { step: typeof d?.step === 'number' ? d.step : -1, ...(typeof d?.queue === 'string' ? { queue: d.queue } : {}), ...(typeof d?.n === 'number' ? { n: d.n, h: typeof d.h === 'string' ? d.h : '' } : {}), ...(Array.isArray(d?.events) ? { events: d.events } : {}) };
}

type LeaseActivities = ReturnType<typeof createLeaseActivities>;

export async function processLeaseWorkflow(input: LeaseInput): Promise<void> {
  const { holdLease } = wf.proxyActivities<LeaseActivities>({
    taskQueue: input.queue,
    summary: `lease of ${input.queue}`,
    heartbeatTimeout: `${input.lapseSeconds} seconds`,
    // Only the process itself polls its queue: if it is gone before it takes its lease, nothing was held.
    scheduleToStartTimeout: '1 minute',
    startToCloseTimeout: '13 hours',
    retry: { maximumAttempts: 1 },
  });
  let held: HeldEntry[];
  try {
    if ((await holdLease()) === 'rotate') await wf.continueAsNew<typeof processLeaseWorkflow>(input);
    return;
  } catch (e) {
    const details = e instanceof ActivityFailure && e.cause instanceof TimeoutFailure ? (e.cause.lastHeartbeatDetails as { held?: HeldEntry[] } | undefined) : undefined;
    held = Array.isArray(details?.held) ? details.held : [];
  }
  if (held.length === 0) return;
  await wf
    .proxyActivities<LeaseActivities>({
      summary: `release ${held.length} held by ${input.queue}`,
      startToCloseTimeout: '2 minutes',
      retry: { maximumAttempts: 10, initialInterval: '200 milliseconds', maximumInterval: '5 seconds' },
    })
    .releaseHeld({ queue: input.queue, held });
}
