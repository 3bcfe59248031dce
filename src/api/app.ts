/**
 * The express app: routes, auth, body limits and the one error middleware. Built from its
 * dependencies so tests drive the same app the server runs.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { createPeerRouter, peerSecret } from './http/peer';
import express from 'express';
import type { Config } from '../config/load';
import { createAuth, keyResolver } from './http/auth';
import { jsonBody } from './http/body';
import { localOnly } from './http/localOnly';
import { createCompletionHandler } from './chatCompletions/routes';
import type { CompletionDeps } from './engine/launch';
import { createMcpGateway } from './mcpGateway/routes';
import { createCancelResponseHandler, createGetResponseHandler, createResponsesHandler } from './responses/routes';
import { ApiError, errorMiddleware, sendError, temporalUnavailable } from './http/errors';
import { createRunsRouter } from './runs/routes';
import { createCodecRouter } from './http/codec';
import type { PayloadCodec } from '@temporalio/common';
import type { Logger } from '../telemetry/log';
import type { Metrics } from '../telemetry/metrics';
import { requestTraceId, traceRequest } from '../telemetry/tracing';
import { TRACEPARENT, inboundTraceContext, withTraceContext } from '../telemetry/traceContext';

export interface AppDeps extends CompletionDeps {
  config: Config;
  /** Temporal reachable and this process's workers polling. */
  readiness: () => Promise<Record<string, boolean>>;
  /** Per upstream: its circuit breaker and calls in flight, in this process (not part of readiness). */
  upstreamDetail?: () => Record<string, unknown>;
  /** The last health check's answer; while false, what needs Temporal gets a 503 at once. */
  temporalUp?: () => boolean;
  logger: Logger;
  /** Payload encryption's codec, served at `/codec`; with it, origins allowed there besides the configured. */
  codec?: { codec: PayloadCodec; origins: readonly string[] };
}

/**
 * The HTTP handler: first the requests-per-minute check and, for a new run, the run cap, on the
 * raw request (a key flooding the API is refused before routing, body parsing or anything else is
 * spent on it), then the app.
 */
export function createHandler(d: AppDeps): RequestListener {
  const app = createApp(d);
  const keyOf = keyResolver(d.config.server.apiKeys);
  // Without an Idempotency-Key (and with implicit keys off) a completion is always a new run.
  const alwaysNew = (req: IncomingMessage) => req.method === 'POST' && req.url?.split('?')[0] === '/v1/chat/completions' && req.headers['idempotency-key'] === undefined && d.config.idempotency.implicitSeconds === 0;
  const handle: RequestListener = (req, res) => {
    if (req.url?.startsWith('/v1/')) {
      const key = keyOf(req.headers.authorization);
      if (typeof key === 'object') {
        try {
          d.limiter.take(key.name);
          if (alwaysNew(req) && d.limiter.atRunCap(key.name)) throw d.limiter.runCapError(key.name);
        } catch (e) {
          return sendError(res, e);
        }
      }
    }
    app(req, res);
  };
  return (req, res) => {
    const route = routeOf(req.url);
    // Probes and scrapes are neither counted, logged nor traced.
    if (route === '/metrics' || route === '/healthz' || route === '/readyz') return handle(req, res);
    observeRequest(d.metrics, d.logger, route, req, res);
    withTraceContext(inboundTraceContext(req.headers), () => traceRequest(req, res, route, () => handle(req, res)));
  };
}

/** The `route` label: the API's own routes, nothing a client can invent. */
function routeOf(url: string | undefined): string {
  const path = url?.split('?')[0] ?? '';
  if (path === '/v1/responses' || path === '/mcp') return path;
  const response = /^\/v1\/responses\/[^/]+(\/cancel)?$/.exec(path);
  if (response) return `/v1/responses/{id}${response[1] ?? ''}`;
  if (path === '/v1/chat/completions' || path === '/v1/models' || path === '/metrics' || path === '/healthz' || path === '/readyz' || path === '/codec/encode' || path === '/codec/decode') return path;
  const run = /^\/v1\/runs\/[^/]+(\/events|\/cancel|\/approvals\/[^/]+)?$/.exec(path);
  if (run) return `/v1/runs/{id}${run[1]?.startsWith('/approvals') ? '/approvals/{approval_id}' : (run[1] ?? '')}`;
  return 'other';
}

/** The trace a request belongs to: W3C `traceparent`'s trace id (the edge's, or ours). */
function traceIdOf(req: IncomingMessage): string | undefined {
  return TRACEPARENT.exec(String(req.headers.traceparent ?? ''))?.[2];
}

/**
 * Once the response is done (or the client has gone): counts the request and its duration, and
 * logs one line for it. `route` is taken before express rewrites `req.url` as it routes.
 */
function observeRequest(metrics: Metrics, logger: Logger, route: string, req: IncomingMessage, res: ServerResponse): void {
  const since = performance.now();
  const method = req.method;
  res.once('close', () => {
    // Express parsed the body onto the same request object, when it got that far.
    const body = (req as { body?: { model?: unknown } }).body;
    const model = metrics.model(body?.model);
    const stream = String(res.getHeader('content-type') ?? '').startsWith('text/event-stream');
    const seconds = (performance.now() - since) / 1000;
    metrics.httpRequests.inc({ route, model, status: String(res.statusCode) });
    metrics.httpDuration.observe({ route, model, stream: String(stream) }, seconds);
    if (!logger.isLevelEnabled('info')) return;
    const debug = logger.isLevelEnabled('debug');
    const locals = (res as { locals?: { keyName?: string } }).locals;
    logger.info(
      {
        event: 'request',
        method,
        route,
        status: res.statusCode,
        ms: Math.round(seconds * 1000),
        model: typeof body?.model === 'string' ? body.model.slice(0, 128) : undefined,
        keyName: locals?.keyName,
        runId: res.getHeader('x-run-id'),
        traceId: requestTraceId(req) ?? traceIdOf(req),
        stream,
        completed: res.writableFinished,
        ...(debug ? { headers: req.headers, body } : {}),
      },
      'request',
    );
  });
}

function createApp(d: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  if (d.config.metrics.enabled) app.get('/metrics', metricsHandler(d.metrics));
  app.get('/readyz', async (_req, res) => {
    const checks = await d.readiness().catch(() => ({ temporal: false }));
    const ok = Object.values(checks).every(Boolean);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not_ready', checks, ...(d.upstreamDetail ? { upstreams: d.upstreamDetail() } : {}) });
  });

  // Another instance reading a model step that streams here (see ./peer).
  app.use(createPeerRouter({ hub: d.live, secret: peerSecret(d.config) }));

  const v1 = express.Router();
  const { apiKeys, allowUnauthenticated } = d.config.server;
  if (apiKeys.length === 0 && !allowUnauthenticated) v1.use(localOnly());
  v1.use(createAuth(apiKeys));
  v1.use(jsonBody(d.config.server.maxRequestBytes));
  v1.get('/models', async (_req, res) => {
    const created = 0;
    res.json({ object: 'list', data: (await d.router.list()).map((m) => ({ id: m.id, object: 'model', created, owned_by: m.upstream })) });
  });
  const needsTemporal: express.RequestHandler = (_req, _res, next) => next(d.temporalUp && !d.temporalUp() ? temporalUnavailable() : undefined);
  v1.post('/chat/completions', needsTemporal, createCompletionHandler(d));
  v1.post('/responses', needsTemporal, createResponsesHandler(d));
  v1.get('/responses/:id', needsTemporal, createGetResponseHandler(d));
  v1.post('/responses/:id/cancel', needsTemporal, createCancelResponseHandler(d));
  v1.use('/runs', needsTemporal);
  v1.use(createRunsRouter(d));
  app.use('/v1', v1);
  if (d.config.mcpGateway.enabled) {
    const mcp = express.Router();
    if (apiKeys.length === 0 && !allowUnauthenticated) mcp.use(localOnly());
    mcp.use(createAuth(apiKeys));
    mcp.use(jsonBody(d.config.server.maxRequestBytes));
    mcp.use(needsTemporal);
    mcp.use(createMcpGateway(d));
    app.use('/mcp', mcp);
  }
  if (d.codec) {
    const { encryption, server } = d.config;
    const origins = new Set([...encryption.codecCorsOrigins, ...d.codec.origins]);
    app.use('/codec', createCodecRouter({ codec: d.codec.codec, apiKeys: server.apiKeys, allowUnauthenticated: server.allowUnauthenticated, maxRequestBytes: server.maxRequestBytes, origins }));
  }

  app.use((req, _res, next) => next(new ApiError(404, `Unknown request URL: ${req.method} ${req.path}`, 'invalid_request_error', 'unknown_url')));
  app.use(errorMiddleware);
  return app;
}

/** `GET /metrics`: the Prometheus text exposition (unauthenticated, like the probes). */
export function metricsHandler(metrics: Metrics): express.RequestHandler {
  return (_req, res, next) => {
    metrics.text().then((text) => {
      res.setHeader('Content-Type', metrics.contentType);
      res.end(text);
    }, next);
  };
}
