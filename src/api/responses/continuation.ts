/** `previous_response_id`: the conversation an earlier response ended, read from its run. */
import { WorkflowNotFoundError } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { ChatMessage } from '../../domain/chat';
import { STATE_QUERY, type ChatCompletionInput, type RunState } from '../../domain/run';
import type { CompletionDeps } from '../engine/launch';
import { ApiError } from '../http/errors';
import { queryRun } from '../http/query';
import { refOf } from './request';

/** The run behind `previous_response_id`, when it is the caller's (404 `previous_response_not_found` otherwise). */
export async function loadPrevious(d: CompletionDeps, responseId: string, keyName: string) {
  const ref = refOf(responseId);
  const notFound = () => new ApiError(404, `Previous response with id '${responseId}' not found.`, 'invalid_request_error', 'previous_response_not_found', 'previous_response_id');
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

/** The conversation a previous response ended: its run's input messages, then its answer. */
export async function previousConversation(d: CompletionDeps, responseId: string, keyName: string): Promise<ChatMessage[]> {
  const { ref, state } = await loadPrevious(d, responseId, keyName);
  const runId = ref.runId;
  if (!state.result) throw new ApiError(409, `Previous response '${responseId}' has not completed.`, 'invalid_request_error', 'previous_response_in_progress', 'previous_response_id');
  const input = await runInput(d, runId);
  // The answer as the client saw it: when it ended with client calls, the engine's re-join puts the
  // run's hidden server-side steps back in its place (as for a Chat Completions follow-up).
  return [...(input.body.messages as ChatMessage[]), state.result.message as unknown as ChatMessage];
}

/** A run's input, from the first event of its history (decoded through the client's codec). */
async function runInput(d: CompletionDeps, runId: string): Promise<ChatCompletionInput> {
  const h = await d.client.workflow.getHandle(runId).fetchHistory();
  const started = h.events?.[0]?.workflowExecutionStartedEventAttributes;
  return decodeFromPayloadsAtIndex<ChatCompletionInput>(d.client.options.loadedDataConverter, 0, started?.input?.payloads ?? []);
}
