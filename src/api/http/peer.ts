/**
 * Progress between processes, without a write per stream. A model step streams into its
 * process's LiveHub only; a reader in another process (a client that reconnected elsewhere)
 * asks the process holding the step, found from the step activity's worker identity
 * (activities/lease `instanceIdentity`): `GET /internal/v1/steps/{runId}?after=<step:seq>`
 * answers the step's events after that position, waiting up to `waitMs` for some, so it costs
 * something only while someone reads from elsewhere, and carries only what the reader lacks.
 * Peers prove themselves with `x-mix2api-peer`, a secret every instance with the same config
 * derives (or `server.peerSecret`).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import express from 'express';
import type { Config } from '../../config/load';
import type { LiveHub } from '../../connectors/liveHub';
import type { EndEvent, RunEvent } from '../../domain/events';
import { after, parsePosition, formatPosition, type Position } from '../../domain/positions';

export const PEER_HEADER = 'x-mix2api-peer';
/** Longest a peer read waits for new output. */
export const PEER_WAIT_MAX_MS = 5000;

/** The secret peers present: `server.peerSecret`, else a digest of what every instance of this deployment shares. */
export function peerSecret(config: Config): string {
  let s = secrets.get(config);
  if (!s) secrets.set(config, (s = derive(config)));
  return s;
}
const secrets = new WeakMap<Config, string>();

function derive(config: Config): string {
  if (config.server.peerSecret) return config.server.peerSecret;
  const shared = [config.temporal.namespace, config.temporal.taskQueue, ...config.server.apiKeys.map((k) => k.key), ...config.encryption.keys.map((k) => k.key)];
  return createHash('sha256').update(JSON.stringify(['mix2api-peer', ...shared])).digest('hex');
}

export interface StepDelta {
  step: number;
  events: RunEvent[];
  end?: EndEvent;
  /** A model call here still writes the step. */
  streaming: boolean;
}

function delta(hub: LiveHub, runId: string, from: Position): StepDelta | null {
  const v = hub.view(runId);
  if (!v?.step || v.step.log.step < from.step) return null;
  const events: RunEvent[] = [];
  for (const e of v.step.log.events) {
    const part = after(e, from);
    if (part) events.push(part);
  }
  return { step: v.step.log.step, events, ...(v.step.end ? { end: v.step.end } : {}), streaming: v.streaming };
}

export function createPeerRouter(o: { hub: LiveHub; secret: string }): express.Router {
  const r = express.Router();
  const want = Buffer.from(o.secret);
  r.get('/internal/v1/steps/:runId', (req, res) => {
    const got = Buffer.from(req.header(PEER_HEADER) ?? '');
    if (got.length !== want.length || !timingSafeEqual(got, want)) {
      res.status(401).json({ error: { message: 'peer requests need the deployment\'s peer secret', type: 'invalid_request_error', param: null, code: 'invalid_peer_secret' } });
      return;
    }
    const from = parsePosition(String(req.query.after ?? '')) ?? { step: 0, seq: -1 };
    const waitMs = Math.min(PEER_WAIT_MAX_MS, Math.max(0, Number(req.query.waitMs) || 0));
    const runId = req.params.runId!;
    const answer = () => {
      const d = delta(o.hub, runId, from);
      if (!d) res.status(404).json({ error: { message: `no model step of ${runId} at or after ${formatPosition(from)} streams here`, type: 'invalid_request_error', param: null, code: 'step_not_here' } });
      else res.json(d);
    };
    const first = delta(o.hub, runId, from);
    if (!first || first.events.length > 0 || first.end || !first.streaming || waitMs === 0) return answer();
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unsubscribe();
      if (!res.writableEnded && !res.destroyed) answer();
    };
    const timer = setTimeout(finish, waitMs);
    const unsubscribe = o.hub.subscribe(runId, finish);
    res.on('close', finish);
  });
  return r;
}

/**
 * Reads a step's progress from the peer that holds it; null when the peer does not hold it (or
 * cannot be reached), `refused` when nothing listens at its address any more (it has exited).
 */
export async function readPeer(peerUrl: string, secret: string, runId: string, from: Position, waitMs: number, signal: AbortSignal): Promise<StepDelta | null | 'refused'> {
  const call = new AbortController();
  const abort = () => call.abort();
  signal.addEventListener('abort', abort, { once: true });
  const timer = setTimeout(abort, waitMs + 3000);
  try {
    const res = await fetch(`${peerUrl}/internal/v1/steps/${encodeURIComponent(runId)}?after=${formatPosition(from)}&waitMs=${waitMs}`, { headers: { [PEER_HEADER]: secret }, signal: call.signal });
    if (!res.ok) {
      await res.body?.cancel();
      return null;
    }
    return (await res.json()) as StepDelta;
  } catch (e) {
    return (e as { cause?: { code?: string } } | null)?.cause?.code === 'ECONNREFUSED' ? 'refused' : null;
  } finally {
    clearTimeout(timer);
    signal.removeEventListener('abort', abort);
  }
}
