/**
 * The express app: routes, auth, body limits and the one error middleware. Built from its
 * dependencies so tests drive the same app the server runs.
 */
import type { IncomingMessage, RequestListener } from 'node:http';
import express from 'express';
import type { Config } from '../config/load';
import { createAuth, keyResolver } from './auth';
import { jsonBody } from './body';
import { localOnly } from './localOnly';
import { createCompletionHandler, type CompletionDeps } from './chatCompletions';
import { ApiError, errorMiddleware, sendError, temporalUnavailable } from './errors';
import { createRunsRouter } from './runs';

export interface AppDeps extends CompletionDeps {
  config: Config;
  /** Temporal reachable and this process's workers polling. */
  readiness: () => Promise<Record<string, boolean>>;
  /** Per upstream: its circuit breaker and calls in flight, in this process (not part of readiness). */
  upstreamDetail?: () => Record<string, unknown>;
  /** The last health check's answer; while false, what needs Temporal gets a 503 at once. */
  temporalUp?: () => boolean;
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
  return (req, res) => {
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
}

function createApp(d: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const checks = await d.readiness().catch(() => ({ temporal: false }));
    const ok = Object.values(checks).every(Boolean);
    res.status(ok ? 200 : 503).json({ status: ok ? 'ready' : 'not_ready', checks, ...(d.upstreamDetail ? { upstreams: d.upstreamDetail() } : {}) });
  });

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
  v1.use('/runs', needsTemporal);
  v1.use(createRunsRouter(d));
  app.use('/v1', v1);

  app.use((req, _res, next) => next(new ApiError(404, `Unknown request URL: ${req.method} ${req.path}`, 'invalid_request_error', 'unknown_url')));
  app.use(errorMiddleware);
  return app;
}
