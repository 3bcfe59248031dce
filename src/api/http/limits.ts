/**
 * Per-key limits at the API's door, all checked before any run starts, with no round trip to
 * Temporal except near a cap:
 * - requests per minute: a token bucket per key in this process;
 * - open streams: counted per key in this process (a stream lives on one process's connection);
 * - runs in progress and live sessions: this process's own leases, exact, plus the other
 *   replicas' as the key's ledger workflow (workflows/keyLedger) last showed them. The reading is
 *   refreshed in the background at most once a second while the key is busy (awaited only when it
 *   is older than `STALE_MS`); the leases this process takes and the runs it sees end reach the
 *   ledger in one signal per key every `FLUSH_MS`.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Config } from '../../config/load';
import { LEDGER_CHANGE_SIGNAL, LEDGER_QUERY, fits, type KeyLimits, type Lease, type LeaseKind, type LedgerChange, type LedgerInput, type LedgerView } from '../../domain/limits';
import { ApiError } from './errors';
import { queryRun } from './query';
import { scoped } from '../engine/startRun';

/** A reading of the ledger younger than this is used as is; an older one is refreshed behind the request… */
const FRESH_MS = 1000;
/** …or before it, when the request would take a cap's last slot and the reading is older than this. */
const NEAR_CAP_FRESH_MS = 250;
/** A reading older than this (or none) is waited for: a process's first request of a key, or one after a quiet spell. */
const STALE_MS = 10_000;
/** How long this process's changes wait to go out together. */
const FLUSH_MS = 100;
/** A lease this process took is dropped when the ledger no longer has it, once it is older than this (its signal had time to land). */
const SETTLE_MS = 5000;

export const rateLimited = (message: string, retryAfterSeconds: number) =>
  new ApiError(429, message, 'rate_limit_error', 'rate_limit_exceeded', null, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterSeconds))) });

export const ledgerIdOf = (keyName: string, taskQueue: string) => `limits-${scoped(keyName, `ledger\n${taskQueue}`)}`;

interface Bucket {
  tokens: number;
  at: number;
}

/** What this process knows of one key's leases. */
interface KeyView {
  /** Runs and sessions this process admitted that it has not seen end: id → when. */
  mine: Map<string, { kind: LeaseKind; at: number }>;
  /** The other holders' counts, and every live session, at the last reading. */
  otherRuns: number;
  otherSessions: number;
  liveSessions: Set<string>;
  readAt: number;
  reading: Promise<void> | null;
  pending: LedgerChange | null;
}

/** This process's leases of one kind. */
function heldBy(v: KeyView, kind: LeaseKind): number {
  let n = 0;
  for (const x of v.mine.values()) if (x.kind === kind) n++;
  return n;
}

export class KeyLimiter {
  /** This process, as a lease holder. */
  readonly holder = randomUUID();
  private readonly limits = new Map<string, KeyLimits>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly streams = new Map<string, number>();
  private readonly views = new Map<string, KeyView>();

  constructor(
    private readonly config: Config,
    private readonly client: Client,
  ) {}

  /** The server's limits with the key's own over them (keys are few and fixed: these maps stay small). */
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
   * Admits a run (and its session, when the request names one) against the key's caps: 429 over
   * one. Returns the ledger's workflow id, or null when the key has neither cap.
   */
  async admit(keyName: string, runId: string, sessionWorkflowId: string | null): Promise<string | null> {
    const { concurrentRuns, sessions } = this.limitsOf(keyName);
    if (concurrentRuns <= 0 && sessions <= 0) return null;
    const v = this.viewOf(keyName);
    if (Date.now() - v.readAt > STALE_MS) await this.read(keyName, v);
    // A retried request (same Idempotency-Key) already holds its lease here.
    if (v.mine.has(runId)) return this.ledgerOf(keyName);
    // A session another process opened is live in the ledger's reading: no new session.
    const isNewSession = () => sessionWorkflowId !== null && !v.mine.has(sessionWorkflowId) && !v.liveSessions.has(sessionWorkflowId);
    /** The refusal, or null; `last` tells whether this admission would take a cap's last slot. */
    const decide = () => {
      const newSession = isNewSession();
      const runs = heldBy(v, 'run') + v.otherRuns;
      const open = heldBy(v, 'session') + v.otherSessions;
      if (!fits(concurrentRuns, runs, 0)) return { refusal: this.runCapError(keyName), last: true };
      if (newSession && !fits(sessions, open, 0)) return { refusal: rateLimited(`rate limit: this API key has ${open} open sessions (limits.sessions ${sessions})`, 1), last: true };
      return { refusal: null, last: (concurrentRuns > 0 && runs + 1 >= concurrentRuns) || (newSession && sessions > 0 && open + 1 >= sessions) };
    };
    let d = decide();
    const age = Date.now() - v.readAt;
    // Near a cap the other replicas' share decides, so it is read first; elsewhere behind the request.
    if (d.last && age > NEAR_CAP_FRESH_MS) {
      await this.read(keyName, v);
      d = decide();
    } else if (age > FRESH_MS) void this.read(keyName, v);
    if (d.refusal) throw d.refusal;
    const newSession = isNewSession();
    const at = Date.now();
    const leases: Lease[] = [{ id: runId, kind: 'run' }];
    v.mine.set(runId, { kind: 'run', at });
    if (newSession && sessionWorkflowId !== null) {
      v.mine.set(sessionWorkflowId, { kind: 'session', at });
      leases.push({ id: sessionWorkflowId, kind: 'session' });
    }
    this.change(keyName, v, leases, []);
    return this.ledgerOf(keyName);
  }

  /**
   * A request for a new run of a key at its run cap, refused before its body is read: true when
   * this process's fresh view says the cap is reached (otherwise `admit` decides, after parsing).
   */
  atRunCap(keyName: string): boolean {
    const cap = this.limitsOf(keyName).concurrentRuns;
    const v = this.views.get(keyName);
    if (cap <= 0 || !v || Date.now() - v.readAt > FRESH_MS) return false;
    return !fits(cap, heldBy(v, 'run'), v.otherRuns);
  }

  runCapError(keyName: string): ApiError {
    const v = this.views.get(keyName);
    const runs = v ? heldBy(v, 'run') + v.otherRuns : 0;
    return rateLimited(`rate limit: this API key has ${runs} runs in progress (limits.concurrentRuns ${this.limitsOf(keyName).concurrentRuns})`, 1);
  }

  /** A run this process admitted has ended (or never started): its lease goes back. */
  ended(keyName: string, runId: string): void {
    const v = this.views.get(keyName);
    if (!v?.mine.delete(runId)) return;
    this.change(keyName, v, [], [runId]);
  }

  /** One ledger per key and deployment (its task queue: the workers that run the ledger). */
  ledgerOf(keyName: string): string {
    return ledgerIdOf(keyName, this.config.temporal.taskQueue);
  }

  private viewOf(keyName: string): KeyView {
    let v = this.views.get(keyName);
    if (!v) {
      v = { mine: new Map(), otherRuns: 0, otherSessions: 0, liveSessions: new Set(), readAt: 0, reading: null, pending: null };
      this.views.set(keyName, v);
    }
    return v;
  }

  /** Reads the ledger: the others' counts, and which of this process's leases it no longer has (swept). */
  private read(keyName: string, v: KeyView): Promise<void> {
    v.reading ??= (async () => {
      const started = Date.now();
      try {
        const l = await queryRun<LedgerView, [string]>(this.client, this.client.workflow.getHandle(this.ledgerOf(keyName)), LEDGER_QUERY, this.holder);
        const held = new Set(l.mine);
        for (const [id, x] of v.mine) if (!held.has(id) && x.at < started - SETTLE_MS) v.mine.delete(id);
        // The others' share is what the ledger holds beyond this process's leases (by its own count:
        // a run this process saw end may still be there until its signal lands).
        v.otherRuns = Math.max(0, l.runs - l.mineRuns);
        v.otherSessions = Math.max(0, l.sessions - l.mineSessions);
        v.liveSessions = new Set(l.sessionIds);
        v.readAt = Date.now();
      } catch (e) {
        // No ledger yet: nobody holds anything. Anything else: keep the last reading, try again later.
        if (e instanceof WorkflowNotFoundError) {
          v.otherRuns = 0;
          v.otherSessions = 0;
          v.liveSessions = new Set();
          v.readAt = Date.now();
        }
      } finally {
        v.reading = null;
      }
    })();
    return v.reading;
  }

  private change(keyName: string, v: KeyView, acquire: Lease[], release: string[]): void {
    const { concurrentRuns, sessions } = this.limitsOf(keyName);
    if (v.pending) {
      v.pending.acquire.push(...acquire);
      v.pending.release.push(...release);
      return;
    }
    v.pending = { holder: this.holder, acquire: [...acquire], release: [...release], limits: { concurrentRuns, sessions } };
    setTimeout(() => {
      const change = v.pending!;
      v.pending = null;
      const input: LedgerInput = { keyName };
      void this.client.workflow
        .signalWithStart('keyLedgerWorkflow', {
          workflowId: this.ledgerOf(keyName),
          taskQueue: this.config.temporal.taskQueue,
          args: [input],
          signal: LEDGER_CHANGE_SIGNAL,
          signalArgs: [change],
          staticSummary: `limits of API key ${keyName}`,
        })
        // Lost (Temporal down): the ledger's sweep and this process's next reading put it right.
        .catch(() => undefined);
    }, FLUSH_MS).unref();
  }
}
