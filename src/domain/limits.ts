/**
 * Per-key limits: what a key may hold at once (runs in progress, live sessions; counted as leases
 * by the key's ledger workflow) and what one API process lets it do (requests per minute, open
 * streams). Pure types and the admission rule; no I/O.
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

/** What one API process tells a key's ledger, in one signal: leases it took and leases that ended. */
export interface LedgerChange {
  /** The API process (or `workflow` for a session handing its own lease back). */
  holder: string;
  acquire: Lease[];
  release: string[];
  /** The caps, from the sender's config (0 = none): the ledger sweeps more often at a cap. */
  limits?: Pick<KeyLimits, 'concurrentRuns' | 'sessions'>;
}

export interface LedgerInput {
  keyName: string;
  /** Leases held, across continue-as-new. */
  leases?: Record<string, { kind: LeaseKind; holder: string }>;
}

/** The ledger as one API process reads it. */
export interface LedgerView {
  runs: number;
  sessions: number;
  /** The reader's own leases the ledger holds, and how many of them are runs and sessions. */
  mine: string[];
  mineRuns: number;
  mineSessions: number;
  /** Every live session's workflow id (a turn of one of these opens no new session). */
  sessionIds: string[];
}

export const LEDGER_CHANGE_SIGNAL = 'mix2api.leases';
export const LEDGER_QUERY = 'mix2api.leases';

/** Whether one more lease of this kind fits: what this process holds plus what the others hold (0 = no cap). */
export function fits(cap: number, mine: number, others: number): boolean {
  return cap <= 0 || mine + others < cap;
}
