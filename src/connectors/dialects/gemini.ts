/**
 * `gemini`: Google's Generative Language API (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse`).
 * System and developer messages become `systemInstruction`; assistant turns are `model` turns with
 * `functionCall` parts; tool results are `functionResponse` parts of a user turn, named after the
 * call they answer. Gemini sends each call whole (no argument deltas), so each becomes one
 * tool-call delta with id, name and all its arguments; calls without an id get one here.
 * Thought parts (`thought: true`) become `reasoning_content`.
 *
 * Gemini 3 wants the thought signature of each earlier function call sent back: each one streamed
 * becomes an entry of the message's `reasoning_details` (bound to its call's id) and goes back on
 * that call's part; a call without one (a client's own message) carries the documented
 * placeholder that skips the check.
 */
import { randomBytes } from 'node:crypto';
import type { Content, GenerateContentResponse, Part } from '@google/genai';
import type { ReasoningDetail } from '../../domain/chat';
import {
  argsObject,
  chunkOf,
  contentParts,
  contentText,
  isInstruction,
  maxOutput,
  parseJson,
  stopList,
  StreamFailure,
  usageOf,
  type ChatBody,
  type ChatChunk,
  type Dialect,
  type StreamDecoder,
  type WireFailure,
} from './dialect';

/** `reasoning_details[].format` of a Gemini thought signature (OpenRouter's name for Google's). */
export const GEMINI_REASONING_FORMAT = 'google-gemini-v1';

/** Tool call id → the thought signature Gemini gave that call (domain/chat `ReasoningDetail`). */
function thoughtSignatures(details: unknown): Map<string, string> {
  const out = new Map<string, string>();
  if (Array.isArray(details))
    for (const d of details as ReasoningDetail[]) if (d?.format === GEMINI_REASONING_FORMAT && d.type === 'reasoning.encrypted' && typeof d.id === 'string' && typeof d.data === 'string') out.set(d.id, d.data);
  return out;
}

/** Google's placeholder for a function call whose thought signature is not at hand. */
export const SKIP_THOUGHT_SIGNATURE = 'skip_thought_signature_validator';

/** The REST body of `generateContent` (the SDK's parameters are shaped differently). */
export interface GeminiRequest {
  contents: Content[];
  systemInstruction?: Content;
  tools?: Array<{ functionDeclarations: Array<{ name: string; description?: string; parametersJsonSchema?: unknown }> }>;
  toolConfig?: { functionCallingConfig: { mode: 'AUTO' | 'ANY' | 'NONE'; allowedFunctionNames?: string[] } };
  generationConfig?: Record<string, unknown>;
}

/** google.rpc status names and the HTTP status each maps to (for errors inside a stream). */
const RPC_STATUS: Record<string, number> = {
  INVALID_ARGUMENT: 400,
  FAILED_PRECONDITION: 400,
  OUT_OF_RANGE: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  RESOURCE_EXHAUSTED: 429,
  CANCELLED: 499,
  INTERNAL: 500,
  UNKNOWN: 500,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

const FINISH: Record<string, string> = { STOP: 'stop', MAX_TOKENS: 'length', MALFORMED_FUNCTION_CALL: 'stop' };
const THINKING_BUDGET: Record<string, number> = { minimal: 0, low: 1024, medium: 8192, high: 24576 };

function parts(content: unknown): Part[] {
  return contentParts(content).map((p): Part => {
    if (p.kind === 'text') return { text: p.text };
    if (p.data !== undefined) return { inlineData: { mimeType: p.mediaType, data: p.data } };
    return { fileData: { fileUri: p.url } };
  });
}

function contents(body: ChatBody): Content[] {
  const out: Content[] = [];
  const nameOf = new Map<string, string>();
  const push = (role: 'user' | 'model', ps: Part[]) => {
    if (ps.length === 0) return;
    const last = out[out.length - 1];
    if (last && last.role === role) last.parts!.push(...ps);
    else out.push({ role, parts: ps });
  };
  for (const m of body.messages) {
    if (isInstruction(m)) continue;
    if (m.role === 'assistant') {
      const signatures = thoughtSignatures(m.reasoning_details);
      const text = contentText(m.content);
      const ps: Part[] = text ? [{ text }] : [];
      for (const c of m.tool_calls ?? []) {
        nameOf.set(c.id, c.function.name);
        ps.push({ functionCall: { id: c.id, name: c.function.name, args: argsObject(c.function.arguments) }, thoughtSignature: signatures.get(c.id) ?? SKIP_THOUGHT_SIGNATURE });
      }
      push('model', ps);
    } else if (m.role === 'tool') {
      const id = m.tool_call_id ?? '';
      push('user', [{ functionResponse: { id, name: nameOf.get(id) ?? id, response: { output: contentText(m.content) } } }]);
    } else {
      push('user', parts(m.content));
    }
  }
  return out;
}

function toolConfig(body: ChatBody): GeminiRequest['toolConfig'] {
  const c = body.tool_choice;
  if (c === 'none') return { functionCallingConfig: { mode: 'NONE' } };
  if (c === 'required') return { functionCallingConfig: { mode: 'ANY' } };
  const named = (c as { function?: { name?: unknown } } | undefined)?.function?.name;
  if (typeof named === 'string') return { functionCallingConfig: { mode: 'ANY', allowedFunctionNames: [named] } };
  return undefined;
}

export function geminiRequest(body: ChatBody): GeminiRequest {
  const system = body.messages.filter(isInstruction).map((m) => ({ text: contentText(m.content) }));
  const gen: Record<string, unknown> = {};
  if (body.temperature !== undefined) gen.temperature = body.temperature;
  if (body.top_p !== undefined) gen.topP = body.top_p;
  const max = maxOutput(body);
  if (max !== undefined) gen.maxOutputTokens = max;
  const stop = stopList(body.stop);
  if (stop) gen.stopSequences = stop;
  const budget = body.reasoning_effort ? THINKING_BUDGET[body.reasoning_effort] : undefined;
  if (budget !== undefined) gen.thinkingConfig = { thinkingBudget: budget, includeThoughts: budget > 0 };
  const choice = toolConfig(body);
  return {
    contents: contents(body),
    ...(system.length ? { systemInstruction: { parts: system } } : {}),
    ...(body.tools?.length
      ? {
          tools: [
            {
              functionDeclarations: body.tools.map((t) => ({
                name: t.function!.name,
                ...(t.function!.description ? { description: t.function!.description } : {}),
                ...(t.function!.parameters ? { parametersJsonSchema: t.function!.parameters } : {}),
              })),
            },
          ],
        }
      : {}),
    ...(choice ? { toolConfig: choice } : {}),
    ...(Object.keys(gen).length ? { generationConfig: gen } : {}),
  };
}

function failureOf(err: { code?: number; status?: string; message?: string }, status?: number): WireFailure {
  const s = status ?? (err.status ? RPC_STATUS[err.status] : undefined) ?? err.code ?? 500;
  // google.rpc status names are not OpenAI error types: they go into the message, the classifier picks type and code.
  return { status: s, message: `${err.status ?? s}: ${err.message ?? `upstream returned HTTP ${s}`}`, type: null, code: null, param: null };
}

class GeminiDecoder implements StreamDecoder {
  readonly done = false;
  mayEnd = false;
  private calls = 0;

  event(_name: string | undefined, data: string): ChatChunk[] {
    const r = parseJson<GenerateContentResponse & { error?: { code?: number; status?: string; message?: string } }>(data);
    if (r.error) throw new StreamFailure(failureOf(r.error));
    const out: ChatChunk[] = [];
    const cand = r.candidates?.[0];
    for (const p of cand?.content?.parts ?? []) {
      if (p.functionCall) {
        const index = this.calls++;
        const id = p.functionCall.id || `call_${randomBytes(12).toString('hex')}`;
        out.push(chunkOf({ tool_calls: [{ index, id, type: 'function', function: { name: p.functionCall.name ?? '', arguments: JSON.stringify(p.functionCall.args ?? {}) } }] }));
        if (p.thoughtSignature) out.push(chunkOf({ reasoning_details: [{ type: 'reasoning.encrypted', data: p.thoughtSignature, format: GEMINI_REASONING_FORMAT, index, id }] }));
      } else if (typeof p.text === 'string' && p.text !== '') {
        out.push(chunkOf(p.thought ? { reasoning_content: p.text } : { content: p.text }));
      }
    }
    const blocked = r.promptFeedback?.blockReason;
    const reason = cand?.finishReason as string | undefined;
    if (reason || blocked) {
      this.mayEnd = true;
      const finish = blocked ? 'content_filter' : this.calls > 0 ? 'tool_calls' : (FINISH[reason!] ?? 'content_filter');
      out.push({ choices: [{ index: 0, delta: {}, finish_reason: finish }] });
    }
    const u = r.usageMetadata;
    if (u) {
      const thoughts = u.thoughtsTokenCount ?? 0;
      const usage = usageOf(u.promptTokenCount ?? 0, (u.candidatesTokenCount ?? 0) + thoughts, { cached: u.cachedContentTokenCount ?? 0, reasoning: thoughts });
      out.push({ choices: [], usage });
    }
    // Gemini's stream has no end marker: it may end once a chunk has carried the finish reason.
    if (r.responseId || r.modelVersion) for (const c of out) Object.assign(c, { id: r.responseId, model: r.modelVersion });
    return out;
  }
}

export const gemini: Dialect = {
  request: (body, cfg) => ({
    path: `/v1beta/models/${encodeURIComponent(body.model)}:streamGenerateContent?alt=sse`,
    headers: { ...(cfg.apiKey ? { 'x-goog-api-key': cfg.apiKey } : {}) },
    body: geminiRequest(body),
  }),
  decoder: () => new GeminiDecoder(),
  failure(status, text) {
    try {
      const j = JSON.parse(text) as { error?: { code?: number; status?: string; message?: string } } | Array<{ error?: { code?: number; status?: string; message?: string } }>;
      const err = Array.isArray(j) ? j[0]?.error : j.error;
      if (err) return failureOf(err, status);
    } catch {
      // not JSON: the text itself
    }
    return { status, message: text.slice(0, 500) || `upstream returned HTTP ${status}`, type: null, code: null, param: null };
  },
};
