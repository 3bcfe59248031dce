/**
 * Turns an upstream failure into an ApplicationFailure once, here: typed `type`, retryable or
 * not, `nextRetryDelay` from Retry-After, and the OpenAI-shaped error the client will get if
 * this was the last attempt (in `details[0]`). The failure's message keeps the upstream's full text
 * (Temporal's history, for operators); the client's error gets it sanitised (domain/sanitize).
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { UpstreamBusyError } from '../connectors/bulkhead';
import { UpstreamConnectionError, UpstreamHttpError, UpstreamTimeoutError, UpstreamUnavailableError } from '../connectors/upstream';
import { FailureType, wireError } from '../domain/run';
import { clientSafeMessage } from '../domain/sanitize';

export function classifyUpstreamError(e: unknown, upstream: string): unknown {
  if (e instanceof CancelledFailure || e instanceof ApplicationFailure) return e;
  if (e instanceof UpstreamHttpError) {
    const full = `upstream ${upstream}: ${e.message}`;
    const msg = `upstream ${upstream}: ${clientSafeMessage(e.message)}`;
    if (e.status === 429) {
      return ApplicationFailure.create({
        type: FailureType.RateLimit,
        message: full,
        // A zero delay would read as "no retry" to the server; no header means normal backoff.
        nextRetryDelay: e.retryAfterMs ? e.retryAfterMs : undefined,
        details: [{ ...wireError(429, msg, 'rate_limit_error', e.code ?? 'rate_limit_exceeded'), ...(e.retryAfterMs ? { retryAfterSeconds: Math.ceil(e.retryAfterMs / 1000) } : {}) }],
      });
    }
    if (e.status >= 500 || e.status === 408 || e.status === 409) {
      return ApplicationFailure.create({
        type: FailureType.ServerError,
        message: full,
        details: [wireError(502, msg, 'upstream_error', e.code ?? `upstream_${e.status}`)],
      });
    }
    // The request itself is wrong or our upstream credentials are: retrying cannot help.
    const type = e.status === 401 ? 'authentication_error' : e.status === 403 ? 'permission_error' : 'invalid_request_error';
    return ApplicationFailure.create({
      type: FailureType.Rejected,
      message: full,
      nonRetryable: true,
      details: [wireError(e.status, msg, e.type ?? type, e.code, e.param)],
    });
  }
  if (e instanceof UpstreamBusyError) {
    // Nothing was sent: another attempt (perhaps on a worker with a free slot) may go at once.
    return ApplicationFailure.create({
      type: FailureType.Busy,
      message: e.message,
      nextRetryDelay: 1000,
      details: [{ ...wireError(503, e.message, 'server_error', 'upstream_busy'), retryAfterSeconds: 1 }],
    });
  }
  if (e instanceof UpstreamUnavailableError) {
    // The breaker's next probe is the earliest an attempt can do better.
    const seconds = Math.max(1, Math.ceil(e.retryAfterMs / 1000));
    return ApplicationFailure.create({
      type: FailureType.Unavailable,
      message: e.message,
      nextRetryDelay: seconds * 1000,
      details: [{ ...wireError(503, e.message, 'server_error', 'upstream_unavailable'), retryAfterSeconds: seconds }],
    });
  }
  if (e instanceof UpstreamTimeoutError) {
    const msg = `upstream ${upstream}: ${e.message}`;
    return ApplicationFailure.create({ type: FailureType.Timeout, message: msg, details: [wireError(504, msg, 'timeout_error', 'upstream_timeout')] });
  }
  if (e instanceof UpstreamConnectionError) {
    const msg = `upstream ${upstream}: ${e.message}`;
    return ApplicationFailure.create({ type: FailureType.Connection, message: msg, details: [wireError(502, msg, 'upstream_error', 'upstream_connection')] });
  }
  const text = e instanceof Error ? e.message : String(e);
  return ApplicationFailure.create({
    type: FailureType.Protocol,
    message: `upstream ${upstream}: ${text}`,
    details: [wireError(502, `upstream ${upstream}: ${clientSafeMessage(text)}`, 'upstream_error', 'upstream_protocol')],
  });
}
