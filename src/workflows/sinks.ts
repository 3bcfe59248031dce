/**
 * The sink through which a workflow hands each event it makes to the process running its
 * workflow task, so readers there see tool progress at once (the worker wires it to LiveHub).
 * Not called during replay: the durable log already has those events.
 */
import type { Sinks } from '@temporalio/workflow';
import type { RunEvent } from '../domain/events';

export interface RunSinks extends Sinks {
  live: {
    event(e: RunEvent): void;
  };
}
