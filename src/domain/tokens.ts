/**
 * Token counts for the context window guard (./contextGuard). OpenAI's models are counted with
 * their own encoding (gpt-tokenizer's o200k_base or cl100k_base); every other model is estimated
 * as its JSON's UTF-8 bytes / 4, since mix2api cannot run the other vendors' tokenizers.
 *
 * An encoding loads the first time a count needs it: each is a table of 100k–200k merges (about
 * 0.2 s and 7–14 MB of heap to load), which a process that routes to other vendors only should
 * not pay for at startup.
 *
 * What a counted chat message is, after OpenAI's cookbook (`num_tokens_from_messages`): 3 tokens
 * of framing, the text of each string field (role, content, name, refusal, …; a `name` costs one
 * more), and for each tool call its function's name and arguments plus 3. Left out: call ids
 * (`tool_call_id`, `tool_calls[].id`: bookkeeping the API pairs calls with) and the 3 tokens per
 * request that prime the reply. Content parts: `text` and `refusal` parts are counted, an image is
 * a fixed IMAGE_TOKENS (LOW_DETAIL_IMAGE_TOKENS with `detail: "low"`; the real cost depends on its
 * size, which this does not read), and any other part (audio, files) is estimated as bytes / 4.
 *
 * A tool definition is an approximation, since OpenAI's tool-token formula is not public: the
 * JSON of the function's name, description and parameters, plus TOOL_TOKENS. JSON is wordier than
 * the TypeScript-like form OpenAI is reported to render tools in, so this should err high.
 *
 * The guard counts every message on every model step, so counts are remembered per message (per
 * encoding, the last MEMO_SIZE, keyed by the message's JSON or, when that is long, its SHA-1):
 * a step of a long conversation tokenizes only what is new since the last step.
 */
import { createHash } from 'node:crypto';
import type { countTokens } from 'gpt-tokenizer/cjs/encoding/o200k_base';

export type TokenCounter = {
  count(v: unknown): number;
  readonly method: 'o200k_base' | 'cl100k_base' | 'estimate';
};

type Encoding = Exclude<TokenCounter['method'], 'estimate'>;

/** The fallback: a value's JSON, UTF-8 bytes / 4. */
export const estimateTokens = (v: unknown): number => Math.ceil(Buffer.byteLength(JSON.stringify(v) ?? '') / 4);

/** A message's framing (its start, role-separator and end tokens), as the cookbook counts it. */
export const MESSAGE_TOKENS = 3;
/** One tool call's framing, beyond its name and arguments (an approximation). */
export const TOOL_CALL_TOKENS = 3;
/** One tool definition's framing, beyond its JSON (an approximation). */
export const TOOL_TOKENS = 10;
/** An image of unknown size, taken as 1024×1024 at high detail: 85 + 4 tiles × 170 (OpenAI's rule for gpt-4o). */
export const IMAGE_TOKENS = 765;
/** An image with `detail: "low"`: a fixed 85 whatever its size. */
export const LOW_DETAIL_IMAGE_TOKENS = 85;
/** Remembered counts per encoding: a few long conversations' worth of messages. */
export const MEMO_SIZE = 5_000;
/**
 * A message's JSON up to this long is its own memo key (hashing it would cost more than it
 * saves); a longer one is keyed by its SHA-1, so keys hold at most MEMO_SIZE × this many characters.
 */
const MEMO_KEY_CHARS = 512;

// Required, not imported, so that the table loads on the first count and not with this module.
// The `cjs/` path is one both Node (the package's `exports`) and TypeScript's `node` resolution find.
const LOADERS: Record<Encoding, () => typeof countTokens> = {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  o200k_base: () => (require('gpt-tokenizer/cjs/encoding/o200k_base') as { countTokens: typeof countTokens }).countTokens,
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  cl100k_base: () => (require('gpt-tokenizer/cjs/encoding/cl100k_base') as { countTokens: typeof countTokens }).countTokens,
};

// Text that spells a special token (`<|endoftext|>`) is text the model reads as such, not a
// token; the library's default is to throw on it.
const AS_TEXT = { disallowedSpecial: new Set<string>() };

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A bounded map that forgets the entry used longest ago. */
export class Lru<V> {
  private readonly m = new Map<string, V>();
  constructor(private readonly size: number) {}

  get(k: string): V | undefined {
    const v = this.m.get(k);
    if (v !== undefined) {
      this.m.delete(k);
      this.m.set(k, v);
    }
    return v;
  }

  set(k: string, v: V): void {
    this.m.set(k, v);
    if (this.m.size > this.size) this.m.delete(this.m.keys().next().value!);
  }
}

/** A memo key for a value's JSON text: the text itself when short, else its SHA-1. */
const memoKey = (json: string): string => (json.length <= MEMO_KEY_CHARS ? json : createHash('sha1').update(json).digest('base64'));

class EncodingCounter implements TokenCounter {
  private encode?: typeof countTokens;
  private readonly memo = new Lru<number>(MEMO_SIZE);

  constructor(readonly method: Encoding) {}

  /** A message, a tool, a string, or an array of them (summed); anything else as its JSON text. */
  count(v: unknown): number {
    if (Array.isArray(v)) return v.reduce((n: number, x) => n + this.count(x), 0);
    if (typeof v === 'string') return this.text(v);
    const json = JSON.stringify(v);
    if (json === undefined) return 0;
    const key = memoKey(json);
    const known = this.memo.get(key);
    if (known !== undefined) return known;
    const n = isRec(v) && typeof v.role === 'string' ? this.message(v) : isRec(v) && (v.type === 'function' || isRec(v.function)) ? this.tool(v) : this.text(json);
    this.memo.set(key, n);
    return n;
  }

  private text(s: string): number {
    if (s === '') return 0;
    this.encode ??= LOADERS[this.method]();
    return this.encode(s, AS_TEXT);
  }

  private message(m: Rec): number {
    let n = MESSAGE_TOKENS;
    for (const [k, v] of Object.entries(m)) {
      if (k === 'content') n += this.content(v);
      else if (k === 'tool_calls' && Array.isArray(v)) n += v.reduce((s: number, c) => s + this.call(c), 0);
      else if (typeof v === 'string' && k !== 'tool_call_id') n += this.text(v) + (k === 'name' ? 1 : 0);
    }
    return n;
  }

  private content(c: unknown): number {
    if (c === null || c === undefined) return 0;
    if (typeof c === 'string') return this.text(c);
    if (!Array.isArray(c)) return this.text(JSON.stringify(c));
    return c.reduce((n: number, p) => n + this.part(p), 0);
  }

  private part(p: unknown): number {
    if (!isRec(p)) return estimateTokens(p);
    if (p.type === 'text' && typeof p.text === 'string') return this.text(p.text);
    if (p.type === 'refusal' && typeof p.refusal === 'string') return this.text(p.refusal);
    if (p.type === 'image_url') return isRec(p.image_url) && p.image_url.detail === 'low' ? LOW_DETAIL_IMAGE_TOKENS : IMAGE_TOKENS;
    return estimateTokens(p);
  }

  private call(c: unknown): number {
    const f = isRec(c) && isRec(c.function) ? c.function : {};
    return TOOL_CALL_TOKENS + (typeof f.name === 'string' ? this.text(f.name) : 0) + (typeof f.arguments === 'string' ? this.text(f.arguments) : 0);
  }

  private tool(t: Rec): number {
    const f = isRec(t.function) ? t.function : null;
    return TOOL_TOKENS + this.text(JSON.stringify(f ? { name: f.name, description: f.description, parameters: f.parameters } : t));
  }
}

/** The fallback as a counter: every model that is not OpenAI's, and callers that name no model. */
export const estimateCounter: TokenCounter = { method: 'estimate', count: estimateTokens };
const COUNTERS: Record<Encoding, TokenCounter> = { o200k_base: new EncodingCounter('o200k_base'), cl100k_base: new EncodingCounter('cl100k_base') };

// gpt-oss's o200k_harmony is o200k_base plus special tokens, which text never is (AS_TEXT).
const O200K = /^(?:gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o[134](?:-|$)|chatgpt-|gpt-oss)/;
const CL100K = /^(?:gpt-4|gpt-3\.5|text-embedding-3)/;

/**
 * The counter for a model, by its upstream name (a gateway's `openai/gpt-4o` by its last part).
 * An upstream that speaks Anthropic's or Gemini's API serves those vendors' models whatever the
 * route calls them, so only the OpenAI dialects (or no dialect given) get a tokenizer.
 */
export function tokenCounterFor(upstreamModel: string, dialect?: string): TokenCounter {
  if (dialect !== undefined && !dialect.startsWith('openai-')) return estimateCounter;
  const name = upstreamModel.toLowerCase().split('/').pop() ?? '';
  return O200K.test(name) ? COUNTERS.o200k_base : CL100K.test(name) ? COUNTERS.cl100k_base : estimateCounter;
}
