/**
 * What grew between two V8 heap snapshots of one process, by object kind: count and self size
 * of each (node type, constructor or string kind) in the second less the first, largest first,
 * and per stream when the number of streams open at the second is given.
 *
 *   npx tsx bench/heapDiff.ts before.heapsnapshot after.heapsnapshot [streams] [rows]
 *
 * `bench:streams` writes such a pair per level with `STREAM_HEAP_SNAPSHOTS=1` (see bench/README).
 */
import { readFileSync } from 'node:fs';
import { printAligned } from './stats';

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
  nodes: number[];
  strings: string[];
}

type Totals = Map<string, { count: number; bytes: number }>;

/** Totals by kind: objects by constructor, strings and code by type, arrays by their name. */
export function totalsOf(file: string): Totals {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const [ti, ni, si] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const out: Totals = new Map();
  for (let i = 0; i < s.nodes.length; i += fields.length) {
    const type = types[s.nodes[i + ti!]!]!;
    const name = s.strings[s.nodes[i + ni!]!]!;
    // Strings and code differ by content; only their type says what they are.
    const key = type === 'object' || type === 'native' || type === 'closure' ? `${type} ${name.slice(0, 60)}` : type;
    const t = out.get(key) ?? { count: 0, bytes: 0 };
    t.count++;
    t.bytes += s.nodes[i + si!]!;
    out.set(key, t);
  }
  return out;
}

function main(): void {
  const [before, after, streamsArg, rowsArg] = process.argv.slice(2);
  if (!before || !after) throw new Error('usage: heapDiff.ts before.heapsnapshot after.heapsnapshot [streams] [rows]');
  const streams = Number(streamsArg ?? 0);
  const a = totalsOf(before);
  const b = totalsOf(after);
  const rows = [...b].map(([k, v]) => {
    const w = a.get(k) ?? { count: 0, bytes: 0 };
    return { k, count: v.count - w.count, bytes: v.bytes - w.bytes };
  });
  rows.sort((x, y) => y.bytes - x.bytes);
  const total = rows.reduce((n, r) => n + r.bytes, 0);
  const per = (n: number) => (streams > 0 ? (n / streams).toFixed(Math.abs(n / streams) < 10 ? 2 : 0) : '-');
  printAligned(
    ['kind', 'count +', 'KB +', 'per stream: count', 'bytes'],
    [...rows.slice(0, Number(rowsArg ?? 40)).map((r) => [r.k, String(r.count), (r.bytes / 1024).toFixed(0), per(r.count), per(r.bytes)]), ['all', '', (total / 1024).toFixed(0), '', per(total)]],
    `heap growth from ${before} to ${after}${streams ? `, ${streams} streams open at the second` : ''} (self sizes; strings and code by type only)`,
  );
}

if (require.main === module) main();
