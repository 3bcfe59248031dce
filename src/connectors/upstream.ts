/**
 * UpstreamClient: one OpenAI-compatible upstream. No retries here on purpose: Temporal is the
 * only retrier, so failures are thrown as typed errors for the activity to classify once.
 *
 * Completions stream over node:http with keep-alive agents rather than fetch: fetch's web
 * streams cost several times the CPU and garbage per chunk, and a process relays thousands of
 * chunks a second when a thousand streams are open.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Bulkhead } from './bulkhead';
import type { UpstreamConfig } from '../config/schema';
import type { Delta, Usage } from '../domain/chat';

export interface ChatChunk {
  id?: string;
  model?: string;
  choices?: Array<{ index?: number; delta?: Delta & { role?: string }; finish_reason?: string | null }>;
  usage?: Usage | null;
  error?: { message?: string; type?: string; code?: string | null };
}

/** The upstream answered with a non-2xx status. */
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
}

/** The upstream was silent for too long: before headers, between chunks, or in total. */
export class UpstreamTimeoutError extends Error {
  constructor(readonly phase: 'connect' | 'idle' | 'total', seconds: number) {
    super(`upstream ${phase} timeout after ${seconds}s`);
    this.name = 'UpstreamTimeoutError';
  }
}

/** Connection refused, reset, or the stream ended before `[DONE]`/finish. */
export class UpstreamConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamConnectionError';
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

function httpError(status: number, text: string, header: HeaderOf): UpstreamHttpError {
  let err: { message?: unknown; type?: unknown; code?: unknown; param?: unknown } = {};
  try {
    const j = JSON.parse(text) as { error?: typeof err | string; message?: string };
    err = typeof j.error === 'object' && j.error ? j.error : { message: j.error ?? j.message };
  } catch {
    err = { message: text.slice(0, 500) };
  }
  const str = (v: unknown) => (typeof v === 'string' ? v : v == null ? null : String(v));
  return new UpstreamHttpError(status, str(err.message) || `upstream returned HTTP ${status}`, str(err.type), str(err.code), str(err.param), parseRetryAfter(header));
}

const fetchError = async (res: Response) => httpError(res.status, await res.text().catch(() => ''), (n) => res.headers.get(n));

const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/** POSTs `body`; resolves with the response once its headers arrive. */
function post(url: string, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<IncomingMessage> {
  return new Promise((ok, fail) => {
    const u = new URL(url);
    const tls = u.protocol === 'https:';
    const req = (tls ? httpsRequest : httpRequest)(u, { method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent: tls ? agents.https : agents.http, signal }, ok);
    req.on('error', fail);
    req.end(body);
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

  constructor(readonly cfg: UpstreamConfig) {
    this.bulkhead = new Bulkhead(cfg.name, cfg.maxConcurrent, cfg.queueSeconds * 1000);
  }

  private url(path: string): string {
    return this.cfg.baseURL.replace(/\/+$/, '') + path;
  }

  /** The upstream's own `GET /models` ids (pass-through mode lists these). */
  async listModels(): Promise<string[]> {
    const res = await fetch(this.url('/models'), {
      headers: { ...(this.cfg.apiKey ? { authorization: `Bearer ${this.cfg.apiKey}` } : {}), ...this.cfg.headers },
      signal: AbortSignal.timeout(this.cfg.timeouts.connectSeconds * 1000),
    });
    if (!res.ok) throw await fetchError(res);
    const body = (await res.json()) as { data?: Array<{ id?: unknown }> };
    return (body.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
  }

  /** Streams one chat completion; yields parsed chunks until `[DONE]`. */
  async *streamChat(body: Record<string, unknown>, signal?: AbortSignal): AsyncGenerator<ChatChunk> {
    // The wait for a slot comes before any timeout starts: nothing has been sent yet.
    const release = await this.bulkhead.acquire(signal);
    try {
      yield* this.streamChatNow(body, signal);
    } finally {
      release();
    }
  }

  private async *streamChatNow(body: Record<string, unknown>, signal?: AbortSignal): AsyncGenerator<ChatChunk> {
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
    try {
      let res: IncomingMessage;
      try {
        const headers = {
          'content-type': 'application/json',
          accept: 'text/event-stream',
          ...(this.cfg.apiKey ? { authorization: `Bearer ${this.cfg.apiKey}` } : {}),
          ...this.cfg.headers,
        };
        res = await post(this.url('/chat/completions'), headers, JSON.stringify({ ...body, stream: true }), ctl.signal);
      } catch (e) {
        throw timedOut ?? (signal?.aborted ? e : new UpstreamConnectionError(`upstream unreachable: ${errText(e)}`));
      }
      try {
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) throw httpError(status, await readText(res), headerOf(res));
        rearm();
        if (!/text\/event-stream/.test(res.headers['content-type'] ?? '')) {
          yield toChunk(JSON.parse(await readText(res)) as Record<string, unknown>);
          return;
        }
        yield* this.readSse(res, rearm, () => timedOut, signal);
      } catch (e) {
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

  private async *readSse(res: IncomingMessage, rearm: () => void, timedOut: () => UpstreamTimeoutError | null, signal?: AbortSignal): AsyncGenerator<ChatChunk> {
    res.setEncoding('utf8');
    const sse = new SseDecoder();
    let done = false;
    const it = res[Symbol.asyncIterator]() as AsyncIterator<string>;
    while (!done) {
      let r: IteratorResult<string>;
      try {
        r = await it.next();
      } catch (e) {
        throw timedOut() ?? (signal?.aborted ? e : new UpstreamConnectionError(`upstream stream broke: ${errText(e)}`));
      }
      if (r.done) break;
      rearm();
      for (const data of sse.push(r.value)) {
        if (data === '[DONE]') {
          done = true;
          break;
        }
        const chunk = JSON.parse(data) as ChatChunk;
        if (chunk.error) {
          throw new UpstreamHttpError(502, chunk.error.message ?? 'upstream stream error', chunk.error.type ?? null, chunk.error.code ?? null, null, null);
        }
        yield chunk;
      }
    }
    if (!done) throw timedOut() ?? new UpstreamConnectionError('upstream stream ended before [DONE]');
  }
}

/**
 * Server-sent events from text chunks split anywhere: `push` returns the data of each event
 * completed so far (its `data:` lines joined by \n; events without data are skipped).
 */
export class SseDecoder {
  private buf = '';
  /** The last chunk ended with `\r`: a `\n` starting this one belongs to that line end. */
  private cr = false;

  push(chunk: string): string[] {
    const text = this.cr && chunk.startsWith('\n') ? chunk.slice(1) : chunk;
    this.cr = chunk.endsWith('\r');
    // Every line end becomes \n, so one blank-line search finds each event's end.
    this.buf += text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
    const out: string[] = [];
    for (let at = this.buf.indexOf('\n\n'); at >= 0; at = this.buf.indexOf('\n\n')) {
      const data = eventData(this.buf.slice(0, at));
      this.buf = this.buf.slice(at + 2);
      if (data) out.push(data);
    }
    return out;
  }
}

function eventData(block: string): string | null {
  if (block.startsWith('data: ') && !block.includes('\n')) return block.slice(6);
  let data: string | null = null;
  for (const line of block.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const v = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
    data = data === null ? v : `${data}\n${v}`;
  }
  return data;
}

/** A non-streaming JSON answer, reshaped as a single chunk. */
function toChunk(j: Record<string, unknown>): ChatChunk {
  const choices = (j.choices as Array<{ message?: Record<string, unknown>; finish_reason?: string }>) ?? [];
  return {
    id: j.id as string,
    model: j.model as string,
    usage: (j.usage as Usage) ?? null,
    choices: choices.map((c, index) => ({ index, delta: (c.message ?? {}) as Delta, finish_reason: c.finish_reason ?? 'stop' })),
  };
}

function errText(e: unknown): string {
  const err = e as { code?: string; cause?: { code?: string; message?: string } };
  return err?.cause?.code ?? err?.cause?.message ?? (typeof err?.code === 'string' ? err.code : e instanceof Error ? e.message : String(e));
}
