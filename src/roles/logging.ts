/** The Temporal runtime logger for mix2api processes: warnings and errors, minus known noise. */
import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';

// The live worker only runs activities by design; the SDK warns about that on every start.
const NOISE = [/^No workflows registered/];

export function installLogger(level: 'WARN' | 'ERROR' = 'WARN'): void {
  const logger = new DefaultLogger(level, (entry: LogEntry) => {
    if (NOISE.some((re) => re.test(entry.message))) return;
    const meta = entry.meta && Object.keys(entry.meta).length > 0 ? ` ${JSON.stringify(entry.meta)}` : '';
    console.error(`[temporal] ${entry.level} ${entry.message}${meta}`);
  });
  try {
    Runtime.install({ logger });
  } catch {
    // Installed already (another test file in the same process).
  }
}
