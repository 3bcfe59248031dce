/**
 * `keyLedgerWorkflow`: one per API key and deployment, the place that knows how many runs and
 * sessions the key holds across every API replica. Replicas admit requests against their last
 * reading of it (a query) plus what they admitted since, so admission costs no round trip; they
 * report the leases they took and the runs they saw end, batched, by signal. A sweep drops leases
 * whose workflow closed without being reported (a client that left before its run ended, a
 * terminated run, a replica that crashed). The ledger continues-as-new when Temporal suggests it
 * and completes once it has held nothing for a while.
 */
import * as wf from '@temporalio/workflow';
import type { createLimitActivities } from '../activities/limits';
import { LEDGER_CHANGE_SIGNAL, LEDGER_QUERY, type LeaseKind, type LedgerChange, type LedgerInput, type LedgerView } from '../domain/limits';

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
  const leases = new Map<string, { kind: LeaseKind; holder: string }>(Object.entries(input.leases ?? {}));
  let caps: NonNullable<LedgerChange['limits']> = { concurrentRuns: 0, sessions: 0 };
  const count = (kind: LeaseKind) => [...leases.values()].filter((l) => l.kind === kind).length;
  const atCap = () => (caps.concurrentRuns > 0 && count('run') >= caps.concurrentRuns) || (caps.sessions > 0 && count('session') >= caps.sessions);

  wf.setHandler(wf.defineQuery<LedgerView, [string]>(LEDGER_QUERY), (holder) => {
    const mine = [...leases].filter(([, l]) => l.holder === holder);
    return {
      runs: count('run'),
      sessions: count('session'),
      mine: mine.map(([id]) => id),
      mineRuns: mine.filter(([, l]) => l.kind === 'run').length,
      mineSessions: mine.filter(([, l]) => l.kind === 'session').length,
      sessionIds: [...leases].filter(([, l]) => l.kind === 'session').map(([id]) => id),
    };
  });
  wf.setHandler(wf.defineSignal<[LedgerChange]>(LEDGER_CHANGE_SIGNAL), (c) => {
    for (const l of c.acquire) if (!leases.has(l.id)) leases.set(l.id, { kind: l.kind, holder: c.holder });
    for (const id of c.release) leases.delete(id);
    if (c.limits) caps = c.limits;
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

/** A session's change to its own lease in its key's ledger; never fails the session. */
async function sessionLease(ledger: string | undefined, change: Omit<LedgerChange, 'holder'>): Promise<void> {
  if (!ledger) return;
  await wf.CancellationScope.nonCancellable(() => wf.getExternalWorkflowHandle(ledger).signal(LEDGER_CHANGE_SIGNAL, { holder: 'workflow', ...change })).catch(() => undefined);
}

/**
 * A session that starts registers its own lease (the admitting API process does too; the ledger
 * keeps one): so a session started again by a turn that was admitted for its predecessor, which
 * idled out meanwhile, is counted all the same.
 */
export const holdLease = (ledger: string | undefined, id: string) => sessionLease(ledger, { acquire: [{ id, kind: 'session' }], release: [] });

/** A session hands its own lease back when it completes. */
export const releaseLease = (ledger: string | undefined, id: string) => sessionLease(ledger, { acquire: [], release: [id] });
