/**
 * Resolves the model a client asked for to an upstream, the upstream's model name, and the
 * retry/timeout settings of that upstream.
 */
import type { Config } from '../config/load';
import type { ModelRoute } from '../domain/run';
import { ApiError } from './errors';

export interface ExposedModel {
  id: string;
  upstream: string;
}

export class ModelRouter {
  constructor(private readonly config: Config) {}

  list(): ExposedModel[] {
    return this.config.models.map((m) => ({ id: m.id, upstream: m.upstream }));
  }

  resolve(model: string): ModelRoute {
    const entry = this.config.models.find((m) => m.id === model);
    const upstreamName = entry?.upstream ?? (this.config.passthroughModels ? this.config.upstreams[0]?.name : undefined);
    const up = this.config.upstreams.find((u) => u.name === upstreamName);
    if (!up) {
      throw new ApiError(404, `The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found', 'model');
    }
    return {
      exposedModel: model,
      upstream: up.name,
      upstreamModel: entry?.model ?? model,
      retry: up.retry,
      totalSeconds: up.timeouts.totalSeconds,
      continuation: up.continuation,
    };
  }
}
