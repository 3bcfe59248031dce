/**
 * Request bodies: JSON only, bounded in bytes and in nesting depth. A body in another media type
 * is a 415 (a web page's `text/plain` or form POST cannot start runs); one nested deeper than
 * `MAX_JSON_DEPTH` is a 400 before anything walks it recursively (summaries, Temporal's payload
 * converter), so no input can overflow the stack.
 */
import express, { type RequestHandler } from 'express';
import { ApiError, badRequest } from './errors';

/** Objects and arrays inside one another; OpenAI's own requests need well under 20. */
export const MAX_JSON_DEPTH = 64;

const isJsonType = (ct: string) => /^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(ct.trim());

function hasBody(req: express.Request): boolean {
  const len = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (len !== undefined && len !== '0');
}

/** How deep `v` nests, without recursion; stops counting past `limit`. */
export function jsonDepth(v: unknown, limit = MAX_JSON_DEPTH): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[v, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node !== 'object' || node === null) continue;
    const d = depth + 1;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, d]);
  }
  return max;
}

export function jsonBody(limitBytes: number): RequestHandler[] {
  const mediaType: RequestHandler = (req, _res, next) => {
    const ct = req.headers['content-type'];
    if (hasBody(req) && !(ct && isJsonType(ct)))
      return next(new ApiError(415, `request bodies must be application/json${ct ? `, not ${ct.split(';')[0]}` : ' (no Content-Type was sent)'}`, 'invalid_request_error', 'unsupported_media_type'));
    next();
  };
  const depth: RequestHandler = (req, _res, next) => {
    if (jsonDepth(req.body) > MAX_JSON_DEPTH) return next(badRequest(`request body nests deeper than ${MAX_JSON_DEPTH} levels`, null, 'json_too_deep'));
    next();
  };
  return [mediaType, express.json({ limit: limitBytes, type: () => true }), depth];
}
