/**
 * `processLeaseWorkflow`: one process's lease (see activities/lease). It holds the `holdLease`
 * activity on the process's instance queue; the process renews it once a second. When renewals
 * stop, the activity's heartbeat timeout ends it (or, sooner, a reader that found the process's
 * port refusing connections: activities/lease `reportGone`), and what the last renewal named is
 * released to live processes. A lease handed back (shutdown) ends quietly; a rotated one continues as new.
 */
import * as wf from '@temporalio/workflow';
import { ActivityFailure, ApplicationFailure, TimeoutFailure } from '@temporalio/common';
import type { createLeaseActivities } from '../activities/lease';
import type { HeldEntry, LeaseInput, LostStep } from '../domain/lease';
import { FailureType } from '../domain/run';

/** Patch: a lapsed lease that named nothing is swept too (see activities/lease `releaseHeld`). */
export const LEASE_SWEEP = 'lease-sweep';

/** Sweeps after the release, this far apart: they cover the minute a frozen process's polls stay open. */
const LATER_SWEEPS = 7;
const LATER_SWEEP_SECONDS = 10;

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
    // A lapse (the heartbeat timeout, with the last renewal's details), or a reader that found the
    // process gone and ended the lease early with the same details (activities/lease `reportGone`).
    const cause = e instanceof ActivityFailure ? e.cause : undefined;
    const details = cause instanceof TimeoutFailure ? cause.lastHeartbeatDetails : cause instanceof ApplicationFailure && cause.type === FailureType.ProcessLost ? cause.details?.[0] : undefined;
    const named = (details as { held?: HeldEntry[] } | undefined)?.held;
    held = Array.isArray(named) ? named : [];
  }
  const release = wf.proxyActivities<LeaseActivities>({
    summary: `release what ${input.queue} held (${held.length} named)`,
    startToCloseTimeout: '2 minutes',
    retry: { maximumAttempts: 10, initialInterval: '200 milliseconds', maximumInterval: '5 seconds' },
  });
  if (!wf.patched(LEASE_SWEEP)) {
    if (held.length > 0) await release.releaseHeld({ queue: input.queue, held });
    return;
  }
  await release.releaseHeld({ queue: input.queue, held });
  // A frozen process's polls may still be handed steps until they expire (a minute at most):
  // sweep again until then, unless the process has come back and taken a new lease.
  for (let i = 0; i < LATER_SWEEPS; i++) {
    await wf.sleep(`${LATER_SWEEP_SECONDS} seconds`);
    if ((await wf.proxyActivities<LeaseActivities>({ summary: `sweep for ${input.queue}`, startToCloseTimeout: '1 minute', retry: { maximumAttempts: 3 } }).sweepLost({ queue: input.queue, leaseId: wf.workflowInfo().workflowId })) < 0) return;
  }
}
