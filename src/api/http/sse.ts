/**
 * Writes a run's events to an HTTP response as OpenAI `chat.completion.chunk` SSE: `id: step:seq`
 * on every event, keepalives during quiet steps, the status held back until the first byte (so
 * a failure before it is a plain HTTP error), an error chunk after it, and `[DONE]`.
 *
 * It writes at the client's pace: after a write the socket will not take, it waits for `drain`
 * before pulling the next event, so a slow client holds one socket buffer here, never a queue.
 * A client that takes nothing for `stream.stallSeconds` gets an error chunk and is cut off.
 */
import type { Response } from 'express';
import type { Config } from '../../config/load';
import type { RunEvent } from '../../domain/events';
import { formatPosition } from '../../domain/positions';
import { chunk, errorChunk, eventDeltas, usageChunk, type ChunkContext } from './chunks';
import { ApiError, toApiError } from './errors';
import type { Metrics } from '../../telemetry/metrics';

export class StalledError extends Error {}

/**
 * Ends a stalled stream with its last frame (the `stream_stalled` error, which goes behind what
 * the socket holds, so a client that reads again gets it last), counted under `api`; a client
 * that never reads even that is dropped after another `ms`. The run goes on.
 */
export function cutOffStalled(res: Response, ms: number, lastFrame: (error: ApiError) => string, api: 'chat' | 'responses', metrics?: Metrics): void {
  metrics?.streamsStalled.inc({ api });
  res.end(lastFrame(new ApiError(408, `the client read nothing for ${ms / 1000}s; the stream was closed (the run goes on)`, 'timeout_error', 'stream_stalled')));
  const drop = setTimeout(() => res.destroy(), ms);
  drop.unref();
  res.once('finish', () => clearTimeout(drop));
}

/** Waits until `res` drains, closes, or `ms` pass (then throws StalledError). */
export function drained(res: Response, ms: number): Promise<void> {
  return new Promise((ok, fail) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onDrain);
      if (err) fail(err);
      else ok();
    };
    const onDrain = () => done();
    const timer = setTimeout(() => done(new StalledError()), ms);
    res.on('drain', onDrain);
    res.on('close', onDrain);
  });
}

export async function streamRun(
  config: Config,
  res: Response,
  events: AsyncGenerator<RunEvent>,
  ctx: ChunkContext,
  includeUsage: boolean,
  o: {
    /** The client reconnected (Last-Event-ID) and already holds part of the message. */
    resumed?: boolean;
    metrics?: Metrics;
    /** `performance.now()` when the request came in: the first content observes time to first token. */
    since?: number;
  } = {},
): Promise<void> {
  let started = false;
  let firstContent = o.since !== undefined && !o.resumed;
  let seen = false;
  // A resumed stream continues a message the client already opened: no second `role`.
  let role = !o.resumed;
  const stallMs = config.stream.stallSeconds * 1000;
  const start = () => {
    if (started) return;
    started = true;
    if (o.metrics) {
      const streams = o.metrics.activeStreams;
      streams.inc();
      res.once('close', () => streams.dec());
    }
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
  };
  const frame = (id: string | null, data: unknown) => `${id ? `id: ${id}\n` : ''}data: ${JSON.stringify(data)}\n\n`;
  /** Writes one frame; resolves once the client can take more. */
  const send = async (id: string | null, data: unknown) => {
    start();
    if (res.destroyed || res.writableEnded) return;
    if (!res.write(frame(id, data))) await drained(res, stallMs);
  };
  // Keepalive chunks keep edge gateways' idle timers from firing during long steps.
  // Once the run shows life (a tool step, say) the stream starts, even if nothing is visible yet.
  const keepalive = () => {
    if ((started || seen) && !res.writableNeedDrain && !res.writableEnded) {
      start();
      res.write(frame(null, chunk(ctx, config.loop.keepalive === 'reasoning' ? { reasoning_content: '' } : {})));
    }
  };
  const timer = setInterval(keepalive, config.loop.keepaliveSeconds * 1000);
  // A resumed reader may join a quiet run: headers and a keepalive at once, not at the next event.
  if (o.resumed) {
    start();
    keepalive();
  }
  try {
    for await (const e of events) {
      seen ||= e.t !== 'retry';
      if (e.t === 'error') {
        if (!started) throw ApiError.fromWire(e.error);
        await send(formatPosition({ step: e.step, seq: e.seq }), errorChunk(ctx, e.error, e.usage));
        break;
      }
      if (e.t === 'end') {
        const id = formatPosition({ step: e.step, seq: e.seq });
        // Usage goes where the client asked for it (a last chunk with no choices), else on the
        // finish chunk itself, where clients that do not expect it find no extra chunk.
        const onFinish = !includeUsage && config.stream.usageOnFinish ? e.usage : undefined;
        await send(id, chunk(ctx, role ? { role: 'assistant', content: '' } : {}, e.finishReason, onFinish));
        if (includeUsage && e.usage) await send(null, usageChunk(ctx, e.usage));
        break;
      }
      // A retry before any byte is invisible, so the status can still tell a gateway to fail over.
      // (A resumed stream shows it: its client already holds part of the step.)
      if (e.t === 'retry' && !started && !o.resumed) continue;
      for (const { seq, delta } of eventDeltas(e, config.loop.progress)) {
        if (firstContent && (delta.content || delta.tool_calls || delta.reasoning_content)) {
          firstContent = false;
          o.metrics?.timeToFirstToken.observe({ model: o.metrics.model(ctx.model) }, (performance.now() - o.since!) / 1000);
        }
        await send(formatPosition({ step: e.step, seq }), chunk(ctx, role ? { role: 'assistant', ...delta } : delta));
        role = false;
      }
      if (res.destroyed) break;
    }
  } catch (err) {
    if (err instanceof StalledError) {
      // Past the socket buffer, so this one frame is all a stalled client can cost.
      cutOffStalled(res, stallMs, (e) => frame(null, errorChunk(ctx, e)), 'chat', o.metrics);
      return;
    }
    if (!started) throw err;
    if (!res.writableEnded) res.write(frame(null, errorChunk(ctx, toApiError(err))));
  } finally {
    clearInterval(timer);
  }
  if (!res.writableEnded) {
    start();
    res.end('data: [DONE]\n\n');
  }
}
