/**
 * `chatCompletionWorkflow`: one POST /v1/chat/completions. Deterministic code only; all I/O
 * is in activities. Owns the step loop and the run's durable event log: the log lives in this
 * workflow's memory, made of what it decides (tools, approvals, the end) and of each model
 * step's output, which arrives whole in the step's result. So the log costs history events per
 * step, never per batch of streamed text; readers get it by query (`mix2api.events`).
 */
import * as wf from '@temporalio/workflow';
import { ActivityFailure, ApplicationFailure, SearchAttributeType, TimeoutFailure, TimeoutType, defineSearchAttributeKey } from '@temporalio/common';
import type { createModelActivities } from '../activities/callModel';
import type { createToolActivities } from '../activities/tools';
import type { createLeaseActivities } from '../activities/lease';
import { lostIn, MAX_MOVES } from './processLease';
import { UNNAMED_STEP } from '../domain/lease';
import { addUsage, clientReply, type AssistantMessage, type ChatMessage, type ToolCall, type Usage } from '../domain/chat';
import { clientCallId } from '../domain/toolCalls';
import { toOpenAiTool, type CatalogEntry } from '../domain/toolNames';
import { runTool } from './toolStep';
import type { EndEvent, RunEvent, WireError } from '../domain/events';
import { after, type Position } from '../domain/positions';
import type { StepProgress } from '../domain/stepLog';
import { stepEnd, stepRequest } from '../domain/stepRequest';
import type { RunSinks } from './sinks';
import {
  EVENTS_QUERY,
  FailureType,
  RESULT_QUERY,
  wireError,
  type CallModelInput,
  type CallModelResult,
  type ChatCompletionInput,
  type ChatCompletionResult,
  type HiddenSteps,
  type RunState,
  type StepRecord,
  type ToolOutcome,
  STATE_QUERY,
  TOOL_RESULTS_QUERY,
  type ReusableToolResult,
  type RunBudgets,
} from '../domain/run';
import { Approvals } from './approvals';
import { Saga, UNDO_UNFINISHED } from './saga';

type ModelActivities = ReturnType<typeof createModelActivities>;
type ToolActivities = ReturnType<typeof createToolActivities>;
type LeaseActivities = ReturnType<typeof createLeaseActivities>;

/** How long a live-queue task may wait for its API instance before falling back to the shared queue. */
const LIVE_QUEUE_WAIT = '3 seconds';

function modelProxy(input: ChatCompletionInput, step: number, taskQueue: string | undefined, live: boolean, attempts: number) {
  const r = input.route;
  return wf.proxyActivities<ModelActivities>({
    taskQueue,
    summary: `llm ${r.exposedModel} step ${step}`,
    // No heartbeat timeout: the process's lease proves the step alive (activities/lease), and
    // a lost process's steps fail as ProcessLost at once. This only bounds a step nobody released.
    startToCloseTimeout: `${r.totalSeconds + 5} seconds`,
    ...(live ? { scheduleToStartTimeout: LIVE_QUEUE_WAIT } : {}),
    retry: {
      maximumAttempts: attempts,
      initialInterval: `${r.retry.initialIntervalSeconds} seconds`,
      maximumInterval: `${r.retry.maxIntervalSeconds} seconds`,
      backoffCoefficient: 2,
    },
  }).callModel;
}

function isScheduleToStartTimeout(e: unknown): boolean {
  return e instanceof ActivityFailure && e.cause instanceof TimeoutFailure && e.cause.timeoutType === TimeoutType.SCHEDULE_TO_START;
}

/** What the step had streamed by its last heartbeat, as a timeout failure reports it. */
function lastProgress(e: unknown, step: number): RunEvent[] {
  const p = (e instanceof ActivityFailure && e.cause instanceof TimeoutFailure ? e.cause.lastHeartbeatDetails : undefined) as Partial<StepProgress> | undefined;
  return p?.step === step && Array.isArray(p.events) ? p.events : [];
}

/**
 * The run's model call for one step, on the live queue while an API instance waits on this run,
 * else on the shared one. Once the live queue's instance is found gone, later steps go straight
 * to the shared queue. A step whose process was lost (its lease lapsed, or it shut down) runs
 * again on the shared queue at once, seeded with what the lost attempt had streamed.
 */
async function callModel(input: ChatCompletionInput, args: CallModelInput, live: { queue?: string }, attempts: number): Promise<CallModelResult> {
  let call = args;
  for (let moves = 0; ; ) {
    const queue = live.queue;
    try {
      return await modelProxy(input, call.step, queue, queue !== undefined, attempts)(call);
    } catch (e) {
      // (Runs recorded before steps stopped heartbeating were told by their heartbeats.)
      if (wf.isCancellation(e)) {
        if (wf.patched('lease-stop-held')) await stopHeld(queue);
        throw e;
      }
      if (queue !== undefined && isScheduleToStartTimeout(e)) {
        // An attempt on the live queue may have streamed part of this step before its instance died.
        live.queue = undefined;
        call = { ...call, resume: true, prior: lastProgress(e, call.step) };
        continue;
      }
      const lost = lostIn(e);
      if (!lost || (lost.step !== call.step && lost.step !== UNNAMED_STEP) || moves >= Math.max(MAX_MOVES, input.route.retry.maxAttempts - 1)) throw e;
      live.queue = undefined;
      moves++;
      const { trace: _t, prior: _p, ...rest } = call;
      call = { ...rest, resume: true, moves, ...(lost.events ? { prior: lost.events } : { prior: [], ...(lost.n !== undefined && lost.n > 0 ? { trace: { n: lost.n, h: lost.h ?? '' } } : {}) }) };
    }
  }
}

/**
 * The run was cancelled while its model step streamed: the step heartbeats nothing, so tell the
 * process that holds it (on its instance queue), which asks Temporal, hears the cancellation and
 * stops. On the shared queue the holder is found from the activity's worker identity.
 */
async function stopHeld(queue: string | undefined): Promise<void> {
  await wf.CancellationScope.nonCancellable(async () => {
    try {
      const holder =
        queue ??
        (await wf
          .proxyLocalActivities<LeaseActivities>({ summary: 'find the step holder', startToCloseTimeout: '5 seconds', retry: { maximumAttempts: 2 } })
          .findHolder(wf.workflowInfo().workflowId, 'callModel'));
      if (!holder) return;
      await wf
        .proxyActivities<LeaseActivities>({ taskQueue: holder, summary: 'stop the cancelled step', scheduleToStartTimeout: '3 seconds', startToCloseTimeout: '5 seconds', retry: { maximumAttempts: 1 } })
        .checkHeld(wf.workflowInfo().workflowId);
    } catch {
      // The holder is gone: nothing streams there any more.
    }
  });
}

/** The last failure's OpenAI-shaped error, as classified by the activity. */
export function toWireError(e: unknown): WireError {
  let cur: unknown = e;
  while (cur instanceof ActivityFailure || (cur instanceof ApplicationFailure && !cur.details?.length && cur.cause)) cur = cur.cause;
  if (cur instanceof ApplicationFailure && cur.type === FailureType.ProcessLost) {
    return wireError(503, 'the process running this step was lost, on every attempt', 'server_error', 'worker_lost');
  }
  if (cur instanceof ApplicationFailure && cur.details?.[0]) return cur.details[0] as WireError;
  if (cur instanceof TimeoutFailure && cur.timeoutType === TimeoutType.HEARTBEAT) {
    return wireError(503, 'the worker running this step stopped answering, on every attempt', 'server_error', 'worker_lost');
  }
  if (cur instanceof TimeoutFailure) return wireError(504, `upstream call timed out (${cur.timeoutType === undefined ? 'timeout' : TimeoutType[cur.timeoutType]})`, 'timeout_error', 'upstream_timeout');
  if (wf.isCancellation(e)) return wireError(409, 'the run was cancelled', 'cancelled', 'run_cancelled');
  const msg = e instanceof Error ? e.message : String(e);
  return wireError(500, msg, 'server_error', 'internal_error');
}

const TOOLS_ATTRIBUTE = defineSearchAttributeKey('Mix2apiTools', SearchAttributeType.KEYWORD_LIST);

const STOP_NOTE = (n: number) => `\n\n[mix2api: stopped after ${n} model steps (loop.maxSteps); the model still wanted to call tools]`;

/**
 * The run's end when going on would pass a budget: `calls` more tool calls and at least `prompt`
 * more tokens (the next step's prompt holds this one's) on top of what is spent. Null to go on.
 */
function overBudget(budgets: RunBudgets, spent: { modelCalls: number; toolCalls: number }, calls: number, prompt: number, usage: Usage | undefined): ApplicationFailure | null {
  const tokens = usage?.total_tokens ?? 0;
  const reached =
    budgets.modelCalls !== undefined && spent.modelCalls >= budgets.modelCalls
      ? { key: 'maxModelCalls', limit: budgets.modelCalls, why: `${spent.modelCalls} model calls made, and the model wants another step` }
      : budgets.toolCalls !== undefined && spent.toolCalls + calls > budgets.toolCalls
        ? { key: 'maxToolCalls', limit: budgets.toolCalls, why: `${spent.toolCalls} tool calls made, and the model asked for ${calls} more` }
        : budgets.tokens !== undefined && tokens + prompt > budgets.tokens
          ? { key: 'maxTokens', limit: budgets.tokens, why: `${tokens} tokens spent, and the next step's prompt alone would take at least ${prompt}` }
          : null;
  if (!reached) return null;
  const message = `this run reached loop.${reached.key} (${reached.limit}): ${reached.why}. Spent: ${spent.modelCalls} model calls, ${spent.toolCalls} tool calls, ${tokens} tokens (${usage?.prompt_tokens ?? 0} prompt, ${usage?.completion_tokens ?? 0} completion); finished tool calls were compensated where their servers have an undo.`;
  return ApplicationFailure.create({ type: 'BudgetExceeded', message, nonRetryable: true, details: [wireError(400, message, 'invalid_request_error', 'run_budget_exceeded', `loop.${reached.key}`)] });
}

/** Most events one `mix2api.events` query returns; a reader asks again for the rest. */
const EVENTS_PAGE = 500;

export async function chatCompletionWorkflow(input: ChatCompletionInput): Promise<ChatCompletionResult> {
  const info = wf.workflowInfo();
  const runId = info.workflowId;
  const log: RunEvent[] = [];
  const { live } = wf.proxySinks<RunSinks>();
  // Readers in the process running this workflow task see the event at once; others read the log.
  const events = {
    publish(e: RunEvent) {
      log.push(e);
      live.event(e);
    },
  };
  const steps: StepRecord[] = [];
  let result: ChatCompletionResult | undefined;

  // Events after a position, also answerable once the run has closed (queries replay history).
  wf.setHandler(wf.defineQuery<RunEvent[], [Position, number?]>(EVENTS_QUERY), (from, limit) => {
    const out: RunEvent[] = [];
    for (const e of log) {
      const part = after(e, from);
      if (part) out.push(part);
      if (out.length >= Math.min(limit ?? EVENTS_PAGE, EVENTS_PAGE)) break;
    }
    return out;
  });
  wf.setHandler(wf.defineQuery<ChatCompletionResult | null>(RESULT_QUERY), () => result ?? null);
  const toolResults: ReusableToolResult[] = [];
  wf.setHandler(wf.defineQuery<ReusableToolResult[]>(TOOL_RESULTS_QUERY), () => {
    const undone = new Set(steps.filter((s) => s.kind === 'compensation').map((s) => s.callId));
    return toolResults.filter((r) => !undone.has(r.callId));
  });
  const reusable = [...(input.reuseToolResults ?? [])];
  /** An earlier run's result of this very call, taken once. */
  const reuse = (server: string, tool: string, args: string): ToolOutcome | null => {
    const i = reusable.findIndex((r) => r.server === server && r.tool === tool && r.arguments === args);
    return i < 0 ? null : reusable.splice(i, 1)[0]!.outcome;
  };
  const approvals = new Approvals();
  const saga = new Saga();
  let usage: Usage | undefined;
  wf.setHandler(wf.defineQuery<RunState>(STATE_QUERY), () => ({
    model: input.route.exposedModel,
    keyName: input.keyName,
    steps,
    usage,
    pendingApprovals: [...approvals.pending.values()],
    result: result ?? null,
  }));

  const servers = new Map((input.mcpServers ?? []).map((s) => [s.name, s]));
  const clientTools = Array.isArray(input.body.tools) ? (input.body.tools as unknown[]) : [];
  let step = 0;
  try {
    const catalog = servers.size > 0 ? await listCatalog(input, clientTools.length) : [];
    const byName = new Map(catalog.map((e) => [e.name, e]));
    const tools = [...clientTools, ...catalog.map(toOpenAiTool)];
    const messages = [...((input.body.messages as ChatMessage[]) ?? [])];
    const transcript: ChatMessage[] = [];
    const toolsUsed = new Set<string>();
    const liveQueue = { queue: input.liveTaskQueue };
    let content = '';
    const budgets = input.budgets ?? {};
    const spent = { modelCalls: 0, toolCalls: 0 };

    const finish = (end: EndEvent, hidden?: HiddenSteps): ChatCompletionResult => {
      result = { id: runId, created: Math.floor(info.startTime.getTime() / 1000), model: input.route.exposedModel, message: end.message, finishReason: end.finishReason, usage, steps, ...(hidden ? { hidden } : {}), ...(from ? { stored: from } : {}) };
      events.publish(end);
      return result;
    };
    const endWith = (message: AssistantMessage, finishReason: string, seq: number): EndEvent => ({ t: 'end', step, seq, finishReason, usage, message });

    // The previous step's (or the session's last turn's) response, when the upstream stores it.
    let from = input.from;
    for (;; step++) {
      const call = stepRequest(runId, input, { step, messages, tools, serverTools: [...byName.keys()], contentSoFar: content, usageSoFar: usage, from });
      // Under a model-call budget, a step's retries stop where the budget does.
      const attempts = budgets.modelCalls === undefined ? input.route.retry.maxAttempts : Math.max(1, Math.min(input.route.retry.maxAttempts, budgets.modelCalls - spent.modelCalls));
      const r = await callModel(input, call, liveQueue, attempts);
      spent.modelCalls += r.attempt;
      // The step's output joins the log in one piece; its readers already have it live.
      log.push(...r.events);
      usage = addUsage(usage, r.usage);
      steps.push({ step, kind: 'model', attempt: r.attempt, finishReason: r.finishReason, usage: r.usage, ...(r.upstream ? { upstream: r.upstream } : {}), ...(r.tools ? { tools: r.tools } : {}), ...(call.toolInstruction ? { instruction: call.toolInstruction.version } : {}) });
      // The Web UI's "current details": which upstream answered the latest step, and what it was offered.
      const offer = r.tools ? ` (offered ${r.tools.offered.length} of ${r.tools.offered.length + r.tools.heldBack} MCP tools: ${r.tools.offered.slice(0, 20).join(', ')}${r.tools.offered.length > 20 ? ', …' : ''})` : '';
      wf.setCurrentDetails(`step ${step}: ${input.route.exposedModel} answered by upstream ${r.upstream ?? input.route.upstream}${r.trimmed ? ` (${r.trimmed} older messages trimmed to fit the context window)` : ''}${offer}`);
      from = r.stored;
      content += r.message.content ?? '';
      let seq = r.nextSeq;
      const calls = withIds(r.message.tool_calls ?? [], step);
      const serverCalls = calls.filter((c) => byName.has(c.function.name));
      const clientCalls = calls.filter((c) => !byName.has(c.function.name));
      const clientFacing = (toolCalls?: ToolCall[]): AssistantMessage => clientReply(r.message, content, toolCalls);
      // The turn ends with the client's own calls; what mix2api ran stays hidden until the follow-up.
      const endWithClientCalls = () => {
        const ids = clientCalls.map((c, i) => clientCallId(runId, i) ?? c.id);
        const callIds = Object.fromEntries(clientCalls.map((c, i) => [ids[i]!, c.id]));
        return finish(endWith(clientFacing(clientCalls.map((c, i) => ({ ...c, id: ids[i]! }))), 'tool_calls', seq), { messages: transcript, callIds });
      };
      const assistant: ChatMessage = { ...r.message, role: 'assistant', tool_calls: calls };
      if (serverCalls.length === 0) {
        // The same end the model call announced live (with no tool calls at all).
        if (clientCalls.length === 0 || servers.size === 0) return finish(stepEnd(call, r));
        transcript.push(assistant);
        return endWithClientCalls();
      }
      if (step + 1 >= input.maxSteps) {
        const note = STOP_NOTE(input.maxSteps);
        events.publish({ t: 'deltas', step, seq0: seq++, d: [{ content: note }] });
        content += note;
        return finish(endWith(clientFacing(), 'length', seq));
      }
      const over = overBudget(budgets, spent, serverCalls.length, r.usage?.prompt_tokens ?? 0, usage);
      if (over) throw over;
      spent.toolCalls += serverCalls.length;
      transcript.push(assistant);
      messages.push(assistant);
      // Each call: approval if its server asks for one, then the call itself; all calls in parallel.
      const runOne = async (c: ToolCall, i: number): Promise<ToolOutcome> => {
        const e = byName.get(c.function.name)!;
        const server = servers.get(e.server)!;
        // A call an earlier run of this request already made takes its result: no approval, no call.
        const earlier = reuse(e.server, e.tool, c.function.arguments);
        if (!earlier && Approvals.needed(server, e.tool)) {
          const approvalId = `apr_${step}_${i}`;
          events.publish({ t: 'approval_required', step, seq: seq++, approvalId, callId: c.id, server: e.server, tool: e.tool, arguments: c.function.arguments });
          const d = await approvals.wait({ approvalId, callId: c.id, server: e.server, tool: e.tool, arguments: c.function.arguments }, input.approvalTimeoutSeconds ?? 900);
          events.publish({ t: 'approval_decided', step, seq: seq++, approvalId, approve: d.approve, by: d.by, ...(d.reason ? { reason: d.reason } : {}) });
          if (!d.approve) return { text: `The user did not approve this call of ${e.server}/${e.tool}${d.reason ? `: ${d.reason}` : ''}.`, isError: true, truncated: false, ms: 0 };
        }
        events.publish({ t: 'tool_started', step, seq: seq++, callId: c.id, server: e.server, tool: e.tool, arguments: c.function.arguments });
        const o = earlier
          ? { ...earlier, ms: 0 }
          : await runTool(runId, step, c, e, server, liveQueue).catch((x: unknown) => {
              // Cancelled while it ran: it may have done its work all the same.
              if (wf.isCancellation(x) && wf.patched(UNDO_UNFINISHED)) saga.recordUnfinished(server, e.tool, c.id, c.function.arguments);
              throw x;
            });
        events.publish({ t: 'tool_finished', step, seq: seq++, callId: c.id, server: e.server, tool: e.tool, ms: o.ms, isError: o.isError, preview: o.text.slice(0, 200) });
        steps.push({ step, kind: 'tool', callId: c.id, server: e.server, tool: e.tool, arguments: c.function.arguments, ms: o.ms, isError: o.isError, ...(earlier ? { reused: true } : {}) });
        saga.record(server, e.tool, c.id, c.function.arguments, o);
        if (!o.isError) toolResults.push({ callId: c.id, server: e.server, tool: e.tool, arguments: c.function.arguments, outcome: o });
        return o;
      };
      // allSettled: on cancel, compensation must wait for sibling calls to finish and record their undo.
      const settled = await Promise.allSettled(serverCalls.map(runOne));
      const failed = settled.find((x): x is PromiseRejectedResult => x.status === 'rejected');
      if (failed) throw failed.reason;
      const outcomes = settled.map((x) => (x as PromiseFulfilledResult<ToolOutcome>).value);
      if (input.searchAttributes) {
        // Lets the Temporal UI filter runs by the tools they used: Mix2apiTools = "fs/read_file".
        for (const c of serverCalls) {
          const e = byName.get(c.function.name)!;
          toolsUsed.add(`${e.server}/${e.tool}`);
        }
        wf.upsertSearchAttributes([{ key: TOOLS_ATTRIBUTE, value: [...toolsUsed] }]);
      }
      serverCalls.forEach((c, i) => {
        const toolMsg: ChatMessage = { role: 'tool', tool_call_id: c.id, content: outcomes[i]!.text };
        transcript.push(toolMsg);
        messages.push(toolMsg);
      });
      if (clientCalls.length > 0) return endWithClientCalls();
    }
  } catch (e) {
    const err = toWireError(e);
    // The epilogue gets a step of its own: a cancelled activity may still be flushing deltas of
    // this step, so no seq in it is known to be free.
    const epilogue = step + 1;
    let seq = 0;
    if (saga.size > 0) {
      const undone = await saga.compensate(runId, (r) => events.publish({ t: 'compensation', step: epilogue, seq: seq++, ...r }));
      steps.push(...undone.map((u) => ({ ...u, step: epilogue })));
    }
    events.publish({ t: 'error', step: epilogue, seq, error: err, ...(usage ? { usage } : {}) });
    if (wf.isCancellation(e)) throw e;
    throw ApplicationFailure.create({ type: 'RunFailed', message: err.message, nonRetryable: true, details: [err], cause: e instanceof Error ? e : undefined });
  }
}

/**
 * The run's tool catalog. A local activity: the pool caches `tools/list` per worker, so this is
 * usually a map lookup, and a local activity spares the run a workflow task round trip.
 */
function listCatalog(input: ChatCompletionInput, clientToolCount: number): Promise<CatalogEntry[]> {
  const servers = input.mcpServers ?? [];
  return wf
    .proxyLocalActivities<ToolActivities>({
      summary: `mcp tools/list ${servers.map((s) => s.name).join(', ')}`,
      startToCloseTimeout: '60 seconds',
      retry: { maximumAttempts: 5, initialInterval: '1 second', maximumInterval: '10 seconds' },
    })
    .listTools({ servers: servers.map((s) => ({ name: s.name, allow: s.allow, deny: s.deny })), clientToolCount, ...(input.route.toolSelection?.strategy === 'rank' ? { selecting: true } : {}) });
}

/** Some upstreams leave ids empty; the loop needs them to pair calls with results. */
function withIds(calls: ToolCall[], step: number): ToolCall[] {
  return calls.map((c, i) => (c.id ? c : { ...c, id: `call_s${step}_${i}` }));
}
