/** Stops the suite's Temporal dev server. */
import { rmSync } from 'node:fs';
import type { DevServer } from '../../src/connectors/temporalDevServer';

export default async function globalTeardown(): Promise<void> {
  const g = globalThis as { __temporal?: DevServer; __testDir?: string };
  await g.__temporal?.stop();
  if (g.__testDir) rmSync(g.__testDir, { recursive: true, force: true });
}
