/**
 * `keyLedgerWorkflow`: one per API key (`limits-<scoped key>`), the single place that knows how
 * many runs and sessions the key holds across every API replica. Replicas ask for a lease by
 * Update-with-Start before they start a run or a session; the update's validator refuses it
 * over the cap, so a refusal leaves no history. Runs and sessions hand their lease back by
 * signal when they close; a sweep drops leases whose workflow closed without saying so (a
 * terminated run, a start that failed after its lease). The ledger continues-as-new when
 * Temporal suggests it and completes once it has held nothing for a while.
 */
import * as wf from '@temporalio/workflow';
import { ApplicationFailure, HandlerUnfinishedPolicy } from '@temporalio/common';
import type { createLimitActivities } from '../activities/limits';
import {
  LEDGER_ACQUIRE_UPDATE,
  LEDGER_QUERY,
  LEDGER_RELEASE_SIGNAL,
  LIMIT_EXCEEDED,
  refusal,
  type AcquireRequest,
  type LeaseKind,
  type LedgerInput,
  type LedgerState,
} from '../domain/limits';

/** A ledger holding nothing completes after this long. */
const IDLE_MS = 10 * 60_000;
/** Leases are checked against their workflows this often… */
const SWEEP_MS = 5 * 60_000;
/** …and this often while a kind is at its cap (where a stale lease refuses real work). */
const SWEEP_AT_CAP_MS = 15_000;

const { liveLeases } = wf.proxyLocalActivities<ReturnType<typeof createLimitActivities>>({
  summary: 'limits: which leased workflows still run',
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 3, initialInterval: '1 second' },
});

export async function keyLedgerWorkflow(input: LedgerInput): Promise<void> {
  const leases = new Map<string, LeaseKind>(Object.entries(input.leases ?? {}));
  let caps: AcquireRequest['limits'] = { concurrentRuns: 0, sessions: 0 };
  const count = (kind: LeaseKind) => [...leases.values()].filter((k) => k === kind).length;
  const state = (): LedgerState => ({ runs: count('run'), sessions: count('session') });
  const atCap = () => (caps.concurrentRuns > 0 && count('run') >= caps.concurrentRuns) || (caps.sessions > 0 && count('session') >= caps.sessions);

  wf.setHandler(wf.defineQuery<LedgerState>(LEDGER_QUERY), state);
  wf.setHandler(
    wf.defineUpdate<LedgerState, [AcquireRequest]>(LEDGER_ACQUIRE_UPDATE),
    (req) => {
      for (const l of req.leases) leases.set(l.id, l.kind);
      caps = req.limits;
      return state();
    },
    {
      validator: (req) => {
        const r = refusal(leases, req);
        if (r) throw ApplicationFailure.create({ type: LIMIT_EXCEEDED, nonRetryable: true, message: `${r.held} ${r.kind}s held, limit ${r.limit}`, details: [r] });
      },
      unfinishedPolicy: HandlerUnfinishedPolicy.ABANDON,
    },
  );
  wf.setHandler(wf.defineSignal<[string[]]>(LEDGER_RELEASE_SIGNAL), (ids) => {
    for (const id of ids) leases.delete(id);
  });

  // The sweeper: while leases are held, every SWEEP_AT_CAP_MS it checks them if a kind is at its
  // cap, and every SWEEP_MS in any case. A ledger that holds nothing sets no timers.
  void (async () => {
    for (let tick = 1; ; tick++) {
      await wf.condition(() => leases.size > 0);
      await wf.sleep(SWEEP_AT_CAP_MS);
      if (!atCap() && tick % (SWEEP_MS / SWEEP_AT_CAP_MS) !== 0) continue;
      const alive = new Set(await liveLeases([...leases.keys()]));
      for (const id of [...leases.keys()]) if (!alive.has(id)) leases.delete(id);
    }
  })();

  const suggested = () => wf.workflowInfo().continueAsNewSuggested;
  for (;;) {
    await wf.condition(() => suggested() || leases.size === 0);
    if (suggested()) {
      await wf.condition(wf.allHandlersFinished);
      await wf.continueAsNew<typeof keyLedgerWorkflow>({ keyName: input.keyName, leases: Object.fromEntries(leases) });
    }
    // Empty: wait for the next lease, or complete after an idle spell.
    const used = await wf.condition(() => leases.size > 0 || suggested(), IDLE_MS);
    if (!used) {
      await wf.condition(wf.allHandlersFinished);
      if (leases.size === 0) return;
    }
  }
}

/** Hands a run's or a session's lease back to its key's ledger, also when cancelled; never fails the caller. */
export async function releaseLease(ledger: string | undefined, id: string): Promise<void> {
  if (!ledger) return;
  // Awaited: a signal still in flight when its sender closes is dropped by Temporal.
  await wf.CancellationScope.nonCancellable(() => wf.getExternalWorkflowHandle(ledger).signal(LEDGER_RELEASE_SIGNAL, [id])).catch(() => undefined);
}
