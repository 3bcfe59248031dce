/** Bearer-key auth: missing and wrong keys are 401s; the inbound key never reaches the upstream. */
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    apiKey: 'sk-team-a',
    config: () => ({
      server: {
        port: 0,
        apiKeys: [
          { name: 'team-a', key: 'sk-team-a' },
          { name: 'team-b', key: `sha256:${createHash('sha256').update('sk-team-b').digest('hex')}` },
        ],
      },
    }),
  });
});
afterAll(async () => {
  await s?.stop();
});

test('a configured key works; a hashed key works; the upstream sees only its own key', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'hello a' }] }, { steps: [{ kind: 'text', text: 'hello b' }] });
  const a = await s.openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] });
  expect(a.choices[0]!.message.content).toBe('hello a');
  const b = new OpenAI({ baseURL: `${s.apiUrl}/v1`, apiKey: 'sk-team-b', maxRetries: 0 });
  const rb = await b.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] });
  expect(rb.choices[0]!.message.content).toBe('hello b');
  for (const r of s.upstream.requests) expect(r.headers.authorization).toBe('Bearer upstream-secret');
});

test('missing and wrong keys get 401 with an OpenAI error body', async () => {
  const none = await fetch(`${s.apiUrl}/v1/models`);
  expect(none.status).toBe(401);
  expect(((await none.json()) as { error: { code: string } }).error.code).toBe('missing_api_key');
  const wrong = new OpenAI({ baseURL: `${s.apiUrl}/v1`, apiKey: 'sk-team-c', maxRetries: 0 });
  await expect(wrong.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
    status: 401,
    code: 'invalid_api_key',
  });
});

test('models are listed for an authenticated client', async () => {
  const models = await s.openai.models.list();
  expect(models.data.map((m) => m.id)).toEqual(['test-model']);
});

test("a key reads only its own runs: another key's run id is a 404 on every run route", async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'mine' }] });
  const a = await s.openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'private' }] });
  const get = (key: string, path: string, method = 'GET') =>
    fetch(`${s.apiUrl}/v1/runs/${a.id}${path}`, { method, headers: { authorization: `Bearer ${key}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) }, body: method === 'POST' ? '{}' : undefined });
  expect((await get('sk-team-a', '')).status).toBe(200);
  for (const [path, method] of [['', 'GET'], ['/events', 'GET'], ['/cancel', 'POST']] as const) {
    const r = await get('sk-team-b', path, method);
    expect([path, r.status]).toEqual([path, 404]);
    await r.body?.cancel();
  }
});
