/**
 * `/codec/encode` and `/codec/decode`: the Temporal remote-codec protocol (what the Web UI's
 * "codec endpoint" setting and `temporal … --codec-endpoint` call), so operators can read
 * encrypted histories. Behind the API keys like `/v1` (`Authorization: Bearer <key>`; the CLI's
 * `--codec-auth`); browser origins in `encryption.codecCorsOrigins` may call it.
 */
import express from 'express';
import type { PayloadCodec } from '@temporalio/common';
import type { ApiKeyConfig } from '../../config/schema';
import { payloadsFromJson, payloadsToJson } from '../../connectors/payloadCodec';
import { createAuth } from './auth';
import { jsonBody } from './body';
import { ApiError, badRequest } from './errors';
import { localOnly } from './localOnly';

export interface CodecDeps {
  codec: PayloadCodec;
  apiKeys: readonly ApiKeyConfig[];
  allowUnauthenticated: boolean;
  maxRequestBytes: number;
  /** Origins allowed to call from a browser. */
  origins: ReadonlySet<string>;
}

export function createCodecRouter(d: CodecDeps): express.Router {
  const r = express.Router();
  // CORS first: a browser's preflight carries no credentials.
  r.use((req, res, next) => {
    const origin = req.headers.origin;
    if (origin && d.origins.has(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type, X-Namespace');
      res.status(origin && d.origins.has(origin) ? 204 : 403).end();
      return;
    }
    next();
  });
  if (d.apiKeys.length === 0 && !d.allowUnauthenticated) r.use(localOnly());
  r.use(createAuth(d.apiKeys));
  r.use(jsonBody(d.maxRequestBytes));
  for (const op of ['encode', 'decode'] as const) {
    r.post(`/${op}`, async (req, res) => {
      const payloads = payloadsFromJson(req.body);
      if (!payloads) throw badRequest('body must be {"payloads":[{"metadata":{…base64…},"data":"…base64…"}]}', 'payloads');
      try {
        res.json(payloadsToJson(await d.codec[op](payloads)));
      } catch (e) {
        throw new ApiError(400, `cannot ${op}: ${e instanceof Error ? e.message : String(e)}`, 'invalid_request_error', 'codec_error', 'payloads');
      }
    });
  }
  return r;
}
