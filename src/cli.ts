#!/usr/bin/env node
/**
 * `mix2api start | api | worker | check-config [file]`: the process roles.
 * `start` is the embedded default: a local Temporal dev server (SQLite under .data/, Web UI),
 * the worker and the API in one process, and the demo model when no upstream is configured.
 */
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, DEMO_MODEL, loadConfig, type Config } from './config/load';
import { policyLines } from './config/policy';
import { demoMcpServers } from './connectors/demoTools';
import { startDevServer, type DevServer } from './connectors/temporalDevServer';
import type { RunningSystem } from './roles/system';
import { createLogger, type Logger } from './telemetry/log';

const VERSION = (JSON.parse(readFileSync(resolve(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;

/** The process's logger, once its config is read; before that, plain lines. */
let logger: Logger | null = null;
const log = (msg: string) => (logger ? logger.info(msg) : console.log(`[mix2api] ${msg}`));

/** A port free on loopback now (for the Temporal SDK's metrics exporter, which cannot report one it picked). */
function freeLoopbackPort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createNetServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => ok(port));
    });
  });
}

function usage(): never {
  console.error('usage: mix2api start | api | worker | check-config [file]');
  process.exit(2);
}

async function checkConfig(file?: string): Promise<void> {
  const env = file ? { ...process.env, MIX2API_CONFIG: file } : process.env;
  const cfg = loadConfig(env);
  log(`config OK (${cfg.source ?? 'no file; defaults and environment'}): ${cfg.upstreams.length} upstream(s), ${cfg.models.length} model(s)${cfg.demo ? ', demo mode' : ''}`);
}

/** Stops on SIGINT and SIGTERM (a second one forces the exit); the returned function stops too, with an exit code of its own. */
function onShutdown(stop: () => Promise<void>): (why: string, code: number) => void {
  let stopping = false;
  const handler = (why: string, code = 0) => {
    if (stopping) {
      log('forced exit');
      process.exit(1);
    }
    stopping = true;
    log(`${why}: shutting down…`);
    stop().then(
      () => {
        logger?.flush();
        process.exit(code);
      },
      (e: unknown) => {
        console.error(e);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
  return handler;
}

async function run(role: 'start' | 'api' | 'worker'): Promise<void> {
  let config: Config = loadConfig();
  logger = createLogger(config.logging);
  // The embedded dev server is started first, so it comes up while the rest of mix2api loads
  // (about a second of module loading on a small machine) and its workflow bundle is found.
  let devStart: Promise<DevServer> | null = null;
  if (config.temporal.address === 'embedded') {
    if (role !== 'start') throw new ConfigError([`temporal.address: \`mix2api ${role}\` needs an external Temporal (set TEMPORAL_ADDRESS)`], config.source);
    const t = config.temporal;
    log(`starting the Temporal dev server (frontend 127.0.0.1:${t.port}, data ${resolve(t.dataDir)}/temporal.db)…`);
    // With encryption on, the UI decodes through this process's /codec (its origin is allowed there).
    const codec = config.encryption.keys.length > 0 ? `http://127.0.0.1:${config.server.port}/codec` : undefined;
    devStart = startDevServer({ dbFile: resolve(t.dataDir, 'temporal.db'), port: t.port, uiPort: t.uiPort, metricsPort: t.metricsPort, headless: t.headless, namespace: t.namespace, uiCodecEndpoint: codec });
    devStart.catch(() => undefined);
  }
  const [{ startSystem }, { prepareWorkflowBundle }, { installLogger }, { Metrics }, { startTracing }, { startDemoUpstream }] = await Promise.all([
    import('./roles/system'),
    import('./roles/workers'),
    import('./roles/logging'),
    import('./telemetry/metrics'),
    import('./telemetry/tracing'),
    import('./connectors/demoUpstream'),
  ]);
  const tracing = startTracing(config.tracing, VERSION);
  if (tracing) log(`tracing: OTLP (${config.tracing.protocol}) as service ${config.tracing.serviceName}`);
  const cleanups: Array<() => Promise<void>> = [];
  if (devStart) cleanups.push(() => devStart.then((d) => d.stop()));
  let dev: DevServer | null = null;
  let system: RunningSystem | null = null;
  const stopAll = async () => {
    await system?.stop();
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    // What the span processor still holds goes out before the process does.
    await tracing?.shutdown().catch(() => undefined);
  };
  const shutdown = onShutdown(stopAll);
  try {
    // Bundled (or read from the bundle cache) while the dev server starts.
    const workflowBundle = role !== 'api' ? prepareWorkflowBundle(config, Boolean(tracing), (msg) => logger?.warn(msg)) : undefined;
    workflowBundle?.catch(() => undefined);
    if (config.demo && role === 'start') {
      const demo = await startDemoUpstream();
      cleanups.push(demo.close);
      const tools = demoMcpServers(config.temporal.dataDir);
      config = loadConfig(process.env, (raw) => ({
        ...raw,
        upstreams: [{ name: 'demo', baseURL: demo.url }],
        models: [{ id: DEMO_MODEL, upstream: 'demo', mcpServers: tools.map((t) => t.name) }],
        mcpServers: [...(Array.isArray(raw.mcpServers) ? raw.mcpServers : []), ...tools],
      }));
    }
    let address = config.temporal.address;
    if (devStart) {
      dev = await devStart;
      address = dev.address;
    }
    // Picked only now, so it cannot take a port the dev server was told to use.
    const temporalMetrics = config.metrics.enabled && config.metrics.temporal ? `127.0.0.1:${await freeLoopbackPort()}` : undefined;
    installLogger({ logger, metricsBind: temporalMetrics });
    system = await startSystem({
      config,
      temporalAddress: address,
      roles: { worker: role !== 'api', api: role !== 'worker' },
      workflowBundle,
      ...(dev ? { instanceFile: resolve(config.temporal.dataDir, 'instance') } : {}),
      logger,
      tracing,
      codecOrigins: dev?.uiUrl ? [dev.uiUrl, dev.uiUrl.replace('localhost', '127.0.0.1')] : [],
      metrics: new Metrics({ models: config.models.map((m) => m.id), enabled: config.metrics.enabled, temporalUrl: temporalMetrics && `http://${temporalMetrics}/metrics`, processMetrics: true }),
      // Half a process (an API whose runs no worker takes) helps nobody: stop, so a supervisor restarts it.
      onWorkerStopped: () => shutdown('a Temporal worker stopped', 1),
    });
    if (system.apiUrl) {
      log(`API:         ${system.apiUrl}/v1   (POST /v1/chat/completions, GET /v1/models, /healthz, /readyz, /metrics)`);
      if (config.server.apiKeys.length === 0) log('no API keys configured: listening on loopback only, without authentication');
      for (const line of policyLines(config)) log(line);
    }
    if (dev?.uiUrl) log(`Temporal UI: ${dev.uiUrl}/namespaces/${config.temporal.namespace}/workflows`);
    else log(`Temporal:    ${address} (namespace ${config.temporal.namespace}, task queue ${config.temporal.taskQueue})`);
    if (config.upstreams[0]?.name === 'demo' && role === 'start') {
      log(`demo mode: no upstream configured, serving the built-in demo model "${DEMO_MODEL}" (not a real LLM).`);
      log('           it runs MCP tools when you name them, e.g. "use echo to say \'hi\'" or "list_directory of the sandbox".');
      log('           set OPENAI_BASE_URL and OPENAI_API_KEY, or write mix2api.yaml, to use a real upstream.');
    }
    log('ready. Ctrl-C stops everything.');
  } catch (e) {
    await stopAll();
    throw e;
  }
}

async function main(): Promise<void> {
  const [cmd, arg] = process.argv.slice(2);
  switch (cmd) {
    case 'start':
    case 'api':
    case 'worker':
      return run(cmd);
    case 'check-config':
      return checkConfig(arg);
    default:
      usage();
  }
}

main().catch((e: unknown) => {
  console.error(`[mix2api] ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
