/**
 * Resolves the model a client asked for to an upstream, the upstream's model name, and the
 * retry/timeout settings of that upstream.
 */
import type { Config } from '../../config/load';
import type { UpstreamClient } from '../../connectors/upstream';
import type { ModelRoute } from '../../domain/run';
import { ApiError } from '../http/errors';
import { ToolSelectionSchema } from '../../config/schema';

/** A model without an entry (passthrough) selects tools as an entry with no settings does. */
const DEFAULT_TOOL_SELECTION = ToolSelectionSchema.parse({});

export interface ExposedModel {
  id: string;
  upstream: string;
}

/** How long the upstream's model list is reused in pass-through mode. */
const UPSTREAM_MODELS_TTL_MS = 60_000;

export class ModelRouter {
  private upstreamModels: { at: number; ids: string[] } | null = null;

  constructor(
    private readonly config: Config,
    private readonly passthrough: UpstreamClient | null = null,
  ) {}

  /** Configured models; in pass-through mode, the upstream's own list (cached, empty if it fails). */
  async list(): Promise<ExposedModel[]> {
    if (!this.config.passthroughModels || !this.passthrough) return this.config.models.map((m) => ({ id: m.id, upstream: m.upstream }));
    if (!this.upstreamModels || Date.now() - this.upstreamModels.at > UPSTREAM_MODELS_TTL_MS) {
      const ids = await this.passthrough.listModels().catch(() => this.upstreamModels?.ids ?? []);
      this.upstreamModels = { at: Date.now(), ids };
    }
    const upstream = this.passthrough.cfg.name;
    return this.upstreamModels.ids.map((id) => ({ id, upstream }));
  }

  resolve(model: string): ModelRoute {
    const entry = this.config.models.find((m) => m.id === model);
    const upstreamName = entry?.upstream ?? (this.config.passthroughModels ? this.config.upstreams[0]?.name : undefined);
    const up = this.config.upstreams.find((u) => u.name === upstreamName);
    if (!up) {
      throw new ApiError(404, `The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found', 'model');
    }
    const fallbacks = (entry?.fallbacks ?? []).map((f) => ({ upstream: f.upstream, upstreamModel: f.model ?? entry?.model ?? model }));
    // One attempt may wait for each upstream's headers before the last one answers in full.
    const ups = [up, ...fallbacks.map((f) => this.config.upstreams.find((u) => u.name === f.upstream)!)];
    const totalSeconds = Math.max(...ups.map((u) => u.timeouts.totalSeconds)) + ups.slice(0, -1).reduce((s, u) => s + u.timeouts.connectSeconds, 0);
    return {
      exposedModel: model,
      upstream: up.name,
      upstreamModel: entry?.model ?? model,
      retry: up.retry,
      totalSeconds,
      continuation: up.continuation,
      ...(fallbacks.length ? { fallbacks } : {}),
      ...(entry?.contextTokens ? { contextTokens: entry.contextTokens, trim: entry.trim } : {}),
      toolSelection: entry?.toolSelection ?? DEFAULT_TOOL_SELECTION,
      ...(entry?.toolInstruction ? { toolInstruction: entry.toolInstruction } : {}),
    };
  }
}
