/**
 * Per-key limits: what a key may hold at once across every API replica (runs, sessions; held as
 * leases by the key's ledger workflow) and what one replica lets it do (requests per minute, open
 * streams). Pure types and the ledger's admission rule; no I/O.
 */

/** The effective limits of one key (0 = unlimited). */
export interface KeyLimits {
  requestsPerMinute: number;
  concurrentRuns: number;
  sessions: number;
  openStreams: number;
}

/** What the ledger counts: a run in progress, or a session actor that is alive. */
export type LeaseKind = 'run' | 'session';

export interface Lease {
  /** The workflow id holding it (a run's or a session's). */
  id: string;
  kind: LeaseKind;
}

export interface AcquireRequest {
  leases: Lease[];
  /** The caps, from the caller's config (0 = none). */
  limits: Pick<KeyLimits, 'concurrentRuns' | 'sessions'>;
}

export interface LedgerInput {
  keyName: string;
  /** Leases held, across continue-as-new: workflow id → kind. */
  leases?: Record<string, LeaseKind>;
}

export interface LedgerState {
  runs: number;
  sessions: number;
}

export const LEDGER_ACQUIRE_UPDATE = 'mix2api.acquire';
export const LEDGER_RELEASE_SIGNAL = 'mix2api.release';
export const LEDGER_QUERY = 'mix2api.leases';
/** The ApplicationFailure type of a refused acquire; its details[0] is a `LimitRefusal`. */
export const LIMIT_EXCEEDED = 'LimitExceeded';

export interface LimitRefusal {
  kind: LeaseKind;
  limit: number;
  held: number;
}

const CAP_OF: Record<LeaseKind, keyof AcquireRequest['limits']> = { run: 'concurrentRuns', session: 'sessions' };

/**
 * Whether the ledger can take these leases: a lease already held is free (a retried request,
 * a session's next turn), new ones count against their kind's cap. Null: admitted.
 */
export function refusal(held: ReadonlyMap<string, LeaseKind>, req: AcquireRequest): LimitRefusal | null {
  for (const kind of ['run', 'session'] as const) {
    const limit = req.limits[CAP_OF[kind]];
    if (limit <= 0) continue;
    const fresh = req.leases.filter((l) => l.kind === kind && !held.has(l.id)).length;
    if (fresh === 0) continue;
    let count = 0;
    for (const k of held.values()) if (k === kind) count++;
    if (count + fresh > limit) return { kind, limit, held: count };
  }
  return null;
}
