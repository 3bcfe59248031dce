/**
 * The Responses API front door through the real `openai` client (`responses.create`,
 * `responses.stream`, `responses.retrieve`): text, a client function tool and its follow-up, a
 * server-side MCP loop, `previous_response_id`, usage, and refused fields, on the same run engine
 * as Chat Completions (each response is a run: `resp_<hex>` is `chatcmpl-<hex>`).
 */
import OpenAI from 'openai';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { sseEvents } from '../support/sse';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: () => ({
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
      models: [{ id: 'test-model', upstream: 'scripted', model: 'scripted' }],
      loop: { keepaliveSeconds: 1 },
    }),
  });
});
afterAll(async () => {
  await s?.stop();
});
beforeEach(() => s.upstream.reset());

type Msg = { role: string; content?: unknown; tool_calls?: Array<{ id: string; function: { name: string } }>; tool_call_id?: string };
const messagesOf = (i: number) => s.upstream.requests[i]!.body.messages as Msg[];

test('text: responses.create answers with an output_text message, usage in Responses terms, and the run behind it', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'Hello from a run.' }], usage: { prompt_tokens: 11, completion_tokens: 4 } });
  const r = await s.openai.responses.create({ model: 'test-model', instructions: 'Be brief.', input: 'Say hello' });
  expect(r.object).toBe('response');
  expect(r.status).toBe('completed');
  expect(r.id).toMatch(/^resp_[0-9a-f]{32}$/);
  expect(r.output_text).toBe('Hello from a run.');
  expect(r.output).toEqual([expect.objectContaining({ type: 'message', role: 'assistant', status: 'completed', content: [expect.objectContaining({ type: 'output_text', text: 'Hello from a run.' })] })]);
  expect(r.usage).toMatchObject({ input_tokens: 11, output_tokens: 4, total_tokens: 15, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } });
  expect(messagesOf(0)).toEqual([
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Say hello' },
  ]);
  // The same run, seen from the runs API and in Temporal.
  const runId = r.id.replace('resp_', 'chatcmpl-');
  await s.temporal.workflow.getHandle(runId).result();
  const run = await fetch(`${s.apiUrl}/v1/runs/${runId}`);
  expect(((await run.json()) as { status: string }).status).toBe('completed');
  const again = await s.openai.responses.retrieve(r.id);
  expect(again.output_text).toBe('Hello from a run.');
  expect(again.status).toBe('completed');
});

test('stream: responses.stream gets the Responses events in order with growing sequence numbers', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'one two three', chunks: 3, delayMs: 10 }], usage: { prompt_tokens: 5, completion_tokens: 3 } });
  const stream = s.openai.responses.stream({ model: 'test-model', input: [{ role: 'user', content: [{ type: 'input_text', text: 'count' }] }] });
  const types: string[] = [];
  const seqs: number[] = [];
  let deltas = '';
  for await (const e of stream) {
    types.push(e.type);
    seqs.push(e.sequence_number);
    if (e.type === 'response.output_text.delta') deltas += e.delta;
  }
  const final = await stream.finalResponse();
  expect(deltas).toBe('one two three');
  expect(final.output_text).toBe('one two three');
  expect(final.usage?.output_tokens).toBe(3);
  expect(types[0]).toBe('response.created');
  expect(types[1]).toBe('response.in_progress');
  expect(types.at(-1)).toBe('response.completed');
  expect(types).toEqual(expect.arrayContaining(['response.output_item.added', 'response.content_part.added', 'response.output_text.done', 'response.content_part.done', 'response.output_item.done']));
  expect(types.filter((t) => t === 'response.output_text.delta').length).toBe(3);
  expect(seqs).toEqual(seqs.map((_, i) => i));
});

test('stream failure: an `error` event keeps its type (as OpenAI sends it), then response.failed', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http400', message: 'bad prompt' }] });
  const res = await fetch(`${s.apiUrl}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'test-model', stream: true, input: 'fail' }) });
  const events: Array<{ type: string; code?: string; message?: string }> = [];
  for await (const e of sseEvents(res)) events.push(JSON.parse(e.data) as (typeof events)[number]);
  const types = events.map((e) => e.type);
  expect(types.slice(-2)).toEqual(['error', 'response.failed']);
  expect(events.at(-2)).toMatchObject({ type: 'error', message: expect.stringContaining('bad prompt') });
});

test('client function tool: a function_call item, then function_call_output with previous_response_id continues the conversation', async () => {
  const tools = [{ type: 'function' as const, name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, strict: false }];
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [{ id: 'call_w1', name: 'get_weather', arguments: '{"city":"Oslo"}' }] }] });
  const stream = s.openai.responses.stream({ model: 'test-model', input: 'Weather in Oslo?', tools });
  const argDeltas: string[] = [];
  stream.on('response.function_call_arguments.delta', (e) => argDeltas.push(e.delta));
  const first = await stream.finalResponse();
  const call = first.output.find((o) => o.type === 'function_call');
  expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', arguments: '{"city":"Oslo"}', status: 'completed' });
  expect(argDeltas.join('')).toBe('{"city":"Oslo"}');
  expect((s.upstream.requests[0]!.body.tools as Array<{ function: { name: string } }>).map((t) => t.function.name)).toEqual(['get_weather']);

  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'It is 3 degrees in Oslo.' }] });
  const second = await s.openai.responses.create({
    model: 'test-model',
    previous_response_id: first.id,
    input: [{ type: 'function_call_output', call_id: (call as { call_id: string }).call_id, output: '{"celsius":3}' }],
    tools,
  });
  expect(second.output_text).toBe('It is 3 degrees in Oslo.');
  expect(second.previous_response_id).toBe(first.id);
  const sent = messagesOf(1);
  expect(sent.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
  expect(sent[0]!.content).toBe('Weather in Oslo?');
  expect(sent[1]!.tool_calls?.[0]?.function.name).toBe('get_weather');
  // The upstream sees its own call id answered.
  expect(sent[2]!.tool_call_id).toBe(sent[1]!.tool_calls?.[0]?.id);
  expect(sent[2]!.content).toBe('{"celsius":3}');
});

test('mcp tool: a server-side loop on a configured server shows as an mcp_call item, then the answer', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"via responses"}' }] }], usage: { prompt_tokens: 20, completion_tokens: 5 } },
    { steps: [{ kind: 'text', text: 'The echo said: via responses' }], usage: { prompt_tokens: 30, completion_tokens: 6 } },
  );
  const stream = s.openai.responses.stream({ model: 'test-model', input: 'echo it', tools: [{ type: 'mcp', server_label: 'everything', require_approval: 'never' }] });
  const types: string[] = [];
  for await (const e of stream) types.push(e.type);
  const r = await stream.finalResponse();
  expect(r.output.map((o) => o.type)).toEqual(['mcp_call', 'message']);
  expect(r.output[0]).toMatchObject({ type: 'mcp_call', server_label: 'everything', name: 'echo', arguments: '{"message":"via responses"}', error: null });
  expect(String((r.output[0] as { output: string }).output)).toContain('via responses');
  expect(r.output_text).toBe('The echo said: via responses');
  expect(types).toEqual(expect.arrayContaining(['response.mcp_call.in_progress', 'response.mcp_call_arguments.done', 'response.mcp_call.completed']));
  // Usage summed over the run's two model calls.
  expect(r.usage).toMatchObject({ input_tokens: 50, output_tokens: 11 });
  expect(messagesOf(1).find((m) => m.role === 'tool')?.content).toContain('via responses');
});

test('keepalive: a stream quiet through a long tool call gets `keepalive` events within loop.keepaliveSeconds, numbered so resumes still line up', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__trigger-long-running-operation', arguments: '{"duration":4,"steps":1}' }] }] },
    { steps: [{ kind: 'text', text: 'done waiting' }] },
  );
  const res = await fetch(`${s.apiUrl}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', stream: true, input: 'wait', tools: [{ type: 'mcp', server_label: 'everything', require_approval: 'never' }] }),
  });
  const events: Array<{ type: string; sequence_number: number; at: number }> = [];
  for await (const e of sseEvents(res)) events.push({ ...(JSON.parse(e.data) as { type: string; sequence_number: number }), at: Date.now() });
  const keepalives = events.filter((e) => e.type === 'keepalive');
  expect(keepalives.length).toBeGreaterThanOrEqual(2);
  // No gap of more than keepaliveSeconds (plus a tick) without a byte.
  const gaps = events.slice(1).map((e, i) => e.at - events[i]!.at);
  expect(Math.max(...gaps)).toBeLessThan(1600);
  // Real events number 0, 1, 2, … as on any reading; a keepalive repeats the number before it.
  const real = events.filter((e) => e.type !== 'keepalive').map((e) => e.sequence_number);
  expect(real).toEqual(real.map((_, i) => i));
  for (const k of keepalives) expect(events[events.indexOf(k) - 1]!.sequence_number).toBe(k.sequence_number);
  expect(events[events.length - 1]!.type).toBe('response.completed');
  // The SDK takes them in its stride.
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__trigger-long-running-operation', arguments: '{"duration":3,"steps":1}' }] }] },
    { steps: [{ kind: 'text', text: 'done again' }] },
  );
  const stream = s.openai.responses.stream({ model: 'test-model', input: 'wait', tools: [{ type: 'mcp', server_label: 'everything', require_approval: 'never' }] });
  expect((await stream.finalResponse()).output_text).toBe('done again');
});

test('approval: the response ends at an mcp_approval_request; an mcp_approval_response continues the waiting run in the next response', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"approved echo"}' }] }], usage: { prompt_tokens: 9, completion_tokens: 2 } },
    { steps: [{ kind: 'text', text: 'Echoed after approval.' }], usage: { prompt_tokens: 14, completion_tokens: 3 } },
  );
  const tools = [{ type: 'mcp' as const, server_label: 'everything', require_approval: 'always' as const }];
  const first = await s.openai.responses.stream({ model: 'test-model', input: 'echo, with my approval', tools }).finalResponse();
  expect(first.status).toBe('completed');
  expect(first.output.map((o) => o.type)).toEqual(['mcp_approval_request']);
  const ask = first.output[0] as { id: string; server_label: string; name: string; arguments: string };
  expect(ask).toMatchObject({ server_label: 'everything', name: 'echo', arguments: '{"message":"approved echo"}' });
  expect(s.upstream.requests).toHaveLength(1); // the run waits; the tool has not run

  const second = await s.openai.responses.create({ model: 'test-model', previous_response_id: first.id, input: [{ type: 'mcp_approval_response', approval_request_id: ask.id, approve: true }], tools });
  expect(second.id).toBe(`${first.id}_1`);
  expect(second.output.map((o) => o.type)).toEqual(['mcp_call', 'message']);
  expect(String((second.output[0] as { output: string }).output)).toContain('approved echo');
  expect(second.output_text).toBe('Echoed after approval.');
  expect(second.usage).toMatchObject({ input_tokens: 23, output_tokens: 5 });
  expect(messagesOf(1).find((m) => m.role === 'tool')?.content).toContain('approved echo');
  // Both parts read back, and the decision cannot be made twice.
  expect((await s.openai.responses.retrieve(first.id)).output.map((o) => o.type)).toEqual(['mcp_approval_request']);
  expect((await s.openai.responses.retrieve(second.id)).output_text).toBe('Echoed after approval.');
  const twice = await s.openai.responses.create({ model: 'test-model', previous_response_id: first.id, input: [{ type: 'mcp_approval_response', approval_request_id: ask.id, approve: false }] }).catch((e: unknown) => e);
  expect((twice as InstanceType<typeof OpenAI.APIError>).status).toBeGreaterThanOrEqual(404);
  expect((twice as InstanceType<typeof OpenAI.APIError>).status).toBeLessThan(500);
});

test('previous_response_id: the next turn carries the earlier one; another key cannot continue it', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'Noted: blue.' }] });
  const first = await s.openai.responses.create({ model: 'test-model', input: 'My favourite colour is blue.' });
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'Blue.' }] });
  const second = await s.openai.responses.create({ model: 'test-model', input: 'What is it?', previous_response_id: first.id });
  expect(second.output_text).toBe('Blue.');
  expect(messagesOf(1)).toEqual([
    { role: 'user', content: 'My favourite colour is blue.' },
    expect.objectContaining({ role: 'assistant', content: 'Noted: blue.' }),
    { role: 'user', content: 'What is it?' },
  ]);
  const missing = await s.openai.responses.create({ model: 'test-model', input: 'x', previous_response_id: 'resp_' + '0'.repeat(32) }).catch((e: unknown) => e);
  expect(missing).toBeInstanceOf(OpenAI.APIError);
  expect((missing as InstanceType<typeof OpenAI.APIError>).status).toBe(404);
  expect((missing as InstanceType<typeof OpenAI.APIError>).code).toBe('previous_response_not_found');
});

test('background: the POST answers at once, the run goes on, retrieve sees it complete', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'done in the background', chunks: 4, delayMs: 100 }] });
  const r = await s.openai.responses.create({ model: 'test-model', input: 'work', background: true });
  expect(r.background).toBe(true);
  expect(r.status).toBe('in_progress');
  expect(r.output).toEqual([]);
  let seen = r;
  for (let i = 0; i < 100 && seen.status === 'in_progress'; i++) {
    await new Promise((ok) => setTimeout(ok, 100));
    seen = await s.openai.responses.retrieve(r.id);
  }
  expect(seen.status).toBe('completed');
  expect(seen.output_text).toBe('done in the background');
});

test('background stream: a client that disconnects resumes with starting_after on the same sequence, every event once', async () => {
  const words = Array.from({ length: 12 }, (_, i) => `w${i} `);
  s.upstream.enqueue({ steps: [{ kind: 'text', text: words.join(''), chunks: 12, delayMs: 80 }] });
  const first = await s.openai.responses.create({ model: 'test-model', input: 'stream it', stream: true, background: true });
  const seen: Array<{ type: string; sequence_number: number; delta?: string }> = [];
  let id = '';
  for await (const e of first) {
    seen.push(e as never);
    if (e.type === 'response.created') id = e.response.id;
    if (e.type === 'response.output_text.delta' && seen.filter((x) => x.type === 'response.output_text.delta').length === 3) break; // the client goes away
  }
  const lastSeq = seen.at(-1)!.sequence_number;
  const rest = await s.openai.responses.retrieve(id, { stream: true, starting_after: lastSeq });
  for await (const e of rest) seen.push(e as never);
  expect(seen.map((e) => e.sequence_number)).toEqual(seen.map((_, i) => i));
  expect(seen.at(-1)!.type).toBe('response.completed');
  expect(seen.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('')).toBe(words.join(''));
  // A reading from the start, once the run is over, is the same stream event for event.
  const replay: Array<{ type: string; sequence_number: number }> = [];
  for await (const e of await s.openai.responses.retrieve(id, { stream: true })) replay.push(e as never);
  expect(replay.map((e) => `${e.sequence_number} ${e.type}`)).toEqual(seen.map((e) => `${e.sequence_number} ${e.type}`));
});

test('cancel: POST /v1/responses/{id}/cancel stops a background run; the response ends cancelled', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'x'.repeat(40), chunks: 40, delayMs: 200 }] });
  const r = await s.openai.responses.create({ model: 'test-model', input: 'long', background: true });
  await new Promise((ok) => setTimeout(ok, 500));
  const cancelled = await s.openai.responses.cancel(r.id);
  expect(cancelled.status).toBe('cancelled');
  expect((await s.openai.responses.retrieve(r.id)).status).toBe('cancelled');
  const again = await s.openai.responses.cancel(r.id).catch((e: unknown) => e);
  expect((again as InstanceType<typeof OpenAI.APIError>).status).toBe(409);
});

test('refused: an unsupported field is a 400 naming it; a bad input is a 400 with its param', async () => {
  const post = (body: unknown) => fetch(`${s.apiUrl}/v1/responses`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const unknown = await post({ model: 'test-model', input: 'hi', truncation: 'auto' });
  expect(unknown.status).toBe(400);
  expect(await unknown.json()).toEqual({ error: { message: expect.stringContaining("'truncation'"), type: 'invalid_request_error', param: 'truncation', code: 'unsupported_parameter' } });
  const bad = await post({ model: 'test-model', input: [{ role: 'user', content: 7 }] });
  expect(bad.status).toBe(400);
  expect(((await bad.json()) as { error: { param: string } }).error.param).toMatch(/^input\[0\]/);
  const none = await fetch(`${s.apiUrl}/v1/responses/resp_${'f'.repeat(32)}`);
  expect(none.status).toBe(404);
  expect(s.upstream.requests).toHaveLength(0);
});
