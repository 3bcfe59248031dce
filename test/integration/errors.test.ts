/**
 * Failure paths end to end: retries Temporal owns (visible as attempts in workflow history),
 * Retry-After honoured, dropped and stalled streams, and every error with its status and
 * OpenAI-shaped body, before and after the first streamed byte.
 */
import OpenAI from 'openai';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => ({
      upstreams: [
        // Each test here fails on purpose, one after another: no breaker (it has its own tests).
        { name: 'scripted', baseURL: url, retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 }, timeouts: { connectSeconds: 5, idleSeconds: 3, totalSeconds: 60 }, breaker: { failures: 0 } },
        { name: 'impatient', baseURL: url, retry: { maxAttempts: 2, initialIntervalSeconds: 0.1, maxIntervalSeconds: 0.1 }, timeouts: { connectSeconds: 1, idleSeconds: 1, totalSeconds: 30 }, breaker: { failures: 0 } },
      ],
      models: [
        { id: 'test-model', upstream: 'scripted', model: 'scripted' },
        { id: 'impatient-model', upstream: 'impatient', model: 'scripted' },
      ],
      stream: { heartbeatSeconds: 2 }, // the default
    }),
  });
});
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => s.upstream.reset());

const ask = { model: 'test-model', messages: [{ role: 'user' as const, content: 'hi' }] };

async function post(body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: { error: Record<string, unknown> }; headers: Headers }> {
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as { error: Record<string, unknown> }, headers: res.headers };
}

async function attemptsOf(runId: string): Promise<number[]> {
  const history = await s.temporal.workflow.getHandle(runId).fetchHistory();
  return (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt!);
}

test('an upstream 500 is retried by Temporal and the second attempt answers', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http500' }] }, { steps: [{ kind: 'text', text: 'recovered' }] });
  const r = await s.openai.chat.completions.create(ask);
  expect(r.choices[0]!.message.content).toBe('recovered');
  expect(s.upstream.requests).toHaveLength(2);
  // Temporal records only the last start of a retried activity; it is attempt 2.
  expect(await attemptsOf(r.id)).toEqual([2]);
});

test('a 429 is retried after its Retry-After, not the default backoff', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http429', retryAfterSeconds: 2 }] }, { steps: [{ kind: 'text', text: 'after wait' }] });
  const r = await s.openai.chat.completions.create(ask);
  expect(r.choices[0]!.message.content).toBe('after wait');
  const [a, b] = s.upstream.requests;
  expect(b!.receivedAt - a!.receivedAt).toBeGreaterThanOrEqual(1900);
});

test('a 429 that persists becomes a 429 for the client', async () => {
  const limited = { steps: [{ kind: 'fault' as const, fault: 'http429' as const, retryAfterSeconds: 0 }] };
  s.upstream.enqueue(limited, limited, limited);
  const r = await post(ask);
  expect(r.status).toBe(429);
  expect(r.json.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
  expect(s.upstream.requests).toHaveLength(3);
  expect(r.headers.get('retry-after')).toBeNull();
});

test("a final 429 passes the upstream's Retry-After on to the client", async () => {
  const limited = { steps: [{ kind: 'fault' as const, fault: 'http429' as const, retryAfterSeconds: 1 }] };
  s.upstream.enqueue(limited, limited);
  const r = await post({ ...ask, model: 'impatient-model' });
  expect(r.status).toBe(429);
  expect(r.headers.get('retry-after')).toBe('1');
  expect(s.upstream.requests).toHaveLength(2);
});

test('5xx on every attempt → 502 with an OpenAI error body', async () => {
  const down = { steps: [{ kind: 'fault' as const, fault: 'http500' as const }] };
  s.upstream.enqueue(down, down, down);
  const r = await post({ ...ask, stream: true });
  expect(r.status).toBe(502);
  expect(r.json.error).toEqual({ message: expect.stringContaining('upstream scripted'), type: 'upstream_error', param: null, code: 'upstream_500' });
});

test('upstream 400 and 401 are not retried and keep the upstream message', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http400', message: 'context too long' }] });
  const bad = await post(ask);
  expect(bad.status).toBe(400);
  expect(bad.json.error.message).toContain('context too long');
  expect(bad.json.error.type).toBe('invalid_request_error');
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http401', message: 'bad upstream key' }] });
  const auth = await post(ask);
  expect(auth.status).toBe(401);
  expect(auth.json.error.message).toContain('bad upstream key');
  expect(s.upstream.requests).toHaveLength(2);
});

test('a stream dropped mid-way is retried and the client gets the whole answer once', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'text', text: 'The quick brown ' }, { kind: 'fault', fault: 'drop' }] },
    { steps: [{ kind: 'text', text: 'The quick brown fox jumps.' }] },
  );
  const stream = s.openai.chat.completions.stream({ ...ask });
  const final = await stream.finalChatCompletion();
  expect(final.choices[0]!.message.content).toBe('The quick brown fox jumps.');
  expect(s.upstream.requests).toHaveLength(2);
});

test('a stalled upstream times out, is retried, then answers 504', async () => {
  const stall = { steps: [{ kind: 'text' as const, text: 'thinking' }, { kind: 'fault' as const, fault: 'stall' as const }] };
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'stall' }] }, { steps: [{ kind: 'fault', fault: 'stall' }] });
  const r = await post({ ...ask, model: 'impatient-model' });
  expect(r.status).toBe(504);
  expect(r.json.error).toMatchObject({ type: 'timeout_error', code: 'upstream_timeout' });
  expect(s.upstream.requests).toHaveLength(2);

  // After the first byte: the stream ends with an error chunk and [DONE].
  s.upstream.enqueue(stall, stall);
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...ask, model: 'impatient-model', stream: true }),
  });
  expect(res.status).toBe(200);
  const text = await res.text();
  expect(text).toContain('"content":"thinking"');
  expect(text).toMatch(/"finish_reason":"error".*"error":\{"message":"[^"]*timeout[^"]*","type":"timeout_error"/);
  expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
  const client = new OpenAI({ baseURL: `${s.apiUrl}/v1`, apiKey: 'x', maxRetries: 0 });
  s.upstream.enqueue(stall, stall);
  const consume = async () => {
    for await (const _ of await client.chat.completions.create({ ...ask, model: 'impatient-model', stream: true })) void _;
  };
  await expect(consume()).rejects.toThrow(/timeout/);
});

test('bad input: malformed JSON, schema violations with their param, unknown model', async () => {
  const json = await post('{"model": "test-model", "messages": [');
  expect(json.status).toBe(400);
  expect(json.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', param: null });

  const missing = await post({ model: 'test-model' });
  expect(missing.status).toBe(400);
  expect(missing.json.error.param).toBe('messages');

  const role = await post({ model: 'test-model', messages: [{ role: 'wizard', content: 'x' }] });
  expect(role.status).toBe(400);
  expect(role.json.error.param).toBe('messages[0].role');

  const n = await post({ ...ask, n: 3 });
  expect(n.status).toBe(400);
  expect(n.json.error.param).toBe('n');

  const model = await post({ ...ask, model: 'gpt-nope' });
  expect(model.status).toBe(404);
  expect(model.json.error).toMatchObject({ code: 'model_not_found', param: 'model', type: 'invalid_request_error' });
  expect(s.upstream.requests).toHaveLength(0);
});

test('a 2,000-token answer stays a small workflow history', async () => {
  const words = Array.from({ length: 2000 }, (_, i) => `w${i}`).join(' ');
  // ~10 s of streaming at 200 tokens/s, with the default durable batching.
  s.upstream.enqueue({ steps: [{ kind: 'text', text: words, chunks: 2000, delayMs: 5 }] });
  const stream = s.openai.chat.completions.stream({ ...ask });
  const final = await stream.finalChatCompletion();
  expect(final.choices[0]!.message.content).toBe(words);
  const history = await s.temporal.workflow.getHandle(final.id).fetchHistory();
  const events = history.events ?? [];
  const signals = events.filter((e) => e.workflowExecutionSignaledEventAttributes).length;
  console.log(`2,000-token answer: ${events.length} history events, ${signals} log batches`);
  expect(events.length).toBeLessThan(150);
  expect(signals).toBeLessThan(35);
});

test('a body over server.maxRequestBytes is a 413, before anything reaches Temporal', async () => {
  const big = await post({ ...ask, messages: [{ role: 'user', content: 'x'.repeat(1600 * 1024) }] });
  expect(big.status).toBe(413);
  expect(big.json.error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' });
});

test('unknown routes answer 404 in the OpenAI error shape', async () => {
  const res = await fetch(`${s.apiUrl}/v1/nope`);
  expect(res.status).toBe(404);
  expect(await res.json()).toEqual({ error: { message: 'Unknown request URL: GET /v1/nope', type: 'invalid_request_error', param: null, code: 'unknown_url' } });
});
