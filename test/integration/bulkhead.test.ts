/**
 * The per-upstream bulkhead: `maxConcurrent` calls in flight; a call over it waits up to
 * `queueSeconds` and then fails before anything was sent, as 503 `upstream_busy` with Retry-After.
 */
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => {
      const base = { baseURL: url, timeouts: { connectSeconds: 5, idleSeconds: 5, totalSeconds: 30 } };
      return {
        upstreams: [
          { ...base, name: 'narrow', maxConcurrent: 1, queueSeconds: 0.5, retry: { maxAttempts: 1 } },
          { ...base, name: 'queued', maxConcurrent: 1, queueSeconds: 10, retry: { maxAttempts: 1 } },
        ],
        models: [
          { id: 'narrow-model', upstream: 'narrow', model: 'scripted' },
          { id: 'queued-model', upstream: 'queued', model: 'scripted' },
        ],
      };
    },
  });
});
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => {
  s.upstream.reset();
  s.upstream.setDefault({ steps: [{ kind: 'text', text: 'a slow answer in eight pieces', chunks: 8, delayMs: 200 }] });
});

const post = (model: string, stream = false) =>
  fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }) });

async function holdStream(model: string) {
  const res = await post(model, true);
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  await reader.read();
  return async () => {
    while (!(await reader.read()).done);
  };
}

test('a call over maxConcurrent that finds no slot within queueSeconds is a 503 upstream_busy with Retry-After, and never reaches the upstream', async () => {
  const drain = await holdStream('narrow-model');
  const busy = await post('narrow-model');
  expect(busy.status).toBe(503);
  expect(busy.headers.get('retry-after')).toBe('1');
  const e = ((await busy.json()) as { error: { type: string; code: string; message: string } }).error;
  expect([e.type, e.code]).toEqual(['server_error', 'upstream_busy']);
  expect(e.message).toContain('maxConcurrent');
  expect(s.upstream.requests).toHaveLength(1);
  await drain();
  // With the slot free again, the next call goes through.
  const ok = await post('narrow-model');
  expect(ok.status).toBe(200);
}, 30_000);

test('a call that finds a slot within queueSeconds waits for it: the upstream never sees two at once', async () => {
  const drain = await holdStream('queued-model');
  const t0 = Date.now();
  const waiting = post('queued-model');
  await drain();
  const second = await waiting;
  expect(second.status).toBe(200);
  expect(((await second.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('a slow answer in eight pieces');
  expect(s.upstream.requests).toHaveLength(2);
  // The second request reached the upstream only after the first answer had streamed out.
  expect(s.upstream.requests[1]!.receivedAt - t0).toBeGreaterThanOrEqual(1000);
}, 30_000);
