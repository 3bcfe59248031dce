/**
 * The stream shapes edge gateways depend on, checked on mix2api directly with the real `openai`
 * client and raw SSE: a failure after the first byte is a chunk with a choice
 * (`finish_reason: "error"`) as well as the error object; usage rides on the finish chunk
 * when the client did not ask for a usage chunk; reasoning_tokens is always stated; keepalives
 * are `reasoning_content: ""` deltas; an `mcp` tool whose label a gateway dropped stands for
 * the model's own servers.
 */
import type OpenAI from 'openai';
import { APIError } from 'openai';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { sseEvents } from '../support/sse';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, apiKey: 'upstream-secret', retry: { maxAttempts: 1 } }],
      models: [
        { id: 'test-model', upstream: 'scripted', model: 'scripted' },
        { id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] },
      ],
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
      loop: { keepaliveSeconds: 1 },
    }),
  });
}, 60_000);
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => s.upstream.reset());

type Chunk = { choices: Array<{ delta: Record<string, unknown>; finish_reason: string | null }>; usage?: Record<string, unknown>; error?: { code: string | null } };

async function rawChunks(body: unknown): Promise<Chunk[]> {
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  const out: Chunk[] = [];
  for await (const e of sseEvents(res)) if (e.data !== '[DONE]') out.push(JSON.parse(e.data) as Chunk);
  return out;
}

test('a failure after the first byte is a chunk with a choice finished as "error" and the error; the openai client raises it', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'partial answer' }, { kind: 'fault', fault: 'drop' }] });
  const chunks = await rawChunks({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'x' }] });
  const last = chunks[chunks.length - 1]!;
  expect(last.choices).toHaveLength(1);
  expect(last.choices[0]!.finish_reason).toBe('error');
  expect(last.error?.code).toBe('upstream_connection');
  // Nothing before it claimed a clean finish; no model call finished, so no usage.
  expect(chunks.slice(0, -1).every((c) => c.choices.every((ch) => ch.finish_reason === null))).toBe(true);
  expect(last.usage).toBeUndefined();

  // After a finished tool step, the error chunk carries that step's usage.
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ id: 'call_1', name: 'everything__echo', arguments: '{"message":"m"}' }] }], usage: { prompt_tokens: 8, completion_tokens: 3 } },
    { steps: [{ kind: 'text', text: 'partial' }, { kind: 'fault', fault: 'drop' }] },
  );
  const afterTool = await rawChunks({ model: 'agent', stream: true, messages: [{ role: 'user', content: 'tool then break' }] });
  expect(afterTool[afterTool.length - 1]).toMatchObject({ choices: [{ finish_reason: 'error' }], usage: { prompt_tokens: 8, completion_tokens: 3, total_tokens: 11 }, error: { code: 'upstream_connection' } });

  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'partial answer' }, { kind: 'fault', fault: 'drop' }] });
  const stream = await s.openai.chat.completions.create({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'x' }] });
  let content = '';
  const read = async () => {
    for await (const c of stream) content += c.choices[0]?.delta.content ?? '';
  };
  const err = await read().then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(APIError);
  expect((err as APIError).code).toBe('upstream_connection');
  expect(content).toBe('partial answer');
});

test('without include_usage the finish chunk carries the usage, with reasoning_tokens stated; no extra chunk', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'hello there' }], usage: { prompt_tokens: 5, completion_tokens: 2 } });
  const chunks = await rawChunks({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const withUsage = chunks.filter((c) => c.usage);
  expect(withUsage).toHaveLength(1);
  expect(withUsage[0]).toBe(chunks[chunks.length - 1]);
  expect(withUsage[0]!.choices[0]!.finish_reason).toBe('stop');
  expect(withUsage[0]!.usage).toEqual({ prompt_tokens: 5, completion_tokens: 2, total_tokens: 7, completion_tokens_details: { reasoning_tokens: 0 } });

  // Asked for: one usage chunk with no choices, as OpenAI sends it, and none on the finish chunk.
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'hello there' }], usage: { prompt_tokens: 5, completion_tokens: 2 } });
  const asked = await rawChunks({ model: 'test-model', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] });
  expect(asked.filter((c) => c.usage).map((c) => c.choices.length)).toEqual([0]);
});

test('a non-streaming answer states reasoning_tokens too', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'ok' }], usage: { prompt_tokens: 3, completion_tokens: 1 } });
  const r = await s.openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] });
  expect(r.usage?.completion_tokens_details?.reasoning_tokens).toBe(0);
});

test('keepalives during a quiet step are empty reasoning_content deltas: no content, no reasoning text', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'a b', chunks: 2, delayMs: 2600 }] });
  const chunks = await rawChunks({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'slow' }] });
  const keepalives = chunks.filter((c) => c.choices[0]?.delta.reasoning_content === '');
  expect(keepalives.length).toBeGreaterThanOrEqual(1);
  for (const k of keepalives) expect(Object.keys(k.choices[0]!.delta)).toEqual(['reasoning_content']);
  expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('a b');
});

test('an mcp tool without server_label (a gateway rebuilt the body) stands for the model\'s own servers', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'done' }] });
  const r = await s.openai.chat.completions.create({
    model: 'agent',
    messages: [{ role: 'user', content: 'hi' }],
    // What one-api's re-serialisation leaves of {"type":"mcp","server_label":"everything"}.
    tools: [{ type: 'mcp', function: {} }] as unknown as OpenAI.ChatCompletionTool[],
  });
  expect(r.choices[0]!.message.content).toBe('done');
  const sent = (s.upstream.requests[0]!.body.tools as Array<{ function: { name: string } }>).map((t) => t.function.name);
  expect(sent).toContain('everything__echo');

  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'mcp', function: {} }] }),
  });
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: { code: string; param: string } }).error).toMatchObject({ code: 'mcp_server_label_missing', param: 'tools[0].server_label' });
});
