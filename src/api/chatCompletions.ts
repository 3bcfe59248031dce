/**
 * POST /v1/chat/completions: validate, route, start (or attach to) the run's workflow, then
 * answer with its JSON result or relay its events as SSE. The run never depends on this
 * connection: a client that leaves does not stop it unless `loop.onDisconnect: cancel`.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Request, Response } from 'express';
import type { Client } from '@temporalio/client';
import { WorkflowIdConflictPolicy } from '@temporalio/common';
import type { Config } from '../config/load';
import type { LiveHub } from '../connectors/liveHub';
import { formatPosition, type RunEvent } from '../domain/events';
import type { ChatMessage } from '../domain/chat';
import { referencedRuns, rejoin } from '../domain/rejoin';
import { RESULT_QUERY, type ChatCompletionInput, type ChatCompletionResult, type HiddenSteps } from '../domain/run';
import { resolveTools } from './tools';
import { chunk, completionBody, eventDeltas, usageChunk, type ChunkContext } from './chunks';
import { ApiError, badRequest, errorBody, toApiError } from './errors';
import { relayRun } from './relay';
import type { ModelRouter } from './routing';
import { ChatCompletionRequestSchema, issueParam } from './schemas';

export interface CompletionDeps {
  config: Config;
  client: Client;
  live: LiveHub;
  liveTaskQueue: string;
  router: ModelRouter;
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

function runIdFor(req: Request, keyName: string): string {
  const key = req.header('idempotency-key');
  if (key === undefined) return `chatcmpl-${randomUUID().replace(/-/g, '')}`;
  if (!IDEMPOTENCY_KEY.test(key)) throw badRequest('Idempotency-Key must be 1-255 visible ASCII characters', 'Idempotency-Key');
  return `chatcmpl-${createHash('sha256').update(`${keyName}\n${key}`).digest('hex').slice(0, 32)}`;
}

function firstWords(messages: Array<{ role: string; content?: unknown }>): string {
  const last = [...messages].reverse().find((m) => m.role === 'user');
  const text = typeof last?.content === 'string' ? last.content : Array.isArray(last?.content) ? JSON.stringify(last.content) : '';
  return text.replace(/\s+/g, ' ').slice(0, 80);
}

/** Hidden server-side steps of earlier runs this conversation continues (see domain/rejoin). */
async function rejoinHidden(client: Client, messages: ChatMessage[]): Promise<ChatMessage[]> {
  const runs = referencedRuns(messages);
  if (runs.length === 0) return messages;
  const hidden = new Map<string, HiddenSteps>();
  await Promise.all(
    runs.map(async (run) => {
      const r = await client.workflow
        .getHandle(run)
        .query<ChatCompletionResult | null>(RESULT_QUERY)
        .catch(() => null);
      if (r?.hidden) hidden.set(run, r.hidden);
    }),
  );
  return rejoin(messages, hidden);
}

export function createCompletionHandler(d: CompletionDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const parsed = ChatCompletionRequestSchema.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const param = issueParam(issue.path);
      throw badRequest(`${param ? `${param}: ` : ''}${issue.message}`, param);
    }
    const body = parsed.data;
    const route = d.router.resolve(body.model);
    const tools = resolveTools(d.config, body);
    const keyName = String(res.locals.keyName ?? 'anonymous');
    const runId = runIdFor(req, keyName);
    const { model: _m, stream, stream_options, tools: _t, ...rest } = body;
    const messages = await rejoinHidden(d.client, rest.messages);
    const input: ChatCompletionInput = {
      route,
      body: { ...rest, messages, ...(tools.clientTools?.length ? { tools: tools.clientTools } : {}) },
      mcpServers: tools.servers,
      liveTaskQueue: stream ? d.liveTaskQueue : undefined,
      batchMs: d.config.stream.batchMs,
      maxSteps: d.config.loop.maxSteps,
      keyName,
    };

    const abort = new AbortController();
    res.on('close', () => abort.abort());
    // Subscribe before starting so the first live delta cannot be missed.
    const events = stream ? relayRun({ client: d.client, live: d.live, runId, signal: abort.signal }) : null;
    const handle = await d.client.workflow.start('chatCompletionWorkflow', {
      taskQueue: d.config.temporal.taskQueue,
      workflowId: runId,
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      args: [input],
      staticSummary: `${body.model}: ${firstWords(body.messages)}`,
      // Only where mix2api registered them (the embedded dev server); a cluster may not have them.
      ...(d.config.temporal.address === 'embedded'
        ? { searchAttributes: { Mix2apiModel: [body.model], Mix2apiKeyName: [keyName] } }
        : {}),
    });
    res.setHeader('X-Run-Id', runId);

    if (!events) {
      const result = (await handle.result()) as ChatCompletionResult;
      res.json(completionBody(result));
      return;
    }
    if (d.config.loop.onDisconnect === 'cancel') {
      abort.signal.addEventListener('abort', () => {
        if (!res.writableFinished) void handle.cancel().catch(() => undefined);
      });
    }
    await streamRun(d, res, events, { id: runId, created: Math.floor(Date.now() / 1000), model: body.model }, stream_options?.include_usage === true);
  };
}

async function streamRun(
  d: CompletionDeps,
  res: Response,
  events: AsyncGenerator<RunEvent>,
  ctx: ChunkContext,
  includeUsage: boolean,
): Promise<void> {
  let started = false;
  let seen = false;
  let role = true;
  const start = () => {
    if (started) return;
    started = true;
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
  };
  const send = (id: string | null, data: unknown) => {
    start();
    res.write(`${id ? `id: ${id}\n` : ''}data: ${JSON.stringify(data)}\n\n`);
  };
  // Empty-delta `data:` chunks keep edge gateways' idle timers from firing during long steps.
  // Once the run shows life (a tool step, say) the stream starts, even if nothing is visible yet.
  const keepalive = setInterval(() => {
    if (started || seen) send(null, chunk(ctx, {}));
  }, d.config.loop.keepaliveSeconds * 1000);
  try {
    for await (const e of events) {
      seen ||= e.t !== 'retry';
      if (e.t === 'error') {
        if (!started) throw ApiError.fromWire(e.error);
        send(formatPosition({ step: e.step, seq: e.seq }), errorBody(e.error));
        break;
      }
      if (e.t === 'end') {
        const id = formatPosition({ step: e.step, seq: e.seq });
        send(id, chunk(ctx, role ? { role: 'assistant', content: '' } : {}, e.finishReason));
        if (includeUsage && e.usage) send(null, usageChunk(ctx, e.usage));
        break;
      }
      // A retry before any byte is invisible, so the status can still tell a gateway to fail over.
      if (e.t === 'retry' && !started) continue;
      for (const { seq, delta } of eventDeltas(e, d.config.loop.progress)) {
        send(formatPosition({ step: e.step, seq }), chunk(ctx, role ? { role: 'assistant', ...delta } : delta));
        role = false;
      }
    }
  } catch (err) {
    if (!started) throw err;
    send(null, errorBody(toApiError(err)));
  } finally {
    clearInterval(keepalive);
  }
  if (!res.writableEnded) {
    start();
    res.end('data: [DONE]\n\n');
  }
}
