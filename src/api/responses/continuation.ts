/** `previous_response_id`: the conversation an earlier response ended, read from its run. */
import { WorkflowNotFoundError } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { ChatMessage } from '../../domain/chat';
import { STATE_QUERY, type ChatCompletionInput, type ChatCompletionResult, type RunState } from '../../domain/run';
import type { CompletionDeps } from '../engine/launch';
import { ApiError } from '../http/errors';
import { queryRun } from '../http/query';
import { refOf } from './request';

/** What an unknown `previous_response_id` (or another key's) gets. */
const previousNotFound = (responseId: string) => new ApiError(404, `Previous response with id '${responseId}' not found.`, 'invalid_request_error', 'previous_response_not_found', 'previous_response_id');

/** The run behind `previous_response_id`, when it is the caller's (404 `previous_response_not_found` otherwise). */
export async function loadPrevious(d: CompletionDeps, responseId: string, keyName: string) {
  const ref = refOf(responseId);
  const notFound = () => previousNotFound(responseId);
  if (!ref) throw notFound();
  const handle = d.client.workflow.getHandle(ref.runId);
  let state: RunState;
  try {
    state = await queryRun<RunState>(d.client, handle, STATE_QUERY);
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) throw notFound();
    throw e;
  }
  if ((state.keyName ?? 'anonymous') !== keyName) throw notFound();
  return { ref, handle, state };
}

/**
 * The conversation a previous response ended: its run's input messages, then its answer. Two
 * reads of one history event each (the run's start and its close), whatever the run did in
 * between and however long the conversation is: no query (which, on a closed run, makes a
 * worker replay its whole history) and no read of the steps' events.
 */
export async function previousConversation(d: CompletionDeps, responseId: string, keyName: string): Promise<ChatMessage[]> {
  const ref = refOf(responseId);
  const notFound = () => previousNotFound(responseId);
  if (!ref) throw notFound();
  const [first, close] = await Promise.all([oneEvent(d, ref.runId, 'first'), oneEvent(d, ref.runId, 'close')]).catch((e: unknown) => {
    throw (e as { code?: number } | null)?.code === 5 ? notFound() : e;
  });
  const started = first?.workflowExecutionStartedEventAttributes;
  if (!started || started.workflowType?.name !== 'chatCompletionWorkflow') throw notFound();
  const input = await decodeFromPayloadsAtIndex<ChatCompletionInput>(d.client.options.loadedDataConverter, 0, started.input?.payloads ?? []);
  if ((input.keyName ?? 'anonymous') !== keyName) throw notFound();
  const completed = close?.workflowExecutionCompletedEventAttributes;
  if (!completed) throw new ApiError(409, `Previous response '${responseId}' has not completed.`, 'invalid_request_error', 'previous_response_in_progress', 'previous_response_id');
  const result = await decodeFromPayloadsAtIndex<ChatCompletionResult>(d.client.options.loadedDataConverter, 0, completed.result?.payloads ?? []);
  // The answer as the client saw it: when it ended with client calls, the engine's re-join puts the
  // run's hidden server-side steps back in its place (as for a Chat Completions follow-up).
  return [...(input.body.messages as ChatMessage[]), result.message as unknown as ChatMessage];
}

/** A run's first history event, or its close event (none while it runs), read on its own. */
async function oneEvent(d: CompletionDeps, workflowId: string, which: 'first' | 'close') {
  const r = await d.client.workflowService.getWorkflowExecutionHistory({
    namespace: d.client.options.namespace,
    execution: { workflowId },
    maximumPageSize: 1,
    ...(which === 'close' ? { historyEventFilterType: temporal.api.enums.v1.HistoryEventFilterType.HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT } : {}),
  });
  return r.history?.events?.[0];
}
