/**
 * A streaming client as real ones behave after a cut: it reads an SSE stream of a run into a
 * log (event ids, content, errors) and reconnects to `GET /v1/runs/{id}/events` with
 * `Last-Event-ID` until `[DONE]`, on whichever instance it is pointed at. Shared by the crash
 * and chaos suites, which check that every event arrives once and the content is whole.
 */
import { contentOf, sseEvents } from './sse';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface StreamLog {
  label: string;
  runId: string;
  ids: string[];
  content: string;
  done: boolean;
  errors: string[];
  /** Connections that delivered a 200, the first POST included. */
  connections: number;
  /** Failed reconnect attempts (connection refused, non-200), with when. */
  refused: string[];
  contentBeforeKill?: string;
  reasoning: string;
  /** When the first content after the first connection arrived. */
  resumedAt?: number;
}

export function newStreamLog(label: string, runId: string): StreamLog {
  return { label, runId, ids: [], content: '', done: false, errors: [], connections: 0, refused: [], reasoning: '' };
}

export const lastId = (log: StreamLog) => log.ids[log.ids.length - 1] ?? null;

/** Reads one SSE connection into `log`; 'cut' when it ends without `[DONE]`. */
export async function readInto(res: Response, log: StreamLog): Promise<'done' | 'cut'> {
  log.connections++;
  try {
    for await (const e of sseEvents(res)) {
      if (e.data === '[DONE]') {
        log.done = true;
        return 'done';
      }
      if (e.id) log.ids.push(e.id);
      const j = JSON.parse(e.data) as { error?: { message: string }; choices?: Array<{ delta?: { reasoning_content?: string } }> };
      if (j.error) log.errors.push(j.error.message);
      const text = contentOf(e.data);
      if (text && log.connections > 1) log.resumedAt ??= Date.now();
      log.content += text;
      log.reasoning += j.choices?.[0]?.delta?.reasoning_content ?? '';
    }
  } catch {
    // the connection died with the process
  }
  return 'cut';
}

/**
 * Reconnects with Last-Event-ID until the stream ends with `[DONE]` (retrying while an instance
 * comes up); `url` is asked before each attempt, so a client can move between instances.
 */
export async function resume(log: StreamLog, deadlineMs: number, url: string | (() => string)): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!log.done) {
    const id = lastId(log);
    const headersTimeout = new AbortController();
    const timer = setTimeout(() => headersTimeout.abort(), 15_000);
    try {
      const res = await fetch(`${typeof url === 'string' ? url : url()}/v1/runs/${log.runId}/events`, {
        headers: id ? { 'last-event-id': id } : {},
        signal: headersTimeout.signal,
      });
      clearTimeout(timer);
      if (res.status === 200) await readInto(res, log);
      else log.refused.push(`${new Date().toISOString()} ${res.status} ${(await res.text()).slice(0, 200)}`);
    } catch (e) {
      log.refused.push(`${new Date().toISOString()} ${e instanceof Error ? `${e.message} ${String((e.cause as Error | undefined)?.message ?? '')}` : String(e)}`);
    } finally {
      clearTimeout(timer);
    }
    if (log.done) return;
    if (Date.now() > deadline) throw new Error(`run ${log.runId} (${log.label}) did not finish its stream in time; after ${lastId(log)}; refused: ${log.refused.slice(-3).join(' | ')}`);
    await sleep(250);
  }
}
