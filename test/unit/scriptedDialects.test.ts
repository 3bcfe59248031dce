// The scripted upstream's Anthropic, Gemini and Responses dialects, read by each vendor's own SDK
// and stream helper: what it sends is what those APIs send, not only what mix2api expects.
import Anthropic from '@anthropic-ai/sdk';
import { ApiError, GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import { startScriptedUpstream, type Script, type ScriptedUpstream } from '../support/scriptedUpstream';

let upstream: ScriptedUpstream;
let anthropic: Anthropic;
let google: GoogleGenAI;
let openai: OpenAI;

beforeAll(async () => {
  upstream = await startScriptedUpstream();
  anthropic = new Anthropic({ baseURL: upstream.root, apiKey: 'test', maxRetries: 0 });
  // The SDK's default fetch comes from outside jest's sandbox and fails inside it: pass the sandbox's.
  google = new GoogleGenAI({ apiKey: 'test', httpOptions: { baseUrl: upstream.root, retryOptions: { attempts: 1 }, fetch: (url, init) => fetch(url, init) } });
  openai = new OpenAI({ baseURL: upstream.url, apiKey: 'test', maxRetries: 0 });
});
afterAll(() => upstream.close());
beforeEach(() => upstream.reset());

const mixed: Script = {
  steps: [
    { kind: 'reasoning', text: 'Let me look.', chunks: 2 },
    { kind: 'text', text: 'Checking both. ' },
    {
      kind: 'toolCalls',
      calls: [
        { name: 'weather', arguments: '{"city":"Paris"}' },
        { name: 'clock', arguments: '{"tz":"Europe/Paris"}' },
      ],
      argChunks: 3,
    },
  ],
};

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe('Anthropic SDK reads the scripted Messages stream', () => {
  test('thinking, text and two tool_use blocks with their JSON input; stop reason and usage', async () => {
    upstream.enqueue(mixed);
    const stream = anthropic.messages.stream({ model: 'claude-x', max_tokens: 100, messages: [{ role: 'user', content: 'weather and time?' }] });
    const json: string[] = [];
    stream.on('inputJson', (partial) => json.push(partial));
    const m = await stream.finalMessage();
    expect(m.content.map((b) => b.type)).toEqual(['thinking', 'text', 'tool_use', 'tool_use']);
    expect(m.content[0]).toMatchObject({ type: 'thinking', thinking: 'Let me look.' });
    expect(m.content[1]).toMatchObject({ type: 'text', text: 'Checking both. ' });
    expect(m.content[2]).toMatchObject({ type: 'tool_use', name: 'weather', input: { city: 'Paris' } });
    expect(m.content[3]).toMatchObject({ type: 'tool_use', name: 'clock', input: { tz: 'Europe/Paris' } });
    expect(json.length).toBeGreaterThanOrEqual(6);
    expect(m.stop_reason).toBe('tool_use');
    expect(m.usage.input_tokens).toBeGreaterThan(0);
    expect(m.usage.output_tokens).toBeGreaterThan(0);
    expect(upstream.requests[0]!.path).toBe('/v1/messages');
  });

  test('with thinking on, the SDK\'s own message goes back whole; the turn without its thinking block, or with the thinking altered, is a 400', async () => {
    upstream.enqueue(mixed, { steps: [{ kind: 'text', text: 'done' }] });
    const ask = (extra: Anthropic.MessageParam[]) =>
      anthropic.messages.stream({ model: 'c', max_tokens: 2000, thinking: { type: 'enabled', budget_tokens: 1024 }, messages: [{ role: 'user', content: 'weather and time?' }, ...extra] }).finalMessage();
    const m = await ask([]);
    const results = (content: Anthropic.ContentBlockParam[]): Anthropic.MessageParam[] => [
      { role: 'assistant', content },
      { role: 'user', content: m.content.filter((b) => b.type === 'tool_use').map((b) => ({ type: 'tool_result' as const, tool_use_id: (b as Anthropic.ToolUseBlock).id, content: 'ok' })) },
    ];
    expect((await ask(results(m.content as Anthropic.ContentBlockParam[]))).content).toMatchObject([{ type: 'text', text: 'done' }]);
    const thinking = m.content[0] as Anthropic.ThinkingBlock;
    for (const content of [m.content.slice(1), [{ ...thinking, thinking: 'Something else.' }, ...m.content.slice(1)]] as Anthropic.ContentBlockParam[][]) {
      const e = (await rejection(ask(results(content)))) as InstanceType<typeof Anthropic.APIError>;
      expect(e).toBeInstanceOf(Anthropic.BadRequestError);
      expect(e.message).toMatch(/thinking/);
    }
  });

  test('a cache breakpoint is written once and read by the next request with the same prefix', async () => {
    const system = [{ type: 'text' as const, text: 'You are terse. '.repeat(50), cache_control: { type: 'ephemeral' as const } }];
    const first = await anthropic.messages.stream({ model: 'c', max_tokens: 10, system, messages: [{ role: 'user', content: 'a' }] }).finalMessage();
    const second = await anthropic.messages.stream({ model: 'c', max_tokens: 10, system, messages: [{ role: 'user', content: 'b' }] }).finalMessage();
    expect(first.usage.cache_creation_input_tokens).toBeGreaterThan(100);
    expect(first.usage.cache_read_input_tokens).toBe(0);
    expect(second.usage.cache_read_input_tokens).toBe(first.usage.cache_creation_input_tokens);
    expect(second.usage.cache_creation_input_tokens).toBe(0);
  });

  test('529 overloaded_error and an error event inside the stream reach the SDK as its errors', async () => {
    upstream.enqueue({ steps: [{ kind: 'fault', fault: 'overloaded' }] });
    const e = (await rejection(anthropic.messages.stream({ model: 'c', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }).finalMessage())) as InstanceType<typeof Anthropic.APIError>;
    expect(e).toBeInstanceOf(Anthropic.APIError);
    expect(e.status).toBe(529);
    expect((e.error as { error?: { type?: string } }).error?.type).toBe('overloaded_error');

    upstream.enqueue({ steps: [{ kind: 'text', text: 'partial answer' }, { kind: 'fault', fault: 'streamError', message: 'Overloaded' }] });
    const s = anthropic.messages.stream({ model: 'c', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
    expect(String(await rejection(s.finalMessage()))).toMatch(/Overloaded/);
  });
});

describe('Gemini SDK reads the scripted streamGenerateContent stream', () => {
  test('thought and text parts, then both function calls whole, finish reason and usage', async () => {
    upstream.enqueue(mixed);
    const chunks = await google.models.generateContentStream({ model: 'gemini-x', contents: 'weather and time?' });
    const text: string[] = [];
    const calls: Array<{ name?: string; args?: Record<string, unknown> }> = [];
    let finish: string | undefined;
    let usage: { promptTokenCount?: number; candidatesTokenCount?: number } | undefined;
    for await (const c of chunks) {
      for (const p of c.candidates?.[0]?.content?.parts ?? []) if (p.text && !p.thought) text.push(p.text);
      calls.push(...(c.functionCalls ?? []));
      finish = c.candidates?.[0]?.finishReason ?? finish;
      usage = c.usageMetadata ?? usage;
    }
    expect(text.join('')).toBe('Checking both. ');
    expect(calls).toEqual([
      { name: 'weather', args: { city: 'Paris' } },
      { name: 'clock', args: { tz: 'Europe/Paris' } },
    ]);
    expect(finish).toBe('STOP');
    expect(usage?.promptTokenCount).toBeGreaterThan(0);
    expect(upstream.requests[0]!.path).toBe('/v1beta/models/gemini-x:streamGenerateContent');
  });

  test('RESOURCE_EXHAUSTED comes back as the SDK ApiError with status 429', async () => {
    upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http429' }] });
    const e = await rejection((async () => { for await (const _ of await google.models.generateContentStream({ model: 'g', contents: 'x' })) void _; })());
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).status).toBe(429);
    expect((e as ApiError).message).toMatch(/RESOURCE_EXHAUSTED/);
  });
});

describe('OpenAI SDK reads the scripted Responses stream', () => {
  test('reasoning summary, output text and function_call items; usage; stored responses continue', async () => {
    upstream.enqueue(mixed);
    const stream = openai.responses.stream({ model: 'gpt-x', input: 'weather and time?', store: true });
    const deltas: string[] = [];
    stream.on('response.function_call_arguments.delta', (e) => deltas.push(e.delta));
    const r = await stream.finalResponse();
    expect(r.output.map((o) => o.type)).toEqual(['reasoning', 'message', 'function_call', 'function_call']);
    expect(r.output_text).toBe('Checking both. ');
    const fc = r.output.filter((o) => o.type === 'function_call');
    expect(fc.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([
      ['weather', { city: 'Paris' }],
      ['clock', { tz: 'Europe/Paris' }],
    ]);
    expect(deltas.join('')).toBe('{"city":"Paris"}{"tz":"Europe/Paris"}');
    expect(r.usage?.input_tokens).toBeGreaterThan(0);

    const next = await openai.responses.stream({ model: 'gpt-x', previous_response_id: r.id, input: [{ type: 'function_call_output', call_id: fc[0]!.call_id, output: 'sunny' }] }).finalResponse();
    expect(next.usage!.input_tokens_details.cached_tokens).toBe(r.usage!.total_tokens);
    const missing = (await rejection(openai.responses.stream({ model: 'gpt-x', previous_response_id: 'resp_nope', input: 'x' }).finalResponse())) as InstanceType<typeof OpenAI.APIError>;
    expect(missing.status).toBe(400);
    expect(missing.code).toBe('previous_response_not_found');
  });
});
