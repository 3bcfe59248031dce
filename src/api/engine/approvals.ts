/** Tool approvals, as every front door decides them: one update of the waiting run. */
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { APPROVE_UPDATE, type ApprovalDecision } from '../../domain/run';
import { ApiError } from '../http/errors';

/** Decides one of a running run's pending approvals: 404 when it has none by that id, 409 when decided already. */
export async function decideApproval(handle: WorkflowHandle, id: string, decision: ApprovalDecision): Promise<ApprovalDecision & { by: string }> {
  try {
    return await handle.executeUpdate<ApprovalDecision & { by: string }, [ApprovalDecision]>(APPROVE_UPDATE, { args: [decision] });
  } catch (e) {
    // The run closed between the caller's check and the update.
    if (!(e instanceof WorkflowUpdateFailedError) && (await handle.describe()).status.name !== 'RUNNING') {
      throw new ApiError(404, `Run '${id}' has no pending approvals (it has closed).`, 'invalid_request_error', 'approval_not_found', 'approval_id');
    }
    if (e instanceof WorkflowUpdateFailedError) {
      const msg = e.cause?.message ?? e.message;
      const already = /already decided/.test(msg);
      throw new ApiError(already ? 409 : 404, msg, 'invalid_request_error', already ? 'approval_already_decided' : 'approval_not_found', 'approval_id');
    }
    throw e;
  }
}
