// Scripted upstream for tests. Owns a node:http server on 127.0.0.1 that answers from a FIFO of
// scripts in four dialects: POST /v1/chat/completions (SSE `chat.completion.chunk`s or one
// `chat.completion`), POST /v1/messages (Anthropic), POST /v1beta/models/{m}:streamGenerateContent
// (Gemini) and POST /v1/responses (OpenAI Responses; see ./scriptedDialects). It injects faults
// (HTTP errors in each dialect's error body, dropped sockets, stalls, errors inside the stream),
// records every request, and lists GET /v1/models.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { anthropicThinkingError, errorBodyOf, FAULTS, PromptCache, promptOf, renderAnthropic, renderGemini, renderResponses, streamFailure, tokens, type DialectName, type Frame } from './scriptedDialects';

export type ScriptStep =
  | { kind: 'text'; text: string; chunks?: number; delayMs?: number }
  | { kind: 'reasoning'; text: string; chunks?: number; delayMs?: number }
  | { kind: 'toolCalls'; calls: Array<{ id?: string; name: string; arguments: string }>; argChunks?: number; delayMs?: number }
  | { kind: 'fault'; fault: 'http500' | 'http429' | 'http400' | 'http401' | 'http403' | 'overloaded' | 'drop' | 'stall' | 'streamError'; retryAfterSeconds?: number; message?: string };

export interface Script {
  steps: ScriptStep[];
  usage?: { prompt_tokens: number; completion_tokens: number };
  finishReason?: string;
  model?: string;
}

export interface RecordedRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
  receivedAt: number;
  /** When the caller went away before the response ended (a stopped stream). */
  abandonedAt?: number;
}

/** The first group of `pattern` in a Chat Completions request's user message ('?' when none): how tests label runs. */
export function labelIn(req: RecordedRequest, pattern: RegExp): string {
  const user = ((req.body.messages ?? []) as Array<{ role: string; content?: unknown }>).find((m) => m.role === 'user');
  return pattern.exec(typeof user?.content === 'string' ? user.content : '')?.[1] ?? '?';
}

export interface ScriptedUpstream {
  /** The OpenAI-style base URL (`…/v1`): Chat Completions and Responses. */
  url: string;
  /** The server's root: Anthropic's and Gemini's base URL. */
  root: string;
  enqueue(...scripts: Script[]): void;
  setDefault(script: Script | ((req: RecordedRequest) => Script)): void;
  requests: RecordedRequest[];
  /** The headers of each `GET /v1/models` (kept apart from `requests`, which are completions). */
  listings: Array<Record<string, string | string[] | undefined>>;
  reset(): void;
  close(): Promise<void>;
}

type Fault = Extract<ScriptStep, { kind: 'fault' }>;
type Json = Record<string, unknown>;
interface ToolCall { id: string; type: 'function'; function: { name: string; arguments: string } }

const ECHO_OK: Script = { steps: [{ kind: 'text', text: 'ok' }] };

const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const hex = (n: number): string => randomUUID().replace(/-/g, '').slice(0, n);

/** `n` near-equal pieces (clamped to 1..length), or word-ish pieces (`\s*\S+\s*`) when `n` is unset. */
function split(text: string, n?: number): string[] {
  if (!text) return [];
  if (n === undefined) return text.match(/\s*\S+\s*/g) ?? [text];
  const count = Math.max(1, Math.min(Math.floor(n), text.length));
  return Array.from({ length: count }, (_, i) =>
    text.slice(Math.floor((i * text.length) / count), Math.floor(((i + 1) * text.length) / count)));
}

/** Turns steps (up to the first fault) into the deltas to stream plus the assembled message parts. */
function plan(steps: ScriptStep[]) {
  const deltas: Array<{ delta: Json; delayMs: number }> = [];
  const toolCalls: ToolCall[] = [];
  let content = '';
  let reasoning = '';
  for (const step of steps) {
    if (step.kind === 'fault') return { deltas, content, reasoning, toolCalls, fault: step };
    const delayMs = step.delayMs ?? 0;
    if (step.kind === 'toolCalls') {
      for (const call of step.calls) {
        // OpenAI rules: a stable index per call; id/type/name only on its first delta (with empty arguments).
        const index = toolCalls.length;
        const id = call.id ?? `call_${hex(24)}`;
        toolCalls.push({ id, type: 'function', function: { name: call.name, arguments: call.arguments } });
        deltas.push({ delayMs, delta: { tool_calls: [{ index, id, type: 'function', function: { name: call.name, arguments: '' } }] } });
        for (const piece of split(call.arguments, step.argChunks ?? Math.ceil(call.arguments.length / 8)))
          deltas.push({ delayMs, delta: { tool_calls: [{ index, function: { arguments: piece } }] } });
      }
    } else {
      if (step.kind === 'text') content += step.text;
      else reasoning += step.text;
      const key = step.kind === 'text' ? 'content' : 'reasoning_content';
      for (const piece of split(step.text, step.chunks)) deltas.push({ delayMs, delta: { [key]: piece } });
    }
  }
  return { deltas, content, reasoning, toolCalls, fault: undefined };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}
function sendError(res: http.ServerResponse, status: number, type: string, code: string | null, message: string): void {
  sendJson(res, status, { error: { message, type, param: null, code } });
}

/**
 * http* faults answer with the dialect's error body before any byte; once headers are out they
 * degrade to 'drop'. `streamError` is an error event inside the stream (a 500 before it starts).
 */
function fail(req: http.IncomingMessage, res: http.ServerResponse, fault: Fault, dialect: DialectName | 'openai' = 'openai'): void {
  if (fault.fault === 'stall') return; // connection held open; close() destroys it
  if (fault.fault === 'drop' || res.headersSent) return void req.socket.destroy();
  const [status, type, code] = FAULTS[fault.fault === 'streamError' ? 'http500' : fault.fault]![dialect];
  if (fault.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(fault.retryAfterSeconds));
  sendJson(res, status, errorBodyOf(dialect, status, type, code, fault.message ?? `scripted ${fault.fault}`));
}

/** Which dialect a request path speaks, and the model a Gemini path names. */
function dialectOf(method: string | undefined, path: string): { dialect: DialectName | 'openai'; model?: string } | null {
  if (method !== 'POST') return null;
  if (path === '/v1/chat/completions') return { dialect: 'openai' };
  if (path === '/v1/messages') return { dialect: 'anthropic' };
  if (path === '/v1/responses') return { dialect: 'responses' };
  const g = /^\/v1beta\/models\/([^/:]+):streamGenerateContent$/.exec(path);
  return g ? { dialect: 'gemini', model: decodeURIComponent(g[1]!) } : null;
}

export async function startScriptedUpstream(opts: { port?: number } = {}): Promise<ScriptedUpstream> {
  const queue: Script[] = [];
  const requests: RecordedRequest[] = [];
  const listings: Array<Record<string, string | string[] | undefined>> = [];
  let fallback: Script | ((req: RecordedRequest) => Script) = ECHO_OK;
  const closing = new AbortController(); // cancels pending delays on close()
  const cache = new PromptCache();
  /** Stored Responses (`store: true`): id → the tokens of the context it holds. */
  const stored = new Map<string, number>();

  async function completions(req: http.IncomingMessage, res: http.ServerResponse, path: string, dialect: DialectName | 'openai', pathModel?: string): Promise<void> {
    const raw: Buffer[] = [];
    for await (const chunk of req) raw.push(chunk as Buffer);
    let body: unknown;
    try { body = JSON.parse(Buffer.concat(raw).toString('utf8')); } catch { body = undefined; }
    if (!isRecord(body)) return sendError(res, 400, 'invalid_request_error', null, 'We could not parse the JSON body of your request.');
    const rec: RecordedRequest = { path, headers: { ...req.headers }, body, receivedAt: Date.now() };
    requests.push(rec);
    res.once('close', () => {
      if (!res.writableEnded) rec.abandonedAt = Date.now();
    });
    const script = queue.shift() ?? (typeof fallback === 'function' ? fallback(rec) : fallback);

    const p = plan(script.steps);
    const model = script.model ?? pathModel ?? (typeof body.model === 'string' ? body.model : 'scripted');
    if (dialect !== 'openai') return other(req, res, dialect, body, script, p, model);
    const finishReason = script.finishReason ?? (script.steps.some((s) => s.kind === 'toolCalls') ? 'tool_calls' : 'stop');
    const argsLength = p.toolCalls.reduce((n, c) => n + c.function.arguments.length, 0);
    const u = script.usage ?? {
      prompt_tokens: Math.ceil(JSON.stringify(body.messages ?? []).length / 4),
      completion_tokens: Math.ceil((p.content.length + p.reasoning.length + argsLength) / 4),
    };
    const usage = { ...u, total_tokens: u.prompt_tokens + u.completion_tokens };
    const base = { id: `chatcmpl-${hex(29)}`, created: Math.floor(Date.now() / 1000), model };
    const pause = (ms: number) => (ms > 0 ? sleep(ms, undefined, { signal: closing.signal }) : Promise.resolve());

    if (body.stream !== true) {
      await pause(p.deltas.reduce((ms, d) => ms + d.delayMs, 0));
      if (p.fault) return fail(req, res, p.fault);
      const message: Json = { role: 'assistant', content: p.content || (p.toolCalls.length ? null : ''), refusal: null };
      if (p.reasoning) message.reasoning_content = p.reasoning;
      if (p.toolCalls.length) message.tool_calls = p.toolCalls;
      return sendJson(res, 200, {
        ...base, object: 'chat.completion', choices: [{ index: 0, message, finish_reason: finishReason, logprobs: null }], usage,
      });
    }

    if (p.fault && p.deltas.length === 0) return fail(req, res, p.fault);
    const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
    const chunk = { ...base, object: 'chat.completion.chunk', ...(includeUsage ? { usage: null } : {}) };
    let flushed = Promise.resolve(); // settles once the last chunk reached the kernel, so 'drop' cannot eat it
    const write = (data: Json) => {
      flushed = new Promise((resolve) => res.write(`data: ${JSON.stringify({ ...chunk, ...data })}\n\n`, () => resolve()));
    };
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
    const deltas = p.deltas.length ? p.deltas : [{ delta: { content: '' }, delayMs: 0 }];
    for (const [i, { delta, delayMs }] of deltas.entries()) {
      await pause(delayMs);
      if (res.destroyed) return; // client went away
      const last = i === deltas.length - 1 && !p.fault;
      write({ choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', ...delta } : delta, finish_reason: last ? finishReason : null, logprobs: null }] });
    }
    if (p.fault?.fault === 'streamError') {
      res.end(`data: ${JSON.stringify(streamFailure('openai', p.fault.message ?? 'scripted stream error').data)}\n\n`);
      return;
    }
    if (p.fault) return void flushed.then(() => fail(req, res, p.fault));
    if (includeUsage) write({ choices: [], usage });
    res.end('data: [DONE]\n\n');
  }

  /** Anthropic, Gemini and Responses: the script rendered as that API's stream. */
  async function other(req: http.IncomingMessage, res: http.ServerResponse, dialect: DialectName, body: Json, script: Script, p: ReturnType<typeof plan>, model: string): Promise<void> {
    const pause = (ms: number) => (ms > 0 ? sleep(ms, undefined, { signal: closing.signal }) : Promise.resolve());
    const finishReason = script.finishReason ?? (script.steps.some((s) => s.kind === 'toolCalls') ? 'tool_calls' : 'stop');
    const argsLength = p.toolCalls.reduce((n, c) => n + c.function.arguments.length, 0);
    const output = script.usage?.completion_tokens ?? Math.ceil((p.content.length + p.reasoning.length + argsLength) / 4);
    const previous = typeof body.previous_response_id === 'string' ? body.previous_response_id : null;
    if (previous !== null && !stored.has(previous)) {
      return sendJson(res, 400, { error: { message: `Previous response with id '${previous}' not found.`, type: 'invalid_request_error', param: 'previous_response_id', code: 'previous_response_not_found' } });
    }
    if (p.fault && p.fault.fault !== 'streamError' && p.deltas.length === 0) return fail(req, res, p.fault, dialect);
    const lostThinking = dialect === 'anthropic' ? anthropicThinkingError(body) : null;
    if (lostThinking) return sendJson(res, 400, errorBodyOf('anthropic', 400, 'invalid_request_error', null, lostThinking));
    let frames: Frame[];
    if (dialect === 'anthropic') {
      const input = script.usage ? { input: script.usage.prompt_tokens, read: 0, write: 0 } : cache.account(body);
      frames = renderAnthropic(p.deltas, { model, finishReason, input, output });
    } else if (dialect === 'gemini') {
      frames = renderGemini(p.deltas, { model, finishReason, input: script.usage?.prompt_tokens ?? tokens(promptOf(dialect, body)), output });
    } else {
      const held = previous === null ? 0 : stored.get(previous)!;
      const input = (script.usage?.prompt_tokens ?? tokens(promptOf(dialect, body))) + held;
      const id = `resp_${hex(40)}`;
      const r = renderResponses(p.deltas, { model, finishReason, input, cached: held, output, id, previous });
      if (body.store !== false) stored.set(id, input + output);
      frames = r.frames;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
    // A fault after some output cuts the stream before its end (no finish, no final event).
    const cut = p.fault ? frames.length - (dialect === 'gemini' ? 1 : 2) : frames.length;
    let flushed = Promise.resolve();
    for (const f of frames.slice(0, Math.max(1, cut))) {
      await pause(f.delayMs);
      if (res.destroyed) return;
      flushed = new Promise((ok) => res.write(`${f.event ? `event: ${f.event}\n` : ''}data: ${JSON.stringify(f.data)}\n\n`, () => ok()));
    }
    if (p.fault?.fault === 'streamError') {
      const f = streamFailure(dialect, p.fault.message ?? 'scripted stream error');
      return void res.end(`${f.event ? `event: ${f.event}\n` : ''}data: ${JSON.stringify(f.data)}\n\n`);
    }
    if (p.fault) return void flushed.then(() => fail(req, res, p.fault!, dialect));
    res.end();
  }

  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    res.setHeader('x-request-id', `req_${hex(24)}`);
    if (req.method === 'GET' && path === '/v1/models') {
      listings.push({ ...req.headers });
      return sendJson(res, 200, { object: 'list', data: [{ id: 'scripted', object: 'model', created: 0, owned_by: 'scripted-upstream' }] });
    }
    const route = dialectOf(req.method, path);
    if (!route) return sendError(res, 404, 'invalid_request_error', 'unknown_url', `Unknown request URL: ${req.method} ${path}`);
    completions(req, res, path, route.dialect, route.model).catch((err: unknown) => {
      if (closing.signal.aborted) return;
      if (res.headersSent) req.socket.destroy();
      else sendError(res, 500, 'server_error', null, `scripted upstream failed: ${String(err)}`);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    root: `http://127.0.0.1:${port}`,
    requests,
    listings,
    enqueue: (...scripts) => void queue.push(...scripts),
    setDefault: (script) => { fallback = script; },
    reset: () => { queue.length = 0; requests.length = 0; listings.length = 0; fallback = ECHO_OK; stored.clear(); },
    close: () => (closed ??= new Promise<void>((resolve) => {
      closing.abort();
      server.close(() => resolve());
      server.closeAllConnections(); // includes stalled streams and idle keep-alive sockets
    })),
  };
}
