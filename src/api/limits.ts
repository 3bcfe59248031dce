/**
 * Per-key limits at the API's door, all checked before any run starts:
 * - requests per minute: a token bucket per key in this process;
 * - open streams: counted per key in this process (a stream lives on one process's connection);
 * - concurrent runs and sessions: leases from the key's ledger workflow (workflows/keyLedger),
 *   exact across replicas. After a refusal, the same answer is given for a second without asking
 *   again (only a session this process has not seen is asked about, one at a time), and at most
 *   `concurrentRuns` asks per key wait on the ledger at once, so a flood from one key costs
 *   Temporal almost nothing.
 */
import { WithStartWorkflowOperation, type Client } from '@temporalio/client';
import { ApplicationFailure, WorkflowIdConflictPolicy } from '@temporalio/common';
import type { Config } from '../config/load';
import { LEDGER_ACQUIRE_UPDATE, LEDGER_RELEASE_SIGNAL, LIMIT_EXCEEDED, type KeyLimits, type Lease, type LeaseKind, type LedgerInput, type LimitRefusal } from '../domain/limits';
import { ApiError } from './errors';
import { scoped } from './startRun';

/** How long a ledger's refusal is reused by this process without asking again. */
const REFUSAL_REUSE_MS = 1000;
/** Session leases this process got recently: their next turns are no new session. */
const KNOWN_SESSIONS = 10_000;

const LIMIT_NAMES: Record<LeaseKind, string> = { run: 'concurrentRuns', session: 'sessions' };

export const rateLimited = (message: string, retryAfterSeconds: number) =>
  new ApiError(429, message, 'rate_limit_error', 'rate_limit_exceeded', null, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))) });

/** One ledger per key and deployment (its task queue: the workers that run the ledger). */
export const ledgerIdOf = (keyName: string, taskQueue: string) => `limits-${scoped(keyName, `ledger\n${taskQueue}`)}`;

interface Bucket {
  tokens: number;
  at: number;
}

export class KeyLimiter {
  private readonly limits = new Map<string, KeyLimits>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly streams = new Map<string, number>();
  private readonly asking = new Map<string, number>();
  private readonly refused = new Map<string, { until: number; refusal: LimitRefusal }>();
  private readonly knownSessions = new Set<string>();

  constructor(
    private readonly config: Config,
    private readonly client: Client,
  ) {}

  /** The server's limits with the key's own over them (keys are few and fixed: this map stays small). */
  limitsOf(keyName: string): KeyLimits {
    let l = this.limits.get(keyName);
    if (!l) {
      const own = this.config.server.apiKeys.find((k) => k.name === keyName)?.limits ?? {};
      l = { ...this.config.server.limits, ...own };
      this.limits.set(keyName, l);
    }
    return l;
  }

  /** One request against the key's per-minute budget; 429 when it is spent. */
  take(keyName: string, now = Date.now()): void {
    const rpm = this.limitsOf(keyName).requestsPerMinute;
    if (rpm <= 0) return;
    const perMs = rpm / 60_000;
    const b = this.buckets.get(keyName) ?? { tokens: rpm, at: now };
    b.tokens = Math.min(rpm, b.tokens + (now - b.at) * perMs);
    b.at = now;
    this.buckets.set(keyName, b);
    if (b.tokens < 1) throw rateLimited(`rate limit: at most ${rpm} requests per minute for this API key (limits.requestsPerMinute)`, (1 - b.tokens) / perMs / 1000);
    b.tokens -= 1;
  }

  /** A stream slot for the key; the returned function gives it back (call it once, on close). */
  openStream(keyName: string): () => void {
    const cap = this.limitsOf(keyName).openStreams;
    const open = this.streams.get(keyName) ?? 0;
    if (cap > 0 && open >= cap) throw rateLimited(`rate limit: this API key already has ${open} open streams (limits.openStreams ${cap})`, 1);
    this.streams.set(keyName, open + 1);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      this.streams.set(keyName, (this.streams.get(keyName) ?? 1) - 1);
    };
  }

  /**
   * Leases for a run (and its session) from the key's ledger; the ledger's workflow id, or null
   * when the key has no run or session cap. 429 when a cap is reached.
   */
  async acquire(keyName: string, leases: Lease[], now = Date.now()): Promise<string | null> {
    const { concurrentRuns, sessions } = this.limitsOf(keyName);
    if (concurrentRuns <= 0 && sessions <= 0) return null;
    const waiting = this.asking.get(keyName) ?? 0;
    let maxWaiting = concurrentRuns > 0 ? concurrentRuns : sessions;
    for (const l of leases) {
      const r = this.refused.get(`${keyName}\n${l.kind}`);
      if (!r || now >= r.until || (l.kind === 'session' && this.knownSessions.has(l.id))) continue;
      // A session this process has not seen may be one another replica opened: asked, one at a time.
      if (l.kind === 'session' && waiting === 0) maxWaiting = 1;
      else throw this.refusalError(r.refusal, r.until - now);
    }
    if (waiting >= maxWaiting) throw rateLimited(`rate limit: ${waiting} requests of this API key are already waiting for a run slot (limits.concurrentRuns ${concurrentRuns})`, 1);
    this.asking.set(keyName, waiting + 1);
    const ledger = ledgerIdOf(keyName, this.config.temporal.taskQueue);
    try {
      await this.ask(ledger, keyName, leases, { concurrentRuns, sessions });
    } catch (e) {
      const refusal = refusalOf(e);
      if (!refusal) throw e;
      this.refused.set(`${keyName}\n${refusal.kind}`, { until: Date.now() + REFUSAL_REUSE_MS, refusal });
      throw this.refusalError(refusal, REFUSAL_REUSE_MS);
    } finally {
      this.asking.set(keyName, (this.asking.get(keyName) ?? 1) - 1);
    }
    for (const l of leases) {
      if (l.kind !== 'session') continue;
      this.knownSessions.add(l.id);
      if (this.knownSessions.size > KNOWN_SESSIONS) this.knownSessions.delete(this.knownSessions.values().next().value!);
    }
    return ledger;
  }

  /** Hands leases back (a run that never started, a closed run a retry joined); best effort, the ledger's sweep is the backstop. */
  release(keyName: string, ids: string[]): void {
    void this.client.workflow
      .getHandle(ledgerIdOf(keyName, this.config.temporal.taskQueue))
      .signal(LEDGER_RELEASE_SIGNAL, ids)
      .catch(() => undefined);
  }

  private async ask(ledger: string, keyName: string, leases: Lease[], limits: { concurrentRuns: number; sessions: number }): Promise<void> {
    const input: LedgerInput = { keyName };
    // A ledger that is completing or continuing-as-new refuses the update once; ask again.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.workflow.executeUpdateWithStart(LEDGER_ACQUIRE_UPDATE, {
          args: [{ leases, limits }],
          startWorkflowOperation: new WithStartWorkflowOperation('keyLedgerWorkflow', {
            workflowId: ledger,
            taskQueue: this.config.temporal.taskQueue,
            args: [input],
            workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
            staticSummary: `limits of API key ${keyName}`,
          }),
        });
        return;
      } catch (e) {
        if (refusalOf(e) || attempt >= 3) throw e;
        await new Promise((ok) => setTimeout(ok, 100 * attempt));
      }
    }
  }

  private refusalError(r: LimitRefusal, retryAfterMs: number): ApiError {
    return rateLimited(`rate limit: this API key holds ${r.held} ${r.kind === 'run' ? 'runs in progress' : 'open sessions'} (limits.${LIMIT_NAMES[r.kind]} ${r.limit})`, retryAfterMs / 1000);
  }
}

/** The ledger's refusal somewhere in an error's cause chain. */
function refusalOf(e: unknown): LimitRefusal | null {
  for (let c: unknown = e; c; c = (c as { cause?: unknown }).cause) {
    if (c instanceof ApplicationFailure && c.type === LIMIT_EXCEEDED) return (c.details?.[0] as LimitRefusal) ?? null;
  }
  return null;
}
