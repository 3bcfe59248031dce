/**
 * One server-side tool call inside the workflow: the `callTool` activity with its server's
 * timeout and retry policy, shown as `mcp <server>/<tool>` in the Temporal UI. Whatever goes
 * wrong after retries becomes a failed tool result for the model, never a failed run.
 */
import * as wf from '@temporalio/workflow';
import type { createToolActivities } from '../activities/tools';
import type { ToolCall } from '../domain/chat';
import { HEARTBEAT_TIMEOUT, toolTotalSeconds, type RunMcpServer, type ToolOutcome } from '../domain/run';
import type { LostStep } from '../domain/lease';
import type { CatalogEntry } from '../domain/toolNames';
import { lostIn, MAX_MOVES } from './processLease';

type ToolActivities = ReturnType<typeof createToolActivities>;

/** `once`: no retries (a server declared `sideEffects: unsafe`): every failure reaches the workflow. */
export function toolActivities(summary: string, timeoutSeconds: number, once = false) {
  return wf.proxyActivities<ToolActivities>({
    summary,
    // The MCP call times out first (reset on progress, capped at toolTotalSeconds); this only
    // bounds a lost worker, which heartbeats notice sooner anyway.
    startToCloseTimeout: `${toolTotalSeconds(timeoutSeconds) + 30} seconds`,
    heartbeatTimeout: HEARTBEAT_TIMEOUT,
    // On cancel, wait until the tool has really stopped: compensations must come after it.
    cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { maximumAttempts: once ? 1 : 4, initialInterval: '1 second', maximumInterval: '10 seconds', backoffCoefficient: 2 },
  });
}

/** `live`: the run's live queue, forgotten when the process lost while running the call is its own. */
export async function runTool(runId: string, step: number, call: ToolCall, entry: CatalogEntry, server: RunMcpServer, live: { queue?: string } = {}, moves = 0): Promise<ToolOutcome> {
  try {
    return await toolActivities(`mcp ${entry.server}/${entry.tool}`, server.timeoutSeconds, server.unsafe).callTool({
      runId,
      callId: call.id,
      // Unique in the run even when an upstream reuses call ids across turns.
      idempotencyKey: `${runId}/${step}/${call.id}`,
      server: entry.server,
      tool: entry.tool,
      arguments: call.function.arguments,
      inputSchema: entry.inputSchema,
      timeoutSeconds: server.timeoutSeconds,
      maxOutputBytes: server.maxOutputBytes,
    });
  } catch (e) {
    if (wf.isCancellation(e)) throw e;
    const next = afterFailure(e, server, entry, moves);
    if (next && 'outcome' in next) return next.outcome;
    if (next) {
      if (next.again.queue !== undefined && next.again.queue === live.queue) live.queue = undefined;
      return runTool(runId, step, call, entry, server, live, moves + 1);
    }
    const why = e instanceof wf.ActivityFailure && e.cause ? e.cause.message : e instanceof Error ? e.message : String(e);
    return { text: `tool ${entry.server}/${entry.tool} failed: ${why}`, isError: true, truncated: false, ms: 0 };
  }
}

/**
 * After a call failed: `again` when its process was lost mid-call (run it again elsewhere now, with
 * the same idempotency key, up to MAX_MOVES times), `outcome` when the call must not be repeated
 * (an unsafe server's interrupted call), null when the failure stands.
 */
export function afterFailure(e: unknown, server: RunMcpServer, entry: Pick<CatalogEntry, 'server' | 'tool'>, moves: number): { again: LostStep } | { outcome: ToolOutcome } | null {
  if (server.unsafe && interrupted(e)) return { outcome: notRepeated(entry) };
  const lost = lostIn(e);
  return lost && moves < MAX_MOVES ? { again: lost } : null;
}

/**
 * A failure after which no one knows whether the tool acted: its process was lost (lease lapse,
 * heartbeat or start-to-close timeout) or its connection broke after the request was sent.
 */
function interrupted(e: unknown): boolean {
  if (lostIn(e)) return true;
  const cause = e instanceof wf.ActivityFailure ? e.cause : undefined;
  return cause instanceof wf.TimeoutFailure || (cause instanceof wf.ApplicationFailure && cause.type === 'McpTransport');
}

/** What the model (or the MCP gateway's client) is told instead of a repeat of an unsafe call. */
function notRepeated(entry: Pick<CatalogEntry, 'server' | 'tool'>): ToolOutcome {
  const text = `tool ${entry.server}/${entry.tool} was interrupted (its worker or connection was lost mid-call) and may or may not have taken effect; it was not run again because server ${entry.server} is declared sideEffects: unsafe`;
  return { text, isError: true, truncated: false, ms: 0 };
}
