/**
 * UpstreamClient: one upstream, spoken to in its dialect (./dialects). No retries here on
 * purpose: Temporal is the only retrier, so failures are thrown as typed errors for the activity
 * to classify once. The client owns what every dialect shares: the transport, the timeouts, the
 * bulkhead and the circuit breaker; server-sent events are parsed by `eventsource-parser`.
 *
 * Requests go over node:http with keep-alive agents rather than fetch: fetch's web streams cost
 * several times the CPU and garbage per chunk, and a process relays thousands of chunks a second
 * when a thousand streams are open.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Breaker } from './breaker';
import { Bulkhead } from './bulkhead';
import { dialectFor } from './dialects';
import { StreamFailure, type ChatBody, type ChatChunk, type Dialect, type UpstreamContinuation, type WireFailure } from './dialects/dialect';
import type { UpstreamConfig } from '../config/schema';

export type { ChatChunk } from './dialects/dialect';

/** The upstream answered with a non-2xx status (or reported a failure inside its stream). */
export class UpstreamHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string | null,
    readonly code: string | null,
    readonly param: string | null,
    readonly retryAfterMs: number | null,
  ) {
    super(message);
    this.name = 'UpstreamHttpError';
  }

  static of(f: WireFailure, retryAfterMs: number | null = null): UpstreamHttpError {
    return new UpstreamHttpError(f.status, f.message, f.type, f.code, f.param, retryAfterMs);
  }
}

/** The upstream was silent for too long: before headers, between chunks, or in total. */
export class UpstreamTimeoutError extends Error {
  constructor(readonly phase: 'connect' | 'idle' | 'total', seconds: number) {
    super(`upstream ${phase} timeout after ${seconds}s`);
    this.name = 'UpstreamTimeoutError';
  }
}

/** Connection refused, reset, or the stream ended before its last event. */
export class UpstreamConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamConnectionError';
  }
}

/** The upstream's circuit breaker is open: nothing was sent. */
export class UpstreamUnavailableError extends Error {
  constructor(
    readonly upstream: string,
    readonly retryAfterMs: number,
  ) {
    super(`upstream ${upstream} is unavailable: its circuit breaker is open after repeated failures (next probe in ${Math.ceil(retryAfterMs / 1000)}s)`);
    this.name = 'UpstreamUnavailableError';
  }
}

type HeaderOf = (name: string) => string | null;

export function parseRetryAfter(header: HeaderOf): number | null {
  const ms = header('retry-after-ms');
  if (ms && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const v = header('retry-after');
  if (!v) return null;
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

/** Largest single server-sent event accepted (a tool call's arguments arrive in one with some dialects). */
const MAX_EVENT_BYTES = 16 * 1024 * 1024;

const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/**
 * One HTTP stack for every upstream call (completions, `GET /models`): node:http(s) with the
 * keep-alive agents above. Sends `body` (or nothing); resolves once the response headers arrive.
 */
function send(method: 'GET' | 'POST', url: string, headers: Record<string, string>, body: string | null, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((ok, fail) => {
    const u = new URL(url);
    const tls = u.protocol === 'https:';
    const all = body === null ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) };
    const req = (tls ? httpsRequest : httpRequest)(u, { method, headers: all, agent: tls ? agents.https : agents.http, signal }, ok);
    req.on('error', fail);
    req.end(body ?? undefined);
  });
}

async function readText(res: IncomingMessage): Promise<string> {
  res.setEncoding('utf8');
  let text = '';
  for await (const c of res) text += c as string;
  return text;
}

const headerOf = (res: IncomingMessage): HeaderOf => (n) => {
  const v = res.headers[n];
  return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
};

export class UpstreamClient {
  readonly bulkhead: Bulkhead;
  readonly breaker: Breaker;
  readonly dialect: Dialect;

  constructor(
    readonly cfg: UpstreamConfig,
    log: (msg: string, fields: Record<string, unknown>) => void = (msg) => console.warn(`[mix2api] ${msg}`),
  ) {
    this.bulkhead = new Bulkhead(cfg.name, cfg.maxConcurrent, cfg.queueSeconds * 1000);
    this.breaker = new Breaker(cfg.name, cfg.breaker.failures, cfg.breaker.cooldownSeconds * 1000, log);
    this.dialect = dialectFor(cfg.api);
  }

  private url(path: string): string {
    return this.cfg.baseURL.replace(/\/+$/, '') + path;
  }

  /** The upstream's own `GET /models` ids (pass-through mode lists these; OpenAI dialects only). */
  async listModels(): Promise<string[]> {
    const signal = AbortSignal.timeout(this.cfg.timeouts.connectSeconds * 1000);
    const res = await send('GET', this.url('/models'), { accept: 'application/json', ...(this.cfg.apiKey ? { authorization: `Bearer ${this.cfg.apiKey}` } : {}), ...this.cfg.headers }, null, signal);
    const text = await readText(res);
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw UpstreamHttpError.of(this.dialect.failure(status, text), parseRetryAfter(headerOf(res)));
    const body = JSON.parse(text) as { data?: Array<{ id?: unknown }> };
    return (body.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
  }

  /**
   * Streams one completion in the upstream's dialect; yields Chat Completions chunks until the
   * stream's last event. The bulkhead slot is taken first: no timeout runs while nothing is sent.
   */
  /** `trace`: W3C trace-context headers for the request (see telemetry/tracing). */
  async *streamChat(body: ChatBody, signal?: AbortSignal, from?: UpstreamContinuation, trace: Record<string, string> = {}): AsyncGenerator<ChatChunk> {
    const release = await this.bulkhead.acquire(signal);
    try {
      yield* this.streamChatNow(body, signal, from, trace);
    } finally {
      release();
    }
  }

  private async *streamChatNow(body: ChatBody, signal: AbortSignal | undefined, from: UpstreamContinuation | undefined, trace: Record<string, string>): AsyncGenerator<ChatChunk> {
    const t = this.cfg.timeouts;
    const ctl = new AbortController();
    let timedOut: UpstreamTimeoutError | null = null;
    const fail = (phase: 'connect' | 'idle' | 'total', s: number) => () => {
      timedOut = new UpstreamTimeoutError(phase, s);
      ctl.abort(timedOut);
    };
    const onAbort = () => ctl.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const total = setTimeout(fail('total', t.totalSeconds), t.totalSeconds * 1000);
    let idle = setTimeout(fail('connect', t.connectSeconds), t.connectSeconds * 1000);
    const rearm = () => {
      clearTimeout(idle);
      idle = setTimeout(fail('idle', t.idleSeconds), t.idleSeconds * 1000);
    };
    const wire = this.dialect.request(body, this.cfg, from);
    try {
      let res: IncomingMessage;
      try {
        const headers = { 'content-type': 'application/json', accept: 'text/event-stream', ...trace, ...wire.headers, ...this.cfg.headers };
        res = await send('POST', this.url(wire.path), headers, JSON.stringify(wire.body), ctl.signal);
      } catch (e) {
        throw timedOut ?? (signal?.aborted ? e : new UpstreamConnectionError(`upstream unreachable: ${errText(e)}`));
      }
      try {
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) throw UpstreamHttpError.of(this.dialect.failure(status, await readText(res)), parseRetryAfter(headerOf(res)));
        rearm();
        if (!/text\/event-stream/.test(res.headers['content-type'] ?? '')) {
          const text = await readText(res);
          if (!this.dialect.whole) throw new Error(`upstream answered ${res.headers['content-type'] ?? 'without a content type'}, not an event stream: ${text.slice(0, 200)}`);
          yield* this.dialect.whole(JSON.parse(text) as Record<string, unknown>);
          return;
        }
        yield* this.readEvents(res, rearm, () => timedOut, signal);
      } catch (e) {
        if (e instanceof StreamFailure) throw UpstreamHttpError.of(e.failure);
        throw timedOut ?? e;
      } finally {
        // Stops the upstream when the reader leaves early (cancelled, or an error here).
        if (!res.complete) res.destroy();
      }
    } finally {
      clearTimeout(total);
      clearTimeout(idle);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async *readEvents(res: IncomingMessage, rearm: () => void, timedOut: () => UpstreamTimeoutError | null, signal?: AbortSignal): AsyncGenerator<ChatChunk> {
    res.setEncoding('utf8');
    const decoder = this.dialect.decoder();
    let pending: EventSourceMessage[] = [];
    let parseError: Error | null = null;
    const parser = createParser({
      maxBufferSize: MAX_EVENT_BYTES,
      onEvent: (e) => void pending.push(e),
      onError: (e) => {
        if (e.type === 'max-buffer-size-exceeded') parseError = new Error(`upstream sent an event over ${MAX_EVENT_BYTES} bytes`);
      },
    });
    const it = res[Symbol.asyncIterator]() as AsyncIterator<string>;
    while (!decoder.done) {
      let r: IteratorResult<string>;
      try {
        r = await it.next();
      } catch (e) {
        throw timedOut() ?? (signal?.aborted ? e : new UpstreamConnectionError(`upstream stream broke: ${errText(e)}`));
      }
      if (r.done) break;
      rearm();
      parser.feed(r.value);
      if (parseError) throw parseError;
      const events = pending;
      pending = [];
      for (const e of events) {
        yield* decoder.event(e.event, e.data);
        if (decoder.done) break;
      }
    }
    if (!decoder.done && !decoder.mayEnd) throw timedOut() ?? new UpstreamConnectionError('upstream stream ended before its last event');
  }
}

function errText(e: unknown): string {
  const err = e as { code?: string; cause?: { code?: string; message?: string } };
  return err?.cause?.code ?? err?.cause?.message ?? (typeof err?.code === 'string' ? err.code : e instanceof Error ? e.message : String(e));
}
