/**
 * A run's events as a Responses object and as its stream events (`response.created`, output items
 * and their deltas, `keepalive`, `response.completed`, …).
 */
import type { Response } from 'express';
import type { Usage } from '../../domain/chat';
import { deltaOf, type RunEvent, type WireError } from '../../domain/events';
import { toApiError } from '../http/errors';
import { StalledError, cutOffStalled, drained } from '../http/sse';
import type { Metrics } from '../../telemetry/metrics';
import type { ResponsesRequest } from './request';

type OutputItem = Record<string, unknown> & { type: string; id: string };

export function wireUsage(u: Usage | undefined) {
  if (!u) return null;
  return {
    input_tokens: u.prompt_tokens,
    input_tokens_details: { cached_tokens: u.prompt_tokens_details?.cached_tokens ?? 0 },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: u.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: u.total_tokens,
  };
}

/**
 * Turns a run's events into Responses output items, calling `emit` with each stream event
 * (`response.output_item.added`, `….delta`, `….done`, …) as it goes.
 */
export class ResponseBuilder {
  readonly output: OutputItem[] = [];
  status: 'in_progress' | 'completed' | 'incomplete' | 'failed' | 'cancelled' = 'in_progress';
  usage: Usage | undefined;
  error: WireError | null = null;
  finishReason: string | null = null;
  private text: { item: OutputItem; index: number; text: string } | null = null;
  private calls = new Map<number, { item: OutputItem; index: number }>();
  private mcp = new Map<string, { item: OutputItem; index: number }>();
  private step = -1;
  /** Approval requests seen: the run's events before the segment's own are not this response's. */
  private approvals = 0;
  /** The response has ended (its run's end, or an approval request that ends the segment). */
  over = false;

  /**
   * `hex` and `segment` are the response's: item ids are `<kind>_<hex>[_<segment>]_<output index>`,
   * the same on every reading of the run, so a resumed stream and `GET` name the items the first
   * stream named.
   */
  constructor(
    private readonly hex: string,
    private readonly segment: number,
    private readonly emit: (type: string, data: Record<string, unknown>) => void,
  ) {}

  private itemId(prefix: string): string {
    return `${prefix}_${this.hex}${this.segment > 0 ? `_${this.segment}` : ''}_${this.output.length}`;
  }

  private add(item: OutputItem): number {
    this.output.push(item);
    const index = this.output.length - 1;
    this.emit('response.output_item.added', { output_index: index, item: { ...item } });
    return index;
  }

  private done(index: number): void {
    const item = this.output[index]!;
    item.status = item.status === 'failed' ? 'failed' : 'completed';
    this.emit('response.output_item.done', { output_index: index, item: { ...item } });
  }

  private closeText(): void {
    if (!this.text) return;
    const { item, index, text } = this.text;
    const part = { type: 'output_text', text, annotations: [] };
    item.content = [part];
    this.emit('response.output_text.done', { item_id: item.id, output_index: index, content_index: 0, text });
    this.emit('response.content_part.done', { item_id: item.id, output_index: index, content_index: 0, part });
    this.done(index);
    this.text = null;
  }

  private closeCalls(): void {
    for (const { item, index } of this.calls.values()) {
      this.emit('response.function_call_arguments.done', { item_id: item.id, output_index: index, arguments: item.arguments });
      this.done(index);
    }
    this.calls.clear();
  }

  private onStep(step: number): void {
    if (step === this.step) return;
    this.step = step;
    this.closeText();
    this.closeCalls();
  }

  take(e: RunEvent): void {
    if (this.over) return;
    if (this.approvals < this.segment) {
      if (e.t === 'approval_required') this.approvals++;
      // An earlier response's part of the run; its end is this one's too.
      if (e.t !== 'end' && e.t !== 'error') return;
    }
    this.onStep(e.step);
    switch (e.t) {
      case 'deltas':
        for (const raw of e.d) {
          const d = deltaOf(raw);
          if (d.content) {
            if (!this.text) {
              const item: OutputItem = { type: 'message', id: this.itemId('msg'), status: 'in_progress', role: 'assistant', content: [] };
              this.text = { item, index: this.add(item), text: '' };
              this.emit('response.content_part.added', { item_id: item.id, output_index: this.text.index, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
            }
            this.text.text += d.content;
            this.emit('response.output_text.delta', { item_id: this.text.item.id, output_index: this.text.index, content_index: 0, delta: d.content });
          }
          for (const c of d.tool_calls ?? []) {
            let call = this.calls.get(c.index);
            if (!call) {
              this.closeText();
              const item: OutputItem = { type: 'function_call', id: this.itemId('fc'), status: 'in_progress', call_id: c.id ?? '', name: c.function?.name ?? '', arguments: '' };
              call = { item, index: this.add(item) };
              this.calls.set(c.index, call);
            }
            const args = c.function?.arguments ?? '';
            if (args) {
              call.item.arguments = String(call.item.arguments) + args;
              this.emit('response.function_call_arguments.delta', { item_id: call.item.id, output_index: call.index, delta: args });
            }
          }
        }
        return;
      case 'tool_started': {
        this.closeText();
        const item: OutputItem = { type: 'mcp_call', id: this.itemId('mcp'), status: 'in_progress', server_label: e.server, name: e.tool, arguments: e.arguments, output: null, error: null };
        const index = this.add(item);
        this.mcp.set(e.callId, { item, index });
        this.emit('response.mcp_call.in_progress', { item_id: item.id, output_index: index });
        this.emit('response.mcp_call_arguments.done', { item_id: item.id, output_index: index, arguments: e.arguments });
        return;
      }
      case 'tool_finished': {
        const m = this.mcp.get(e.callId);
        if (!m) return;
        this.mcp.delete(e.callId);
        if (e.isError) {
          m.item.error = e.preview;
          m.item.status = 'failed';
        } else m.item.output = e.preview;
        this.emit(e.isError ? 'response.mcp_call.failed' : 'response.mcp_call.completed', { item_id: m.item.id, output_index: m.index });
        this.done(m.index);
        return;
      }
      case 'approval_required':
        // The response ends here; the client's mcp_approval_response continues the run in a new one.
        this.closeText();
        this.closeCalls();
        this.done(this.add({ type: 'mcp_approval_request', id: e.approvalId, server_label: e.server, name: e.tool, arguments: e.arguments }));
        this.status = 'completed';
        this.over = true;
        return;
      case 'end': {
        // The run's final message is authoritative for text its deltas did not carry (a joined run).
        const finalText = e.message.content ?? '';
        if (!this.text && finalText && !this.output.some((o) => o.type === 'message')) {
          const item: OutputItem = { type: 'message', id: this.itemId('msg'), status: 'in_progress', role: 'assistant', content: [] };
          this.text = { item, index: this.add(item), text: finalText };
        }
        this.closeText();
        this.closeCalls();
        this.usage = e.usage;
        this.finishReason = e.finishReason;
        this.status = e.finishReason === 'length' ? 'incomplete' : 'completed';
        this.over = true;
        return;
      }
      case 'error':
        this.closeText();
        this.closeCalls();
        this.usage = e.usage;
        this.error = e.error;
        this.status = e.error.code === 'run_cancelled' ? 'cancelled' : 'failed';
        this.over = true;
        return;
      default:
        return;
    }
  }
}

export interface ResponseContext {
  id: string;
  /** The run's 32 hex digits and the response's segment of it (item ids derive from them). */
  hex: string;
  segment: number;
  created: number;
  model: string;
  request: Partial<ResponsesRequest>;
}

export function responseObject(ctx: ResponseContext, b: ResponseBuilder | null) {
  const r = ctx.request;
  return {
    id: ctx.id,
    object: 'response' as const,
    created_at: ctx.created,
    status: b?.status ?? 'in_progress',
    model: ctx.model,
    output: b?.output ?? [],
    usage: wireUsage(b?.usage),
    error: b?.error ? { code: b.error.code ?? b.error.type, message: b.error.message } : null,
    incomplete_details: b?.status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: r.instructions ?? null,
    metadata: r.metadata ?? {},
    parallel_tool_calls: r.parallel_tool_calls ?? true,
    previous_response_id: r.previous_response_id ?? null,
    store: r.store ?? true,
    temperature: r.temperature ?? null,
    top_p: r.top_p ?? null,
    max_output_tokens: r.max_output_tokens ?? null,
    tool_choice: r.tool_choice ?? 'auto',
    tools: r.tools ?? [],
    text: r.text ?? { format: { type: 'text' } },
    reasoning: r.reasoning ?? null,
    background: r.background ?? false,
  };
}

/** Reads a response's events into `b` (no stream), until the response is over. */
export async function collect(events: AsyncGenerator<RunEvent>, b: ResponseBuilder): Promise<ResponseBuilder> {
  for await (const e of events) {
    b.take(e);
    if (b.over) break;
  }
  return b;
}

/** An `error` stream event's fields, as OpenAI sends them: its `type` stays `error`. */
function errorEventOf(e: Pick<WireError, 'message' | 'code' | 'param'>): Record<string, unknown> {
  return { code: e.code, message: e.message, param: e.param };
}

/** How a Responses stream is paced: keepalives in quiet spells, and the cut-off of a stalled client. */
export interface StreamPacing {
  keepaliveMs: number;
  /** A client that takes nothing this long gets an `error` event (`stream_stalled`) and is cut off. */
  stallMs: number;
  metrics?: Metrics;
}

/**
 * Writes the Responses stream: `event: <type>` and `data: {type, sequence_number, …}` per event.
 * The events of a run and their numbers are the same on every reading of its log, so a reader
 * that resumes `after` a sequence number is sent only what follows it.
 */
export async function streamResponse(res: Response, events: AsyncGenerator<RunEvent>, ctx: ResponseContext, pacing: StreamPacing, after = -1): Promise<void> {
  const { keepaliveMs, stallMs } = pacing;
  let seq = 0;
  let started = false;
  let wroteAt = Date.now();
  const frame = (type: string, n: number, data: Record<string, unknown>) => {
    if (!started) {
      started = true;
      res.status(200).setHeader('Content-Type', 'text/event-stream; charset=utf-8');
      res.setHeader('Cache-Control', 'no-cache');
      res.flushHeaders();
    }
    wroteAt = Date.now();
    res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: n, ...data })}\n\n`);
  };
  const write = (type: string, data: Record<string, unknown>) => {
    if (seq <= after) {
      seq++;
      return;
    }
    frame(type, seq++, data);
  };
  // During a quiet step (a long tool call) a `keepalive` event, as OpenAI sends on long streams,
  // keeps gateways' idle timers from firing. It repeats the last event's number, so the numbers
  // of a run's events stay the same on every reading (`starting_after` resumes by them).
  const keepalive = setInterval(() => {
    if (Date.now() - wroteAt < keepaliveMs || res.writableEnded || res.writableNeedDrain) return;
    frame('keepalive', Math.max(seq, after + 1) - 1, {});
  }, Math.max(250, keepaliveMs / 4));
  res.once('close', () => clearInterval(keepalive));
  const b = new ResponseBuilder(ctx.hex, ctx.segment, write);
  write('response.created', { response: responseObject(ctx, null) });
  write('response.in_progress', { response: responseObject(ctx, null) });
  try {
    for await (const e of events) {
      if (res.destroyed) return;
      b.take(e);
      if (b.over) break;
      // At the client's pace: nothing more is read from the run while its socket is full.
      if (res.writableNeedDrain) await drained(res, stallMs);
    }
  } catch (e) {
    if (e instanceof StalledError) {
      // As on Chat Completions: one error event behind what the socket holds, then the cut-off;
      // the run goes on, and `GET /v1/responses/{id}?stream=true&starting_after=` resumes it.
      clearInterval(keepalive);
      cutOffStalled(res, stallMs, (err) => `event: error\ndata: ${JSON.stringify({ type: 'error', sequence_number: seq, ...errorEventOf(err) })}\n\n`, 'responses', pacing.metrics);
      return;
    }
    const err = toApiError(e);
    b.error = { status: err.status, message: err.message, type: err.type, code: err.code, param: err.param };
    b.status = 'failed';
  }
  if (b.status === 'cancelled') write('response.cancelled', { response: responseObject(ctx, b) });
  else if (b.status === 'failed' && b.error) {
    write('error', errorEventOf(b.error));
    write('response.failed', { response: responseObject(ctx, b) });
  } else write(b.status === 'incomplete' ? 'response.incomplete' : 'response.completed', { response: responseObject(ctx, b) });
  clearInterval(keepalive);
  res.end();
}
