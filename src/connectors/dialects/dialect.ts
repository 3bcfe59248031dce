/**
 * A dialect: how one kind of upstream is spoken to. It builds the upstream's request from the
 * internal one (a Chat Completions body, what the workflow and activities carry) and folds the
 * upstream's server-sent events back into Chat Completions chunks, the one shape the model step
 * reads. Transport, timeouts, the bulkhead and the breaker are the upstream client's (../upstream);
 * a dialect only translates, so each is a pure function of its input and unit-testable alone.
 */
import { createHash } from 'node:crypto';
import type { UpstreamConfig } from '../../config/schema';
import type { Delta, Usage } from '../../domain/chat';

export type UpstreamApi = UpstreamConfig['api'];

/** One `chat.completion.chunk` as the model step reads it. */
export interface ChatChunk {
  id?: string;
  model?: string;
  choices?: Array<{ index?: number; delta?: Delta & { role?: string }; finish_reason?: string | null }>;
  usage?: Usage | null;
  error?: { message?: string; type?: string; code?: string | null };
}

export interface WireRequest {
  /** Appended to the upstream's `baseURL`. */
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

/** The fields an upstream's error body carries, in the upstream's own words. */
export interface WireFailure {
  status: number;
  message: string;
  type: string | null;
  code: string | null;
  param: string | null;
}

export interface StreamDecoder {
  /** One server-sent event (its `event:` name, if any, and its data); the chunks it makes. */
  event(name: string | undefined, data: string): ChatChunk[];
  /** The stream's terminal event has arrived: reading stops. */
  readonly done: boolean;
  /** For streams with no terminal event (Gemini's): the end of the stream now would be a proper end. */
  readonly mayEnd?: boolean;
}

/** An earlier response the upstream keeps (Responses `store`) that already holds the first `messageCount` messages. */
export interface UpstreamContinuation {
  responseId: string;
  messageCount: number;
}

export interface Dialect {
  request(body: ChatBody, cfg: UpstreamConfig, from?: UpstreamContinuation): WireRequest;
  decoder(): StreamDecoder;
  /** A non-2xx answer's body. */
  failure(status: number, text: string): WireFailure;
  /** A whole JSON answer where a stream was asked for (some OpenAI-compatible servers do this). */
  whole?(json: Record<string, unknown>): ChatChunk[];
}

/** The internal request: a Chat Completions body (the client's, with the route's model and the run's tools). */
export interface ChatBody {
  model: string;
  messages: ChatMessageIn[];
  tools?: Array<{ type?: string; function?: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean } }>;
  tool_choice?: unknown;
  parallel_tool_calls?: boolean;
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  stop?: string | string[];
  reasoning_effort?: string;
  user?: string;
  [k: string]: unknown;
}

export interface ChatMessageIn {
  role: string;
  content?: unknown;
  tool_calls?: Array<{ id: string; function: { name: string; arguments: string } }>;
  tool_call_id?: string;
  /** The assistant prefill of a retried step (`continuation: prefill`): the answer so far. */
  prefix?: boolean;
  [k: string]: unknown;
}

/** A failure the stream itself reported (an `error` event), thrown by a decoder. */
export class StreamFailure extends Error {
  constructor(readonly failure: WireFailure) {
    super(failure.message);
    this.name = 'StreamFailure';
  }
}

export type ContentPart =
  | { kind: 'text'; text: string }
  | { kind: 'image'; url: string; mediaType?: string; data?: string };

/** A message's content as parts: strings, `text` parts and `image_url` parts (data: URLs decoded); other parts are dropped. */
export function contentParts(content: unknown): ContentPart[] {
  if (typeof content === 'string') return content === '' ? [] : [{ kind: 'text', text: content }];
  if (!Array.isArray(content)) return [];
  const out: ContentPart[] = [];
  for (const p of content as Array<Record<string, unknown>>) {
    if (p?.type === 'text' && typeof p.text === 'string') out.push({ kind: 'text', text: p.text });
    else if (p?.type === 'image_url') {
      const url = typeof p.image_url === 'string' ? p.image_url : (p.image_url as { url?: unknown } | undefined)?.url;
      if (typeof url !== 'string') continue;
      const m = /^data:([^;,]+);base64,(.*)$/s.exec(url);
      out.push(m ? { kind: 'image', url, mediaType: m[1]!, data: m[2]! } : { kind: 'image', url });
    }
  }
  return out;
}

/** A message's text: its string content or its text parts joined. */
export function contentText(content: unknown): string {
  return contentParts(content)
    .map((p) => (p.kind === 'text' ? p.text : ''))
    .join('');
}

/** `system` and `developer` messages: instructions to dialects that keep them apart from the turns. */
export const isInstruction = (m: ChatMessageIn): boolean => m.role === 'system' || m.role === 'developer';

/** A tool call's arguments as an object (what Anthropic and Gemini take); `{}` for empty or non-object JSON. */
export function argsObject(args: string): Record<string, unknown> {
  try {
    const v = JSON.parse(args || '{}') as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : { value: v };
  } catch {
    return { _raw: args };
  }
}

/** The effective output cap the client asked for. */
export const maxOutput = (b: ChatBody): number | undefined => b.max_completion_tokens ?? b.max_tokens;

export const stopList = (stop: ChatBody['stop']): string[] | undefined => (stop === undefined ? undefined : Array.isArray(stop) ? stop : [stop]);

export function usageOf(prompt: number, completion: number, extra: { cached?: number; reasoning?: number } = {}): Usage {
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
    ...(extra.cached ? { prompt_tokens_details: { cached_tokens: extra.cached } } : {}),
    ...(extra.reasoning ? { completion_tokens_details: { reasoning_tokens: extra.reasoning } } : {}),
  };
}

export const chunkOf = (delta: Delta, finish: string | null = null): ChatChunk => ({ choices: [{ index: 0, delta, finish_reason: finish }] });

/** An event's JSON object, typed as the dialect's event (the decoder checks the fields it reads). */
export function parseJson<T = Record<string, unknown>>(data: string): T {
  const v = JSON.parse(data) as unknown;
  if (typeof v !== 'object' || v === null) throw new Error(`upstream sent an event that is not a JSON object: ${data.slice(0, 100)}`);
  return v as T;
}

/** An error body of the common `{"error": {...}}` form (OpenAI's, and most others'). */
export function errorBody(status: number, text: string): WireFailure {
  let err: { message?: unknown; type?: unknown; code?: unknown; param?: unknown; status?: unknown } = {};
  try {
    const j = JSON.parse(text) as { error?: typeof err | string; message?: string };
    err = typeof j.error === 'object' && j.error ? j.error : { message: j.error ?? j.message };
  } catch {
    err = { message: text.slice(0, 500) };
  }
  const str = (v: unknown) => (typeof v === 'string' ? v : v == null ? null : String(v));
  return { status, message: str(err.message) || `upstream returned HTTP ${status}`, type: str(err.type), code: str(err.code), param: str(err.param) };
}

/**
 * A digest of messages as an upstream sees them (role, text and images, calls, call ids): a
 * client's resent history matches what an earlier request sent, whatever extra fields it carries.
 */
export function digestMessages(messages: readonly ChatMessageIn[]): string {
  const h = createHash('sha256');
  for (const m of messages) {
    const parts = contentParts(m.content).map((p) => (p.kind === 'text' ? p.text : { image: p.url }));
    h.update(JSON.stringify([m.role, parts, (m.tool_calls ?? []).map((c) => [c.id, c.function.name, c.function.arguments]), m.tool_call_id ?? null]));
    h.update('\n');
  }
  return h.digest('base64url');
}
