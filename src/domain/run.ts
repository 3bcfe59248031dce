/**
 * The contract between the API, the workflows and the activities: inputs and results of a
 * run and of one model step. Plain data only: it crosses Temporal's payload converter.
 */
import type { AssistantMessage, Usage } from './chat';
import type { WireError } from './events';

export const EVENTS_QUERY = 'mix2api.events';
export const RESULT_QUERY = 'mix2api.result';

export interface RetrySettings {
  maxAttempts: number;
  initialIntervalSeconds: number;
  maxIntervalSeconds: number;
}

export interface ModelRoute {
  /** The model id the client asked for. */
  exposedModel: string;
  upstream: string;
  upstreamModel: string;
  retry: RetrySettings;
  /** Per attempt. */
  totalSeconds: number;
  continuation: 'none' | 'prefill';
}

export interface ChatCompletionInput {
  route: ModelRoute;
  /** The client's request minus `model`, `stream`, `stream_options`: forwarded as is. */
  body: Record<string, unknown>;
  /** Task queue of the API instance holding the client's connection (live deltas). */
  liveTaskQueue?: string;
  batchMs: number;
  maxSteps: number;
  /** For the Temporal UI: `apiKeyName` of the caller. */
  keyName?: string;
}

export interface StepRecord {
  step: number;
  kind: 'model';
  attempt?: number;
  finishReason: string;
  usage?: Usage;
}

export interface ChatCompletionResult {
  id: string;
  created: number;
  model: string;
  message: AssistantMessage;
  finishReason: string;
  usage?: Usage;
  steps: StepRecord[];
}

export interface CallModelInput {
  runId: string;
  step: number;
  upstream: string;
  body: Record<string, unknown>;
  batchMs: number;
  continuation: 'none' | 'prefill';
}

export interface CallModelResult {
  message: AssistantMessage;
  finishReason: string;
  usage?: Usage;
  /** First free seq of this step after the model's deltas. */
  nextSeq: number;
  attempt: number;
}

/** ApplicationFailure types mix2api raises; the API maps them to HTTP statuses. */
export const FailureType = {
  RateLimit: 'UpstreamRateLimit',
  ServerError: 'UpstreamServerError',
  Timeout: 'UpstreamTimeout',
  Connection: 'UpstreamConnection',
  Rejected: 'UpstreamRejected',
  Protocol: 'UpstreamProtocol',
  Config: 'ConfigError',
} as const;

export function wireError(status: number, message: string, type: string, code: string | null = null, param: string | null = null): WireError {
  return { status, message, type, code, param };
}
