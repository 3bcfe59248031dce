/**
 * Which server tools one model step is offered. A run may have hundreds of MCP tools: sending them
 * all costs prompt tokens on every step and makes models choose worse. With strategy 'rank' the
 * tools are ranked by BM25 against the conversation (its end counts most), and the best are
 * offered, trimmed (schemaTrim), within a count and a token budget. Pure and deterministic (used
 * from workflow code): the same tools and messages always yield the same offer.
 */
import { estimateTokens } from './contextGuard';
import { trimDescription, trimSchema } from './schemaTrim';
import { Lru } from './tokens';

export interface ToolSelectionSettings {
  /** 'rank': offer the most relevant tools within the limits below; 'all': every tool (no selection). */
  strategy: 'rank' | 'all';
  /** Most tools sent in one step (client tools included). */
  maxTools: number;
  /** Most (estimated) tokens the offered server tools' definitions may take. */
  budgetTokens: number;
  /** Budget per server tool's parameters schema (trimSchema). */
  schemaTokens: number;
}

export interface ToolOffer {
  /** What goes in the request's `tools`: client tools untouched and first, then the chosen server tools in their catalog order (stable order keeps upstream prompt caches warm). */
  tools: unknown[];
  /** Names of the server tools offered, and of those held back. */
  offered: string[];
  heldBack: string[];
  /** Estimated tokens of `tools`, and of offering every tool untrimmed. */
  tokens: number;
  fullTokens: number;
}

export interface ServerTool {
  type: 'function';
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

type Message = { role: string; content?: unknown; [k: string]: unknown };

const K1 = 1.2;
const B = 0.75;
const DESCRIPTION_CHARS = 300;
/** Most characters of one message the query reads: its head and its tail, half each. */
const MESSAGE_CHARS = 2000;
// The last user message says what this step is for; earlier turns only hint. (After a reply like
// "yes, do that", with no words of its own, they decide whatever their weight.)
const LAST_USER_WEIGHT = 3;
const RECENT_WEIGHT = 0.5;
/** Words a message counts for at most, whatever its length. */
const MESSAGE_TERMS = 16;
/** Messages with words, besides the last user message, that the query reads, newest first. */
const RECENT_MESSAGES = 3;

const STOPWORDS = new Set(
  ('a an and are as at be been but by can could do does for from has have he her him his how i if in into is it its ' +
    'just let me my no not now of on or our please she so some than that the their them then there these they this ' +
    'to up us was we were what when where which who will with would you your')
    .split(' '),
);

/**
 * Words users and tool authors use for the same thing ("find" a mail, `search_emails`): a query
 * word also looks for the others of its group, at half its weight.
 */
const SYNONYMS: string[][] = [
  ['find', 'search', 'look', 'locate'],
  ['show', 'get', 'view', 'display'],
  ['make', 'create', 'new', 'add'],
  ['delete', 'remove', 'erase', 'trash'],
  ['edit', 'update', 'change', 'modify'],
  ['kill', 'cancel', 'terminate', 'stop'],
  ['send', 'post'],
  ['press', 'click', 'tap'],
  ['folder', 'directory'],
  ['meeting', 'event', 'appointment'],
  ['email', 'mail'],
  ['photo', 'picture', 'image'],
];
const SYNONYM_WEIGHT = 0.5;
const synonyms = new Map(SYNONYMS.flatMap((group) => group.map((w) => [stem(w), group.filter((o) => o !== w).map(stem)] as const)));

export function selectTools(
  input: { clientTools: unknown[]; serverTools: ServerTool[]; messages: Message[] },
  s: ToolSelectionSettings,
  count: (v: unknown) => number = estimateTokens,
): ToolOffer {
  const { clientTools, serverTools } = input;
  const sized = sizes(count);
  const clientTokens = clientTools.reduce<number>((sum, t) => sum + count(t), 0);
  const fullTokens = serverTools.reduce((sum, t) => sum + sized.full(t), clientTokens);
  const names = serverTools.map((t) => t.function.name);
  if (s.strategy === 'all') return { tools: [...clientTools, ...serverTools], offered: names, heldBack: [], tokens: fullTokens, fullTokens };

  const chosen = new Set<number>();
  let slots = s.maxTools - clientTools.length;
  let budget = s.budgetTokens;
  const take = (i: number, t: Trimmed) => {
    chosen.add(i);
    slots--;
    budget -= t.tokens;
  };
  // A tool the model has called is one it is working with: it stays, whatever the limits say.
  const called = calledTools(input.messages);
  serverTools.forEach((t, i) => called.has(t.function.name) && take(i, sized.trimmed(t, s.schemaTokens)));

  const docs = serverTools.map(document);
  let order = rank(docs, query(input.messages)).filter((i) => !chosen.has(i));
  // With no hint at all, the model still gets tools: the first ones of the catalog.
  if (order.length === 0 && chosen.size === 0) order = serverTools.map((_, i) => i);
  for (const i of order) {
    if (slots <= 0) break;
    const t = sized.trimmed(serverTools[i]!, s.schemaTokens);
    // A large tool that does not fit leaves room for smaller ones after it.
    if (t.tokens <= budget) take(i, t);
  }

  const tools = [...clientTools];
  let tokens = clientTokens;
  for (const i of [...chosen].sort((a, b) => a - b)) {
    const t = sized.trimmed(serverTools[i]!, s.schemaTokens);
    tools.push(t.tool);
    tokens += t.tokens;
  }
  return {
    tools,
    offered: names.filter((_, i) => chosen.has(i)),
    heldBack: names.filter((_, i) => !chosen.has(i)),
    tokens,
    fullTokens,
  };
}

// --- What is kept per tool -------------------------------------------------------------------
// Tools are treated as immutable values: what is derived from one (its words, its sizes) is kept
// by its content, so every step of every run with the same catalog pays for it once, although
// each step's activity has new objects (its input is deserialized). An object seen before finds
// its entry without serializing again.

interface Doc {
  terms: Map<string, number>;
  length: number;
}
interface Trimmed {
  tool: ServerTool;
  tokens: number;
}
interface Sized {
  full: number;
  /** By schema budget. */
  trimmed: Map<number, Trimmed>;
}
interface Derived {
  doc?: Doc;
  /** By token counter. */
  sized: WeakMap<(v: unknown) => number, Sized>;
}

/**
 * Tools remembered by content (their JSON text is the key: hashing it would cost more than the
 * map's own hash of the string): two catalogs of MAX_SELECTABLE_TOOLS, a few MB at most.
 */
const TOOL_MEMO_SIZE = 2_000;
const byContent = new Lru<Derived>(TOOL_MEMO_SIZE);
const byObject = new WeakMap<ServerTool, Derived>();

function derived(t: ServerTool): Derived {
  let d = byObject.get(t);
  if (!d) {
    const key = JSON.stringify(t);
    d = byContent.get(key);
    if (!d) byContent.set(key, (d = { sized: new WeakMap() }));
    byObject.set(t, d);
  }
  return d;
}

/** The sizes of tools, full and trimmed, as `count` estimates them. */
function sizes(count: (v: unknown) => number) {
  const sizedOf = (t: ServerTool): Sized => {
    const d = derived(t);
    let sized = d.sized.get(count);
    if (!sized) d.sized.set(count, (sized = { full: count(t), trimmed: new Map() }));
    return sized;
  };
  return {
    full: (t: ServerTool): number => sizedOf(t).full,
    trimmed: (t: ServerTool, schemaTokens: number): Trimmed => {
      const byBudget = sizedOf(t).trimmed;
      let out = byBudget.get(schemaTokens);
      if (!out) {
        const f = t.function;
        const description = trimDescription(f.description, DESCRIPTION_CHARS);
        const tool: ServerTool = { ...t, function: { ...f, description, parameters: trimSchema(f.parameters, schemaTokens, count).schema } };
        byBudget.set(schemaTokens, (out = { tool, tokens: count(tool) }));
      }
      return out;
    },
  };
}

/** The tool as a bag of words: its name (server included), description, and parameters. */
function document(t: ServerTool): Doc {
  const d = derived(t);
  let doc = d.doc;
  if (!doc) {
    const f = t.function;
    const words = [...terms(f.name), ...terms(f.description)];
    const props = f.parameters?.properties;
    if (props && typeof props === 'object') {
      for (const [name, p] of Object.entries(props as Record<string, unknown>)) {
        words.push(...terms(name));
        const d = (p as { description?: unknown } | null)?.description;
        if (typeof d === 'string') words.push(...terms(d));
      }
    }
    const bag = new Map<string, number>();
    for (const w of words) bag.set(w, (bag.get(w) ?? 0) + 1);
    d.doc = doc = { terms: bag, length: words.length };
  }
  return doc;
}

// --- Ranking ---------------------------------------------------------------------------------

/** Indexes of the tools that match the query at all, best first; ties keep catalog order. */
function rank(docs: Doc[], q: Map<string, number>): number[] {
  const n = docs.length;
  // Which tools hold each query term: one pass over the tools' terms, not one per query term
  // (a query that read a tool result has a hundred terms or more).
  const holders = new Map<string, number[]>();
  let total = 0;
  docs.forEach((d, i) => {
    total += d.length;
    for (const term of d.terms.keys()) if (q.has(term)) (holders.get(term) ?? holders.set(term, []).get(term)!).push(i);
  });
  const avg = total / n || 1;
  const scores = new Float64Array(n);
  for (const [term, weight] of q) {
    const has = holders.get(term);
    if (!has) continue;
    // Lucene's idf: never negative, so a term in most tools still counts a little.
    const w = weight * Math.log(1 + (n - has.length + 0.5) / (has.length + 0.5));
    for (const i of has) {
      const d = docs[i]!;
      const tf = d.terms.get(term)!;
      scores[i]! += (w * tf * (K1 + 1)) / (tf + K1 * (1 - B + (B * d.length) / avg));
    }
  }
  const order: number[] = [];
  scores.forEach((score, i) => score > 0 && order.push(i));
  return order.sort((a, b) => scores[b]! - scores[a]! || a - b);
}

/** Query terms with their weights: the last user message counts most, then the newest others. */
function query(messages: Message[]): Map<string, number> {
  const q = new Map<string, number>();
  /** Whether the message had words. */
  const add = (m: Message, weight: number): boolean => {
    const words = terms(excerpt(textOf(m)));
    // A long message (a tool result, a pasted log) counts no more than a short one in all: its
    // words would drown the few the user wrote.
    const each = weight * Math.min(1, MESSAGE_TERMS / words.length);
    for (const t of words) {
      q.set(t, (q.get(t) ?? 0) + each);
      for (const other of synonyms.get(t) ?? []) q.set(other, (q.get(other) ?? 0) + each * SYNONYM_WEIGHT);
    }
    return words.length > 0;
  };
  let lastUser = -1;
  for (let i = messages.length - 1; i >= 0 && lastUser < 0; i--) if (messages[i]!.role === 'user') lastUser = i;
  if (lastUser >= 0) add(messages[lastUser]!, LAST_USER_WEIGHT);
  let read = 0;
  for (let i = messages.length - 1; i >= 0 && read < RECENT_MESSAGES; i--) {
    const m = messages[i]!;
    // Instructions say who the model is, not what this step needs.
    if (i === lastUser || m.role === 'system' || m.role === 'developer') continue;
    if (add(m, RECENT_WEIGHT)) read++;
  }
  return q;
}

/** Names of the server tools the conversation called, or has a result of. */
function calledTools(messages: Message[]): Set<string> {
  const names = new Set<string>();
  for (const m of messages) {
    if (m.role === 'tool' && typeof m.name === 'string') names.add(m.name);
    if (m.role !== 'assistant' || !Array.isArray(m.tool_calls)) continue;
    for (const c of m.tool_calls as Array<{ function?: { name?: unknown } } | null>) {
      if (typeof c?.function?.name === 'string') names.add(c.function.name);
    }
  }
  return names;
}

function textOf(m: Message): string {
  if (typeof m.content === 'string') return m.content;
  if (!Array.isArray(m.content)) return '';
  return m.content
    .map((p: unknown) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : ''))
    .join(' ');
}

/** A long text's head and tail: a pasted log comes first, the question about it often last. */
function excerpt(text: string): string {
  return text.length <= MESSAGE_CHARS ? text : `${text.slice(0, MESSAGE_CHARS / 2)} ${text.slice(-MESSAGE_CHARS / 2)}`;
}

/** Lowercase words without stopwords, lightly stemmed; `createIssue`, `create_issue` and "created issues" meet. */
function terms(text: string): string[] {
  const out: string[] = [];
  const words = text
    .replace(/(\p{Ll}|\p{N})(\p{Lu})/gu, '$1 $2')
    .replace(/(\p{Lu})(\p{Lu}\p{Ll})/gu, '$1 $2')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u);
  for (const w of words) if (w.length > 1 && !STOPWORDS.has(w)) out.push(stem(w));
  return out;
}

/** Plural, -ing and -ed endings and a final e go: create, creates, created, creating → creat. */
function stem(word: string): string {
  let w = word;
  if (w.length <= 3) return w;
  if (w.endsWith('ies')) w = `${w.slice(0, -3)}y`;
  else if (/(?:ss|x|z|ch|sh)es$/.test(w)) w = w.slice(0, -2);
  else if (w.endsWith('s') && !/(?:ss|us|is)$/.test(w)) w = w.slice(0, -1);
  const suffix = /ing$/.test(w) && w.length > 5 ? 3 : /ed$/.test(w) && w.length > 4 ? 2 : 0;
  if (suffix > 0) {
    w = w.slice(0, -suffix);
    // running → run, but pull stays pull and pass stays pass.
    if (/([^aeiouls])\1$/.test(w)) w = w.slice(0, -1);
  }
  if (w.length > 3 && w.endsWith('e')) w = w.slice(0, -1);
  return w;
}
