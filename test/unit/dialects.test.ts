// The dialects' request translation, piece by piece: what a Chat Completions body becomes in each
// upstream's own request (the streams back are covered end to end in test/integration/dialects).
import { anthropicRequest } from '../../src/connectors/dialects/anthropic';
import type { ChatBody } from '../../src/connectors/dialects/dialect';
import { geminiRequest, SKIP_THOUGHT_SIGNATURE } from '../../src/connectors/dialects/gemini';
import { responsesRequest } from '../../src/connectors/dialects/responses';
import { UpstreamSchema } from '../../src/config/schema';

const png = 'data:image/png;base64,iVBORw0KGgo=';
const body: ChatBody = {
  model: 'm',
  messages: [
    { role: 'system', content: 'Be kind.' },
    { role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: png } }, { type: 'image_url', image_url: { url: 'https://x/y.jpg' } }] },
    { role: 'assistant', content: 'Let me check.', tool_calls: [{ id: 'call_1', function: { name: 'look', arguments: '{"q":"a"}' } }, { id: 'call_2', function: { name: 'see', arguments: '' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: 'a cat' },
    { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: 'grey' }] },
    { role: 'user', content: 'thanks' },
  ],
  tools: [{ type: 'function', function: { name: 'look', description: 'Looks', parameters: { type: 'object', properties: { q: { type: 'string' } } } } }, { type: 'function', function: { name: 'see' } }],
  tool_choice: { type: 'function', function: { name: 'look' } },
  parallel_tool_calls: false,
  max_completion_tokens: 100,
  stop: 'END',
};
const cfg = (api: string, extra: Record<string, unknown> = {}) => UpstreamSchema.parse({ name: 'u', api, baseURL: 'http://127.0.0.1:1', ...extra });

test('anthropic-messages: system, image blocks, tool_use with parsed input, tool results merged into one user turn, tool choice', () => {
  const r = anthropicRequest(body, cfg('anthropic-messages', { cachePrompts: false }));
  expect(r.system).toEqual([{ type: 'text', text: 'Be kind.' }]);
  expect(r.messages).toEqual([
    {
      role: 'user',
      content: [
        { type: 'text', text: 'What is this?' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
        { type: 'image', source: { type: 'url', url: 'https://x/y.jpg' } },
      ],
    },
    {
      role: 'assistant',
      content: [
        { type: 'text', text: 'Let me check.' },
        { type: 'tool_use', id: 'call_1', name: 'look', input: { q: 'a' } },
        { type: 'tool_use', id: 'call_2', name: 'see', input: {} },
      ],
    },
    {
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'call_1', content: 'a cat' },
        { type: 'tool_result', tool_use_id: 'call_2', content: 'grey' },
        { type: 'text', text: 'thanks' },
      ],
    },
  ]);
  expect(r.tools).toEqual([
    { name: 'look', description: 'Looks', input_schema: { type: 'object', properties: { q: { type: 'string' } } } },
    { name: 'see', input_schema: { type: 'object', properties: {} } },
  ]);
  expect(r.tool_choice).toEqual({ type: 'tool', name: 'look', disable_parallel_tool_use: true });
  expect(r).toMatchObject({ max_tokens: 100, stop_sequences: ['END'], stream: true });
});

test('anthropic-messages: cache breakpoints on the last tool, system block and conversation block; thinking from reasoning_effort; prefill without trailing space', () => {
  const r = anthropicRequest({ ...body, reasoning_effort: 'low', temperature: 0.3, messages: [...body.messages, { role: 'assistant', content: 'So far ', prefix: true }] }, cfg('anthropic-messages'));
  expect(r.tools!.at(-1)).toMatchObject({ cache_control: { type: 'ephemeral' } });
  expect(r.tools![0]).not.toHaveProperty('cache_control');
  expect((r.system as unknown[]).at(-1)).toMatchObject({ cache_control: { type: 'ephemeral' } });
  const last = r.messages.at(-1)!;
  expect(last).toEqual({ role: 'assistant', content: [{ type: 'text', text: 'So far', cache_control: { type: 'ephemeral' } }] });
  expect(r.thinking).toEqual({ type: 'enabled', budget_tokens: 1024 });
  expect(r.max_tokens).toBe(1124);
  expect(r).not.toHaveProperty('temperature');
});

test('gemini: systemInstruction, inline and file images, functionCall/functionResponse named after their call, tool config, generation config', () => {
  const r = geminiRequest(body);
  expect(r.systemInstruction).toEqual({ parts: [{ text: 'Be kind.' }] });
  expect(r.contents).toEqual([
    { role: 'user', parts: [{ text: 'What is this?' }, { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }, { fileData: { fileUri: 'https://x/y.jpg' } }] },
    {
      role: 'model',
      parts: [
        { text: 'Let me check.' },
        { functionCall: { id: 'call_1', name: 'look', args: { q: 'a' } }, thoughtSignature: SKIP_THOUGHT_SIGNATURE },
        { functionCall: { id: 'call_2', name: 'see', args: {} }, thoughtSignature: SKIP_THOUGHT_SIGNATURE },
      ],
    },
    {
      role: 'user',
      parts: [{ functionResponse: { id: 'call_1', name: 'look', response: { output: 'a cat' } } }, { functionResponse: { id: 'call_2', name: 'see', response: { output: 'grey' } } }, { text: 'thanks' }],
    },
  ]);
  expect(r.tools).toEqual([{ functionDeclarations: [{ name: 'look', description: 'Looks', parametersJsonSchema: { type: 'object', properties: { q: { type: 'string' } } } }, { name: 'see' }] }]);
  expect(r.toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['look'] } });
  expect(r.generationConfig).toEqual({ maxOutputTokens: 100, stopSequences: ['END'] });
});

test('openai-responses: instructions, input items for calls and outputs, tools, continuation sends only what the stored response lacks', () => {
  const r = responsesRequest(body, cfg('openai-responses'));
  expect(r.instructions).toBe('Be kind.');
  expect(r.input).toEqual([
    { role: 'user', content: [{ type: 'input_text', text: 'What is this?' }, { type: 'input_image', image_url: png, detail: 'auto' }, { type: 'input_image', image_url: 'https://x/y.jpg', detail: 'auto' }] },
    { role: 'assistant', content: 'Let me check.' },
    { type: 'function_call', call_id: 'call_1', name: 'look', arguments: '{"q":"a"}' },
    { type: 'function_call', call_id: 'call_2', name: 'see', arguments: '' },
    { type: 'function_call_output', call_id: 'call_1', output: 'a cat' },
    { type: 'function_call_output', call_id: 'call_2', output: 'grey' },
    { role: 'user', content: [{ type: 'input_text', text: 'thanks' }] },
  ]);
  expect(r).toMatchObject({ tool_choice: { type: 'function', name: 'look' }, parallel_tool_calls: false, max_output_tokens: 100, store: false });
  expect(r).not.toHaveProperty('previous_response_id');
  const from = { responseId: 'resp_1', messageCount: 5 };
  // Not stored upstream: the continuation is ignored.
  expect(responsesRequest(body, cfg('openai-responses'), from)).not.toHaveProperty('previous_response_id');
  const cont = responsesRequest(body, cfg('openai-responses', { storeResponses: true }), from);
  expect(cont).toMatchObject({ previous_response_id: 'resp_1', store: true, instructions: 'Be kind.' });
  expect(cont.input).toEqual([{ role: 'user', content: [{ type: 'input_text', text: 'thanks' }] }]);
});

test('continuation: prefill is a config error with dialects that cannot continue a prefill', () => {
  expect(() => cfg('gemini', { continuation: 'prefill' })).toThrow(/continuation/);
  expect(() => cfg('openai-responses', { continuation: 'prefill' })).toThrow(/continuation/);
  expect(cfg('anthropic-messages', { continuation: 'prefill' }).continuation).toBe('prefill');
});
