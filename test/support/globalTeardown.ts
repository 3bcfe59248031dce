/** Stops the suite's Temporal dev server. */
import type { DevServer } from '../../src/connectors/temporalDevServer';

export default async function globalTeardown(): Promise<void> {
  await (globalThis as { __temporal?: DevServer }).__temporal?.stop();
}
