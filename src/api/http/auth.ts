/**
 * Bearer-key authentication. Keys are compared as SHA-256 digests with timingSafeEqual, so
 * neither content nor length leaks through timing; `sha256:<hex>` entries never hold the key.
 * The inbound key is never forwarded upstream (the upstream client sets its own).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { ApiKeyConfig } from '../../config/schema';
import { ApiError } from './errors';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * The caller's key name from an Authorization header: `anonymous` when no keys are configured,
 * `missing` without a bearer key, `invalid` for a key that is not configured.
 */
export function keyResolver(keys: readonly ApiKeyConfig[]): (authorization: string | undefined) => { name: string } | 'missing' | 'invalid' {
  const table = keys.map((k) => ({
    name: k.name,
    hash: k.key.startsWith('sha256:') ? Buffer.from(k.key.slice(7), 'hex') : digest(k.key),
  }));
  return (authorization) => {
    if (table.length === 0) return { name: 'anonymous' };
    const m = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
    if (!m) return 'missing';
    const got = digest(m[1]!.trim());
    let name: string | null = null;
    for (const k of table) if (k.hash.length === got.length && timingSafeEqual(k.hash, got)) name = k.name;
    return name ? { name } : 'invalid';
  };
}

export function createAuth(keys: readonly ApiKeyConfig[]): RequestHandler {
  const resolve = keyResolver(keys);
  return (req, res, next) => {
    const key = resolve(req.headers.authorization);
    if (key === 'missing') return next(new ApiError(401, 'missing API key: send "Authorization: Bearer <key>"', 'invalid_request_error', 'missing_api_key'));
    if (key === 'invalid') return next(new ApiError(401, 'incorrect API key provided', 'invalid_request_error', 'invalid_api_key'));
    res.locals.keyName = key.name;
    next();
  };
}
