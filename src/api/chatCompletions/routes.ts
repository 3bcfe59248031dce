/**
 * POST /v1/chat/completions: validate, then launch (or join) the run and answer with its JSON
 * result or relay its events as SSE chunks.
 */
import type { Request, Response } from 'express';
import { launchRun, type CompletionDeps } from '../engine/launch';
import { ChatCompletionRequestSchema, issueParam } from '../engine/request';
import { completionBody } from '../http/chunks';
import { badRequest } from '../http/errors';
import { streamRun } from '../http/sse';

export function createCompletionHandler(d: CompletionDeps) {
  return async (req: Request, res: Response): Promise<void> => {
    const since = performance.now();
    const parsed = ChatCompletionRequestSchema.safeParse(req.body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const param = issueParam(issue.path);
      throw badRequest(`${param ? `${param}: ` : ''}${issue.message}`, param);
    }
    const body = parsed.data;
    const run = await launchRun(d, req, res, body, req.body);
    if (!run.events) {
      res.json(completionBody(await run.result()));
      return;
    }
    await streamRun(d.config, res, run.events, { id: run.runId, created: Math.floor(Date.now() / 1000), model: body.model }, body.stream_options?.include_usage === true, { metrics: d.metrics, since });
  };
}
