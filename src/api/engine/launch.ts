/**
 * The engine every front door shares: a validated Chat Completions body is routed, checked
 * (context window, limits) and started as a run (or joined to its earlier run), and the door
 * follows it by its events or its result. The run never depends on the request's connection:
 * a client that leaves does not stop it unless `loop.onDisconnect: cancel`.
 */
import type { Request, Response } from 'express';
import type { Client } from '@temporalio/client';
import type { Config } from '../../config/load';
import type { LiveHub } from '../../connectors/liveHub';
import type { ChatMessage } from '../../domain/chat';
import { contextLengthMessage, fitToWindow, fixedCost } from '../../domain/contextGuard';
import { tokenCounterFor, type TokenCounter } from '../../domain/tokens';
import { referencedRuns, rejoin } from '../../domain/rejoin';
import { STATE_QUERY, type CallModelInput, type ChatCompletionInput, type RunBudgets, type ChatCompletionResult, type HiddenSteps, type RunState } from '../../domain/run';
import { firstStepRequest } from '../../domain/stepRequest';
import { resolveTools } from './tools';
import { ApiError, badRequest } from '../http/errors';
import { implicitRun, type AnsweredRuns } from './implicitKey';
import { queryRun } from '../http/query';
import { relayRun, relaySettings } from '../http/relay';
import { runIdFor, sessionIdOf, sessionWorkflowId, startRun } from './startRun';
import type { KeyLimiter } from '../http/limits';
import type { ModelRouter } from './routing';
import type { Metrics } from '../../telemetry/metrics';
import type { ChatCompletionRequest } from './request';
import type { RunEvent } from '../../domain/events';

export interface CompletionDeps {
  config: Config;
  client: Client;
  live: LiveHub;
  liveTaskQueue: string;
  router: ModelRouter;
  limiter: KeyLimiter;
  /** Runs whose answer this process has streamed (for the implicit idempotency key). */
  answered: AnsweredRuns;
  metrics: Metrics;
  /**
   * Starts a run's first model call in this process while the run itself is being started, so
   * the upstream's first token is not kept waiting on Temporal; the run's `callModel` adopts it
   * (see activities/modelSteps). Absent: no prestart.
   */
  prestart?: { start(call: CallModelInput): void; cancel(runId: string): void };
}

function firstWords(messages: Array<{ role: string; content?: unknown }>): string {
  const last = [...messages].reverse().find((m) => m.role === 'user');
  const text = typeof last?.content === 'string' ? last.content : Array.isArray(last?.content) ? JSON.stringify(last.content) : '';
  return text.replace(/\s+/g, ' ').slice(0, 80);
}

/** Earlier runs one request may continue: each costs a Temporal query. */
export const MAX_REJOIN_RUNS = 64;
/** Those queries in flight at once, per request. */
const REJOIN_CONCURRENCY = 8;

/** Hidden server-side steps of the caller's earlier runs this conversation continues (see domain/rejoin). */
async function rejoinHidden(client: Client, messages: ChatMessage[], keyName: string): Promise<ChatMessage[]> {
  const runs = referencedRuns(messages);
  if (runs.length === 0) return messages;
  if (runs.length > MAX_REJOIN_RUNS)
    throw badRequest(`messages: assistant tool_calls refer to ${runs.length} earlier mix2api runs; at most ${MAX_REJOIN_RUNS} per request (use a session, X-Session-Id, for longer conversations)`, 'messages', 'too_many_rejoined_runs');
  const hidden = new Map<string, HiddenSteps>();
  const queue = [...runs];
  const worker = async () => {
    for (let run = queue.shift(); run !== undefined; run = queue.shift()) {
      const state = await queryRun<RunState>(client, client.workflow.getHandle(run), STATE_QUERY).catch(() => null);
      // Another key's run is not ours to read, whatever ids the request carries.
      if (state?.result?.hidden && (state.keyName ?? 'anonymous') === keyName) hidden.set(run, state.result.hidden);
    }
  };
  await Promise.all(Array.from({ length: Math.min(REJOIN_CONCURRENCY, runs.length) }, worker));
  return rejoin(messages, hidden);
}

/**
 * Refuses, before anything starts, a request over its model's context window that trimming
 * cannot save (trimming off, or too big even with every older turn left out). Server-side
 * tools' definitions are not known yet: a run that grows past the window later fails its step.
 */
function checkContext(limit: number, trim: boolean, messages: ChatMessage[], body: Record<string, unknown>, clientTools: unknown[] | undefined, counter: TokenCounter): void {
  const fixed = fixedCost(body, clientTools ?? [], counter);
  if (trim ? fitToWindow(messages, limit, fixed, counter) : counter.count(messages) + fixed <= limit) return;
  throw new ApiError(400, contextLengthMessage(counter.count(messages) + fixed, limit, trim, counter.method), 'invalid_request_error', 'context_length_exceeded', 'messages');
}

/** A started (or joined) run, and how to follow it. */
export interface LaunchedRun {
  runId: string;
  /** The run's events when the request streams (its lease ends with the last one); null otherwise. */
  events: AsyncGenerator<RunEvent> | null;
  /** The run's result (non-streaming): a client that leaves stops this wait, not the run. */
  result(): Promise<ChatCompletionResult>;
}

/** The run's budgets, when any is configured (a run without them carries none). */
function budgetsOf(loop: Config['loop']): { budgets?: RunBudgets } {
  const budgets: RunBudgets = {
    ...(loop.maxModelCalls !== undefined ? { modelCalls: loop.maxModelCalls } : {}),
    ...(loop.maxToolCalls !== undefined ? { toolCalls: loop.maxToolCalls } : {}),
    ...(loop.maxTokens !== undefined ? { tokens: loop.maxTokens } : {}),
  };
  return Object.keys(budgets).length > 0 ? { budgets } : {};
}

/**
 * Routes, checks limits and starts (or joins) the run for a validated Chat Completions body:
 * the engine every front door shares. `raw` is the body as the client sent it (what a
 * gateway's retry repeats, for the implicit idempotency key).
 */
export async function launchRun(d: CompletionDeps, req: Request, res: Response, body: ChatCompletionRequest, raw: unknown): Promise<LaunchedRun> {
  const route = d.router.resolve(body.model);
  const tools = resolveTools(d.config, body);
  const keyName = String(res.locals.keyName ?? 'anonymous');
  const explicitKey = req.header('idempotency-key');
  let runId = runIdFor(explicitKey, keyName);
  const sessionId = sessionIdOf(req.header('x-session-id'), body.metadata);
  // A gateway's retry of a tool-running request finds the earlier run (see implicitKey).
  const { implicitSeconds, replayCompleted } = d.config.idempotency;
  const implicit = explicitKey === undefined && sessionId === null && tools.servers.length > 0 && implicitSeconds > 0 ? await implicitRun(d.client, keyName, raw, { windowSeconds: implicitSeconds, replayCompleted, taskQueue: d.config.temporal.taskQueue, answered: d.answered }) : null;
  if (implicit) runId = implicit.runId;
  const { model: _m, stream, stream_options: _o, tools: _t, metadata, ...rest } = body;
  // `session_id` is for mix2api; other metadata goes upstream as sent.
  const { session_id: _s, ...upstreamMetadata } = metadata ?? {};
  if (Object.keys(upstreamMetadata).length > 0) Object.assign(rest, { metadata: upstreamMetadata });
  const messages = await rejoinHidden(d.client, rest.messages, keyName);
  if (route.contextTokens) checkContext(route.contextTokens, route.trim !== false, messages as ChatMessage[], rest, tools.clientTools, tokenCounterFor(route.upstreamModel, d.config.upstreams.find((u) => u.name === route.upstream)?.api));
  // Limits, before anything starts: a stream slot here, then the key's run (and session) lease.
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  if (stream) res.once('close', d.limiter.openStream(keyName));
  const ledger = await d.limiter.admit(keyName, runId, sessionId ? sessionWorkflowId(keyName, sessionId) : null);
  const input: ChatCompletionInput = {
    route,
    body: { ...rest, messages, ...(tools.clientTools?.length ? { tools: tools.clientTools } : {}) },
    mcpServers: tools.servers,
    approvalTimeoutSeconds: d.config.loop.approvalTimeoutSeconds,
    searchAttributes: d.config.temporal.searchAttributes === true,
    liveTaskQueue: stream ? d.liveTaskQueue : undefined,
    maxSteps: d.config.loop.maxSteps,
    ...budgetsOf(d.config.loop),
    keyName,
    ...(implicit?.reuse ? { reuseToolResults: implicit.reuse } : {}),
  };

  // A run with a fixed id may exist already (then it is joined, and its log read first).
  const fresh = explicitKey === undefined && sessionId === null && !implicit?.existing;
  // Subscribe before starting so the first live delta cannot be missed.
  const events = stream ? relayRun({ client: d.client, live: d.live, runId, signal: abort.signal, fresh, ...relaySettings(d.config) }) : null;
  const first = stream && fresh && d.prestart ? firstStepRequest(runId, input) : null;
  if (first) d.prestart!.start(first);
  const handle = await startRun(d.config, d.client, {
    runId,
    input,
    summary: `${body.model}: ${firstWords(body.messages)}`,
    model: body.model,
    keyName,
    sessionId,
    ledger,
  }).catch((e: unknown) => {
    abort.abort(); // drops the relay's live subscription
    if (first) d.prestart!.cancel(runId);
    d.limiter.ended(keyName, runId);
    throw e;
  });
  res.setHeader('X-Run-Id', runId);
  d.metrics.activeRuns.inc();
  res.once('close', () => d.metrics.activeRuns.dec());

  const result = async () => {
    // The ledger's sweep ends the lease of a run whose client left.
    const r = (await d.client.connection.withAbortSignal(abort.signal, () => handle.result()).catch((e: unknown) => {
      if (!abort.signal.aborted) d.limiter.ended(keyName, runId);
      throw e;
    })) as ChatCompletionResult;
    d.limiter.ended(keyName, runId);
    return r;
  };
  if (!events) return { runId, events: null, result };
  if (d.config.loop.onDisconnect === 'cancel') {
    abort.signal.addEventListener('abort', () => {
      if (!res.writableFinished) void handle.cancel().catch(() => undefined);
    });
  }
  return { runId, events: endingLease(events, d, keyName, runId), result };
}

/**
 * A run's events that end its lease with its last one (a client that leaves before it leaves
 * that to the ledger's sweep) and mark it answered at its `end`.
 */
export async function* endingLease(events: AsyncGenerator<RunEvent>, d: Pick<CompletionDeps, 'limiter' | 'answered'>, keyName: string, runId: string): AsyncGenerator<RunEvent> {
  for await (const e of events) {
    if (e.t === 'end') d.answered.add(runId);
    if (e.t === 'end' || e.t === 'error') d.limiter.ended(keyName, runId);
    yield e;
  }
}
