/**
 * Seeded generator of malformed and abusive requests over every endpoint and header mix2api
 * reads. The same seed gives the same requests, so a failure found once is found again.
 */
import { gzipSync } from 'node:zlib';
import { rng } from '../support/rng';

export type Caller = 'a' | 'b' | 'none' | 'wrong';

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  caller: Caller;
  /** The run id of another key this request names in its path, if any (a cross-key read). */
  foreignRun?: string;
  what: string;
}

/** Ids the generator draws on: runs each key really started (filled in as the fuzz goes). */
export interface Known {
  runsOf: Record<'a' | 'b', string[]>;
}

type Json = unknown;

export class Generator {
  private readonly r: () => number;
  constructor(
    seed: number,
    private readonly known: Known,
  ) {
    this.r = rng(seed);
  }

  private int(n: number): number {
    return Math.floor(this.r() * n);
  }
  private chance(p: number): boolean {
    return this.r() < p;
  }
  private pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  private nasty(): Json {
    const deep = (n: number) => JSON.parse('['.repeat(n) + ']'.repeat(n)) as Json;
    return this.pick<() => Json>([
      () => null,
      () => true,
      () => 0,
      () => -1,
      () => 1e308,
      () => 2 ** 53 + 1,
      () => '',
      () => 'x'.repeat(this.pick([1, 300, 70_000])),
      () => '\u0000\u202e\ud800\udfff\ufeff',
      () => '%E0%A4%A',
      () => '../../etc/passwd',
      () => [],
      () => ({}),
      () => Array.from({ length: this.pick([2, 200, 5000]) }, () => 1),
      () => deep(this.pick([10, 63, 65, 500])),
      () => ({ __proto__: { polluted: true }, constructor: { prototype: { x: 1 } } }),
      () => ({ type: 'mcp', server_label: this.pick(['nope', '', 'everything']) }),
      () => ({ role: this.pick(['user', 'tool', 'assistant', 'system', 'bogus']), content: this.pick<Json>(['hi', null, [], [{ type: 'text', text: 'x' }], 5]) }),
      () => ({ id: `call_mx${'0'.repeat(32)}x0`, type: 'function', function: { name: 'f', arguments: '{' } }),
    ])();
  }

  private baseBody(): Record<string, Json> {
    const user = { role: 'user', content: 'hi' };
    return this.pick<() => Record<string, Json>>([
      () => ({ model: 'test-model', messages: [user] }),
      () => ({ model: 'test-model', stream: true, stream_options: { include_usage: true }, messages: [user] }),
      () => ({ model: 'test-model', messages: [user], tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }] }),
      () => ({ model: 'test-model', messages: [user], tools: [{ type: 'mcp', server_label: 'nowhere' }] }),
      () => ({ model: 'no-such-model', messages: [user] }),
      () => ({ model: 'test-model', messages: [user], metadata: { session_id: this.pick(['s1', '', 'x'.repeat(200), 'ünï']) } }),
      () => ({
        model: 'test-model',
        messages: [user, { role: 'assistant', content: null, tool_calls: this.rejoinCalls() }, { role: 'tool', tool_call_id: 'c', content: 'r' }],
      }),
    ])();
  }

  /** Tool-call ids that name runs (mix2api's `call_mx<run>x<n>`): own, another key's, made up. */
  private rejoinCalls(): Json[] {
    const runs = [...this.known.runsOf.a, ...this.known.runsOf.b];
    return Array.from({ length: this.pick([1, 3, 70]) }, (_, i) => {
      const run = runs.length && this.chance(0.7) ? this.pick(runs) : `chatcmpl-${this.int(1e9).toString(16).padStart(32, '0')}`;
      return { id: `call_mx${run.replace(/^chatcmpl-/, '')}x${i}`, type: 'function', function: { name: 'f', arguments: '{}' } };
    });
  }

  /** Replaces, deletes or multiplies one node somewhere in `v`. */
  private mutate(v: Json, depth = 0): Json {
    if (depth > 6 || typeof v !== 'object' || v === null || this.chance(0.25)) return this.nasty();
    if (Array.isArray(v)) {
      if (v.length === 0 || this.chance(0.2)) return [...v, this.nasty()];
      const i = this.int(v.length);
      const out = [...v];
      if (this.chance(0.15)) out.splice(i, 1);
      else if (this.chance(0.1)) {
        // Many copies of a small element (copies of a big one would only build a huge 413 here).
        const small = (JSON.stringify(v[i]) ?? '').length <= 200 ? v[i] : 1;
        return Array.from({ length: this.pick([50, 4097]) }, () => small);
      }
      else out[i] = this.mutate(v[i], depth + 1);
      return out;
    }
    const o = { ...(v as Record<string, Json>) };
    const keys = Object.keys(o);
    if (keys.length === 0 || this.chance(0.15)) {
      o[this.pick(['model', 'messages', 'stream', 'tools', 'n', 'metadata', 'stream_options', 'tool_choice', 'x'.repeat(100)])] = this.nasty();
      return o;
    }
    const k = this.pick(keys);
    if (this.chance(0.2)) delete o[k];
    else o[k] = this.mutate(o[k], depth + 1);
    return o;
  }

  private body(): { bytes: Buffer; what: string } {
    let v: Json = this.baseBody();
    const n = this.int(3);
    for (let i = 0; i < n; i++) v = this.mutate(v);
    // Bodies past the byte bound are still sent (a 413), but not hundreds of megabytes of them.
    const text = JSON.stringify(v).slice(0, 3_000_000);
    const raw = this.pick<() => [Buffer, string]>([
      () => [Buffer.from(text), 'json'],
      () => [Buffer.from(text), 'json'],
      () => [Buffer.from(text), 'json'],
      () => [Buffer.from(text.slice(0, this.int(text.length))), 'truncated'],
      () => [Buffer.concat([Buffer.from(text.slice(0, 10)), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(text.slice(10))]), 'invalid utf-8'],
      () => [Buffer.from(`\ufeff${text}`), 'bom'],
      () => [Buffer.from(`${text} trailing`), 'trailing garbage'],
      () => [Buffer.from(''), 'empty'],
      () => [Buffer.from('['.repeat(this.pick([70, 5000, 200_000])) + ']'.repeat(10)), 'deep brackets'],
      () => [Buffer.from(text.replace('"model"', '"model":"a","model"')), 'duplicate keys'],
      () => [Buffer.from(JSON.stringify([v])), 'array body'],
      () => [Buffer.from('null'), 'null body'],
    ])();
    return { bytes: raw[0], what: `${raw[1]} ${n} mutations` };
  }

  private runId(caller: Caller): { id: string; foreign?: string } {
    const own = caller === 'a' || caller === 'b' ? this.known.runsOf[caller] : [];
    const other = caller === 'a' ? this.known.runsOf.b : caller === 'b' ? this.known.runsOf.a : [];
    if (other.length && this.chance(0.35)) {
      const id = this.pick(other);
      return { id, foreign: id };
    }
    if (own.length && this.chance(0.3)) return { id: this.pick(own) };
    return {
      id: this.pick([
        `chatcmpl-${this.int(1e9).toString(16).padStart(32, '0')}`,
        '%E0%A4%A',
        '%00',
        'chatcmpl-..%2F..%2Fx',
        'x'.repeat(3000),
        'session-abc',
        encodeURIComponent('chatcmpl-\u00e9'),
      ]),
    };
  }

  next(): FuzzRequest {
    const caller = this.pick<Caller>(['a', 'a', 'a', 'b', 'b', 'b', 'none', 'wrong']);
    const headers: Record<string, string> = {};
    if (caller === 'a' || caller === 'b') headers.authorization = `Bearer sk-${caller}`;
    if (caller === 'wrong') headers.authorization = this.pick(['Bearer sk-c', 'Basic xyz', 'Bearer ', 'bearer sk-a ', `Bearer ${'k'.repeat(5000)}`]);
    if (this.chance(0.15)) headers['idempotency-key'] = this.pick(['k1', '', ' ', 'x'.repeat(300), 'same-key']);
    if (this.chance(0.15)) headers['x-session-id'] = this.pick(['s1', 's2', '', 'x'.repeat(200), '\t']);
    if (this.chance(0.1)) headers['last-event-id'] = this.pick(['0:0', '-1:5', 'a:b', '99999999999999999999:1', '1:']);
    if (this.chance(0.05)) headers.origin = this.pick(['http://evil.example', 'null']);

    const route = this.int(10);
    if (route < 6) {
      const { bytes, what } = this.body();
      let body = bytes;
      headers['content-type'] = this.chance(0.7)
        ? 'application/json'
        : this.pick(['application/json; charset=utf-8', 'application/vnd.api+json', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'application/json; charset=latin1']);
      if (this.chance(0.05)) delete headers['content-type'];
      if (this.chance(0.08)) {
        const enc = this.pick(['gzip', 'deflate', 'br', 'identity', 'compress', 'gzip, gzip']);
        headers['content-encoding'] = enc;
        if (enc === 'gzip' && this.chance(0.5)) body = gzipSync(body);
      }
      // The same bodies at the Responses front door too: mostly refusals, none of them a 5xx.
      const path = this.chance(0.8) ? this.pick(['/v1/chat/completions', '/v1/chat/completions', '/v1/chat/completions', '/v1/responses']) : this.pick(['/v1/chat/completions/', '/v1/chat/completions?x=%zz', '//v1/chat/completions', '/v1/completions', '/v1/responses/']);
      return { method: this.chance(0.9) ? 'POST' : this.pick(['PUT', 'GET', 'PATCH']), path, headers, body, caller, what: `completion: ${what}` };
    }
    if (route < 9) {
      const { id, foreign } = this.runId(caller);
      if (this.chance(0.15)) {
        // A response is its run: the other key's runs must stay out of reach here as well.
        const rid = id.replace(/^chatcmpl-/, 'resp_');
        return { method: this.pick(['GET', 'GET', 'DELETE']), path: `/v1/responses/${rid}`, headers, caller, foreignRun: foreign, what: 'response route' };
      }
      const sub = this.pick(['', '/events', '/events?after=0:0', '/events?include_usage=true&after=zz', '/cancel', '/approvals/apr_0_0', '/approvals/%E0%A4%A']);
      const post = sub === '/cancel' || sub.startsWith('/approvals');
      let body: Buffer | undefined;
      if (post) {
        headers['content-type'] = 'application/json';
        body = Buffer.from(JSON.stringify(this.chance(0.5) ? { approve: this.pick<Json>([true, false, 'yes', null]), reason: this.nasty() } : this.nasty()));
      }
      return { method: post ? 'POST' : this.pick(['GET', 'GET', 'DELETE', 'HEAD']), path: `/v1/runs/${id}${sub}`, headers, body, caller, foreignRun: foreign, what: `run route ${sub || '/'}` };
    }
    const path = this.pick(['/v1/models', '/v1/models/test-model', '/healthz', '/readyz', '/', '/v2/x', `/v1/${'a/'.repeat(500)}`, '/v1/%', '/v1/models?%', '/.env']);
    return { method: this.pick(['GET', 'GET', 'POST', 'OPTIONS', 'TRACE']), path, headers, caller, what: 'other route' };
  }
}
