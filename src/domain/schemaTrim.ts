/**
 * Trimming of tool schemas and descriptions before a model sees them. MCP tools' `inputSchema`s
 * carry titles, examples, comments and long descriptions that cost prompt tokens on every step and
 * tell the model nothing it needs to call the tool. What is removed never changes which arguments a
 * schema accepts: only annotations go, never a validation keyword, and only where they are keywords
 * (a property named `title` is a property, an `enum` value is data). Arguments are still checked
 * against the untrimmed schema. Pure and deterministic (used from workflow code).
 */
import { estimateTokens } from './contextGuard';

/**
 * Removed wherever they are keywords: validation ignores them all. (`$schema` names the dialect a
 * validator should use; only the model reads the trimmed schema.)
 */
const ANNOTATIONS = new Set(['title', 'examples', '$comment', '$schema', 'deprecated', 'readOnly', 'writeOnly']);
const REFS = new Set(['$ref', '$dynamicRef', '$recursiveRef']);

// How deep a subschema's value sits below its parent's: a property or an array element is one
// level down, a branch (`anyOf`, `then`, …) describes the same value.
// (Maps, not object literals: a keyword named `constructor` must not find Object's.)
const ONE_SCHEMA = new Map(
  Object.entries({
    additionalProperties: 1,
    unevaluatedProperties: 1,
    propertyNames: 1,
    items: 1,
    additionalItems: 1,
    unevaluatedItems: 1,
    contains: 1,
    contentSchema: 1,
    not: 0,
    if: 0,
    then: 0,
    else: 0,
  }),
);
const SCHEMA_LIST = new Map(Object.entries({ anyOf: 0, oneOf: 0, allOf: 0, prefixItems: 1, items: 1 }));
const SCHEMA_MAP = new Map(Object.entries({ properties: 1, patternProperties: 1, dependentSchemas: 0, dependencies: 0 }));
/** Definitions can be reached from anywhere; they are treated as properties of the root. */
const DEFINITIONS = new Set(['$defs', 'definitions']);

/**
 * How hard descriptions are cut: `nested` applies at depth ≥ 2 (properties of properties, array
 * elements), `top` to the root and its properties; 0 drops the description.
 */
interface Level {
  nested?: number;
  top?: number;
  dropEchoes?: boolean;
}
/** Tried in order; the first that fits the budget wins. */
const LEVELS: Level[] = [{}, { nested: 120 }, { nested: 0 }, { nested: 0, top: 80 }, { nested: 0, top: 80, dropEchoes: true }];

interface Walk {
  level: Level;
  /**
   * `$id` moves the base `$ref`s resolve against, so it stays when anything refers; without a
   * reference it only names the schema, which the model does not need.
   */
  keepIds: boolean;
}

/** `schema` with what a model does not need removed, within `budgetTokens` where possible. */
export function trimSchema(
  schema: Record<string, unknown>,
  budgetTokens: number,
  count: (v: unknown) => number = estimateTokens,
): { schema: Record<string, unknown>; tokens: number } {
  const keepIds = mentionsRef(schema);
  let best = { schema, tokens: Infinity };
  for (const level of LEVELS) {
    const trimmed = trimNode(schema, 0, undefined, { level, keepIds }) as Record<string, unknown>;
    best = { schema: trimmed, tokens: count(trimmed) };
    if (best.tokens <= budgetTokens) break;
  }
  return best;
}

/** A tool description cut to at most `maxChars` at a sentence or word boundary (with '…'). */
export function trimDescription(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  if (maxChars < 1) return '';
  // A boundary in the first half would waste more than half the room: then cut mid-word.
  const floor = Math.floor(maxChars / 2);
  // The last whole sentence (or line) that leaves room for ' …'.
  for (let i = maxChars - 3; i >= floor; i--) {
    const c = text[i];
    if (c === '\n' || (c !== undefined && '.!?'.includes(c) && /\s/.test(text[i + 1] ?? ''))) {
      const head = text.slice(0, c === '\n' ? i : i + 1).trimEnd();
      if (head.length >= floor) return `${head} …`;
    }
  }
  for (let i = maxChars - 1; i >= floor; i--) {
    if (/\s/.test(text[i] ?? '')) {
      const head = text.slice(0, i).replace(/[\s,;:(–-]+$/, '');
      if (head.length >= floor) return `${head}…`;
    }
  }
  let cut = maxChars - 1;
  // Never split a surrogate pair: half an emoji is not valid text.
  if (/[\uD800-\uDBFF]/.test(text[cut - 1] ?? '')) cut--;
  return `${text.slice(0, cut)}…`;
}

function trimNode(node: unknown, depth: number, name: string | undefined, walk: Walk): unknown {
  if (!isRecord(node)) return copyJson(node);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    const kept = trimKeyword(key, value, depth, name, walk);
    if (kept !== undefined) put(out, key, kept);
  }
  return out;
}

/** The keyword's value as sent, or undefined when it goes. */
function trimKeyword(key: string, value: unknown, depth: number, name: string | undefined, walk: Walk): unknown {
  if (ANNOTATIONS.has(key) || key.startsWith('x-')) return undefined;
  if (key === '$id' && !walk.keepIds) return undefined;
  // A root property's default tells the model what leaving it out means; deeper ones rarely matter.
  if (key === 'default' && depth > 1) return undefined;
  if (key === 'description' && typeof value === 'string') return trimText(value, depth, name, walk.level);
  const list = SCHEMA_LIST.get(key);
  if (list !== undefined && Array.isArray(value)) return value.map((s) => trimNode(s, depth + list, undefined, walk));
  const one = ONE_SCHEMA.get(key);
  if (one !== undefined && (isRecord(value) || typeof value === 'boolean')) return trimNode(value, depth + one, undefined, walk);
  const map = SCHEMA_MAP.get(key);
  if (isRecord(value) && (map !== undefined || DEFINITIONS.has(key))) {
    const out: Record<string, unknown> = {};
    for (const [k, s] of Object.entries(value)) {
      // draft-07 `dependencies` mixes schemas with lists of property names.
      const child = Array.isArray(s)
        ? copyJson(s)
        : map === undefined
          ? trimNode(s, 1, k, walk)
          : trimNode(s, depth + map, key === 'properties' ? k : undefined, walk);
      put(out, k, child);
    }
    return out;
  }
  return copyJson(value);
}

function trimText(text: string, depth: number, name: string | undefined, level: Level): string | undefined {
  if (level.dropEchoes && name !== undefined && words(text) === words(name)) return undefined;
  const max = depth >= 2 ? level.nested : level.top;
  if (max === undefined) return text;
  return max === 0 ? undefined : trimDescription(text, max);
}

/** `userId`, `user_id`, "The user ID." → "user id": what a description adds nothing to. */
function words(text: string): string {
  return text
    .replace(/(\p{Ll}|\p{N})(\p{Lu})/gu, '$1 $2')
    .toLowerCase()
    .split(/[^\p{L}\p{N}]+/u)
    .filter((w) => w !== '' && w !== 'the' && w !== 'a' && w !== 'an')
    .join(' ');
}

function mentionsRef(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(mentionsRef);
  if (!isRecord(value)) return false;
  return Object.entries(value).some(([k, v]) => REFS.has(k) || mentionsRef(v));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** defineProperty: a key literally named `__proto__` must stay data, not become a prototype. */
function put(out: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
}

function copyJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copyJson);
  if (!isRecord(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) put(out, k, copyJson(v));
  return out;
}
