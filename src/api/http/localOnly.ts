/**
 * With no API keys (and `server.allowUnauthenticated` off) mix2api serves this machine only, and
 * a port on loopback is not enough for that: a web page the user opens can POST to it (CSRF) or
 * reach it through a DNS name that resolves to 127.0.0.1 (DNS rebinding). So, as the MCP spec asks
 * of local servers, the Host must be a loopback name and an Origin, when sent, a loopback origin.
 */
import type { RequestHandler } from 'express';
import { ApiError } from './errors';

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\]|[\w.-]+\.localhost)$/i;

/** `host[:port]` → whether the host part names this machine. */
export function isLoopbackHost(hostHeader: string): boolean {
  const host = hostHeader.startsWith('[') ? hostHeader.slice(0, hostHeader.indexOf(']') + 1) : hostHeader.split(':')[0]!;
  return LOOPBACK.test(host);
}

function isLoopbackOrigin(origin: string): boolean {
  try {
    const u = new URL(origin);
    return (u.protocol === 'http:' || u.protocol === 'https:') && isLoopbackHost(u.host);
  } catch {
    return false; // `null` (sandboxed pages, file://) and anything unparsable
  }
}

export function localOnly(): RequestHandler {
  return (req, _res, next) => {
    const host = req.headers.host ?? '';
    if (!isLoopbackHost(host))
      return next(new ApiError(403, `without API keys mix2api answers loopback hosts only, not "${host.slice(0, 100)}"; configure server.apiKeys to serve others`, 'permission_error', 'forbidden_host'));
    const origin = req.headers.origin;
    if (origin !== undefined && !isLoopbackOrigin(origin))
      return next(new ApiError(403, `without API keys mix2api answers pages on this machine only, not origin "${origin.slice(0, 100)}"`, 'permission_error', 'forbidden_origin'));
    next();
  };
}
