/**
 * Input the framework itself rejects is a client error in the OpenAI shape, never a 500: a
 * malformed percent-escape in a path, a body that cannot be decoded under its Content-Encoding,
 * a body cut off mid-way, JSON nested deeper than the bound, a body that is not JSON. None of
 * them starts a run.
 */
import { request } from 'node:http';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
let errors: jest.SpyInstance;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => {
  s.upstream.reset();
  errors = jest.spyOn(console, 'error');
});
afterEach(() => {
  // No internal error was logged: each input was answered as the client's mistake.
  expect(errors.mock.calls.filter((c) => String(c[0]).includes('internal error'))).toEqual([]);
  errors.mockRestore();
  expect(s.upstream.requests).toHaveLength(0);
});

async function call(method: string, path: string, init: { headers?: Record<string, string>; body?: string | Buffer } = {}) {
  const res = await fetch(`${s.apiUrl}${path}`, { method, headers: init.headers, body: init.body });
  const json = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
  return { status: res.status, json };
}

const ask = JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] });

test('a malformed percent-escape in a run id is a 400 on every run route', async () => {
  for (const [method, path] of [['GET', '/v1/runs/%E0%A4%A'], ['GET', '/v1/runs/%E0%A4%A/events'], ['POST', '/v1/runs/%E0%A4%A/cancel'], ['POST', '/v1/runs/%E0%A4%A/approvals/x']] as const) {
    const r = await call(method, path, method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {});
    expect([path, r.status, r.json.error.code, r.json.error.type]).toEqual([path, 400, 'invalid_url', 'invalid_request_error']);
    expect(Object.keys(r.json.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  }
});

test('a body that does not decode under its Content-Encoding is a 400', async () => {
  for (const enc of ['gzip', 'deflate', 'br']) {
    const r = await call('POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json', 'content-encoding': enc }, body: Buffer.from('not compressed at all') });
    expect([enc, r.status, r.json.error.type]).toEqual([enc, 400, 'invalid_request_error']);
  }
});

test('a body that is not application/json is a 415, whatever it holds', async () => {
  for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const r = await call('POST', '/v1/chat/completions', { headers: { 'content-type': ct }, body: ask });
    expect([ct, r.status, r.json.error.code]).toEqual([ct, 415, 'unsupported_media_type']);
  }
  // A JSON media type with parameters or a +json suffix is JSON.
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'ok' }] });
  const ok = await fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8' }, body: ask });
  expect(ok.status).toBe(200);
  s.upstream.reset();
});

test('JSON nested deeper than the bound is a 400, in any field', async () => {
  const deep = '['.repeat(4500) + ']'.repeat(4500);
  for (const body of [
    `{"model":"test-model","messages":[{"role":"user","content":"hi"}],"metadata":{"x":${deep}}}`,
    `{"model":"test-model","messages":[{"role":"user","content":[{"type":"text","text":"hi","extra":${deep}}]}]}`,
    `{"model":"test-model","messages":[{"role":"user","content":"hi"}],"vendor_field":${deep}}`,
  ]) {
    const r = await call('POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body });
    expect([r.status, r.json.error.code]).toEqual([400, 'json_too_deep']);
  }
});

test('a client that aborts mid-body costs no 500 and the server goes on', async () => {
  await new Promise<void>((done) => {
    const u = new URL(`${s.apiUrl}/v1/chat/completions`);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '5000' } });
    req.on('error', () => done());
    req.write('{"model":"test-model","messages":[');
    setTimeout(() => {
      req.destroy();
      setTimeout(done, 300);
    }, 200);
  });
  const health = await fetch(`${s.apiUrl}/healthz`);
  expect(health.status).toBe(200);
});

test('assistant tool_calls that refer to more earlier runs than the bound are a 400 naming messages, before any query', async () => {
  const hex = (i: number) => i.toString(16).padStart(32, '0');
  const calls = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `call_mx${hex(i)}x0`, type: 'function', function: { name: 'f', arguments: '{}' } }));
  // One assistant turn per 100 calls (a message holds at most 128), each followed by its results.
  const body = (n: number) => {
    const all = calls(n);
    const turns = Array.from({ length: Math.ceil(n / 100) }, (_, t) => all.slice(t * 100, t * 100 + 100));
    return JSON.stringify({
      model: 'test-model',
      messages: [
        { role: 'user', content: 'hi' },
        ...turns.flatMap((turn) => [{ role: 'assistant', content: null, tool_calls: turn }, ...turn.map((c) => ({ role: 'tool', tool_call_id: c.id, content: 'r' }))]),
      ],
    });
  };
  const r = await call('POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: body(3000) });
  expect([r.status, r.json.error.code, r.json.error.param]).toEqual([400, 'too_many_rejoined_runs', 'messages']);
  // At the bound, the ids are looked up (none is a run here) and the request goes on.
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'ok' }] });
  const ok = await fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(64) });
  expect(ok.status).toBe(200);
  await ok.body?.cancel();
  s.upstream.reset();
});

/** A GET with exactly these headers (node:http, so Host can be anything). */
function rawGet(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const u = new URL(`${s.apiUrl}${path}`);
  return new Promise((ok, fail) => {
    const req = request({ host: u.hostname, port: u.port, path, method: 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => ok({ status: res.statusCode!, body }));
    });
    req.on('error', fail);
    req.end();
  });
}

test('without API keys only loopback hosts and origins are served (DNS rebinding, cross-site pages)', async () => {
  const port = new URL(s.apiUrl).port;
  for (const [headers, want] of [
    [{ host: `127.0.0.1:${port}` }, 200],
    [{ host: `localhost:${port}`, origin: 'http://localhost:3000' }, 200],
    [{ host: `[::1]:${port}` }, 200],
    [{ host: `rebound.example.com:${port}` }, 403],
    [{ host: `127.0.0.1:${port}`, origin: 'https://evil.example' }, 403],
    [{ host: `127.0.0.1:${port}`, origin: 'null' }, 403],
  ] as const) {
    const r = await rawGet('/v1/models', headers);
    expect([headers, r.status]).toEqual([headers, want]);
    if (want === 403) expect(JSON.parse(r.body).error).toMatchObject({ type: 'permission_error', code: expect.stringMatching(/^forbidden_(host|origin)$/) });
  }
});

test('each input over its bound is a 400 naming the param, and starts no run', async () => {
  const user = { role: 'user', content: 'hi' };
  const fn = (i: number) => ({ type: 'function', function: { name: `f${i}`, parameters: { type: 'object' } } });
  const cases: Array<[string, Record<string, unknown>]> = [
    ['messages', { messages: Array.from({ length: 4097 }, () => user) }],
    ['tools', { messages: [user], tools: Array.from({ length: 129 }, (_, i) => fn(i)) }],
    ['model', { model: 'm'.repeat(257), messages: [user] }],
    ['metadata', { messages: [user], metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }],
    ['metadata.k', { messages: [user], metadata: { k: 'v'.repeat(513) } }],
    ['messages[0].content', { messages: [{ role: 'user', content: Array.from({ length: 1025 }, () => ({ type: 'text', text: 'x' })) }] }],
    ['messages[1].tool_call_id', { messages: [user, { role: 'tool', tool_call_id: 'c'.repeat(257), content: 'x' }] }],
    ['tools[0].function.description', { messages: [user], tools: [{ type: 'function', function: { name: 'f', description: 'd'.repeat(16_385) } }] }],
  ];
  for (const [param, over] of cases) {
    const r = await call('POST', '/v1/chat/completions', { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'test-model', ...over }) });
    expect([param, r.status, r.json.error.type, r.json.error.param]).toEqual([param, 400, 'invalid_request_error', param]);
  }
});
