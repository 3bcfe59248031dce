/**
 * The one error taxonomy of the HTTP surface and the one middleware that writes it:
 * `{"error":{"message","type","param","code"}}` with the matching status, everywhere.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorRequestHandler, Response } from 'express';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { WireError } from '../../domain/events';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    // An answer to the client, not a bug: no stack (capturing one costs more than the rest of a
    // refused request, which a flood of them would feel).
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.name = 'ApiError';
  }

  static fromWire(w: WireError): ApiError {
    return new ApiError(w.status, w.message, w.type, w.code, w.param, w.retryAfterSeconds ? { 'Retry-After': String(w.retryAfterSeconds) } : {});
  }

  get wire(): WireError {
    return { status: this.status, message: this.message, type: this.type, code: this.code, param: this.param };
  }
}

export const temporalUnavailable = (message = 'Temporal is unreachable') => new ApiError(503, message, 'server_error', 'temporal_unavailable', null, { 'Retry-After': '1' });

export const badRequest = (message: string, param: string | null = null, code: string | null = null) =>
  new ApiError(400, message, 'invalid_request_error', code, param);

export function errorBody(e: Pick<WireError, 'message' | 'type' | 'code' | 'param'>) {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** A failed run carries its client-facing error in the failure details (see the workflow). */
export function fromRunFailure(e: unknown): ApiError | null {
  if (!(e instanceof WorkflowFailedError)) return null;
  const cause = e.cause;
  if (cause instanceof ApplicationFailure && cause.details?.[0]) return ApiError.fromWire(cause.details[0] as WireError);
  if (cause?.name === 'CancelledFailure') return new ApiError(409, 'the run was cancelled', 'cancelled', 'run_cancelled');
  if (cause?.name === 'TerminatedFailure') return new ApiError(500, 'the run was terminated', 'server_error', 'run_terminated');
  return new ApiError(500, cause?.message ?? e.message, 'server_error', 'run_failed');
}

export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  const run = fromRunFailure(e);
  if (run) return run;
  const t = e as { type?: string; status?: number; expose?: boolean; message?: string; name?: string };
  if (t?.type === 'entity.parse.failed') return badRequest(`request body is not valid JSON: ${t.message ?? ''}`.trim(), null, 'invalid_json');
  if (t?.type === 'entity.too.large') return new ApiError(413, 'request body too large', 'invalid_request_error', 'request_too_large');
  // The router's own: a path segment that is not valid percent-encoding.
  if (e instanceof URIError) return badRequest('the request URL has a malformed percent-escape', null, 'invalid_url');
  // Any other client error the body parser found (an undecodable Content-Encoding, a body cut
  // off, a wrong length): its status and message, as a client error.
  if (t?.expose === true && typeof t.status === 'number' && t.status >= 400 && t.status < 500)
    return new ApiError(t.status, `request body: ${t.message ?? 'unreadable'}`, 'invalid_request_error', FRAMEWORK_CODES[t.type ?? ''] ?? 'invalid_request_body');
  if (t?.name === 'ServiceError') return fromServiceError(e as { message?: string; cause?: { code?: number; details?: string } });
  // The client's name for a NOT_FOUND on the namespace. A Temporal server whose database is down
  // answers every call so (it cannot load the namespace registry), and a misnamed namespace is
  // the operator's to fix: the server's fault either way, worth a retry, never the client's.
  if (t?.name === 'NamespaceNotFoundError') return temporalUnavailable(`Temporal cannot find namespace '${(e as { namespace?: string }).namespace ?? '?'}' (not registered, or the server cannot read its database)`);
  // A gRPC error the client passed on unwrapped (a status code and details of its own).
  if (typeof (e as { code?: unknown })?.code === 'number' && typeof (e as { details?: unknown }).details === 'string' && (e as { metadata?: unknown }).metadata) return fromServiceError({ message: t.message, cause: e as { code: number; details: string } });
  return new ApiError(500, 'internal error', 'server_error', 'internal_error');
}

/** The body parser's error types (`type` of its errors), as error codes. */
const FRAMEWORK_CODES: Record<string, string> = {
  'encoding.unsupported': 'unsupported_encoding',
  'charset.unsupported': 'unsupported_charset',
  'request.aborted': 'request_aborted',
  'request.size.invalid': 'invalid_content_length',
};

/** A Temporal service error, by its gRPC status code. */
function fromServiceError(e: { message?: string; cause?: { code?: number; details?: string } }): ApiError {
  const detail = e.cause?.details ?? e.message ?? '';
  switch (e.cause?.code) {
    case 3: // INVALID_ARGUMENT: in practice a payload over Temporal's size limit
      return /size|exceeds|limit/i.test(detail)
        ? new ApiError(413, `request too large for a run's input: ${detail}`, 'invalid_request_error', 'request_too_large')
        : new ApiError(400, detail, 'invalid_request_error', 'invalid_request');
    case 5: // NOT_FOUND
      return new ApiError(404, detail, 'invalid_request_error', 'not_found');
    case 8: // RESOURCE_EXHAUSTED
      return new ApiError(429, `Temporal is rate limiting: ${detail}`, 'rate_limit_error', 'temporal_rate_limited', null, { 'Retry-After': '1' });
    case 14: // UNAVAILABLE
    case 4: // DEADLINE_EXCEEDED
      return temporalUnavailable();
    default:
      return new ApiError(500, `Temporal error: ${detail}`, 'server_error', 'temporal_error');
  }
}

export function sendError(res: Response | ServerResponse, e: unknown): void {
  const err = toApiError(e);
  if (err.status >= 500 && err.code === 'internal_error') console.error('[api] internal error', e);
  for (const [k, v] of Object.entries(err.headers)) res.setHeader(k, v);
  res.statusCode = err.status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(errorBody(err)));
}

export const errorMiddleware: ErrorRequestHandler = (err, _req, res, next) => {
  if (res.headersSent) return next(err);
  sendError(res, err);
};

/** Node's own HTTP parser errors, by code: what the client sent that is not HTTP we can read. */
const PARSER_ERRORS: Record<string, [status: number, message: string, code: string]> = {
  HPE_HEADER_OVERFLOW: [431, 'request headers too large', 'headers_too_large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'the request did not arrive in time (server.requestTimeoutSeconds)', 'request_timeout'],
  ERR_HTTP_HEADERS_TIMEOUT: [408, 'the request headers did not arrive in time (server.headersTimeoutSeconds)', 'request_timeout'],
};

/**
 * The answer to a request Node's HTTP parser refused before express saw it (malformed HTTP,
 * oversized headers, a slow-loris client past its timeout): the same OpenAI error shape, written
 * straight to the socket, which then closes. A socket already gone gets nothing.
 */
export function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, message, code] = PARSER_ERRORS[err.code ?? ''] ?? [400, `malformed HTTP request (${err.code ?? err.message})`, 'malformed_request'];
  const body = JSON.stringify(errorBody({ message, type: 'invalid_request_error', param: null, code }));
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
