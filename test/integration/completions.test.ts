/**
 * The walking skeleton against a real Temporal dev server: non-streaming and streaming
 * answers, include_usage, parallel client tool calls, and the run as a workflow.
 */
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack();
});
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => s.upstream.reset());

test('non-streaming answer comes back as a chat.completion and the run is a completed workflow', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'Paris is the capital of France.' }], usage: { prompt_tokens: 11, completion_tokens: 7 } });
  const r = await s.openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'Capital of France?' }] });
  expect(r.object).toBe('chat.completion');
  expect(r.id).toMatch(/^chatcmpl-/);
  expect(r.model).toBe('test-model');
  expect(r.choices[0]!.message.content).toBe('Paris is the capital of France.');
  expect(r.choices[0]!.finish_reason).toBe('stop');
  expect(r.usage).toMatchObject({ prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 });
  const desc = await s.temporal.workflow.getHandle(r.id).describe();
  expect(desc.status.name).toBe('COMPLETED');
  expect(desc.type).toBe('chatCompletionWorkflow');
  // The upstream got the upstream model name and our upstream key, never the client's.
  const sent = s.upstream.requests[0]!;
  expect(sent.body.model).toBe('scripted');
  expect(sent.headers.authorization).toBe('Bearer upstream-secret');
  expect(sent.body.messages).toEqual([{ role: 'user', content: 'Capital of France?' }]);
});

test('unknown request fields pass through to the upstream', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'ok' }] });
  await s.openai.chat.completions.create({
    model: 'test-model',
    messages: [{ role: 'user', content: 'hi' }],
    temperature: 0.2,
    // @ts-expect-error: a vendor field the openai types do not know
    top_k: 7,
  });
  expect(s.upstream.requests[0]!.body).toMatchObject({ temperature: 0.2, top_k: 7 });
});

test('streaming answer is read by the openai client and carries step:seq event ids', async () => {
  const text = 'one two three four five six seven eight nine ten';
  s.upstream.enqueue({ steps: [{ kind: 'text', text, delayMs: 10 }] });
  const stream = s.openai.chat.completions.stream({ model: 'test-model', messages: [{ role: 'user', content: 'count' }] });
  const final = await stream.finalChatCompletion();
  expect(final.choices[0]!.message.content).toBe(text);
  expect(final.choices[0]!.finish_reason).toBe('stop');

  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'a b c' }] });
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'x' }] }),
  });
  expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
  expect(res.headers.get('x-run-id')).toMatch(/^chatcmpl-/);
  const raw = await res.text();
  const ids = [...raw.matchAll(/^id: (\d+:\d+)$/gm)].map((m) => m[1]);
  expect(ids.slice(0, 3)).toEqual(['0:0', '0:1', '0:2']);
  expect(raw.trimEnd().endsWith('data: [DONE]')).toBe(true);
});

test('include_usage adds one final usage chunk with empty choices', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'hello there' }], usage: { prompt_tokens: 5, completion_tokens: 2 } });
  const chunks = [];
  const stream = await s.openai.chat.completions.create({
    model: 'test-model',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  for await (const c of stream) chunks.push(c);
  const withUsage = chunks.filter((c) => c.usage);
  expect(withUsage).toHaveLength(1);
  expect(withUsage[0]!.choices).toEqual([]);
  expect(withUsage[0]!.usage).toMatchObject({ prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 });
  expect(chunks[chunks.length - 1]).toBe(withUsage[0]);
});

test('parallel client tool calls pass through with OpenAI delta rules', async () => {
  s.upstream.enqueue({
    steps: [
      {
        kind: 'toolCalls',
        argChunks: 3,
        calls: [
          { id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}' },
          { id: 'call_b', name: 'get_time', arguments: '{"tz":"Europe/Paris"}' },
        ],
      },
    ],
  });
  const tools = [
    { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
    { type: 'function' as const, function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } },
  ];
  const stream = await s.openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'weather and time' }], tools, stream: true });
  const deltas: Array<{ index: number; id?: string; type?: string; function?: { name?: string; arguments?: string } }> = [];
  let finish: string | null = null;
  for await (const c of stream) {
    for (const tc of c.choices[0]?.delta.tool_calls ?? []) deltas.push(tc);
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  expect(finish).toBe('tool_calls');
  for (const idx of [0, 1]) {
    const mine = deltas.filter((d) => d.index === idx);
    expect(mine[0]!.id).toBeDefined();
    expect(mine[0]!.function?.name).toBeDefined();
    expect(mine.slice(1).every((d) => d.id === undefined && d.function?.name === undefined && d.type === undefined)).toBe(true);
  }
  expect(JSON.parse(deltas.filter((d) => d.index === 0).map((d) => d.function?.arguments ?? '').join(''))).toEqual({ city: 'Paris' });
  expect(s.upstream.requests[0]!.body.tools).toEqual(tools);

  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [{ id: 'call_c', name: 'get_weather', arguments: '{"city":"Rome"}' }] }] });
  const r = await s.openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'w' }], tools });
  expect(r.choices[0]!.finish_reason).toBe('tool_calls');
  expect(r.choices[0]!.message.tool_calls).toEqual([{ id: 'call_c', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } }]);
});

test('health and readiness probes', async () => {
  expect(await (await fetch(`${s.apiUrl}/healthz`)).json()).toEqual({ status: 'ok' });
  const ready = await fetch(`${s.apiUrl}/readyz`);
  expect(ready.status).toBe(200);
  expect(await ready.json()).toEqual({
    status: 'ready',
    checks: { temporal: true, workers: true },
    upstreams: { scripted: { api: 'openai-chat', breaker: { state: 'closed', consecutiveFailures: 0 }, inFlight: 0 } },
  });
});
