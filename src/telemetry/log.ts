/**
 * Structured logs (`pino`): JSON lines, one object per event, or human-readable lines when
 * stdout is a terminal. What users send and tools return (prompts, tool arguments and output)
 * is logged only at `debug`, and even then secrets are censored by path.
 */
import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LoggingConfig {
  level: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  format: 'auto' | 'json' | 'pretty';
}

/**
 * Censored wherever they appear, at any of the first three levels: credentials (`authorization`,
 * API keys) and the environment and headers handed to MCP servers (where `env:` secrets land).
 */
const SECRET_KEYS = ['authorization', 'apiKey', 'api_key', 'key', 'env', 'headers.authorization', 'headers["x-api-key"]', 'headers["api-key"]'];
export const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

/**
 * A logger for this process. `destination`: where lines go (default stdout); `pretty` output
 * only ever goes to a terminal.
 */
export function createLogger(cfg: LoggingConfig, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level: cfg.level,
    base: { service: 'mix2api' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  const usePretty = cfg.format === 'pretty' || (cfg.format === 'auto' && !destination && process.stdout.isTTY === true);
  if (usePretty) return pino(options, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname,service', destination: destination ?? 1, sync: true }));
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false }));
}

/** A logger that drops everything (library use and tests that do not look at logs). */
export const silentLogger: Logger = pino({ level: 'silent' });
