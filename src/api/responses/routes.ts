/**
 * The Responses API front door (`POST /v1/responses`, `GET /v1/responses/{id}`): the request is
 * translated into the Chat Completions body the run engine takes, the run is started through the
 * same path (routes, tools, limits, idempotency, workflow), and its events are rendered as
 * Responses output items and stream events. A response id is its run's id (`resp_<hex>` is
 * `chatcmpl-<hex>`), so the Temporal UI, `/v1/runs/{id}` and the response are one thing. Here the
 * routes; the request and its mapping are in ./request, `previous_response_id` in ./continuation,
 * the rendering of events in ./render.
 */
import type { Request, Response } from 'express';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { RunEvent } from '../../domain/events';
import { STATE_QUERY, type RunState } from '../../domain/run';
import { START } from '../../domain/positions';
import { endingLease, launchRun, type CompletionDeps } from '../engine/launch';
import { ApiError, badRequest } from '../http/errors';
import { queryRun } from '../http/query';
import { decideApproval } from '../engine/approvals';
import { relayRun, relaySettings } from '../http/relay';
import { ChatCompletionRequestSchema, issueParam } from '../engine/request';
import type { ResponsesRequest } from './request';
import { RUN_PREFIX, ResponsesRequestSchema, chatBodyOf, deepest, refOf, responseIdOf } from './request';
import { loadPrevious, previousConversation } from './continuation';
import type { ResponseContext, StreamPacing } from './render';
import { ResponseBuilder, collect, responseObject, streamResponse } from './render';

/** The run's events from its start, for as long as the request lasts. */
function runEvents(d: CompletionDeps, res: Response, runId: string): AsyncGenerator<RunEvent> {
  const abort = new AbortController();
  res.on('close', () => abort.abort());
  return relayRun({ client: d.client, live: d.live, runId, from: START, signal: abort.signal, ...relaySettings(d.config) });
}

const pacingOf = (d: CompletionDeps): StreamPacing => ({ keepaliveMs: d.config.loop.keepaliveSeconds * 1000, stallMs: d.config.stream.stallSeconds * 1000, metrics: d.metrics });

/** Answers a response as JSON or as its stream. */
async function answer(res: Response, events: AsyncGenerator<RunEvent>, ctx: ResponseContext, stream: boolean, pacing: StreamPacing): Promise<void> {
  if (stream) return streamResponse(res, events, ctx, pacing);
  const b = await collect(events, new ResponseBuilder(ctx.hex, ctx.segment, () => undefined));
  if (b.error && b.output.length === 0) throw new ApiError(b.error.status, b.error.message, b.error.type, b.error.code, b.error.param);
  res.json(responseObject(ctx, b));
}

/**
 * A request that answers the previous response's approval requests (`mcp_approval_response`
 * items): the decisions go to the run that waits for them, and this response is the run's next
 * segment, from those decisions on.
 */
async function continueAfterApproval(d: CompletionDeps, req: Request, res: Response, r: ResponsesRequest): Promise<void> {
  const items = Array.isArray(r.input) ? r.input : [];
  const decisions = items.filter((i) => i.type === 'mcp_approval_response');
  if (decisions.length !== items.length) throw badRequest('input: mcp_approval_response items cannot be mixed with other input (the run they answer is waiting for them alone)', 'input', 'invalid_approval_input');
  if (!r.previous_response_id) throw badRequest('mcp_approval_response needs previous_response_id: the response whose mcp_approval_request it answers', 'previous_response_id');
  const keyName = String(res.locals.keyName ?? 'anonymous');
  const { ref, handle, state } = await loadPrevious(d, r.previous_response_id, keyName);
  for (const item of decisions) {
    await decideApproval(handle, ref.runId, { approvalId: item.approval_request_id, approve: item.approve, ...(item.reason ? { reason: item.reason } : {}) });
  }
  const segment = ref.segment + 1;
  const ctx: ResponseContext = { id: responseIdOf(ref.hex, segment), hex: ref.hex, segment, created: Math.floor(Date.now() / 1000), model: state.model, request: r };
  res.setHeader('X-Run-Id', ref.runId);
  // This request follows the run to its end: the run's lease ends with it, as a first request's would.
  await answer(res, endingLease(runEvents(d, res, ref.runId), d, keyName, ref.runId), ctx, r.stream === true, pacingOf(d));
}

export function createResponsesHandler(d: CompletionDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const parsed = ResponsesRequestSchema.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      if (issue.code === 'unrecognized_keys') {
        const key = issue.keys[0]!;
        throw badRequest(`Unsupported parameter: '${key}' is not supported by this server's Responses API.`, key, 'unsupported_parameter');
      }
      const why = deepest(issue);
      const param = issueParam(why.path);
      throw badRequest(`${param ? `${param}: ` : ''}${why.message}`, param);
    }
    const r = parsed.data;
    if (Array.isArray(r.input) && r.input.some((i) => i.type === 'mcp_approval_response')) return continueAfterApproval(d, req, res, r);
    const keyName = String(res.locals.keyName ?? 'anonymous');
    const history = r.previous_response_id ? await previousConversation(d, r.previous_response_id, keyName) : [];
    const chat = ChatCompletionRequestSchema.safeParse(chatBodyOf(r, history));
    if (!chat.success) {
      const issue = chat.error.issues[0]!;
      throw badRequest(`${issue.message} (${issueParam(issue.path) ?? 'request'}, after translation)`, 'input');
    }
    const run = await launchRun(d, req, res, chat.data, req.body);
    const hex = run.runId.slice(RUN_PREFIX.length);
    const ctx: ResponseContext = { id: responseIdOf(hex, 0), hex, segment: 0, created: Math.floor(Date.now() / 1000), model: r.model, request: r };
    if (r.background && !r.stream) {
      // The run goes on without this request: GET /v1/responses/{id} (with ?stream=true) follows it.
      res.json(responseObject(ctx, null));
      return;
    }
    await answer(res, run.events!, ctx, r.stream === true, pacingOf(d));
  };
}

/** A response of the caller's key: its run's handle, description and state (404 otherwise). */
async function loadResponse(d: CompletionDeps, req: Request, res: Response) {
  const id = String(req.params.id);
  const ref = refOf(id);
  const notFound = () => new ApiError(404, `Response with id '${id}' not found.`, 'invalid_request_error', 'response_not_found', 'response_id');
  if (!ref) throw notFound();
  const handle = d.client.workflow.getHandle(ref.runId);
  try {
    const [desc, state] = await Promise.all([handle.describe(), queryRun<RunState>(d.client, handle, STATE_QUERY)]);
    if ((state.keyName ?? 'anonymous') !== String(res.locals.keyName ?? 'anonymous')) throw notFound();
    const ctx: ResponseContext = { id, hex: ref.hex, segment: ref.segment, created: Math.floor(desc.startTime.getTime() / 1000), model: state.model, request: {} };
    return { runId: ref.runId, handle, desc, state, ctx };
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) throw notFound();
    throw e;
  }
}

/**
 * GET /v1/responses/{id}: the response rebuilt from its run's event log (`in_progress` while it
 * runs); with `?stream=true` its stream from the start, or after `starting_after`, live to its end.
 */
export function createGetResponseHandler(d: CompletionDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const { runId, desc, state, ctx } = await loadResponse(d, req, res);
    if (req.query.stream === 'true') {
      const raw = req.query.starting_after;
      const after = raw === undefined ? -1 : Number(raw);
      if (!Number.isInteger(after) || after < -1) throw badRequest('starting_after must be a sequence number (an integer from 0)', 'starting_after');
      res.once('close', d.limiter.openStream(String(res.locals.keyName ?? 'anonymous')));
      await streamResponse(res, runEvents(d, res, runId), ctx, pacingOf(d), after);
      return;
    }
    // A run whose answer is in (its workflow may still be closing), or that waits for an
    // approval this response asked for, is read back from its log.
    if (desc.status.name === 'RUNNING' && !state.result && state.pendingApprovals.length === 0) {
      res.json(responseObject(ctx, null));
      return;
    }
    res.json(responseObject(ctx, await collect(runEvents(d, res, runId), new ResponseBuilder(ctx.hex, ctx.segment, () => undefined))));
  };
}

/** POST /v1/responses/{id}/cancel: cancels the run (its compensations run); the response as it ends. */
export function createCancelResponseHandler(d: CompletionDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const { runId, handle, desc, ctx } = await loadResponse(d, req, res);
    if (desc.status.name !== 'RUNNING') throw new ApiError(409, `Response '${ctx.id}' is not in progress (${desc.status.name.toLowerCase()}).`, 'invalid_request_error', 'response_not_in_progress', 'response_id');
    await handle.cancel();
    res.json(responseObject(ctx, await collect(runEvents(d, res, runId), new ResponseBuilder(ctx.hex, ctx.segment, () => undefined))));
  };
}
