/**
 * A running mix2api (worker + API, in this process) against the suite's real Temporal dev
 * server and a scripted upstream, plus the real `openai` client pointed at it.
 */
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import OpenAI from 'openai';
import { parseConfig, type Config } from '../../src/config/load';
import { installLogger } from '../../src/roles/logging';
import { startSystem, type RunningSystem } from '../../src/roles/system';
import type { Logger } from '../../src/telemetry/log';
import { startScriptedUpstream, type ScriptedUpstream } from './scriptedUpstream';

// Retries are the point of many tests; their warnings would bury real failures.
installLogger('ERROR');

export interface TestEnv {
  address: string;
  bundlePath: string;
  /** The bundle built with encryption's failure converter (see globalSetup). */
  encryptedBundlePath: string;
}

export function testEnv(): TestEnv {
  const file = process.env.MIX2API_TEST_ENV_FILE;
  if (!file) throw new Error('MIX2API_TEST_ENV_FILE is not set: run integration tests through jest (globalSetup)');
  return JSON.parse(readFileSync(file, 'utf8')) as TestEnv;
}

let queueN = 0;
export function uniqueQueue(prefix = 'test'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${queueN++}`;
}

export interface Stack {
  system: RunningSystem;
  upstream: ScriptedUpstream;
  config: Config;
  apiUrl: string;
  openai: OpenAI;
  temporal: Client;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Raw config merged over the test defaults (upstream `scripted` → model `test-model`). */
  config?: (upstreamUrl: string) => Record<string, unknown>;
  apiKey?: string;
  /** Where the system's log lines go (default: nowhere). */
  logger?: Logger;
}

export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const env = testEnv();
  const upstream = await startScriptedUpstream();
  const raw = {
    server: { port: 0 },
    temporal: { address: env.address, taskQueue: uniqueQueue(), searchAttributes: true },
    upstreams: [
      {
        name: 'scripted',
        baseURL: upstream.url,
        apiKey: 'upstream-secret',
        retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 2 },
        timeouts: { connectSeconds: 5, idleSeconds: 3, totalSeconds: 60 },
      },
    ],
    models: [{ id: 'test-model', upstream: 'scripted', model: 'scripted' }],
    stream: { heartbeatSeconds: 1 },
    ...(o.config?.(upstream.url) ?? {}),
  };
  const config = parseConfig(raw, {});
  const system = await startSystem({
    config,
    temporalAddress: env.address,
    roles: { worker: true, api: true },
    workflowBundle: { codePath: config.encryption.keys.length > 0 ? env.encryptedBundlePath : env.bundlePath },
    logger: o.logger,
  });
  const connection = await Connection.connect({ address: env.address });
  const temporal = new Client({ connection, namespace: config.temporal.namespace });
  const apiUrl = system.apiUrl!;
  const openai = new OpenAI({ baseURL: `${apiUrl}/v1`, apiKey: o.apiKey ?? 'none', maxRetries: 0, timeout: 60_000 });
  return {
    system,
    upstream,
    config,
    apiUrl,
    openai,
    temporal,
    stop: async () => {
      await system.stop();
      await connection.close();
      await upstream.close();
    },
  };
}

