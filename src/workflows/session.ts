/**
 * `sessionWorkflow`: the actor behind a long agent session (`X-Session-Id`). Turns arrive by
 * Update-with-Start and run one at a time as child `chatCompletionWorkflow` runs (the update
 * returns once its child has started, so the caller streams the child as any run). The session
 * continues-as-new when Temporal suggests it, between turns, and completes after an idle spell.
 */
import * as wf from '@temporalio/workflow';
import { HandlerUnfinishedPolicy, WorkflowExecutionAlreadyStartedError, WorkflowIdReusePolicy } from '@temporalio/common';
import { SESSION_QUERY, SESSION_TURN_UPDATE, type SessionInput, type SessionState, type SessionTurn } from '../domain/run';
import { chatCompletionWorkflow } from './chatCompletion';
import { holdLease, releaseLease } from './keyLedger';

/** Recent run ids kept in state: enough to answer a retried turn without starting it twice. */
const RECENT_RUNS = 50;

export async function sessionWorkflow(input: SessionInput): Promise<SessionState> {
  let turns = input.turns ?? 0;
  let busy: string | null = null;
  let lastActivity = 0;
  const runs: string[] = [...(input.runs ?? [])];
  // The last turn's stored upstream response: the next turn's first step may continue it.
  let stored = input.stored;
  const state = (): SessionState => ({ sessionId: input.sessionId, turns, busy, runs: [...runs] });
  wf.setHandler(wf.defineQuery<SessionState>(SESSION_QUERY), state);
  if (!wf.workflowInfo().continuedFromExecutionRunId) void holdLease(input.ledger, wf.workflowInfo().workflowId);

  const suggested = () => wf.workflowInfo().continueAsNewSuggested;

  const runTurn = async (turn: SessionTurn): Promise<{ runId: string }> => {
    if (runs.includes(turn.runId) || busy === turn.runId) return { runId: turn.runId };
    // One turn at a time: every waiter wakes when the session frees up, the first one takes it.
    // Once Temporal suggests continue-as-new, turns wait; the caller's retry reaches the next run.
    while (busy !== null || suggested()) await wf.condition(() => busy === null && !suggested());
    busy = turn.runId;
    lastActivity++;
    try {
      const child = await wf.startChild(chatCompletionWorkflow, {
        workflowId: turn.runId,
        args: [stored ? { ...turn.input, from: stored } : turn.input],
        parentClosePolicy: wf.ParentClosePolicy.ABANDON,
        // A retried turn whose run is already closed must attach to it, not run it again.
        workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
        staticSummary: `session ${input.sessionId} turn ${turns + 1}`,
      });
      turns++;
      runs.push(turn.runId);
      if (runs.length > RECENT_RUNS) runs.shift();
      // The next turn waits for this one; the update itself returns now.
      void child
        .result()
        .then((r) => void (stored = r.stored))
        .catch(() => undefined)
        .finally(() => {
          busy = null;
          lastActivity++;
        });
    } catch (e) {
      if (busy === turn.runId) busy = null;
      lastActivity++;
      // A retried turn whose run already exists (same Idempotency-Key) attaches to it.
      if (e instanceof WorkflowExecutionAlreadyStartedError) return { runId: turn.runId };
      throw e;
    }
    return { runId: turn.runId };
  };
  wf.setHandler(wf.defineUpdate<{ runId: string }, [SessionTurn]>(SESSION_TURN_UPDATE), runTurn, {
    unfinishedPolicy: HandlerUnfinishedPolicy.ABANDON,
  });

  for (;;) {
    const seen = lastActivity;
    const active = await wf.condition(() => lastActivity !== seen || (suggested() && busy === null), `${input.idleSeconds} seconds`);
    if (suggested() && busy === null) await wf.continueAsNew<typeof sessionWorkflow>({ ...input, turns, runs, stored });
    if (!active && busy === null) {
      await wf.condition(wf.allHandlersFinished);
      await releaseLease(input.ledger, wf.workflowInfo().workflowId);
      return state();
    }
  }
}
