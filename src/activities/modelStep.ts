/**
 * ModelStep: one attempt of one model step. It streams from the upstream into the step's
 * log (the LiveHub's, so readers in this process follow at once, placed by `StepAttempt`),
 * and reports to Temporal through the attempt's task token: the result (the assembled message
 * and the step's events) or the classified failure. It heartbeats nothing while it streams:
 * its process's lease (./lease) proves it alive and names its trace; it heartbeats once to hear
 * of a cancellation (`checkCancel`) and once before a retryable failure, so the retry, wherever
 * it runs, knows what clients hold. `callModel` completes asynchronously, so an open stream
 * holds no activity slot and no SDK activity state, only this object. An attempt can start
 * before its activity task exists (a prestart, see ./modelSteps): it streams into the log and
 * settles once it has a token.
 */
import { ActivityCancelledError, ActivityNotFoundError, ActivityPausedError, ActivityResetError, type AsyncCompletionClient } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { LiveHub } from '../connectors/liveHub';
import { digestMessages, type ChatBody, type ChatMessageIn, type UpstreamContinuation } from '../connectors/dialects/dialect';
import { UpstreamUnavailableError, type UpstreamClient } from '../connectors/upstream';
import type { Metrics } from '../telemetry/metrics';
import { failSpan, providerOf, SpanKind, traceHeaders, tracer } from '../telemetry/tracing';
import { MessageAccumulator, type ChatMessage, type Delta, type Usage } from '../domain/chat';
import { contextLengthMessage, fitToWindow, fixedCost } from '../domain/contextGuard';
import { tokenCounterFor } from '../domain/tokens';
import { stepEnd } from '../domain/stepRequest';
import { offerTools, withInstruction } from '../domain/stepTools';
import type { RunEvent } from '../domain/events';
import type { StepLog } from '../domain/stepLog';
import type { HeldEntry, LostStep } from '../domain/lease';
import type { HeldActivity } from './lease';
import { FailureType, wireError, type CallModelInput, type CallModelResult, type StoredResponse, type ToolOfferRecord } from '../domain/run';
import { StepAttempt } from '../domain/stepAttempt';
import { ClientCallFilter, clientCallId } from '../domain/toolCalls';
import { classifyUpstreamError } from './classify';

export interface StepContext {
  hub: LiveHub;
  completion: AsyncCompletionClient;
  upstreams: ReadonlyMap<string, UpstreamClient>;
  metrics: Metrics;
}

type Outcome = { ok: true; result: CallModelResult } | { ok: false; error: unknown };

/**
 * A step's result carries its whole output into the run's history, and Temporal refuses
 * payloads over 2 MB; past this, the step fails instead of being retried forever.
 */
export const MAX_STEP_RESULT_BYTES = 1_900_000;

function tooLarge(bytes: number): ApplicationFailure {
  const msg = `the model's answer in this step is too large to record (${bytes} bytes of JSON; the limit is ${MAX_STEP_RESULT_BYTES}, under Temporal's 2 MB payload limit)`;
  return ApplicationFailure.create({ type: FailureType.TooLarge, message: msg, nonRetryable: true, details: [wireError(502, msg, 'upstream_error', 'step_output_too_large')] });
}

function cleanDelta(d: (Delta & { role?: string }) | undefined): Delta | null {
  if (!d) return null;
  const out: Delta = {};
  if (typeof d.content === 'string' && d.content !== '') out.content = d.content;
  if (typeof d.reasoning_content === 'string' && d.reasoning_content !== '') out.reasoning_content = d.reasoning_content;
  if (typeof d.refusal === 'string' && d.refusal !== '') out.refusal = d.refusal;
  if (Array.isArray(d.reasoning_details) && d.reasoning_details.length > 0) out.reasoning_details = d.reasoning_details;
  if (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) out.tool_calls = d.tool_calls;
  return Object.keys(out).length > 0 ? out : null;
}

function countTokens(metrics: Metrics, upstream: string, u: Usage | undefined): void {
  if (!u) return;
  metrics.modelTokens.inc({ upstream, type: 'prompt' }, u.prompt_tokens);
  metrics.modelTokens.inc({ upstream, type: 'completion' }, u.completion_tokens);
  const cached = u.prompt_tokens_details?.cached_tokens;
  if (cached) metrics.modelTokens.inc({ upstream, type: 'cached_prompt' }, cached);
}

function normUsage(u: Usage | null | undefined): Usage | undefined {
  if (!u) return undefined;
  const p = u.prompt_tokens ?? 0;
  const c = u.completion_tokens ?? 0;
  const r = u.completion_tokens_details?.reasoning_tokens;
  const cached = u.prompt_tokens_details?.cached_tokens;
  return {
    prompt_tokens: p,
    completion_tokens: c,
    total_tokens: u.total_tokens ?? p + c,
    ...(typeof cached === 'number' && cached > 0 ? { prompt_tokens_details: { cached_tokens: cached } } : {}),
    ...(typeof r === 'number' ? { completion_tokens_details: { reasoning_tokens: r } } : {}),
  };
}

/**
 * Reports to Temporal, riding out a short outage; if it stays away, the process's lease lapses
 * and the step moves to another attempt.
 */
async function reporting(fn: () => Promise<void>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof ActivityNotFoundError || i >= 4) throw e;
      await new Promise((ok) => setTimeout(ok, 200 * 2 ** i));
    }
  }
}

export class ModelStep {
  private readonly abort = new AbortController();
  private token: Uint8Array | null = null;
  private activity: HeldActivity | null = null;
  private outcome: Outcome | null = null;
  private settled = false;
  private releasedOnce = false;
  private onRelease: () => void = () => undefined;
  /** Resolves once this attempt no longer writes to the step's log. */
  readonly released = new Promise<void>((ok) => (this.onRelease = ok));
  private readonly log: StepLog;

  constructor(
    private readonly ctx: StepContext,
    readonly input: CallModelInput,
    readonly attempt: number,
    /** What earlier attempts streamed, when they ran elsewhere (heartbeat details, or the fallback's input). */
    prior: readonly RunEvent[],
  ) {
    const { log, exact } = ctx.hub.openStep(input.runId, input.step, prior);
    this.log = log;
    void this.stream(new StepAttempt(log, { attempt, continuation: input.continuation, exact, ...(input.trace ? { trace: input.trace } : {}) })).then((o) => {
      this.outcome = o;
      return this.settle();
    });
  }

  /** The attempt's activity task: from now on it reports to Temporal. */
  attach(taskToken: Uint8Array, activity: HeldActivity): void {
    this.token = taskToken;
    this.activity = activity;
    void this.settle();
  }

  /** What the process's lease says of this attempt while it is attached and unsettled. */
  held(): HeldEntry | null {
    const a = this.activity;
    if (!a || this.settled) return null;
    const t = this.log.trace();
    return [a.workflowId, a.runId, a.activityId, a.attempt, this.log.step, t?.n ?? this.log.nextSeq, t?.h ?? ''];
  }

  /** Stops streaming; an attached attempt reports nothing more (its lease is gone or handed back). */
  stop(reason: string): void {
    this.abort.abort(new Error(reason));
    this.settled = true;
    this.release();
  }

  /**
   * Fails the attached attempt as `ProcessLost` (this process is going away), with everything it
   * streamed, so its run moves the step to a live process at once; then stops.
   */
  async handBack(why = 'the process running this step shut down'): Promise<void> {
    const token = this.token;
    this.stop(why);
    if (!token) return;
    const lost: LostStep = { step: this.log.step, events: this.log.events };
    const failure = ApplicationFailure.create({ type: FailureType.ProcessLost, message: why, nonRetryable: true, details: [lost] });
    await this.ctx.completion.fail(token, failure).catch(() => undefined);
  }

  /**
   * Asks Temporal about this attempt once (a heartbeat): when its run cancelled it, stops and
   * reports the cancellation. Whether it was cancelled.
   */
  async checkCancel(): Promise<boolean> {
    const token = this.token;
    if (this.settled || !token) return false;
    try {
      await this.ctx.completion.heartbeat(token);
      return false;
    } catch (e) {
      if (e instanceof ActivityCancelledError || e instanceof ActivityPausedError || e instanceof ActivityResetError) {
        this.stop('cancelled');
        await this.ctx.completion.reportCancellation(token).catch(() => undefined);
        return true;
      }
      if (e instanceof ActivityNotFoundError) this.stop('the attempt is gone');
      return false;
    }
  }

  private async stream(attempt: StepAttempt): Promise<Outcome> {
    const { input, ctx } = this;
    try {
      const fitted = this.fit();
      let body = fitted.body;
      if (attempt.prefill !== null) body = { ...body, messages: [...body.messages, { role: 'assistant', content: attempt.prefill, prefix: true }] };
      const serverTools = new Set(input.serverTools ?? []);
      const calls = new ClientCallFilter(
        (name) => serverTools.has(name),
        (n) => (input.runScopedCallIds ? clientCallId(input.runId, n) : null),
      );
      const acc = new MessageAccumulator();
      if (attempt.prefill !== null) acc.add({ content: attempt.prefill });
      let finishReason = 'stop';
      let usage: Usage | undefined;
      let responseId: string | undefined;
      // The route's upstream, then its fallbacks: the next is tried only while nothing has streamed.
      const targets = [{ upstream: input.upstream, upstreamModel: input.body.model as string }, ...(input.fallbacks ?? [])];
      let answered: string | undefined;
      const { metrics } = ctx;
      if (this.attempt > 1) metrics.modelRetries.inc({ upstream: input.upstream });
      for (const [i, target] of targets.entries()) {
        const upstream = ctx.upstreams.get(target.upstream);
        const last = i === targets.length - 1;
        if (!upstream) {
          const msg = `no upstream named "${target.upstream}" on this worker`;
          throw ApplicationFailure.create({ type: FailureType.Config, message: msg, nonRetryable: true, details: [wireError(500, msg, 'server_error', 'config_error')] });
        }
        if (!upstream.breaker.allow()) {
          metrics.modelCalls.inc({ upstream: target.upstream, outcome: 'breaker_open' });
          if (!last) {
            metrics.modelFallbacks.inc({ upstream: target.upstream });
            continue;
          }
          throw classifyUpstreamError(new UpstreamUnavailableError(target.upstream, upstream.breaker.waitMs()), target.upstream);
        }
        let started = false;
        // What a target that failed before its first byte reported is not the answer's.
        finishReason = 'stop';
        usage = undefined;
        responseId = undefined;
        const sentAt = performance.now();
        const span = tracer().startSpan(`chat ${target.upstreamModel}`, {
          kind: SpanKind.CLIENT,
          attributes: {
            'gen_ai.operation.name': 'chat',
            'gen_ai.provider.name': providerOf(upstream.cfg.api),
            'gen_ai.request.model': target.upstreamModel,
            'mix2api.upstream': target.upstream,
            'mix2api.run_id': input.runId,
            'mix2api.step': input.step,
            'mix2api.attempt': this.attempt,
            ...(i > 0 ? { 'mix2api.fallback': i } : {}),
          },
        });
        try {
          const from = i === 0 ? this.continuation(body) : undefined;
          for await (const chunk of upstream.streamChat({ ...body, model: target.upstreamModel }, this.abort.signal, from, traceHeaders(span))) {
            usage = normUsage(chunk.usage) ?? usage;
            if (chunk.id && upstream.cfg.storeResponses) responseId = chunk.id;
            const choice = chunk.choices?.[0];
            if (!choice) continue;
            const delta = cleanDelta(choice.delta);
            if (delta) {
              if (!started) {
                const ttft = performance.now() - sentAt;
                metrics.modelTimeToFirstToken.observe({ upstream: target.upstream }, ttft / 1000);
                span.setAttribute('mix2api.ttft_ms', Math.round(ttft));
              }
              started = true;
              acc.add(delta);
              const forClient = calls.pass(delta);
              if (forClient) {
                attempt.add(forClient);
                ctx.hub.changed(input.runId);
              }
            }
            if (choice.finish_reason) finishReason = choice.finish_reason;
          }
          upstream.breaker.success();
          answered = target.upstream;
          metrics.modelCalls.inc({ upstream: target.upstream, outcome: 'ok' });
          countTokens(metrics, target.upstream, usage);
          span.setAttributes({
            'gen_ai.response.finish_reasons': [finishReason],
            ...(usage ? { 'gen_ai.usage.input_tokens': usage.prompt_tokens, 'gen_ai.usage.output_tokens': usage.completion_tokens } : {}),
            ...(usage?.prompt_tokens_details?.cached_tokens ? { 'gen_ai.usage.cache_read.input_tokens': usage.prompt_tokens_details.cached_tokens } : {}),
            ...(responseId ? { 'gen_ai.response.id': responseId } : {}),
          });
          span.end();
          break;
        } catch (e) {
          const failure = classifyUpstreamError(e, target.upstream);
          const retryable = failure instanceof ApplicationFailure && !failure.nonRetryable;
          // Cancelled, or our own bulkhead: nothing learnt about the upstream. A 4xx: it is up.
          if (this.abort.signal.aborted || (failure instanceof ApplicationFailure && failure.type === FailureType.Busy)) upstream.breaker.abandon();
          else if (retryable) upstream.breaker.failure();
          else upstream.breaker.success();
          metrics.modelCalls.inc({ upstream: target.upstream, outcome: this.abort.signal.aborted ? 'cancelled' : retryable ? 'retryable_error' : 'error' });
          failSpan(span, failure instanceof ApplicationFailure ? (failure.type ?? 'Error') : 'Error', failure instanceof Error ? failure.message : String(failure));
          if (started || !retryable || last || this.abort.signal.aborted) throw failure;
          metrics.modelFallbacks.inc({ upstream: target.upstream });
        }
      }
      attempt.finish();
      ctx.hub.changed(input.runId);
      const message = acc.message();
      // What the upstream now stores: this request's messages and the answer (a trimmed or
      // prefilled request is not the conversation, and a fallback's response is not the route's).
      const stored: StoredResponse | undefined =
        responseId && answered === input.upstream && !fitted.dropped && attempt.prefill === null
          ? { upstream: input.upstream, responseId, messageCount: body.messages.length + 1, digest: digestMessages([...body.messages, message as ChatMessageIn]) }
          : undefined;
      if (message.tool_calls?.length && finishReason === 'stop') finishReason = 'tool_calls';
      const result: CallModelResult = {
        message,
        finishReason,
        usage,
        events: this.log.events,
        nextSeq: this.log.nextSeq,
        attempt: this.attempt + (input.moves ?? 0),
        ...(answered && (answered !== input.upstream || input.fallbacks?.length) ? { upstream: answered } : {}),
        ...(stored ? { stored } : {}),
        ...(fitted.dropped ? { trimmed: fitted.dropped } : {}),
        ...(fitted.offer ? { tools: fitted.offer } : {}),
      };
      const bytes = Buffer.byteLength(JSON.stringify(result));
      if (bytes > MAX_STEP_RESULT_BYTES) throw tooLarge(bytes);
      return { ok: true, result };
    } catch (error) {
      return { ok: false, error };
    }
  }

  /** The stored response this step may continue: same upstream, and the messages it holds start this request. */
  private continuation(body: ChatBody): UpstreamContinuation | undefined {
    const f = this.input.from;
    if (!f || f.upstream !== this.input.upstream || f.messageCount > body.messages.length) return undefined;
    return digestMessages(body.messages.slice(0, f.messageCount)) === f.digest ? f : undefined;
  }

  /**
   * The step's body: its tools and tool instruction shaped for this step (domain/stepTools), then
   * trimmed to the model's context window when it has one.
   */
  private fit(): { body: ChatBody; dropped: number; offer?: ToolOfferRecord } {
    const { input } = this;
    const given = input.body as unknown as ChatBody;
    const { body, offer } = offerTools({ ...given, messages: withInstruction(given.messages as ChatMessage[], input.step, input.toolInstruction) as ChatBody['messages'] }, input.serverTools ?? [], input.toolSelection);
    if (!input.contextTokens) return { body, dropped: 0, offer };
    const messages = body.messages as ChatMessage[];
    const counter = tokenCounterFor(body.model, this.ctx.upstreams.get(input.upstream)?.cfg.api);
    const fixed = fixedCost(body, undefined, counter);
    const fitted = input.trim === false ? null : fitToWindow(messages, input.contextTokens, fixed, counter);
    if (fitted) return { body: { ...body, messages: fitted.messages as ChatBody['messages'] }, dropped: fitted.dropped, offer };
    const need = counter.count(messages) + fixed;
    if (input.trim === false && need <= input.contextTokens) return { body, dropped: 0, offer };
    const msg = contextLengthMessage(need, input.contextTokens, input.trim !== false, counter.method);
    throw ApplicationFailure.create({ type: FailureType.ContextLength, message: msg, nonRetryable: true, details: [wireError(400, msg, 'invalid_request_error', 'context_length_exceeded', 'messages')] });
  }

  /** Reports the outcome once there is both an outcome and a task token. */
  private async settle(): Promise<void> {
    const { token, outcome } = this;
    if (!token || !outcome || this.settled) return;
    this.settled = true;
    try {
      if (outcome.ok) {
        await reporting(() => this.ctx.completion.complete(token, outcome.result));
        const { result } = outcome;
        // No tool calls: the workflow will end the run with exactly this. Tell the readers here
        // now, rather than after the workflow's next task (it records the same event).
        if (!result.message.tool_calls?.length) this.ctx.hub.ended(this.input.runId, stepEnd(this.input, result));
      } else {
        // A retry may run in another process: the step's one heartbeat tells it what clients hold.
        const retryable = !(outcome.error instanceof ApplicationFailure && outcome.error.nonRetryable);
        if (retryable && this.log.nextSeq > 0) await reporting(() => this.ctx.completion.heartbeat(token, this.log.progress()));
        await reporting(() => this.ctx.completion.fail(token, outcome.error));
      }
    } catch {
      // The attempt is no longer ours to report (timed out, or the run closed): Temporal decides.
    } finally {
      this.release();
    }
  }

  private release(): void {
    if (this.releasedOnce) return;
    this.releasedOnce = true;
    this.ctx.hub.releaseStep(this.input.runId);
    this.onRelease();
  }
}
