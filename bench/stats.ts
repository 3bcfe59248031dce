import os from 'node:os';

/** Percentiles for the benchmarks (nearest rank). */
export function pct(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Prints the machine, a legend and an aligned table (first column left-aligned). */
export function printAligned(header: string[], lines: string[][], legend: string): void {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => cells.map((s, i) => (i === 0 ? s.padEnd(widths[i]!) : s.padStart(widths[i]!))).join('  ');
  console.log(`\nmachine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), node ${process.version}, ${os.platform()} ${os.release()}`);
  console.log(`${legend}\n`);
  console.log(fmt(header));
  for (const l of lines) console.log(fmt(l));
}

/** Runs a benchmark's main and exits with its outcome (open handles must not keep it alive). */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error('bench failed:', e);
      process.exit(1);
    },
  );
}
