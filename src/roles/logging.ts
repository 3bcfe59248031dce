/**
 * The Temporal SDK Runtime of a mix2api process: its log lines go to the process's logger
 * (warnings and errors, minus known noise), and, when asked, its metrics to a Prometheus
 * exporter on loopback that `/metrics` folds in.
 */
import { DefaultLogger, Runtime, type LogEntry, type LogLevel } from '@temporalio/worker';
import type { Logger } from '../telemetry/log';

// The live worker only runs activities by design; the SDK warns about that on every start.
const NOISE = [/^No workflows registered/];

const LEVELS: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' };

export interface RuntimeOptions {
  level?: 'WARN' | 'ERROR';
  /** Where SDK log lines go; default: stderr lines tagged `[temporal]`. */
  logger?: Logger;
  /** `host:port` for the SDK's Prometheus exporter (its metrics then appear at `http://<it>/metrics`). */
  metricsBind?: string;
}

export function installLogger(levelOrOptions: 'WARN' | 'ERROR' | RuntimeOptions = 'WARN'): void {
  const o: RuntimeOptions = typeof levelOrOptions === 'string' ? { level: levelOrOptions } : levelOrOptions;
  const logger = new DefaultLogger(o.level ?? 'WARN', (entry: LogEntry) => {
    if (NOISE.some((re) => re.test(entry.message))) return;
    if (o.logger) {
      o.logger[LEVELS[entry.level]]({ component: 'temporal', ...entry.meta }, entry.message);
      return;
    }
    const meta = entry.meta && Object.keys(entry.meta).length > 0 ? ` ${JSON.stringify(entry.meta)}` : '';
    console.error(`[temporal] ${entry.level} ${entry.message}${meta}`);
  });
  try {
    Runtime.install({
      logger,
      // mix2api owns its signals (cli `onShutdown`: the API closes, then the workers drain and
      // hand back their steps). The SDK's default would also shut the workers down on SIGUSR2
      // (Node's --heapsnapshot-signal, nodemon's restart) and SIGQUIT, leaving an API that
      // takes requests no worker runs.
      shutdownSignals: [],
      ...(o.metricsBind ? { telemetryOptions: { metrics: { prometheus: { bindAddress: o.metricsBind, countersTotalSuffix: true, unitSuffix: true, useSecondsForDurations: true } } } } : {}),
    });
  } catch {
    // Installed already (another test file in the same process).
  }
}
