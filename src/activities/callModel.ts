/**
 * `callModel`: one model step. The activity only hands its task token to this process's
 * ModelSteps and completes asynchronously: the step streams, heartbeats its progress and reports
 * its result through the token (see ./modelStep), so a minute-long answer costs Temporal a
 * heartbeat every few seconds and one completion, and costs this process no activity slot.
 */
import { CompleteAsyncError, Context } from '@temporalio/activity';
import type { CallModelInput, CallModelResult } from '../domain/run';
import type { ModelSteps } from './modelSteps';
import { heldActivity } from './lease';

export interface ModelDeps {
  steps: ModelSteps;
}

export function createModelActivities(deps: ModelDeps) {
  return {
    async callModel(input: CallModelInput): Promise<CallModelResult> {
      const { info } = Context.current();
      deps.steps.claim(input, { attempt: info.attempt, taskToken: info.taskToken, activity: heldActivity(), heartbeatDetails: info.heartbeatDetails });
      throw new CompleteAsyncError();
    },
  };
}
