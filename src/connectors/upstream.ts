/**
 * UpstreamClient: one OpenAI-compatible upstream, streamed over fetch. No retries here on
 * purpose: Temporal is the only retrier, so failures are thrown as typed errors for the
 * activity to classify once.
 */
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

export function parseRetryAfter(h: Headers): number | null {
  const ms = h.get('retry-after-ms');
  if (ms && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const v = h.get('retry-after');
  if (!v) return null;
  if (/^\d+(\.\d+)?$/.test(v.trim())) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

async function httpError(res: Response): Promise<UpstreamHttpError> {
  const text = await res.text().catch(() => '');
  let err: { message?: unknown; type?: unknown; code?: unknown; param?: unknown } = {};
  try {
    const j = JSON.parse(text) as { error?: typeof err | string; message?: string };
    err = typeof j.error === 'object' && j.error ? j.error : { message: j.error ?? j.message };
  } catch {
    err = { message: text.slice(0, 500) };
  }
  const str = (v: unknown) => (typeof v === 'string' ? v : v == null ? null : String(v));
  return new UpstreamHttpError(
    res.status,
    str(err.message) || `upstream returned HTTP ${res.status}`,
    str(err.type),
    str(err.code),
    str(err.param),
    parseRetryAfter(res.headers),
  );
}

export class UpstreamClient {
  constructor(
    readonly cfg: UpstreamConfig,
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  private url(path: string): string {
    return this.cfg.baseURL.replace(/\/+$/, '') + path;
  }

  /** The upstream's own `GET /models` ids (pass-through mode lists these). */
  async listModels(): Promise<string[]> {
    const res = await this.fetchImpl(this.url('/models'), {
      headers: { ...(this.cfg.apiKey ? { authorization: `Bearer ${this.cfg.apiKey}` } : {}), ...this.cfg.headers },
      signal: AbortSignal.timeout(this.cfg.timeouts.connectSeconds * 1000),
    });
    if (!res.ok) throw await httpError(res);
    const body = (await res.json()) as { data?: Array<{ id?: unknown }> };
    return (body.data ?? []).map((m) => m.id).filter((id): id is string => typeof id === 'string');
  }

  /** Streams one chat completion; yields parsed chunks until `[DONE]`. */
  async *streamChat(body: Record<string, unknown>, signal?: AbortSignal): AsyncGenerator<ChatChunk> {
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
      let res: Response;
      try {
        res = await this.fetchImpl(this.url('/chat/completions'), {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'text/event-stream',
            ...(this.cfg.apiKey ? { authorization: `Bearer ${this.cfg.apiKey}` } : {}),
            ...this.cfg.headers,
          },
          body: JSON.stringify({ ...body, stream: true }),
          signal: ctl.signal,
        });
      } catch (e) {
        throw timedOut ?? (signal?.aborted ? e : new UpstreamConnectionError(`upstream unreachable: ${errText(e)}`));
      }
      if (!res.ok) throw await httpError(res);
      rearm();
      if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
        yield toChunk((await res.json()) as Record<string, unknown>);
        return;
      }
      yield* this.readSse(res, rearm, () => timedOut, signal);
    } finally {
      clearTimeout(total);
      clearTimeout(idle);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private async *readSse(
    res: Response,
    rearm: () => void,
    timedOut: () => UpstreamTimeoutError | null,
    signal?: AbortSignal,
  ): AsyncGenerator<ChatChunk> {
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let done = false;
    try {
      while (!done) {
        let r: { done: boolean; value?: string };
        try {
          r = await reader.read();
        } catch (e) {
          throw timedOut() ?? (signal?.aborted ? e : new UpstreamConnectionError(`upstream stream broke: ${errText(e)}`));
        }
        if (r.done) break;
        rearm();
        buf += r.value;
        let cut: number;
        while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
          const data = block
            .split(/\r?\n/)
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).replace(/^ /, ''))
            .join('\n');
          if (!data) continue;
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
    } finally {
      reader.cancel().catch(() => undefined);
    }
    if (!done) throw new UpstreamConnectionError('upstream stream ended before [DONE]');
  }
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
  const cause = (e as { cause?: { code?: string; message?: string } })?.cause;
  return cause?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e));
}
