/**
 * Human approval of tool calls: the run publishes `approval_required` and waits for a decision
 * from the API (an update, so unknown ids are refused), a signal from the Temporal UI/CLI, or
 * the timeout, which denies.
 */
import * as wf from '@temporalio/workflow';
import { APPROVE_SIGNAL, APPROVE_UPDATE, approvalNeeded, type ApprovalDecision, type PendingApproval, type RunMcpServer } from '../domain/run';

export type Decision = ApprovalDecision & { by: 'api' | 'signal' | 'timeout' };

export class Approvals {
  readonly pending = new Map<string, PendingApproval>();
  private readonly decided = new Map<string, Decision>();

  constructor() {
    wf.setHandler(wf.defineSignal<[ApprovalDecision]>(APPROVE_SIGNAL), (d) => this.decide(d, 'signal'));
    wf.setHandler(
      wf.defineUpdate<Decision, [ApprovalDecision]>(APPROVE_UPDATE),
      (d) => {
        this.decide(d, 'api');
        return this.decided.get(d.approvalId)!;
      },
      {
        validator: (d) => {
          if (this.decided.has(d.approvalId)) throw new Error(`approval ${d.approvalId} was already decided`);
          if (!this.pending.has(d.approvalId)) throw new Error(`no pending approval ${d.approvalId}`);
        },
      },
    );
  }

  static needed(server: RunMcpServer, tool: string): boolean {
    return approvalNeeded(server, tool);
  }

  private decide(d: ApprovalDecision, by: Decision['by']): void {
    if (!this.pending.has(d.approvalId) || this.decided.has(d.approvalId)) return;
    this.decided.set(d.approvalId, { approvalId: d.approvalId, approve: d.approve === true, ...(d.reason ? { reason: String(d.reason) } : {}), by });
  }

  async wait(request: PendingApproval, timeoutSeconds: number): Promise<Decision> {
    this.pending.set(request.approvalId, request);
    try {
      const inTime = await wf.condition(() => this.decided.has(request.approvalId), `${timeoutSeconds} seconds`);
      if (!inTime) this.decided.set(request.approvalId, { approvalId: request.approvalId, approve: false, reason: `no decision within ${timeoutSeconds}s`, by: 'timeout' });
      return this.decided.get(request.approvalId)!;
    } finally {
      this.pending.delete(request.approvalId);
    }
  }
}
