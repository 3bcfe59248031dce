/**
 * `createActivities(deps)`: every activity the workers register, with their dependencies
 * injected. Workflows see only `type Activities`.
 */
import { createModelActivities, type ModelDeps } from './callModel';
import { createLeaseActivities, type LeaseDeps } from './lease';
import { createLimitActivities } from './limits';
import { createToolActivities, type ToolDeps } from './tools';

export type ActivityDeps = ModelDeps & ToolDeps & { lease: LeaseDeps };

export function createActivities(deps: ActivityDeps) {
  return {
    ...createModelActivities(deps),
    ...createToolActivities(deps),
    ...createLimitActivities(),
    ...createLeaseActivities(deps.lease),
  };
}

export type Activities = ReturnType<typeof createActivities>;
