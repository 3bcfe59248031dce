/**
 * The HTTP error mapping of Temporal's own failures: what the server or its client says when the
 * cluster cannot serve is a 503 the caller may retry, never a 500 internal_error.
 */
import { NamespaceNotFoundError } from '@temporalio/client';
import { toApiError } from '../../src/api/http/errors';

test('NamespaceNotFoundError (a Temporal server whose database is down says so) is a 503 temporal_unavailable', () => {
  const e = toApiError(new NamespaceNotFoundError('default'));
  expect([e.status, e.code, e.type, e.headers]).toEqual([503, 'temporal_unavailable', 'server_error', { 'Retry-After': '1' }]);
  expect(e.message).toContain("'default'");
});

test('a raw gRPC error (code, details, metadata) is mapped by its code like a ServiceError', () => {
  const grpc = (code: number, details: string) => Object.assign(new Error(`${code} ${details}`), { code, details, metadata: {} });
  expect(toApiError(grpc(14, 'connection refused')).status).toBe(503);
  expect(toApiError(grpc(8, 'slow down')).code).toBe('temporal_rate_limited');
  expect(toApiError(grpc(13, 'boom')).code).toBe('temporal_error');
  expect(toApiError(new Error('anything else')).code).toBe('internal_error');
});
