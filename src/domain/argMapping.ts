/**
 * Arguments of a compensating tool call, mapped from the original call. A template value is
 * either a literal or a path into `{ args, result }`: `$.args.entities[*].name` collects the
 * `name` of every entity, `$.result.structured.id` reads the tool's structured result.
 */

function walk(values: unknown[], key: string): unknown[] {
  const out: unknown[] = [];
  for (const v of values) {
    if (key === '[*]') {
      if (Array.isArray(v)) out.push(...v);
    } else if (v && typeof v === 'object' && key in (v as Record<string, unknown>)) {
      out.push((v as Record<string, unknown>)[key]);
    }
  }
  return out;
}

/** `$.a.b[*].c` → ['a', 'b', '[*]', 'c']. */
function pathKeys(path: string): string[] {
  return path
    .slice(2)
    .replace(/\[\*\]/g, '.[*]')
    .replace(/\[(\d+)\]/g, '.$1')
    .split('.')
    .filter(Boolean);
}

export function resolvePath(path: string, root: Record<string, unknown>): unknown {
  const keys = pathKeys(path);
  let values: unknown[] = [root];
  for (const k of keys) values = walk(values, k);
  return keys.includes('[*]') ? values : values[0];
}

export function mapArgs(template: Record<string, string>, root: { args: unknown; result: unknown }): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(template)) out[k] = v.startsWith('$.') ? resolvePath(v, root) : v;
  return out;
}
