/**
 * The scripted upstream as a process of its own, for benchmarks that must not share a CPU
 * budget with it: `tsx bench/upstreamProcess.ts <deltas> <delayMs>` streams every completion
 * as `<deltas>` words, `<delayMs>` apart, and prints `listening <url>`.
 */
import { setMaxListeners } from 'node:events';
import { startScriptedUpstream } from '../test/support/scriptedUpstream';

export const benchText = (deltas: number) => Array.from({ length: deltas }, (_, i) => `word${i} `).join('');

async function main(): Promise<void> {
  const deltas = Number(process.argv[2] ?? 100);
  const delayMs = Number(process.argv[3] ?? 200);
  // Every open stream's pacing timer listens on the upstream's one close signal.
  setMaxListeners(100_000);
  const upstream = await startScriptedUpstream();
  upstream.setDefault(() => ({ steps: [{ kind: 'text', text: benchText(deltas), chunks: deltas, delayMs }] }));
  // The bench never reads these; keeping them would grow this process for nothing.
  setInterval(() => (upstream.requests.length = 0), 1000).unref();
  console.log(`listening ${upstream.url}`);
  process.on('SIGTERM', () => void upstream.close().then(() => process.exit(0)));
}

if (require.main === module) void main();
