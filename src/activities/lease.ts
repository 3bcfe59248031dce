/**
 * Liveness per process. Each process holds one lease: the `holdLease` activity of its own
 * `processLeaseWorkflow`, on the process's instance queue, completed asynchronously. The process
 * renews it with one heartbeat a second (`liveness.renewSeconds`), whatever the number of its
 * open model steps and tool calls, and each renewal names them (`HeldEntry`, with the trace of
 * what each step has streamed). Those steps heartbeat nothing themselves.
 *
 * When renewals stop for `liveness.lapseSeconds` (a SIGKILL, a lost network, a hung event
 * loop), Temporal times the lease out, and the lease workflow runs `releaseHeld` on the shared
 * queue: every activity the last renewal named that is still the same attempt, started, is
 * failed as `ProcessLost` with its trace, and its workflow runs it again on a live process at
 * once (see workflows/chatCompletion `callModel`, workflows/toolStep). A process that finds its
 * lease gone while it lives stops its model steps (they have moved) and takes a new lease.
 *
 * Cancellation reaches a step without heartbeats: the cancelled run schedules `checkHeld` on the
 * instance queue of the process that holds the step, which heartbeats that step's activity
 * once, hears that it was cancelled, stops it and reports the cancellation.
 */
import { CompleteAsyncError, Context } from '@temporalio/activity';
import { ActivityCancelledError, ActivityNotFoundError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { optionalTsToMs } from '@temporalio/common/lib/time';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import { FailureType } from '../domain/run';
import { UNNAMED_STEP, type HeldEntry, type LeaseInput, type LostStep } from '../domain/lease';
import type { Logger } from '../telemetry/log';

/**
 * A renewal that names newly held work goes out this long after the last one at the earliest:
 * 50 ms, plus 1 ms per held item (so the bytes renewals carry stay near 80 KB a second).
 */
const earlyRenewMs = (held: number) => Math.min(1000, 50 + held);
/** How long a process keeps one lease activity before it rotates to a fresh one. */
const ROTATE_MS = 12 * 3600_000;
/** Describes and fails at once while releasing a lost process's work. */
const RELEASE_CONCURRENCY = 16;
/** Temporal's `PENDING_ACTIVITY_STATE_STARTED`. */
const STARTED = 2;

/** The activity an attempt runs as, as Temporal names it. */
export interface HeldActivity {
  workflowId: string;
  runId: string;
  activityId: string;
  attempt: number;
}

export function heldActivity(): HeldActivity {
  const { info } = Context.current();
  return { workflowId: info.workflowExecution?.workflowId ?? '', runId: info.workflowExecution?.runId ?? '', activityId: info.activityId, attempt: info.attempt };
}

/** The instance queue's worker identity: names the queue (and the peer address) so others can reach what this process holds. */
export function instanceIdentity(instanceQueue: string, peerUrl: string | null): string {
  return `mix2api ${instanceQueue}${peerUrl ? ` ${peerUrl}` : ''} ${process.pid}`;
}

/** The instance queue and peer address a worker identity names (see `instanceIdentity`). */
export function parseIdentity(identity: string | null | undefined): { queue: string; peerUrl: string | null } | null {
  const m = /^mix2api (\S+)(?: (https?:\/\/\S+))? \d+$/.exec(identity ?? '');
  return m ? { queue: m[1]!, peerUrl: m[2] ?? null } : null;
}

/** The tool calls this process runs now, for its lease. */
export class HeldCalls {
  private readonly calls = new Map<string, HeldActivity>();
  /** Called when a call is held (the lease tells Temporal soon). */
  onHold: () => void = () => undefined;

  /** Holds the current activity's call until the returned release is called. */
  hold(a: HeldActivity): () => void {
    const key = `${a.workflowId}/${a.runId}/${a.activityId}`;
    this.calls.set(key, a);
    this.onHold();
    return () => {
      if (this.calls.get(key) === a) this.calls.delete(key);
    };
  }

  entries(): HeldEntry[] {
    return [...this.calls.values()].map((a) => [a.workflowId, a.runId, a.activityId, a.attempt, -1, 0, '']);
  }
}

export interface LeaseOptions {
  client: Client;
  /** The shared task queue (the lease workflow runs there). */
  taskQueue: string;
  /** This process's own queue (its lease activity, its live model steps, `checkHeld`). */
  instanceQueue: string;
  renewMs: number;
  lapseSeconds: number;
  /** What this process holds now. */
  held: () => HeldEntry[];
  /** The lease lapsed while this process lived: what it held has been moved elsewhere. */
  onLost: () => void;
  logger: Logger;
}

export class ProcessLease {
  private token: Uint8Array | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private rotateTimer: NodeJS.Timeout | null = null;
  private generation = 0;
  private stopped = false;
  private lastRenewAt = 0;
  private lastCount = 0;
  private early: NodeJS.Timeout | null = null;
  private onReady: () => void = () => undefined;
  /** Resolves once the first lease is held. */
  readonly ready = new Promise<void>((ok) => (this.onReady = ok));

  constructor(private readonly o: LeaseOptions) {}

  /** Starts this process's lease workflow; its `holdLease` activity then comes to `adopt`. */
  async start(): Promise<void> {
    if (this.stopped) return;
    const input: LeaseInput = { queue: this.o.instanceQueue, lapseSeconds: this.o.lapseSeconds };
    await this.o.client.workflow.start('processLeaseWorkflow', {
      taskQueue: this.o.taskQueue,
      workflowId: `lease-${this.o.instanceQueue}-${++this.generation}`,
      args: [input],
      staticSummary: `liveness of ${this.o.instanceQueue}`,
    });
  }

  /** The lease activity's task token: from now on the process renews it. */
  adopt(token: Uint8Array): void {
    if (this.stopped) {
      void this.o.client.activity.complete(token, 'released').catch(() => undefined);
      return;
    }
    this.token = token;
    this.clearTimers();
    this.renewTimer = setInterval(() => void this.renew(), this.o.renewMs);
    this.rotateTimer = setTimeout(() => void this.rotate(), ROTATE_MS);
    this.rotateTimer.unref();
    void this.renew();
    this.onReady();
  }

  /**
   * New work is held: renew now (or as soon as `earlyRenewMs` allows) rather than at the next
   * second, so a process killed just after it took a step or a call still names it.
   */
  soon(): void {
    if (!this.token || this.early) return;
    const wait = Math.max(0, this.lastRenewAt + earlyRenewMs(this.lastCount) - Date.now());
    this.early = setTimeout(() => {
      this.early = null;
      void this.renew();
    }, wait);
  }

  /** Whether the lease is held (renewals are being made). */
  get holding(): boolean {
    return this.token !== null;
  }

  /**
   * One renewal. Renewals do not wait for each other: one slow answer from Temporal must not
   * delay the next beyond its second.
   */
  private async renew(): Promise<void> {
    const token = this.token;
    if (!token) return;
    this.lastRenewAt = Date.now();
    const held = this.o.held();
    this.lastCount = held.length;
    try {
      await this.o.client.activity.heartbeat(token, { held });
    } catch (e) {
      if (this.token !== token) return;
      if (e instanceof ActivityNotFoundError || e instanceof ActivityCancelledError) {
        this.o.logger.warn({ event: 'lease_lost', queue: this.o.instanceQueue }, 'this process lost its lease (renewals did not reach Temporal in time); what it held has moved elsewhere');
        this.token = null;
        this.clearTimers();
        this.o.onLost();
        await this.retryStart();
      }
      // Temporal unreachable for a moment: the next renewal tries again.
    }
  }

  private async retryStart(): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      try {
        return await this.start();
      } catch {
        await new Promise((ok) => setTimeout(ok, Math.min(5000, 200 * 2 ** i)));
      }
    }
  }

  /** Hands the lease activity back and takes a fresh one (an activity cannot run forever). */
  private async rotate(): Promise<void> {
    const token = this.token;
    if (!token) return;
    this.token = null;
    this.clearTimers();
    await this.o.client.activity.complete(token, 'rotate').catch(() => undefined);
  }

  /** Gives the lease up (after this process has handed back what it held). */
  async stop(): Promise<void> {
    this.stopped = true;
    const token = this.token;
    this.token = null;
    this.clearTimers();
    if (token) await this.o.client.activity.complete(token, 'released').catch(() => undefined);
  }

  private clearTimers(): void {
    if (this.renewTimer) clearInterval(this.renewTimer);
    if (this.rotateTimer) clearTimeout(this.rotateTimer);
    if (this.early) clearTimeout(this.early);
    this.renewTimer = this.rotateTimer = this.early = null;
  }
}

/** Runs `each` over `items`, `RELEASE_CONCURRENCY` at a time. */
async function inParallel<T>(items: readonly T[], each: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  const workers = Array.from({ length: Math.min(RELEASE_CONCURRENCY, queue.length) }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await each(item);
  });
  await Promise.all(workers);
}

interface ActivityRef {
  workflowId: string;
  runId: string;
  activityId: string;
}

async function pendingOf(client: Client, workflowId: string, runId: string) {
  try {
    return (await client.workflow.getHandle(workflowId, runId).describe()).raw.pendingActivities ?? [];
  } catch {
    return []; // the run is gone
  }
}

/** Fails activities of a lost process as `ProcessLost`, counting those it reached. */
function failer(client: Client, queue: string) {
  let n = 0;
  return {
    async one(ref: ActivityRef, lost: LostStep): Promise<void> {
      const failure = ApplicationFailure.create({ type: FailureType.ProcessLost, message: `the process running this (${queue}) stopped renewing its lease`, nonRetryable: true, details: [lost] });
      try {
        await client.activity.fail(ref, failure);
        n++;
      } catch (e) {
        if (!(e instanceof ActivityNotFoundError)) throw e;
      }
    },
    count: () => n,
  };
}

/**
 * The model steps a lost process took that no renewal named: running runs whose started
 * `callModel` attempt was last taken by a worker of `queue` (its identity says so) and that
 * `wanted` admits (by when it started). They fail as `ProcessLost` with no trace (`UNNAMED_STEP`),
 * so their runs move them at once instead of waiting for the step's start-to-close timeout.
 */
async function sweep(client: Client, queue: string, fail: ReturnType<typeof failer>, wanted: (ref: ActivityRef, startedAtMs: number) => boolean): Promise<void> {
  const runs: Array<{ workflowId: string; runId: string }> = [];
  for await (const w of client.workflow.list({ query: `WorkflowType = 'chatCompletionWorkflow' AND ExecutionStatus = 'Running'` })) runs.push({ workflowId: w.workflowId, runId: w.runId });
  await inParallel(runs, async ({ workflowId, runId }) => {
    for (const a of await pendingOf(client, workflowId, runId)) {
      if (a.activityType?.name !== 'callModel' || a.state !== STARTED || parseIdentity(a.lastWorkerIdentity)?.queue !== queue) continue;
      const ref = { workflowId, runId, activityId: a.activityId ?? '' };
      if (wanted(ref, optionalTsToMs(a.lastStartedTime) ?? 0)) await fail.one(ref, { step: UNNAMED_STEP, queue });
    }
  });
}

export interface LeaseDeps {
  lease: ProcessLease;
  client: Client;
  /** Heartbeats a held model step of this run once, to hear whether it was cancelled. */
  checkSteps: (workflowId: string) => Promise<number>;
}

/** The lease activities: `holdLease` and `checkHeld` run on the instance queue, `releaseHeld` on the shared one. */
export function createLeaseActivities(deps: LeaseDeps) {
  return {
    async holdLease(): Promise<'released' | 'rotate'> {
      deps.lease.adopt(Context.current().info.taskToken);
      throw new CompleteAsyncError();
    },

    async checkHeld(workflowId: string): Promise<number> {
      return deps.checkSteps(workflowId);
    },

    /** The instance queue of the process running the run's pending activity of this type (a local activity). */
    async findHolder(workflowId: string, activityType: string): Promise<string | null> {
      const d = await deps.client.workflow.getHandle(workflowId).describe();
      const pending = d.raw.pendingActivities?.find((a) => a.activityType?.name === activityType);
      return parseIdentity(pending?.lastWorkerIdentity)?.queue ?? null;
    },

    /**
     * Fails what a lapsed lease held, each only if it is still the attempt the lease named; then
     * sweeps (`sweep`) for the model steps taken before the lapse that no renewal named.
     */
    async releaseHeld(input: { queue: string; held: HeldEntry[] }): Promise<number> {
      // Scheduled when the lease workflow saw the lapse.
      const lapsedAt = Context.current().info.scheduledTimestampMs;
      const fail = failer(deps.client, input.queue);
      await inParallel(input.held, async ([workflowId, runId, activityId, attempt, step, n, h]) => {
        const pending = (await pendingOf(deps.client, workflowId, runId)).find((a) => a.activityId === activityId);
        if (!pending || pending.attempt !== attempt || pending.state !== STARTED) return;
        await fail.one({ workflowId, runId, activityId }, { step, n, h, queue: input.queue });
      });
      const named = new Set(input.held.map(([w, r, a]) => `${w}/${r}/${a}`));
      await sweep(deps.client, input.queue, fail, (ref, startedAt) => !named.has(`${ref.workflowId}/${ref.runId}/${ref.activityId}`) && startedAt <= lapsedAt);
      return fail.count();
    },

    /**
     * A later sweep for a lost process that has not come back (no newer lease for its queue):
     * a frozen process's outstanding polls can still be handed steps for up to a minute after
     * it froze. Returns -1 once the process holds a new lease (it hands back what it cannot name).
     */
    async sweepLost(input: { queue: string; leaseId: string }): Promise<number> {
      const m = /^(.*)-(\d+)$/.exec(input.leaseId);
      if (m) {
        try {
          await deps.client.workflow.getHandle(`${m[1]}-${Number(m[2]) + 1}`).describe();
          return -1;
        } catch (e) {
          if (!(e instanceof WorkflowNotFoundError)) throw e;
        }
      }
      const fail = failer(deps.client, input.queue);
      await sweep(deps.client, input.queue, fail, () => true);
      return fail.count();
    },
  };
}

/** How many lease generations of one queue a report looks through (a process takes a new one each time it lost its lease). */
const REPORT_GENERATIONS = 8;
/** Reports in flight, by queue: many readers of one dead process make one report. */
const reports = new Map<string, Promise<boolean>>();

/**
 * A reader found a process's peer address refusing connections: a process that has exited (a
 * SIGKILL, a crash) closes its listening socket at once, long before its lease lapses. Ends that
 * process's lease now, as a lapse would (its lease workflow releases what the last renewal named),
 * but only once no renewal has come for `renewMs` plus a margin, so a process that merely
 * closed its port while it lives keeps its work; a hung or partitioned one (no refusal) still
 * waits for the lapse. Resolves with whether the lease was ended here.
 */
export function reportGone(client: Client, queue: string, renewMs: number): Promise<boolean> {
  let r = reports.get(queue);
  if (!r) {
    r = endLeaseOf(client, queue, renewMs).catch(() => false).finally(() => setTimeout(() => reports.delete(queue), 10_000).unref());
    reports.set(queue, r);
  }
  return r;
}

async function endLeaseOf(client: Client, queue: string, renewMs: number): Promise<boolean> {
  const quiet = renewMs + Math.max(200, renewMs / 4);
  for (let g = 1; g <= REPORT_GENERATIONS; g++) {
    const handle = client.workflow.getHandle(`lease-${queue}-${g}`);
    let d;
    try {
      d = await handle.describe();
    } catch (e) {
      if (e instanceof WorkflowNotFoundError) return false;
      throw e;
    }
    if (d.status.name !== 'RUNNING') continue;
    let lease = d.raw.pendingActivities?.find((a) => a.activityType?.name === 'holdLease' && a.state === STARTED);
    if (!lease) return false;
    // The last renewal, or the lease's start when none has come yet.
    const lastBeat = (a: typeof lease) => optionalTsToMs(a?.lastHeartbeatTime) ?? optionalTsToMs(a?.lastStartedTime) ?? 0;
    const beat = lastBeat(lease);
    const age = Date.now() - beat;
    if (age < quiet) {
      await new Promise((ok) => setTimeout(ok, quiet - age));
      lease = (await handle.describe()).raw.pendingActivities?.find((a) => a.activityId === lease!.activityId && a.state === STARTED);
      if (!lease || lastBeat(lease) !== beat) return false; // it renewed: alive
    }
    const payloads = lease.heartbeatDetails?.payloads ?? [];
    const last = payloads.length > 0 ? await decodeFromPayloadsAtIndex<{ held?: HeldEntry[] }>(client.options.loadedDataConverter, 0, payloads) : undefined;
    const held = Array.isArray(last?.held) ? last.held : [];
    const failure = ApplicationFailure.create({ type: FailureType.ProcessLost, message: `${queue} refuses connections and stopped renewing its lease`, nonRetryable: true, details: [{ held }] });
    try {
      await client.activity.fail({ workflowId: d.workflowId, runId: d.runId, activityId: lease.activityId ?? '' }, failure);
      return true;
    } catch (e) {
      if (e instanceof ActivityNotFoundError) return false; // lapsed or released meanwhile
      throw e;
    }
  }
  return false;
}
