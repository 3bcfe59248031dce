/**
 * Writes a run's events to an HTTP response as OpenAI `chat.completion.chunk` SSE: `id: step:seq`
 * on every event, keepalives during quiet steps, the status held back until the first byte (so
 * a failure before it is a plain HTTP error), an error chunk after it, and `[DONE]`.
 */
import type { Response } from 'express';
import type { Config } from '../config/load';
import { formatPosition, type RunEvent } from '../domain/events';
import { chunk, eventDeltas, usageChunk, type ChunkContext } from './chunks';
import { ApiError, errorBody, toApiError } from './errors';

export async function streamRun(
  config: Config,
  res: Response,
  events: AsyncGenerator<RunEvent>,
  ctx: ChunkContext,
  includeUsage: boolean,
  /** `resumed`: the client reconnected (Last-Event-ID) and already holds part of the message. */
  opts: { resumed?: boolean } = {},
): Promise<void> {
  let started = false;
  let seen = false;
  // A resumed stream continues a message the client already opened: no second `role`.
  let role = !opts.resumed;
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
  }, config.loop.keepaliveSeconds * 1000);
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
      // (A resumed stream shows it: its client already holds part of the step.)
      if (e.t === 'retry' && !started && !opts.resumed) continue;
      for (const { seq, delta } of eventDeltas(e, config.loop.progress)) {
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
