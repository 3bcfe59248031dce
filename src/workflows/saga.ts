/**
 * Saga bookkeeping: each tool that declares an undo pushes it after it succeeds; when the run
 * fails or is cancelled, the undos run newest first, each as its own activity, in a scope that
 * cancellation cannot interrupt. A failing undo is reported and the rest still run.
 */
import * as wf from '@temporalio/workflow';
import { mapArgs } from '../domain/argMapping';
import type { RunMcpServer, StepRecord, ToolOutcome } from '../domain/run';
import { toolActivities } from './toolStep';

interface Undo {
  forCallId: string;
  server: RunMcpServer;
  tool: string;
  args: Record<string, unknown>;
}

export interface UndoReport {
  forCallId: string;
  server: string;
  tool: string;
  ok: boolean;
  detail: string;
  ms: number;
}

/** Patch id: runs from before it did not undo a call cancelled while it ran. */
export const UNDO_UNFINISHED = 'undo-unfinished';

export class Saga {
  private readonly undos: Undo[] = [];

  get size(): number {
    return this.undos.length;
  }

  /** After a successful call of `tool`: remember its undo, if the server declares one. */
  record(server: RunMcpServer, tool: string, callId: string, argsJson: string, outcome: ToolOutcome): void {
    const undo = server.compensations?.[tool];
    if (!undo || outcome.isError) return;
    let args: unknown = {};
    try {
      args = JSON.parse(argsJson || '{}');
    } catch {
      // Unparseable arguments never reached the tool, so there is nothing to undo.
      return;
    }
    this.undos.push({ forCallId: callId, server, tool: undo.tool, args: mapArgs(undo.args, { args, result: outcome.structured ?? outcome.text }) });
  }

  /**
   * After a call of `tool` was cancelled while it ran: the server may have done its work anyway
   * (an MCP cancel is advisory), so its undo is remembered as after a success, unless the undo
   * needs the call's result, which no one has.
   */
  recordUnfinished(server: RunMcpServer, tool: string, callId: string, argsJson: string): void {
    const undo = server.compensations?.[tool];
    if (!undo || Object.values(undo.args).some((v) => v.startsWith('$.result'))) return;
    this.record(server, tool, callId, argsJson, { text: '', isError: false, truncated: false, ms: 0 });
  }

  async compensate(runId: string, report: (r: UndoReport) => void): Promise<StepRecord[]> {
    const records: StepRecord[] = [];
    await wf.CancellationScope.nonCancellable(async () => {
      for (const u of [...this.undos].reverse()) {
        let ok = false;
        let detail = '';
        let ms = 0;
        try {
          const o = await toolActivities(`undo ${u.server.name}/${u.tool}`, u.server.timeoutSeconds).callTool({
            runId,
            callId: `undo-${u.forCallId}`,
            idempotencyKey: `${runId}/undo/${u.forCallId}`,
            server: u.server.name,
            tool: u.tool,
            arguments: JSON.stringify(u.args),
            inputSchema: {},
            timeoutSeconds: u.server.timeoutSeconds,
            maxOutputBytes: u.server.maxOutputBytes,
          });
          ok = !o.isError;
          detail = o.text.slice(0, 500);
          ms = o.ms;
        } catch (e) {
          detail = e instanceof wf.ActivityFailure && e.cause ? e.cause.message : String(e);
        }
        report({ forCallId: u.forCallId, server: u.server.name, tool: u.tool, ok, detail, ms });
        records.push({ step: -1, kind: 'compensation', callId: u.forCallId, server: u.server.name, tool: u.tool, isError: !ok, ms });
      }
    });
    this.undos.length = 0;
    return records;
  }
}
