/**
 * Composes one process of mix2api from its roles: the shared worker, the API, or both; every
 * process also runs its instance worker and holds its lease (activities/lease). `mix2api start`
 * and the integration tests run exactly this.
 */
import type { AddressInfo } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { Client } from '@temporalio/client';
import type { Worker, WorkflowBundleOption } from '@temporalio/worker';
import { HeldCalls, instanceIdentity, ProcessLease, reportGone } from '../activities/lease';
import { ModelSteps } from '../activities/modelSteps';
import { createHandler, metricsHandler } from '../api/app';
import { answerClientError } from '../api/http/errors';
import { KeyLimiter } from '../api/http/limits';
import { AnsweredRuns } from '../api/engine/implicitKey';
import { ModelRouter } from '../api/engine/routing';
import type { Config } from '../config/load';
import { LiveHub } from '../connectors/liveHub';
import { McpPool } from '../connectors/mcp/pool';
import { UpstreamClient } from '../connectors/upstream';
import { silentLogger, type Logger } from '../telemetry/log';
import { Metrics } from '../telemetry/metrics';
import type { Tracing } from '../telemetry/tracing';
import { connectTemporal, TemporalHealth } from './temporal';
import { createInstanceWorker, createSharedWorker, instanceQueueName, prepareWorkflowBundle } from './workers';

export interface SystemOptions {
  config: Config;
  temporalAddress: string;
  roles: { worker: boolean; api: boolean };
  /**
   * The workflow bundle (or its promise, started early so it overlaps other start work); default:
   * `prepareWorkflowBundle` (kept on disk per version of the code).
   */
  workflowBundle?: WorkflowBundleOption | Promise<WorkflowBundleOption>;
  /** Where the process's log lines go; default: nowhere. */
  logger?: Logger;
  /** Tracing, when on (telemetry/tracing `startTracing`). */
  tracing?: Tracing | null;
  /** Browser origins of an embedded Temporal Web UI, allowed to call `/codec`. */
  codecOrigins?: string[];
  /**
   * A file that names the process's instance queue (`mix2api start`: under `temporal.dataDir`).
   * A process that finds its predecessor's there ends that one's lease at once (see takeOverFrom).
   */
  instanceFile?: string;
  /** This process's metrics; default: a registry of its own (without process metrics). */
  metrics?: Metrics;
  /**
   * A worker of this process stopped (failed, or shut down by something other than `stop`):
   * the process takes no new work it could run (`/readyz` says so). `mix2api` then stops and
   * exits non-zero, so a supervisor starts it again; default: only the log line and readiness.
   */
  onWorkerStopped?: (error: unknown) => void;
}

export interface RunningSystem {
  apiUrl: string | null;
  /** The API's live queue: this process's instance queue, when it serves the API. */
  liveTaskQueue: string | null;
  /** This process's instance queue (its lease, its live steps). */
  instanceQueue: string;
  /** This process's lease: held once `ready` resolves. */
  lease: ProcessLease;
  stop(): Promise<void>;
}

export function defaultHost(config: Config): string {
  return config.server.host ?? (config.server.apiKeys.length > 0 ? '0.0.0.0' : '127.0.0.1');
}

export async function startSystem(o: SystemOptions): Promise<RunningSystem> {
  const { config } = o;
  const t = await connectTemporal(config, o.temporalAddress, Boolean(o.tracing));
  const live = new LiveHub();
  const logger = o.logger ?? silentLogger;
  const upstreams = new Map(config.upstreams.map((u) => [u.name, new UpstreamClient(u, (msg, fields) => logger.warn(fields, msg))]));
  const pool = new McpPool([...config.mcpServers], config.env, {
    clientName: 'mix2api',
    onLog: (e) => (e.level === 'warn' ? logger.warn({ server: e.server }, `mcp ${e.server}: ${e.message}`) : undefined),
  });
  const metrics = o.metrics ?? new Metrics({ models: config.models.map((m) => m.id), enabled: config.metrics.enabled });
  const steps = new ModelSteps({ hub: live, completion: t.client.activity, upstreams, metrics });
  const instanceQueue = instanceQueueName(config);
  const heldCalls = new HeldCalls();
  const lease = new ProcessLease({
    client: t.client,
    taskQueue: config.temporal.taskQueue,
    instanceQueue,
    renewMs: config.liveness.renewSeconds * 1000,
    lapseSeconds: config.liveness.lapseSeconds,
    held: () => [...steps.held(), ...heldCalls.entries()],
    onLost: () => void steps.drop(),
    logger,
  });
  steps.onHold = heldCalls.onHold = () => lease.soon();
  const checkSteps = (runId: string) => {
    steps.cancelPrestart(runId);
    return steps.checkCancel(runId);
  };
  const deps = { steps, live, pool, metrics, logger, heldCalls, lease: { lease, client: t.client, checkSteps } };
  const tracing = o.tracing ?? null;
  const workers: Worker[] = [];
  let stopped: Promise<void> | null = null;
  const running: Promise<void>[] = [];
  const states = new Map<Worker, boolean>();
  const run = (w: Worker) => {
    workers.push(w);
    states.set(w, true);
    const ended = (e: unknown) => {
      states.set(w, false);
      if (stopped) return;
      logger.error({ err: e }, 'a Temporal worker of this process stopped; it runs no more workflows or activities');
      o.onWorkerStopped?.(e);
    };
    running.push(w.run().then(() => ended(new Error(`the worker of task queue ${w.options.taskQueue} shut down`)), ended));
  };
  let server: Server | null = null;
  let apiUrl: string | null = null;
  let liveTaskQueue: string | null = null;
  let health: TemporalHealth | null = null;
  if (o.roles.api) {
    health = new TemporalHealth(t.native);
    liveTaskQueue = instanceQueue;
    const app = createHandler({
      config,
      client: t.client,
      live,
      metrics,
      logger,
      ...(t.codec ? { codec: { codec: t.codec, origins: o.codecOrigins ?? [] } } : {}),
      liveTaskQueue,
      prestart: { start: (call) => steps.prestart(call), cancel: (runId) => steps.cancelPrestart(runId) },
      limiter: new KeyLimiter(config, t.client),
      answered: new AnsweredRuns(),
      router: new ModelRouter(config, config.passthroughModels ? (upstreams.get(config.upstreams[0]!.name) ?? null) : null),
      temporalUp: () => health!.isUp,
      readiness: async () => {
        // A probe must answer: Temporal that does not reply within a second counts as down, and
        // workers cannot poll a Temporal that is down, whatever their state says.
        const temporal = await health!.check();
        return { temporal, workers: temporal && [...states.values()].every(Boolean) && workers.every((w) => w.getState() === 'RUNNING') };
      },
      // What this process's model steps see of each upstream (breakers and bulkheads are per process).
      upstreamDetail: o.roles.worker
        ? () => Object.fromEntries([...upstreams].map(([name, u]) => [name, { api: u.cfg.api, breaker: u.breaker.snapshot(), inFlight: u.bulkhead.inFlight }]))
        : undefined,
    });
    const host = defaultHost(config);
    try {
      const s = createServer(
        {
          headersTimeout: config.server.headersTimeoutSeconds * 1000,
          requestTimeout: config.server.requestTimeoutSeconds * 1000,
          // How often those two are enforced (Node's default, 30 s, would let a slow client stay 3× longer).
          connectionsCheckingInterval: 1000,
        },
        app,
      );
      s.on('clientError', answerClientError);
      server = await listen(s, config.server.port, host, 'API', 'PORT or server.port');
    } catch (e) {
      health.stop();
      await pool.closeAll();
      await t.close();
      throw e;
    }
    const addr = server.address() as AddressInfo;
    apiUrl = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${addr.port}`;
  }
  // The API listens first: its address is part of the workers' identity (a peer's way here).
  const identity = instanceIdentity(instanceQueue, apiUrl);
  const wo = { config, native: t.native, deps, tracing, dataConverter: t.dataConverter, identity };
  // Both at once: a restart's open runs wait on them.
  const sharedWorker = async () => createSharedWorker({ ...wo, workflowBundle: (await o.workflowBundle) ?? (await prepareWorkflowBundle(config, Boolean(tracing), (msg) => logger.warn(msg))) });
  const [shared, instance] = await Promise.all([o.roles.worker ? sharedWorker() : null, createInstanceWorker(wo, instanceQueue)]);
  if (shared) run(shared);
  run(instance);
  await lease.start();
  if (o.instanceFile) takeOverFrom(o.instanceFile, instanceQueue, t.client, config.liveness.renewSeconds * 1000, logger);

  const metricsServer = config.metrics.enabled && config.metrics.port ? await listenMetrics(metrics, config.metrics.port, config.metrics.host ?? defaultHost(config)) : null;

  const stop = () =>
    (stopped ??= (async () => {
      health?.stop();
      metricsServer?.close();
      if (server) {
        server.closeAllConnections();
        await new Promise<void>((r) => server!.close(() => r()));
      }
      // No new work here; then the model calls streaming here go back to Temporal, to move
      // elsewhere at once, and the lease is handed back.
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await steps.shutdown();
      await lease.stop();
      await Promise.all(running);
      await pool.closeAll();
      await t.close();
    })());
  return { apiUrl, liveTaskQueue, instanceQueue, lease, stop };
}

/**
 * A restart's shortcut: the process that ran on this data before, if it no longer renews its
 * lease (activities/lease `reportGone` checks that, so a live one keeps its work), has its lease
 * ended now rather than at its lapse, and its open steps and tool calls move here at once. The
 * embedded default is one process on its own dev server, so its predecessor is the only other
 * holder there can be. Then the file names this process.
 */
function takeOverFrom(file: string, queue: string, client: Client, renewMs: number, logger: Logger): void {
  let previous: string | null = null;
  try {
    previous = readFileSync(file, 'utf8').trim() || null;
  } catch {
    // the first start on this data
  }
  try {
    writeFileSync(file, `${queue}\n`);
  } catch (e) {
    logger.warn({ err: e }, `cannot write ${file}: the next restart waits for this process's lease to lapse`);
  }
  if (previous && previous !== queue) {
    void reportGone(client, previous, renewMs).then((ended) => ended && logger.info({ queue: previous }, 'the previous process on this data is gone: its open work moves here now'));
  }
}

/** `/metrics` alone on a port of its own (a worker has no API port to serve it on). */
function listenMetrics(metrics: Metrics, port: number, host: string): Promise<Server> {
  const handler = metricsHandler(metrics);
  const s = createServer((req, res) => {
    if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
      handler(req as never, res as never, (e: unknown) => {
        res.statusCode = 500;
        res.end(String(e));
      });
      return;
    }
    res.statusCode = 404;
    res.end();
  });
  return listen(s, port, host, 'metrics', 'METRICS_PORT or metrics.port');
}

/** Listens, turning a port in use into an error that says which setting moves it. */
function listen(s: Server, port: number, host: string, what: string, setting: string): Promise<Server> {
  return new Promise<Server>((ok, fail) => {
    s.listen(port, host, () => ok(s));
    s.once('error', (e: NodeJS.ErrnoException) => fail(e.code === 'EADDRINUSE' ? new Error(`port ${port} (${what}) is already in use; set ${setting}`) : e));
  });
}
