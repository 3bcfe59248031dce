/**
 * The tool catalog a model sees: MCP tools from several servers mapped to unique OpenAI function names
 * (`<server>__<tool>`), with schemas upstreams accept. Pure and deterministic (used from workflow code):
 * the same server/tool lists always yield the same names.
 */

export interface McpToolInfo {
  name: string;
  description?: string;
  inputSchema: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

export interface CatalogEntry {
  /** OpenAI function name, unique within the catalog. */
  name: string;
  server: string;
  /** The tool's name on its MCP server. */
  tool: string;
  description: string;
  /** JSON schema cleaned up for OpenAI-compatible upstreams. */
  parameters: Record<string, unknown>;
  /** The schema exactly as the MCP server sent it. */
  inputSchema: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

export interface ToolCatalog {
  entries: CatalogEntry[];
  byName: Map<string, CatalogEntry>;
}

export interface OpenAiFunctionTool {
  type: 'function';
  function: { name: string; description: string; parameters: Record<string, unknown> };
}

export interface ToolFilter {
  allow?: readonly string[];
  deny?: readonly string[];
}

export const OPENAI_TOOL_NAME_MAX = 64;
export const OPENAI_TOOL_NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;
/** OpenAI rejects requests with more tools than this. */
export const MAX_OPENAI_TOOLS = 128;
/**
 * A run whose steps select their tools may list this many (each step's input carries the whole
 * catalog, and Temporal's payloads stop at 2 MB).
 */
export const MAX_SELECTABLE_TOOLS = 1000;
export const SERVER_TOOL_SEPARATOR = '__';

const HASH_LENGTH = 7;

/** FNV-1a over UTF-16 code units, as 7 base-36 chars: a short, stable suffix that tells long names apart. */
export function shortHash(input: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < input.length; i++) {
    h ^= input.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(36).padStart(HASH_LENGTH, '0');
}

/**
 * `<server>__<tool>` with every character outside [a-zA-Z0-9_-] replaced by `_`. Names over 64 chars keep
 * their head and end in `_<hash of the original>`, so two long tools sharing a prefix still differ.
 */
export function openAiToolName(server: string, tool: string): string {
  const raw = `${server}${SERVER_TOOL_SEPARATOR}${tool}`;
  const clean = raw.replace(/[^a-zA-Z0-9_-]/g, '_');
  if (clean.length <= OPENAI_TOOL_NAME_MAX) return clean;
  const suffix = `_${shortHash(raw)}`;
  return clean.slice(0, OPENAI_TOOL_NAME_MAX - suffix.length) + suffix;
}

/**
 * Parameters schema an OpenAI-compatible upstream accepts: a JSON object schema with `properties`, without
 * `$schema` (several upstreams reject it). Everything else, `required` included, is kept.
 */
export function toOpenAiParameters(inputSchema: Record<string, unknown>): Record<string, unknown> {
  const copy = deepCopyJson(inputSchema);
  const out: Record<string, unknown> = isRecord(copy) ? copy : {};
  delete out.$schema;
  out.type = 'object';
  if (!isRecord(out.properties)) out.properties = {};
  if (out.required !== undefined) {
    const required = Array.isArray(out.required) ? out.required.filter((r) => typeof r === 'string') : [];
    if (required.length > 0) out.required = required;
    else delete out.required;
  }
  return out;
}

/**
 * One catalog over all servers, sorted by server then tool (code-unit order), independent of input order.
 * When several tools sanitise to the same name, one whose name was already valid keeps it, then the others
 * in sorted order get `_2`, `_3`, … (cut to fit 64 chars, never taking a name another tool gets unsuffixed).
 */
export function buildToolCatalog(servers: ReadonlyArray<{ server: string; tools: readonly McpToolInfo[] }>): ToolCatalog {
  const items = servers
    .flatMap((s) => s.tools.map((tool) => ({ server: s.server, tool })))
    .map((item, index) => ({ ...item, index, base: openAiToolName(item.server, item.tool.name) }))
    .sort((a, b) => compare(a.server, b.server) || compare(a.tool.name, b.tool.name) || a.index - b.index);

  // A tool whose name needed no sanitising keeps it: `a__x_y` stays the name of tool `x_y`, not of `x.y`.
  const unchanged = (i: (typeof items)[number]) => i.base === `${i.server}${SERVER_TOOL_SEPARATOR}${i.tool.name}`;
  const reserved = new Set(items.map((i) => i.base));
  const names = new Map<(typeof items)[number], string>();
  const taken = new Set<string>();
  for (const item of [...items.filter(unchanged), ...items.filter((i) => !unchanged(i))]) {
    const name = taken.has(item.base) ? suffixedName(item.base, (n) => taken.has(n) || reserved.has(n)) : item.base;
    taken.add(name);
    names.set(item, name);
  }

  const byName = new Map<string, CatalogEntry>();
  const entries: CatalogEntry[] = [];
  for (const item of items) {
    const entry: CatalogEntry = {
      name: names.get(item) ?? item.base,
      server: item.server,
      tool: item.tool.name,
      description: item.tool.description ?? '',
      parameters: toOpenAiParameters(item.tool.inputSchema),
      inputSchema: item.tool.inputSchema,
      ...(item.tool.annotations ? { annotations: item.tool.annotations } : {}),
    };
    byName.set(entry.name, entry);
    entries.push(entry);
  }
  return { entries, byName };
}

export function toOpenAiTool(entry: CatalogEntry): OpenAiFunctionTool {
  return {
    type: 'function',
    function: { name: entry.name, description: entry.description, parameters: entry.parameters },
  };
}

/**
 * Keeps tools matching `allow` (all when it is absent; none when it is empty) and not matching `deny`.
 * Patterns are exact MCP tool names, with `*` matching any run of characters.
 */
export function filterTools<T extends { name: string }>(tools: readonly T[], filter: ToolFilter | undefined): T[] {
  const allow = filter?.allow?.map(globToRegExp);
  const deny = filter?.deny?.map(globToRegExp) ?? [];
  return tools.filter(
    (t) => (allow === undefined || allow.some((re) => re.test(t.name))) && !deny.some((re) => re.test(t.name)),
  );
}

export class ToolLimitError extends Error {
  constructor(
    readonly count: number,
    readonly servers: string[],
    readonly limit = MAX_OPENAI_TOOLS,
  ) {
    super(
      `${count} tools from MCP server(s) ${servers.join(', ')} exceed the limit of ${limit} tools ` +
        (limit === MAX_OPENAI_TOOLS ? `per request that OpenAI-compatible APIs accept (models[].toolSelection.strategy: rank offers a selection instead)` : `a run selects from`) +
        `; list the tools the model needs in tools.allow (or hide some with tools.deny) on ${servers.length === 1 ? 'that server' : 'those servers'}`,
    );
    this.name = 'ToolLimitError';
  }
}

export function assertToolLimit(entriesCount: number, servers: string[], limit = MAX_OPENAI_TOOLS): void {
  if (entriesCount > limit) throw new ToolLimitError(entriesCount, servers, limit);
}

function suffixedName(base: string, taken: (name: string) => boolean): string {
  for (let n = 2; ; n++) {
    const suffix = `_${n}`;
    const candidate = base.slice(0, OPENAI_TOOL_NAME_MAX - suffix.length) + suffix;
    if (!taken(candidate)) return candidate;
  }
}

/** Code-unit order, not localeCompare: names must not depend on the worker's locale. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function globToRegExp(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`, 's');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepCopyJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(deepCopyJson);
  if (isRecord(value)) {
    const out: Record<string, unknown> = {};
    // defineProperty: a schema property literally named `__proto__` must stay data, not become a prototype.
    for (const [k, v] of Object.entries(value)) {
      Object.defineProperty(out, k, { value: deepCopyJson(v), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return value;
}
