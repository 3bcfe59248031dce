/**
 * The run API: read a run (`GET /v1/runs/{id}`), resume its stream from any instance
 * (`GET /v1/runs/{id}/events` with `Last-Event-ID` or `?after=`), cancel it, and decide its
 * pending tool approvals. A run is visible only to the API key that started it.
 */
import { Router, type Request, type Response } from 'express';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Config } from '../../config/load';
import type { LiveHub } from '../../connectors/liveHub';
import { parsePosition } from '../../domain/positions';
import { STATE_QUERY, type ApprovalDecision, type RunState } from '../../domain/run';
import { decideApproval } from '../engine/approvals';
import { completionBody } from '../http/chunks';
import { ApiError, badRequest, fromRunFailure } from '../http/errors';
import { queryRun } from '../http/query';
import { relayRun, relaySettings } from '../http/relay';
import type { KeyLimiter } from '../http/limits';
import { streamRun } from '../http/sse';
import type { Metrics } from '../../telemetry/metrics';

export interface RunsDeps {
  config: Config;
  client: Client;
  live: LiveHub;
  limiter: KeyLimiter;
  metrics: Metrics;
}

const RUN_ID = /^chatcmpl-[0-9a-f]{32}$/;
const notFound = (id: string) => new ApiError(404, `No run found with id '${id}'.`, 'invalid_request_error', 'run_not_found', 'run_id');

async function loadRun(d: RunsDeps, req: Request, res: Response) {
  const id = String(req.params.id);
  if (!RUN_ID.test(id)) throw notFound(id);
  const handle = d.client.workflow.getHandle(id);
  try {
    const [desc, state] = await Promise.all([handle.describe(), queryRun<RunState>(d.client, handle, STATE_QUERY)]);
    const caller = String(res.locals.keyName ?? 'anonymous');
    // Runs started before keys were configured belong to `anonymous`, which no key is.
    if ((state.keyName ?? 'anonymous') !== caller) throw notFound(id);
    return { id, handle, desc, state };
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) throw notFound(id);
    throw e;
  }
}

export function createRunsRouter(d: RunsDeps): Router {
  const r = Router();

  r.get('/runs/:id', async (req, res) => {
    const { id, handle, desc, state } = await loadRun(d, req, res);
    const status = desc.status.name.toLowerCase();
    let error = null;
    if (status !== 'running' && status !== 'completed') {
      error = await handle.result().then(
        () => null,
        (e: unknown) => fromRunFailure(e)?.wire ?? null,
      );
    }
    const done = state.result ? completionBody(state.result) : null;
    res.json({
      id,
      object: 'mix2api.run',
      status,
      model: state.model,
      created: Math.floor(desc.startTime.getTime() / 1000),
      closed: desc.closeTime ? Math.floor(desc.closeTime.getTime() / 1000) : null,
      steps: state.steps,
      usage: state.usage ?? null,
      pending_approvals: state.pendingApprovals,
      message: done?.choices[0]?.message ?? null,
      finish_reason: done?.choices[0]?.finish_reason ?? null,
      error: error ? { message: error.message, type: error.type, param: error.param, code: error.code } : null,
    });
  });

  r.get('/runs/:id/events', async (req, res) => {
    const { id, desc, state } = await loadRun(d, req, res);
    const raw = req.header('last-event-id') ?? (typeof req.query.after === 'string' ? req.query.after : undefined);
    const from = parsePosition(raw);
    if (raw !== undefined && !from) throw badRequest('Last-Event-ID / after must look like <step>:<seq>', 'after');
    res.once('close', d.limiter.openStream(String(res.locals.keyName ?? 'anonymous')));
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const events = relayRun({ client: d.client, live: d.live, runId: id, from, signal: abort.signal, ...relaySettings(d.config) });
    const ctx = { id, created: Math.floor(desc.startTime.getTime() / 1000), model: state.model };
    res.setHeader('X-Run-Id', id);
    await streamRun(d.config, res, events, ctx, req.query.include_usage === 'true', { resumed: from !== null, metrics: d.metrics });
  });

  r.post('/runs/:id/cancel', async (req, res) => {
    const { id, handle, desc } = await loadRun(d, req, res);
    if (desc.status.name !== 'RUNNING') throw new ApiError(409, `Run '${id}' is not running (${desc.status.name.toLowerCase()}).`, 'invalid_request_error', 'run_not_running');
    await handle.cancel();
    res.status(202).json({ id, object: 'mix2api.run', status: 'cancelling' });
  });

  r.post('/runs/:id/approvals/:approvalId', async (req, res) => {
    const body = (req.body ?? {}) as { approve?: unknown; reason?: unknown };
    if (typeof body.approve !== 'boolean') throw badRequest('approve must be true or false', 'approve');
    if (body.reason !== undefined && typeof body.reason !== 'string') throw badRequest('reason must be a string', 'reason');
    const { id, handle, desc } = await loadRun(d, req, res);
    if (desc.status.name !== 'RUNNING') throw new ApiError(404, `Run '${id}' has no pending approvals (${desc.status.name.toLowerCase()}).`, 'invalid_request_error', 'approval_not_found', 'approval_id');
    const decision: ApprovalDecision = { approvalId: String(req.params.approvalId), approve: body.approve, ...(body.reason ? { reason: body.reason } : {}) };
    const out = await decideApproval(handle, id, decision);
    res.json({ id: out.approvalId, object: 'mix2api.approval', run_id: id, approve: out.approve, reason: out.reason ?? null });
  });

  return r;
}
