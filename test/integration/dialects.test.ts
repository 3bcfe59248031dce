/**
 * Each upstream dialect end to end: the real openai client northbound, mix2api translating,
 * the scripted upstream answering in Anthropic's, Gemini's or the Responses API's own wire
 * format (the formats their SDKs read, see test/unit/scriptedDialects). Per dialect: streamed
 * text and reasoning, streamed parallel tool calls, a server-side MCP loop, usage, and each
 * error class with the status and code the client gets.
 */
import OpenAI from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import type { RecordedRequest, Script } from '../support/scriptedUpstream';
import { geminiSignature } from '../support/scriptedDialects';
import { startStack, type Stack } from '../support/stack';

const DIALECTS = [
  { api: 'openai-chat', path: '/v1/chat/completions' },
  { api: 'anthropic-messages', path: '/v1/messages' },
  { api: 'gemini', path: '/v1beta/models/up-model:streamGenerateContent' },
  { api: 'openai-responses', path: '/v1/responses' },
] as const;
type Api = (typeof DIALECTS)[number]['api'];

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => {
      const root = url.replace(/\/v1$/, '');
      return {
        upstreams: DIALECTS.map((d) => ({
          name: d.api,
          api: d.api,
          baseURL: d.api === 'anthropic-messages' || d.api === 'gemini' ? root : url,
          apiKey: 'upstream-key',
          retry: { maxAttempts: 1 },
          breaker: { failures: 0 },
        })),
        mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
        models: DIALECTS.flatMap((d) => [
          { id: `plain-${d.api}`, upstream: d.api, model: 'up-model' },
          { id: `agent-${d.api}`, upstream: d.api, model: 'up-model', mcpServers: ['everything'] },
        ]),
      };
    },
  });
});
afterAll(() => s?.stop());
beforeEach(() => s.upstream.reset());

const user = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'hello' }];
const weatherTool = { type: 'function' as const, function: { name: 'weather', description: 'Weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
const clockTool = { type: 'function' as const, function: { name: 'clock', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } };

async function collect(model: string, extra: Record<string, unknown> = {}) {
  const stream = await s.openai.chat.completions.create({ model, messages: user, stream: true, stream_options: { include_usage: true }, ...extra } as OpenAI.ChatCompletionCreateParamsStreaming);
  const chunks: ChatCompletionChunk[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

/** The tool results of an upstream request, as text, in whichever dialect it was. */
function toolResults(api: Api, r: RecordedRequest): string {
  const b = r.body as Record<string, unknown>;
  if (api === 'openai-chat') return JSON.stringify((b.messages as Array<{ role: string }>).filter((m) => m.role === 'tool'));
  if (api === 'anthropic-messages') return JSON.stringify((b.messages as Array<{ content: unknown }>).flatMap((m) => (Array.isArray(m.content) ? m.content : [])).filter((c: { type?: string }) => c.type === 'tool_result'));
  if (api === 'gemini') return JSON.stringify((b.contents as Array<{ parts: Array<Record<string, unknown>> }>).flatMap((c) => c.parts).filter((p) => p.functionResponse));
  return JSON.stringify((b.input as Array<{ type?: string }>).filter((i) => i.type === 'function_call_output'));
}

describe.each(DIALECTS)('$api', ({ api, path }) => {
  test('streams reasoning and text, with finish_reason and usage; the upstream got its own request shape', async () => {
    s.upstream.enqueue({ steps: [{ kind: 'reasoning', text: 'short thought' }, { kind: 'text', text: 'Hello from upstream.' }], usage: { prompt_tokens: 12, completion_tokens: 7 } });
    const chunks = await collect(`plain-${api}`, { temperature: 0.5, max_tokens: 50 });
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    const reasoning = chunks.map((c) => (c.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? '').join('');
    expect(text).toBe('Hello from upstream.');
    expect(reasoning).toContain('short thought');
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks.at(-1)!.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 });
    const req = s.upstream.requests[0]!;
    expect(req.path).toBe(path);
    const b = req.body as Record<string, unknown>;
    if (api === 'anthropic-messages') {
      expect(req.headers['x-api-key']).toBe('upstream-key');
      expect(req.headers['anthropic-version']).toBe('2023-06-01');
      expect(b).toMatchObject({ model: 'up-model', max_tokens: 50, temperature: 0.5, stream: true, messages: [{ role: 'user', content: [{ type: 'text', text: 'hello' }] }] });
      expect(b.system).toEqual([{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }]);
    } else if (api === 'gemini') {
      expect(req.headers['x-goog-api-key']).toBe('upstream-key');
      expect(b).toEqual({ contents: [{ role: 'user', parts: [{ text: 'hello' }] }], systemInstruction: { parts: [{ text: 'Be brief.' }] }, generationConfig: { temperature: 0.5, maxOutputTokens: 50 } });
    } else if (api === 'openai-responses') {
      expect(req.headers.authorization).toBe('Bearer upstream-key');
      expect(b).toMatchObject({ model: 'up-model', instructions: 'Be brief.', input: [{ role: 'user', content: [{ type: 'input_text', text: 'hello' }] }], max_output_tokens: 50, store: false, stream: true });
    } else {
      expect(b).toMatchObject({ model: 'up-model', messages: user, stream: true });
    }
  });

  test('parallel tool calls stream as tool_calls deltas with stable index, id and name on the first', async () => {
    s.upstream.enqueue({
      steps: [{ kind: 'toolCalls', calls: [{ name: 'weather', arguments: '{"city":"Paris"}' }, { name: 'clock', arguments: '{"tz":"UTC"}' }], argChunks: 3 }],
    });
    const chunks = await collect(`plain-${api}`, { tools: [weatherTool, clockTool], tool_choice: 'auto' });
    const deltas = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    const firsts = deltas.filter((d) => d.id);
    expect(firsts.map((d) => [d.index, d.function?.name, d.type])).toEqual([
      [0, 'weather', 'function'],
      [1, 'clock', 'function'],
    ]);
    expect(new Set(firsts.map((d) => d.id)).size).toBe(2);
    const args = [0, 1].map((i) => deltas.filter((d) => d.index === i).map((d) => d.function?.arguments ?? '').join(''));
    expect(args.map((a) => JSON.parse(a))).toEqual([{ city: 'Paris' }, { tz: 'UTC' }]);
    expect(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason).toBe('tool_calls');
    // The tools went upstream in the dialect's own form.
    const b = s.upstream.requests[0]!.body as Record<string, unknown>;
    const names = api === 'gemini' ? (b.tools as Array<{ functionDeclarations: Array<{ name: string }> }>)[0]!.functionDeclarations.map((t) => t.name) : (b.tools as Array<{ name?: string; function?: { name: string } }>).map((t) => t.name ?? t.function!.name);
    expect(names).toEqual(['weather', 'clock']);
  });

  test('a server-side MCP loop: the tool result goes back in the dialect, the answer and summed usage come out', async () => {
    const usage = { prompt_tokens: 10, completion_tokens: 4 };
    s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"dialect loop"}' }] }], usage }, { steps: [{ kind: 'text', text: 'Echo done.' }], usage });
    const r = await s.openai.chat.completions.create({ model: `agent-${api}`, messages: user });
    expect(r.choices[0]!.message.content).toBe('Echo done.');
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(r.usage).toMatchObject({ prompt_tokens: 20, completion_tokens: 8, total_tokens: 28 });
    expect(s.upstream.requests).toHaveLength(2);
    expect(toolResults(api, s.upstream.requests[1]!)).toContain('dialect loop');
  });

  const failures: Array<[name: string, status: number, type: string, code: RegExp, script: Script]> = [
    ['rate limit', 429, 'rate_limit_error', /^rate_limit_exceeded$/, { steps: [{ kind: 'fault', fault: 'http429', retryAfterSeconds: 2 }] }],
    ['overload', 502, 'upstream_error', api === 'anthropic-messages' ? /^upstream_529$/ : /^upstream_503$/, { steps: [{ kind: 'fault', fault: 'overloaded' }] }],
    ['server error', 502, 'upstream_error', /^upstream_500$/, { steps: [{ kind: 'fault', fault: 'http500' }] }],
    ['bad request', 400, 'invalid_request_error', /.*/, { steps: [{ kind: 'fault', fault: 'http400', message: 'no such thing' }] }],
    ['bad upstream key', 401, api === 'anthropic-messages' ? 'authentication_error' : api === 'gemini' ? 'authentication_error' : 'invalid_request_error', /.*/, { steps: [{ kind: 'fault', fault: 'http401' }] }],
    ['error event inside the stream', 502, 'upstream_error', /^(upstream_(502|529|503|500)|server_error)$/, { steps: [{ kind: 'text', text: 'partial' }, { kind: 'fault', fault: 'streamError', message: 'went wrong' }] }],
    ['stream cut before its end', 502, 'upstream_error', /^upstream_connection$/, { steps: [{ kind: 'text', text: 'partial' }, { kind: 'fault', fault: 'drop' }] }],
  ];
  test.each(failures)('%s → %d %s', async (_name, status, type, code, script) => {
    s.upstream.enqueue(script);
    let err: unknown;
    try {
      await s.openai.chat.completions.create({ model: `plain-${api}`, messages: user });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(status);
    expect(e.error).toMatchObject({ message: expect.stringContaining(`upstream ${api}`), type });
    expect(String(e.code)).toMatch(code);
    expect(s.upstream.requests).toHaveLength(1);
  });
});

test('anthropic-messages: the second step of a tool loop reads the first step’s prefix from the prompt cache', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"cache me"}' }] }] }, { steps: [{ kind: 'text', text: 'ok' }] });
  const r = await s.openai.chat.completions.create({ model: 'agent-anthropic-messages', messages: user });
  const cached = (r.usage as { prompt_tokens_details?: { cached_tokens?: number } }).prompt_tokens_details?.cached_tokens ?? 0;
  expect(cached).toBeGreaterThan(0);
  expect(r.usage!.prompt_tokens).toBeGreaterThan(cached);
});

describe('anthropic-messages with extended thinking: each step’s signed thinking goes back on the next step', () => {
  const thinkingThenCall: Script = {
    steps: [
      { kind: 'reasoning', text: 'The user wants an echo; I will call the tool.' },
      { kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"thinking loop"}' }] },
    ],
  };
  const assistantTurns = (r: RecordedRequest) => ((r.body as { messages: Array<{ role: string; content: unknown }> }).messages ?? []).filter((m) => m.role === 'assistant');

  test('a server-side MCP loop with reasoning_effort answers; the second request starts the tool-use turn with the first step’s thinking block, signature intact', async () => {
    s.upstream.enqueue(thinkingThenCall, { steps: [{ kind: 'reasoning', text: 'Echoed.' }, { kind: 'text', text: 'Echo done.' }] });
    const r = await s.openai.chat.completions.create({ model: 'agent-anthropic-messages', messages: user, reasoning_effort: 'low' });
    expect(r.choices[0]!.message.content).toBe('Echo done.');
    expect(s.upstream.requests).toHaveLength(2);
    const [turn] = assistantTurns(s.upstream.requests[1]!);
    const blocks = turn!.content as Array<{ type: string; thinking?: string; signature?: string }>;
    expect(blocks[0]).toMatchObject({ type: 'thinking', thinking: 'The user wants an echo; I will call the tool.', signature: expect.stringMatching(/^sig_/) });
    expect(blocks.map((b) => b.type)).toEqual(['thinking', 'tool_use']);
    // The last step's thinking comes back to the client, to return with the message.
    const details = (r.choices[0]!.message as { reasoning_details?: Array<{ type: string; text?: string; signature?: string; format: string }> }).reasoning_details;
    expect(details).toEqual([expect.objectContaining({ type: 'reasoning.text', text: 'Echoed.', format: 'anthropic-claude-v1', signature: expect.stringMatching(/^sig_/) })]);
  });

  test('a client tool call across turns: the client returns the message with its reasoning_details and the next turn is accepted; without them, or altered, Anthropic’s 400', async () => {
    s.upstream.enqueue(
      { steps: [{ kind: 'reasoning', text: 'Weather needs the client tool.' }, { kind: 'toolCalls', calls: [{ id: 'call_w1', name: 'weather', arguments: '{"city":"Oslo"}' }] }] },
    );
    const first = await s.openai.chat.completions.create({ model: 'plain-anthropic-messages', messages: user, tools: [weatherTool], reasoning_effort: 'low' });
    const msg = first.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_details?: unknown[] };
    expect(msg.tool_calls).toHaveLength(1);
    expect(msg.reasoning_details).toHaveLength(1);
    const next = (assistant: object) => [...user, assistant, { role: 'tool' as const, tool_call_id: msg.tool_calls![0]!.id, content: 'sunny' }] as OpenAI.ChatCompletionMessageParam[];

    s.upstream.enqueue({ steps: [{ kind: 'text', text: 'It is sunny.' }] });
    const ok = await s.openai.chat.completions.create({ model: 'plain-anthropic-messages', messages: next(msg), tools: [weatherTool], reasoning_effort: 'low' });
    expect(ok.choices[0]!.message.content).toBe('It is sunny.');

    const { reasoning_details: _dropped, ...bare } = msg;
    const altered = { ...msg, reasoning_details: [{ ...(msg.reasoning_details![0] as object), text: 'Something else.' }] };
    for (const assistant of [bare, altered]) {
      s.upstream.enqueue({ steps: [{ kind: 'text', text: 'unreached' }] });
      const err = await s.openai.chat.completions.create({ model: 'plain-anthropic-messages', messages: next(assistant), tools: [weatherTool], reasoning_effort: 'low' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
      expect((err as Error).message).toMatch(/thinking/);
    }
  });
});

test('gemini: a tool loop sends each function call back with the thought signature Gemini gave it, not the skip placeholder', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"signed call"}' }] }] }, { steps: [{ kind: 'text', text: 'ok' }] });
  const r = await s.openai.chat.completions.create({ model: 'agent-gemini', messages: user });
  expect(r.choices[0]!.message.content).toBe('ok');
  const contents = (s.upstream.requests[1]!.body as { contents: Array<{ role: string; parts: Array<{ functionCall?: { name: string }; thoughtSignature?: string }> }> }).contents;
  const call = contents.flatMap((c) => c.parts).find((p) => p.functionCall);
  expect(call?.thoughtSignature).toBe(geminiSignature('everything__echo', '{"message":"signed call"}'));
});
