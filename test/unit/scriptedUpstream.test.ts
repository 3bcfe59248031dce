// Drives the scripted upstream with the real `openai` client to prove it speaks OpenAI's wire format.
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { startScriptedUpstream, type ScriptedUpstream } from '../support/scriptedUpstream';

const messages = [{ role: 'user' as const, content: 'hi' }];
let upstream: ScriptedUpstream;
let client: OpenAI;

beforeAll(async () => {
  upstream = await startScriptedUpstream();
  client = new OpenAI({ baseURL: upstream.url, apiKey: 'test-key', maxRetries: 0, timeout: 10_000 });
});
afterAll(() => upstream.close());
beforeEach(() => upstream.reset());

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject');
}

describe('scripted upstream', () => {
  it('streams text as separate, incrementally flushed deltas that the client assembles', async () => {
    upstream.enqueue({ steps: [{ kind: 'text', text: 'Hello there, world!', delayMs: 40 }] });
    const stream = client.chat.completions.stream({ model: 'gpt-test', messages });
    const arrivals: Array<{ at: number; chunk: ChatCompletionChunk }> = [];
    stream.on('chunk', (chunk) => arrivals.push({ at: Date.now(), chunk }));
    const final = await stream.finalChatCompletion();

    expect(final.choices[0]?.message.content).toBe('Hello there, world!');
    expect(final.choices[0]?.message.role).toBe('assistant');
    expect(final.choices[0]?.finish_reason).toBe('stop');
    expect(final.model).toBe('gpt-test');
    expect(final.id).toMatch(/^chatcmpl-/);
    expect(arrivals.map((a) => a.chunk.choices[0]?.delta.content)).toEqual(['Hello ', 'there, ', 'world!']);
    expect(arrivals[0]?.chunk.choices[0]?.delta.role).toBe('assistant');
    expect(arrivals[1]?.chunk.choices[0]?.delta.role).toBeUndefined();
    expect(arrivals.map((a) => a.chunk.choices[0]?.finish_reason)).toEqual([null, null, 'stop']);
    expect(arrivals.every((a) => a.chunk.object === 'chat.completion.chunk')).toBe(true);
    // Delays are honoured and each chunk reaches the client on its own (not buffered until the end).
    expect(arrivals[2]!.at - arrivals[0]!.at).toBeGreaterThanOrEqual(60);
  });

  it('splits text into an explicit number of chunks and streams reasoning_content', async () => {
    upstream.enqueue({ steps: [{ kind: 'reasoning', text: 'think hard', chunks: 3 }, { kind: 'text', text: 'abcdefgh', chunks: 4 }] });
    const stream = await client.chat.completions.create({ model: 'm', messages, stream: true });
    const reasoning: string[] = [];
    const content: string[] = [];
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      if (delta?.reasoning_content) reasoning.push(delta.reasoning_content);
      if (delta?.content) content.push(delta.content);
    }
    expect(reasoning).toHaveLength(3);
    expect(reasoning.join('')).toBe('think hard');
    expect(content).toEqual(['ab', 'cd', 'ef', 'gh']);
  });

  it('streams parallel tool calls with split arguments that the client assembles', async () => {
    const args0 = JSON.stringify({ path: '/tmp/a.txt', recursive: true });
    const args1 = JSON.stringify({ query: 'weather in Paris', limit: 3 });
    upstream.enqueue({
      steps: [{ kind: 'toolCalls', argChunks: 3, calls: [
        { id: 'call_a', name: 'read_file', arguments: args0 },
        { name: 'search', arguments: args1 },
      ] }],
    });
    const stream = client.chat.completions.stream({ model: 'm', messages });
    const chunks: ChatCompletionChunk[] = [];
    stream.on('chunk', (c) => chunks.push(c));
    const final = await stream.finalChatCompletion();

    const calls = final.choices[0]?.message.tool_calls ?? [];
    expect(final.choices[0]?.finish_reason).toBe('tool_calls');
    expect(calls).toHaveLength(2);
    const [first, second] = calls.map((c) => (c.type === 'function' ? c : undefined));
    expect(first).toMatchObject({ id: 'call_a', type: 'function', function: { name: 'read_file' } });
    expect(second?.id).toMatch(/^call_/);
    expect(second?.function.name).toBe('search');
    expect(JSON.parse(first!.function.arguments)).toEqual({ path: '/tmp/a.txt', recursive: true });
    expect(JSON.parse(second!.function.arguments)).toEqual({ query: 'weather in Paris', limit: 3 });
    // Wire rules: stable index, and id/type/name only on the first delta of each call; 1 header + 3 argument deltas each.
    const deltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    expect(deltas.map((d) => d.index)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect(deltas.filter((d) => d.id !== undefined).map((d) => d.index)).toEqual([0, 1]);
    expect(deltas.filter((d) => d.function?.name !== undefined)).toHaveLength(2);
    expect(deltas.filter((d) => d.type !== undefined)).toHaveLength(2);
  });

  it('sends a final usage chunk only when stream_options.include_usage is set', async () => {
    upstream.enqueue(
      { steps: [{ kind: 'text', text: 'counted' }], usage: { prompt_tokens: 11, completion_tokens: 7 } },
      { steps: [{ kind: 'text', text: 'uncounted' }] },
    );
    const withUsage: ChatCompletionChunk[] = [];
    for await (const c of await client.chat.completions.create({ model: 'm', messages, stream: true, stream_options: { include_usage: true } })) {
      withUsage.push(c);
    }
    const last = withUsage.at(-1);
    expect(last?.choices).toEqual([]);
    expect(last?.usage).toEqual({ prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 });
    expect(withUsage.slice(0, -1).every((c) => c.usage === null)).toBe(true);

    const without: ChatCompletionChunk[] = [];
    for await (const c of await client.chat.completions.create({ model: 'm', messages, stream: true })) without.push(c);
    expect(without.length).toBeGreaterThan(0);
    expect(without.every((c) => c.choices.length === 1 && c.usage === undefined)).toBe(true);
  });

  it('answers a 429 with Retry-After and an OpenAI error body before any byte', async () => {
    upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http429', retryAfterSeconds: 7, message: 'slow down' }] });
    const err = await rejection(client.chat.completions.create({ model: 'm', messages, stream: true }));
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const apiErr = err as InstanceType<typeof OpenAI.APIError>;
    expect(apiErr.status).toBe(429);
    expect(apiErr.headers?.get('retry-after')).toBe('7');
    expect(apiErr.code).toBe('rate_limit_exceeded');
    expect(apiErr.message).toContain('slow down');
  });

  it.each([
    ['http400', 400, OpenAI.BadRequestError],
    ['http401', 401, OpenAI.AuthenticationError],
    ['http403', 403, OpenAI.PermissionDeniedError],
    ['http500', 500, OpenAI.InternalServerError],
  ] as const)('maps %s to status %i for non-streaming requests', async (fault, status, ErrorClass) => {
    upstream.enqueue({ steps: [{ kind: 'text', text: 'ignored' }, { kind: 'fault', fault }] });
    const err = await rejection(client.chat.completions.create({ model: 'm', messages }));
    expect(err).toBeInstanceOf(ErrorClass);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(status);
  });

  it("'drop' after streamed steps destroys the socket mid-stream and the client throws", async () => {
    upstream.enqueue({ steps: [{ kind: 'text', text: 'partial answer' }, { kind: 'fault', fault: 'drop' }] });
    const stream = client.chat.completions.stream({ model: 'm', messages });
    let received = '';
    stream.on('content', (delta) => { received += delta; });
    const err = await rejection(stream.finalChatCompletion());
    // A truncated chunked body ('terminated'), not a clean end that merely lacks finish_reason.
    expect(String(err)).toMatch(/terminated/);
    expect(received).toBe('partial answer');
    expect(upstream.requests).toHaveLength(1);
  });

  it("'drop' as the first step is a connection error", async () => {
    upstream.enqueue({ steps: [{ kind: 'fault', fault: 'drop' }] });
    const err = await rejection(client.chat.completions.create({ model: 'm', messages }));
    expect(err).toBeInstanceOf(OpenAI.APIConnectionError);
  });

  it("'stall' holds the stream open until close(), which then ends it", async () => {
    const own = await startScriptedUpstream();
    const c = new OpenAI({ baseURL: own.url, apiKey: 'k', maxRetries: 0 });
    own.enqueue({ steps: [{ kind: 'text', text: 'one two' }, { kind: 'fault', fault: 'stall' }] });
    const stream = c.chat.completions.stream({ model: 'm', messages });
    let received = '';
    stream.on('content', (d) => { received += d; });
    let settled = false;
    const outcome = rejection(stream.finalChatCompletion()).finally(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 200));
    expect(received).toBe('one two');
    expect(settled).toBe(false);
    const t0 = Date.now();
    await own.close();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(String(await outcome)).toMatch(/terminated/);
  });

  it('returns a full chat.completion for non-streaming requests', async () => {
    upstream.enqueue({
      model: 'scripted-model',
      steps: [
        { kind: 'reasoning', text: 'Need the file.' },
        { kind: 'text', text: 'Reading it now.' },
        { kind: 'toolCalls', calls: [{ id: 'call_1', name: 'read_file', arguments: '{"path":"a"}' }] },
      ],
    });
    const res = await client.chat.completions.create({ model: 'm', messages });
    expect(res.object).toBe('chat.completion');
    expect(res.id).toMatch(/^chatcmpl-/);
    expect(res.model).toBe('scripted-model');
    const choice = res.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message).toMatchObject({
      role: 'assistant',
      content: 'Reading it now.',
      reasoning_content: 'Need the file.',
      tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'read_file', arguments: '{"path":"a"}' } }],
    });
    expect(res.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);
  });

  it('records requests, consumes scripts FIFO, then falls back to the default', async () => {
    upstream.enqueue({ steps: [{ kind: 'text', text: 'first' }] }, { steps: [{ kind: 'text', text: 'second' }] });
    const replies: Array<string | null | undefined> = [];
    for (let i = 0; i < 3; i++) {
      const res = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: `q${i}` }] }, { headers: { 'x-trace': `t${i}` } });
      replies.push(res.choices[0]?.message.content);
    }
    expect(replies).toEqual(['first', 'second', 'ok']);
    expect(upstream.requests).toHaveLength(3);
    const [req0] = upstream.requests;
    expect(req0?.path).toBe('/v1/chat/completions');
    expect(req0?.headers.authorization).toBe('Bearer test-key');
    expect(req0?.headers['x-trace']).toBe('t0');
    expect(req0?.body).toMatchObject({ model: 'm', messages: [{ role: 'user', content: 'q0' }] });
    expect(upstream.requests.map((r) => r.receivedAt)).toEqual([...upstream.requests.map((r) => r.receivedAt)].sort());
  });

  it('lets a default function build the reply from the recorded conversation', async () => {
    upstream.setDefault((req) => {
      const msgs = req.body.messages as Array<{ role: string; content?: string }>;
      const tool = msgs.find((m) => m.role === 'tool');
      return tool
        ? { steps: [{ kind: 'text', text: `tool said: ${tool.content}` }] }
        : { steps: [{ kind: 'toolCalls', calls: [{ id: 'call_x', name: 'lookup', arguments: '{}' }] }] };
    });
    const turn1 = await client.chat.completions.stream({ model: 'm', messages }).finalChatCompletion();
    const call = turn1.choices[0]?.message.tool_calls?.[0];
    expect(call?.id).toBe('call_x');
    const turn2 = await client.chat.completions.create({
      model: 'm',
      messages: [...messages, turn1.choices[0]!.message, { role: 'tool', tool_call_id: 'call_x', content: '42' }],
    });
    expect(turn2.choices[0]?.message.content).toBe('tool said: 42');
  });

  it('rejects malformed JSON with an OpenAI-shaped 400 and lists the scripted model', async () => {
    const res = await fetch(`${upstream.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: null } });
    expect(upstream.requests).toHaveLength(0);
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['scripted']);
  });
});
