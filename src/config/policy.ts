/** What a config enforces at the API's door, in the words the startup log uses. */
import type { Config } from './load';
import type { LimitsConfig } from './schema';

/** What the API enforces per key and how it keys retries, as the startup lines say it. */
export function policyLines(config: Config): string[] {
  const shown = (l: Partial<LimitsConfig>) => {
    const set = Object.entries(l).filter(([, v]) => typeof v === 'number' && v > 0);
    return set.length ? set.map(([k, v]) => `${k} ${v}`).join(', ') : 'none';
  };
  const perKey = config.server.apiKeys.filter((k) => k.limits && Object.keys(k.limits).length > 0).map((k) => `${k.name}: ${shown({ ...config.server.limits, ...k.limits })}`);
  const { implicitSeconds, replayCompleted } = config.idempotency;
  return [
    `limits:      per key ${shown(config.server.limits)}${perKey.length ? `; ${perKey.join('; ')}` : ''} (server.limits, apiKeys[].limits)`,
    implicitSeconds > 0
      ? `retries:     a tool-running request without Idempotency-Key is keyed by API key + body for ${implicitSeconds} s: a retry joins its running run or reuses a failed run's tool results; after a completed run ${replayCompleted ? 'it gets that answer again' : 'it is a new run'} (idempotency.*)`
      : 'retries:     implicit idempotency off: without an Idempotency-Key every request is a new run, tools included (idempotency.implicitSeconds 0)',
  ];
}

