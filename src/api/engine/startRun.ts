/**
 * Starts a run's workflow, or attaches to it: directly (id `chatcmpl-…`, USE_EXISTING so a
 * retried POST with the same Idempotency-Key joins the same run), or as the next turn of a
 * session actor via Update-with-Start when the request names a session.
 */
import { createHash, randomUUID } from 'node:crypto';
import { WithStartWorkflowOperation, type Client, type WorkflowHandle } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError, WorkflowIdConflictPolicy, WorkflowIdReusePolicy } from '@temporalio/common';
import type { Config } from '../../config/load';
import { SESSION_TURN_UPDATE, type ChatCompletionInput, type SessionInput, type SessionTurn } from '../../domain/run';
import { badRequest } from '../http/errors';

export interface StartRequest {
  runId: string;
  input: ChatCompletionInput;
  summary: string;
  model: string;
  keyName: string;
  sessionId: string | null;
  /** The key's ledger (see api/limits), where a session hands its lease back. */
  ledger?: string | null;
}

const SESSION_ID = /^[\x21-\x7e]{1,128}$/;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** Ids derived from a client's key are scoped to its API key, so two keys never share a run. */
export const scoped = (keyName: string, value: string) => createHash('sha256').update(`${keyName}\n${value}`).digest('hex').slice(0, 32);

/** `chatcmpl-<32 hex>`: random, or fixed by an `Idempotency-Key` so a retried POST attaches. */
export function runIdFor(idempotencyKey: string | undefined, keyName: string): string {
  if (idempotencyKey === undefined) return `chatcmpl-${randomUUID().replace(/-/g, '')}`;
  if (!IDEMPOTENCY_KEY.test(idempotencyKey)) throw badRequest('Idempotency-Key must be 1-255 visible ASCII characters', 'Idempotency-Key');
  return `chatcmpl-${scoped(keyName, idempotencyKey)}`;
}

/** `X-Session-Id`, else `metadata.session_id`; null when the request is not part of a session. */
export function sessionIdOf(header: string | undefined, metadata: Record<string, string> | null | undefined): string | null {
  const id = header ?? metadata?.session_id;
  if (id === undefined) return null;
  if (!SESSION_ID.test(id)) throw badRequest('session id must be 1-128 visible ASCII characters', header !== undefined ? 'X-Session-Id' : 'metadata.session_id');
  return id;
}

export function sessionWorkflowId(keyName: string, sessionId: string): string {
  return `session-${scoped(keyName, sessionId)}`;
}

export async function startRun(config: Config, client: Client, r: StartRequest): Promise<WorkflowHandle> {
  const taskQueue = config.temporal.taskQueue;
  if (r.sessionId) {
    const sessionInput: SessionInput = { sessionId: r.sessionId, keyName: r.keyName, idleSeconds: config.sessions.idleSeconds, ...(r.ledger ? { ledger: r.ledger } : {}) };
    const turn: SessionTurn = { runId: r.runId, input: r.input };
    // A turn that reaches the session while it continues-as-new is refused once; try again.
    for (let attempt = 1; ; attempt++) {
      try {
        await client.workflow.executeUpdateWithStart(SESSION_TURN_UPDATE, {
          args: [turn],
          startWorkflowOperation: new WithStartWorkflowOperation('sessionWorkflow', {
            workflowId: sessionWorkflowId(r.keyName, r.sessionId),
            taskQueue,
            args: [sessionInput],
            workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
            staticSummary: `session ${r.sessionId}`,
          }),
        });
        break;
      } catch (e) {
        if (attempt >= 3) throw e;
        await new Promise((ok) => setTimeout(ok, 200 * attempt));
      }
    }
    return client.workflow.getHandle(r.runId);
  }
  try {
    return await client.workflow.start('chatCompletionWorkflow', {
      taskQueue,
      workflowId: r.runId,
      // A running run is joined; a closed one is never started again (its answer stands).
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      args: [r.input],
      staticSummary: r.summary,
      // The first workflow task runs in this process, straight from the start call's answer.
      requestEagerStart: true,
      ...(config.temporal.searchAttributes ? { searchAttributes: { Mix2apiModel: [r.model], Mix2apiKeyName: [r.keyName] } } : {}),
    });
  } catch (e) {
    if (e instanceof WorkflowExecutionAlreadyStartedError) return client.workflow.getHandle(r.runId);
    throw e;
  }
}
