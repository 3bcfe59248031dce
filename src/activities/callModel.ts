/**
 * `callModel`: one model step. Streams from the upstream, hands each delta to the live
 * channel and (batched) to the durable log, heartbeats so a dead worker is noticed in
 * seconds, and returns the assembled assistant message. A retried attempt publishes a
 * `retry` event and resumes the step from what was already published (see `resumeStep`).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import { WorkflowStreamClient } from '@temporalio/workflow-streams/client';
import type { LiveHub } from '../connectors/liveHub';
import type { UpstreamClient } from '../connectors/upstream';
import { MessageAccumulator, addUsage, clientReply, type Delta, type Usage } from '../domain/chat';
import type { RunEvent } from '../domain/events';
import { ClientCallFilter, clientCallId } from '../domain/toolCalls';
import { EVENTS_QUERY, FailureType, wireError, type CallModelInput, type CallModelResult } from '../domain/run';
import { classifyUpstreamError } from './classify';
import { DeltaPublisher } from './deltaPublisher';
import { PrefixSkipper } from './prefixSkipper';

export interface ModelDeps {
  client: Client;
  live: LiveHub;
  upstreams: ReadonlyMap<string, UpstreamClient>;
}

const HEARTBEAT_MS = 2000;
/** More deltas than one durable batch can hold back from the log (batchMs of a fast stream). */
const LIVE_AHEAD_MARGIN = 1000;

/** What earlier attempts of this step already put in the durable log. */
async function publishedSoFar(deps: ModelDeps, runId: string, step: number): Promise<{ nextSeq: number; content: string; base: number }> {
  const events = await deps.client.workflow.getHandle(runId).query<RunEvent[], [{ step: number; seq: number }]>(EVENTS_QUERY, { step, seq: -1 });
  let nextSeq = 0;
  let content = '';
  let base = 0; // where the latest attempt's deltas start
  for (const e of events) {
    if (e.step !== step) continue;
    if (e.t === 'deltas') {
      nextSeq = Math.max(nextSeq, e.seq0 + e.d.length);
      for (const d of e.d) content += d.content ?? '';
    } else {
      nextSeq = Math.max(nextSeq, e.seq + 1);
      // Clients hold every delta of the step, across attempts: that is the text to continue from.
      if (e.t === 'retry') base = e.seq + 1;
    }
  }
  return { nextSeq, content, base };
}

function cleanDelta(d: (Delta & { role?: string }) | undefined): Delta | null {
  if (!d) return null;
  const out: Delta = {};
  if (typeof d.content === 'string' && d.content !== '') out.content = d.content;
  if (typeof d.reasoning_content === 'string' && d.reasoning_content !== '') out.reasoning_content = d.reasoning_content;
  if (typeof d.refusal === 'string' && d.refusal !== '') out.refusal = d.refusal;
  if (Array.isArray(d.tool_calls) && d.tool_calls.length > 0) out.tool_calls = d.tool_calls;
  return Object.keys(out).length > 0 ? out : null;
}

function normUsage(u: Usage | null | undefined): Usage | undefined {
  if (!u) return undefined;
  const p = u.prompt_tokens ?? 0;
  const c = u.completion_tokens ?? 0;
  return { prompt_tokens: p, completion_tokens: c, total_tokens: u.total_tokens ?? p + c };
}

export function createModelActivities(deps: ModelDeps) {
  return {
    async callModel(input: CallModelInput): Promise<CallModelResult> {
      const ctx = Context.current();
      const upstream = deps.upstreams.get(input.upstream);
      if (!upstream) {
        const msg = `no upstream named "${input.upstream}" on this worker`;
        throw ApplicationFailure.create({ type: FailureType.Config, message: msg, nonRetryable: true, details: [wireError(500, msg, 'server_error', 'config_error')] });
      }
      const attempt = ctx.info.attempt;
      const prior = attempt > 1 || input.resume ? await publishedSoFar(deps, input.runId, input.step) : { nextSeq: 0, content: '', base: 0 };
      // The shared-queue fallback after the live queue's instance died mid-step: its clients may hold
      // more of the step than the log (the live path runs up to a batch ahead), so while the restarted
      // step repeats the log it keeps the first attempt's positions, and it notes a retry only if it differs.
      let aligned = attempt === 1 && prior.nextSeq > 0;
      const stream = WorkflowStreamClient.create(deps.client, input.runId, { batchInterval: input.batchMs });
      const pub = new DeltaPublisher(input.runId, input.step, aligned ? prior.base : prior.nextSeq, stream, deps.live, input.batchMs);
      const diverge = () => {
        aligned = false;
        // Clients of the dead instance may hold live deltas the log never got: jump past any of
        // them so the retry note and the new text reach every client.
        pub.skipTo(prior.nextSeq + LIVE_AHEAD_MARGIN);
        pub.event((seq) => ({ t: 'retry', step: input.step, seq, attempt, reason: 'restart' }));
      };
      let body: Record<string, unknown> = { ...input.body, stream_options: { include_usage: true } };
      let skipper = new PrefixSkipper(prior.content);
      if (attempt > 1) {
        const prefill = input.continuation === 'prefill' && prior.content !== '';
        pub.event((seq) => ({ t: 'retry', step: input.step, seq, attempt, reason: prefill ? 'continue' : 'restart' }));
        if (prefill) {
          body = { ...body, messages: [...((body.messages as unknown[]) ?? []), { role: 'assistant', content: prior.content, prefix: true }] };
          skipper = new PrefixSkipper('');
        }
      }
      const serverTools = new Set(input.serverTools ?? []);
      const calls = new ClientCallFilter(
        (name) => serverTools.has(name),
        (n) => (input.runScopedCallIds ? clientCallId(input.runId, n) : null),
      );
      const acc = new MessageAccumulator();
      if (input.continuation === 'prefill' && attempt > 1) acc.add({ content: prior.content });
      let finishReason = 'stop';
      let usage: Usage | undefined;
      ctx.heartbeat({ attempt });
      const beat = setInterval(() => ctx.heartbeat({ attempt, seq: pub.nextSeq }), HEARTBEAT_MS);
      try {
        for await (const chunk of upstream.streamChat(body, ctx.cancellationSignal)) {
          usage = normUsage(chunk.usage) ?? usage;
          const choice = chunk.choices?.[0];
          if (!choice) continue;
          const delta = cleanDelta(choice.delta);
          if (delta) {
            acc.add(delta);
            const forClient = calls.pass(delta);
            const visible = forClient && skipper.pass(forClient);
            if (aligned && forClient) {
              if (!visible) pub.skipTo(pub.nextSeq + 1); // a repeat of the delta the log has at this position
              else if (!skipper.matchedAll || pub.nextSeq !== prior.nextSeq) diverge();
              else aligned = false; // past the log, on a delta boundary: the first attempt's positions go on
            }
            if (visible) pub.delta(visible);
          }
          if (choice.finish_reason) finishReason = choice.finish_reason;
        }
        if (aligned && pub.nextSeq < prior.nextSeq) diverge(); // shorter than what was published
      } catch (e) {
        throw classifyUpstreamError(e, input.upstream);
      } finally {
        clearInterval(beat);
        await pub.close();
      }
      const message = acc.message();
      if (message.tool_calls?.length && finishReason === 'stop') finishReason = 'tool_calls';
      if (!message.tool_calls?.length) {
        // No tool calls: the workflow will end the run with exactly this. Tell the waiting client
        // now instead of after the workflow's next task (it publishes the same event durably).
        const end = clientReply(message, (input.contentSoFar ?? '') + (message.content ?? ''));
        deps.live.publish(input.runId, { t: 'end', step: input.step, seq: pub.nextSeq, finishReason, usage: addUsage(input.usageSoFar, usage), message: end });
      }
      return { message, finishReason, usage, nextSeq: pub.nextSeq, attempt };
    },
  };
}
