/**
 * Implicit idempotency for requests that run server-side tools. Edge gateways retry failed
 * requests (LiteLLM three times, byte for byte the same body) and forward no Idempotency-Key,
 * so without this each retry would be a new run that runs the same tools again.
 *
 * Such a request is keyed by its API key and a canonical hash of its body, in windows of
 * `idempotency.implicitSeconds`. Its run ids form a short chain per window: the newest run of
 * the current or the previous window decides what a new request gets.
 * - running: the request joins it, unless this process has already relayed its answer to a
 *   stream (see AnsweredRuns): then it counts as completed;
 * - completed within the window: a new run (a regenerate gets a fresh answer, and runs its tools
 *   anew), or, with `idempotency.replayCompleted`, the completed run's answer (a gateway's retry
 *   after a lost response; a deliberate repeat within the window gets the same answer too);
 * - failed, cancelled or terminated within the window: a new run, which takes the earlier
 *   run's completed tool results (not undone by compensation) for the same calls instead of
 *   running them again;
 * - older: a new run.
 */
import { createHash } from 'node:crypto';
import { WorkflowNotFoundError, type Client, type WorkflowExecutionDescription } from '@temporalio/client';
import { TOOL_RESULTS_QUERY, type ReusableToolResult } from '../../domain/run';
import { queryRun } from '../http/query';
import { scoped } from './startRun';

/** Runs per window and key; past it, requests get random ids again. */
const MAX_CHAIN = 8;
/** Earlier results passed to a new run stay well under Temporal's 2 MB payload limit. */
const MAX_REUSE_BYTES = 512 * 1024;

/** JSON with object keys sorted, so equal bodies hash equal whatever their key order. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== undefined);
    return `{${entries
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** Runs kept as answered per process: a run closes within moments of its answer, so few are needed. */
const ANSWERED_KEPT = 4096;

/**
 * Runs whose answer (their `end` event) this process has relayed to a stream. A stream's end
 * comes live from the model step, a moment before the workflow records it and closes; a client
 * that sends the same body again at once (an eval loop, a quick regenerate) would otherwise find
 * the run still running and join it, getting the same answer again. A request that lands on
 * another API instance in that moment still can (the README names the window).
 */
export class AnsweredRuns {
  private readonly ids = new Set<string>();
  add(runId: string): void {
    this.ids.add(runId);
    if (this.ids.size > ANSWERED_KEPT) this.ids.delete(this.ids.values().next().value!);
  }
  has(runId: string): boolean {
    return this.ids.has(runId);
  }
}

export interface ImplicitRun {
  runId: string;
  /** The run may already exist (joined), so its log is read first. */
  existing: boolean;
  reuse?: ReusableToolResult[];
}

async function describe(client: Client, id: string): Promise<WorkflowExecutionDescription | null> {
  try {
    return await client.workflow.getHandle(id).describe();
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) return null;
    throw e;
  }
}

export async function implicitRun(client: Client, keyName: string, body: unknown, o: { windowSeconds: number; replayCompleted: boolean; taskQueue: string; answered?: AnsweredRuns }, now = Date.now()): Promise<ImplicitRun | null> {
  const digest = createHash('sha256').update(canonicalJson(body)).digest('hex');
  const windowMs = o.windowSeconds * 1000;
  const bucket = Math.floor(now / windowMs);
  // Scoped by task queue too: deployments that share a namespace do not join each other's runs.
  const idOf = (b: number, n: number) => `chatcmpl-${scoped(keyName, `implicit\n${o.taskQueue}\n${digest}\n${b}\n${n}`)}`;
  let latest: { id: string; d: WorkflowExecutionDescription } | null = null;
  let free = -1;
  for (const b of [bucket - 1, bucket]) {
    let n = 0;
    for (; n < MAX_CHAIN; n++) {
      const d = await describe(client, idOf(b, n));
      if (!d) break;
      latest = { id: idOf(b, n), d };
    }
    if (b === bucket) free = n;
  }
  const next = free < MAX_CHAIN ? idOf(bucket, free) : null;
  if (!latest) return { runId: next!, existing: false };
  const answered = latest.d.status.name === 'RUNNING' && o.answered?.has(latest.id) === true;
  const status = answered ? 'COMPLETED' : latest.d.status.name;
  if (status === 'RUNNING') return { runId: latest.id, existing: true };
  const recent = answered || (latest.d.closeTime?.getTime() ?? 0) >= now - windowMs;
  if (status === 'COMPLETED' && recent && o.replayCompleted) return { runId: latest.id, existing: true };
  if (!next) return null;
  if (!recent || status === 'COMPLETED') return { runId: next, existing: false };
  const reuse = await queryRun<ReusableToolResult[]>(client, client.workflow.getHandle(latest.id), TOOL_RESULTS_QUERY).catch(() => [] as ReusableToolResult[]);
  const fits = Buffer.byteLength(JSON.stringify(reuse)) <= MAX_REUSE_BYTES;
  return { runId: next, existing: false, ...(fits && reuse.length > 0 ? { reuse } : {}) };
}
