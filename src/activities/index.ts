/**
 * `createActivities(deps)`: every activity the workers register, with their dependencies
 * injected. Workflows see only `type Activities`.
 */
import { createModelActivities, type ModelDeps } from './callModel';

export type ActivityDeps = ModelDeps;

export function createActivities(deps: ActivityDeps) {
  return {
    ...createModelActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
