/**
 * GET /metrics after real runs: requests by route, model and status; time to first token; model
 * calls and retries by upstream and outcome; tool calls by server, tool and outcome with their
 * durations; approvals; streams and runs back to zero. Every label value is bounded.
 */
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { scrape, valueOf } from '../support/prometheus';
import { sseEvents } from '../support/sse';
import { startStack, type Stack } from '../support/stack';
import { waitFor } from '../support/waitFor';

let s: Stack;

beforeAll(async () => {
  s = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 }, breaker: { failures: 0 } }],
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio']), { ...stdioServer('guarded', EVERYTHING, ['stdio']), approval: { tools: ['get-sum'] } }],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything', 'guarded'] }],
    }),
  });
});
afterAll(() => s?.stop());

const post = (path: string, body: unknown) => fetch(`${s.apiUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('the families show what the runs did, with bounded labels', async () => {
  // A tool loop whose first model call fails once (a retry), then a stream, then an approval.
  s.upstream.enqueue(
    { steps: [{ kind: 'fault', fault: 'http500' }] },
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"counted"}' }] }], usage: { prompt_tokens: 11, completion_tokens: 3 } },
    { steps: [{ kind: 'text', text: 'looped' }], usage: { prompt_tokens: 20, completion_tokens: 2 } },
  );
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'echo' }] });
  expect(r.choices[0]!.message.content).toBe('looped');

  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'streamed', delayMs: 20 }] });
  const streamed = await s.openai.chat.completions.stream({ model: 'agent', messages: [{ role: 'user', content: 'stream' }] }).finalChatCompletion();
  expect(streamed.choices[0]!.message.content).toBe('streamed');

  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [{ name: 'guarded__get-sum', arguments: '{"a":1,"b":2}' }] }] }, { steps: [{ kind: 'text', text: 'summed' }] });
  const res = await post('/v1/chat/completions', { model: 'agent', stream: true, messages: [{ role: 'user', content: 'sum' }] });
  const runId = res.headers.get('x-run-id')!;
  const done = (async () => {
    for await (const _ of sseEvents(res)) void _;
  })();
  const pending = await waitFor(async () => {
    const m = await scrape(`${s.apiUrl}/metrics`);
    return valueOf(m.samples, 'mix2api_approvals_waiting') === 1 ? m : null;
  });
  expect(valueOf(pending.samples, 'mix2api_active_streams')).toBe(1);
  expect(valueOf(pending.samples, 'mix2api_active_runs')).toBe(1);
  const run = (await (await fetch(`${s.apiUrl}/v1/runs/${runId}`)).json()) as { pending_approvals: Array<{ approvalId: string }> };
  expect((await post(`/v1/runs/${runId}/approvals/${run.pending_approvals[0]!.approvalId}`, { approve: true })).status).toBe(200);
  await done;

  // A client's invented model name and a bad body.
  expect((await post('/v1/chat/completions', { model: 'made-up-by-a-client', messages: [{ role: 'user', content: 'x' }] })).status).toBe(404);
  expect((await post('/v1/chat/completions', { model: 'agent' })).status).toBe(400);

  const m = await waitFor(async () => {
    const got = await scrape(`${s.apiUrl}/metrics`);
    return valueOf(got.samples, 'mix2api_active_streams') === 0 && valueOf(got.samples, 'mix2api_active_runs') === 0 ? got : null;
  });
  expect(m.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  const v = (name: string, labels: Record<string, string> = {}) => valueOf(m.samples, name, labels);
  const chat = { route: '/v1/chat/completions' };
  expect(v('mix2api_http_requests_total', { ...chat, model: 'agent', status: '200' })).toBe(3);
  expect(v('mix2api_http_requests_total', { ...chat, model: 'other', status: '404' })).toBe(1);
  expect(v('mix2api_http_requests_total', { ...chat, model: 'agent', status: '400' })).toBe(1);
  expect(v('mix2api_http_requests_total', { route: '/v1/runs/{id}', status: '200' })).toBe(1);
  expect(v('mix2api_http_requests_total', { route: '/v1/runs/{id}/approvals/{approval_id}', status: '200' })).toBe(1);
  expect(v('mix2api_http_request_duration_seconds_count', { ...chat, stream: 'true' })).toBe(2);
  expect(v('mix2api_time_to_first_token_seconds_count', { model: 'agent' })).toBe(2);

  const up = { upstream: 'scripted' };
  expect(v('mix2api_model_calls_total', { ...up, outcome: 'ok' })).toBe(5);
  expect(v('mix2api_model_calls_total', { ...up, outcome: 'retryable_error' })).toBe(1);
  expect(v('mix2api_model_retries_total', up)).toBe(1);
  expect(v('mix2api_model_time_to_first_token_seconds_count', up)).toBe(5);
  expect(v('mix2api_model_tokens_total', { ...up, type: 'prompt' })).toBeGreaterThanOrEqual(31);
  expect(v('mix2api_tool_calls_total', { server: 'everything', tool: 'echo', outcome: 'ok' })).toBe(1);
  expect(v('mix2api_tool_calls_total', { server: 'guarded', tool: 'get-sum', outcome: 'ok' })).toBe(1);
  expect(v('mix2api_tool_call_duration_seconds_count', { server: 'everything', tool: 'echo' })).toBe(1);
  expect(v('mix2api_approvals_total', { decision: 'approved' })).toBe(1);
  expect(v('mix2api_approvals_waiting')).toBe(0);

  // Bounded: no run ids, no client-invented names, in any label.
  const values = m.samples.flatMap((x) => Object.values(x.labels));
  expect(values.filter((x) => /chatcmpl-|made-up/.test(x))).toEqual([]);
  // Probes and scrapes are not requests of the API.
  expect(m.samples.filter((x) => x.name === 'mix2api_http_requests_total' && x.labels.route === '/metrics')).toEqual([]);
});

test('metrics.enabled: false takes /metrics away', async () => {
  const off = await startStack({ config: () => ({ metrics: { enabled: false } }) });
  try {
    expect((await fetch(`${off.apiUrl}/metrics`)).status).toBe(404);
  } finally {
    await off.stop();
  }
});
