// Token counts for the context guard: the encodings' known counts, what a message and a tool
// count, the model → encoding choice, the estimate fallback, and the memo and the lazy load.
import type * as Tokens from '../../src/domain/tokens';
import { estimateCounter, estimateTokens, IMAGE_TOKENS, LOW_DETAIL_IMAGE_TOKENS, MEMO_SIZE, MESSAGE_TOKENS, TOOL_CALL_TOKENS, TOOL_TOKENS, tokenCounterFor } from '../../src/domain/tokens';

const o200k = tokenCounterFor('gpt-4o');
const cl100k = tokenCounterFor('gpt-4');

describe('known counts (taken from gpt-tokenizer 4.0.0)', () => {
  test.each([
    ['Hello, world!', 4, 4],
    ['The context window guard counts tokens.', 7, 7],
    ['naïve café 日本語のテキスト', 10, 12],
  ])('%j: o200k_base %i, cl100k_base %i', (text, o, c) => {
    expect(o200k.count(text)).toBe(o);
    expect(cl100k.count(text)).toBe(c);
  });

  test('text that spells a special token is counted as text, not refused', () => {
    expect(o200k.count('<|endoftext|>')).toBe(7);
    expect(o200k.count({ role: 'user', content: 'say <|endoftext|> and <|im_start|>' })).toBeGreaterThan(MESSAGE_TOKENS);
  });

  test('1,000 characters of English are within half and one and a half of bytes / 4, and fewer than bytes / 4', () => {
    const prose = 'A request over the window loses its oldest turns until it fits, while the instructions and the question being answered stay. '.repeat(10).slice(0, 1000);
    for (const c of [o200k, cl100k]) {
      const n = c.count(prose);
      expect(n).toBeGreaterThan((1000 / 4) * 0.5);
      expect(n).toBeLessThan((1000 / 4) * 1.5);
      expect(n).toBeLessThan(estimateTokens(prose));
    }
  });
});

describe('what a message and a tool count', () => {
  const hello = o200k.count('Hello, world!');

  test('framing, role and content; a name costs one more', () => {
    expect(o200k.count({ role: 'user', content: 'Hello, world!' })).toBe(MESSAGE_TOKENS + 1 + hello);
    expect(o200k.count({ role: 'user', name: 'ann', content: 'Hello, world!' })).toBe(MESSAGE_TOKENS + 1 + o200k.count('ann') + 1 + hello);
  });

  test('a tool call counts its name and arguments, a result its content; call ids are not counted', () => {
    const call = { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] };
    expect(o200k.count(call)).toBe(MESSAGE_TOKENS + 1 + TOOL_CALL_TOKENS + o200k.count('get_weather') + o200k.count('{"city":"Paris"}'));
    expect(o200k.count({ role: 'tool', tool_call_id: 'call_1', content: 'Hello, world!' })).toBe(MESSAGE_TOKENS + 1 + hello);
  });

  test('text parts are counted and an image is a fixed estimate, whatever its bytes', () => {
    const image = { type: 'image_url', image_url: { url: `data:image/png;base64,${'A'.repeat(100_000)}` } };
    expect(o200k.count({ role: 'user', content: [{ type: 'text', text: 'Hello, world!' }, image] })).toBe(MESSAGE_TOKENS + 1 + hello + IMAGE_TOKENS);
    expect(o200k.count({ role: 'user', content: [{ ...image, image_url: { ...image.image_url, detail: 'low' } }] })).toBe(MESSAGE_TOKENS + 1 + LOW_DETAIL_IMAGE_TOKENS);
  });

  test('an array is the sum of its items', () => {
    const m = { role: 'user', content: 'Hello, world!' };
    expect(o200k.count([m, m, m])).toBe(3 * o200k.count(m));
  });

  test('a tool is its function name, description and parameters as JSON, plus a per-tool overhead', () => {
    const fn = { name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } };
    expect(o200k.count({ type: 'function', function: { ...fn, strict: true } })).toBe(TOOL_TOKENS + o200k.count(JSON.stringify(fn)));
  });
});

describe('the model decides the counter', () => {
  test.each(['gpt-4o', 'gpt-4o-mini-2024-07-18', 'gpt-4.1-nano', 'gpt-4.5-preview', 'gpt-5', 'gpt-5.1-codex', 'o1', 'o3-mini', 'o4-mini-deep-research', 'chatgpt-4o-latest', 'gpt-oss-120b', 'openai/gpt-4o', 'GPT-4O'])('%s: o200k_base', (m) => {
    expect(tokenCounterFor(m).method).toBe('o200k_base');
  });

  test.each(['gpt-4', 'gpt-4-0613', 'gpt-4-turbo', 'gpt-4-32k', 'gpt-3.5-turbo', 'gpt-3.5-turbo-instruct', 'text-embedding-3-small'])('%s: cl100k_base', (m) => {
    expect(tokenCounterFor(m).method).toBe('cl100k_base');
  });

  test.each(['claude-sonnet-4-5', 'claude-3-haiku-20240307', 'gemini-2.5-pro', 'gemini-2.0-flash', 'llama-3.1-70b', 'deepseek-chat', 'o10-custom', 'my-gpt-4o', ''])('%j: the estimate', (m) => {
    expect(tokenCounterFor(m).method).toBe('estimate');
  });

  test('an upstream that speaks Anthropic or Gemini is estimated whatever the model is called; the OpenAI dialects are not', () => {
    expect(tokenCounterFor('gpt-4o', 'anthropic-messages').method).toBe('estimate');
    expect(tokenCounterFor('gpt-4o', 'gemini').method).toBe('estimate');
    expect(tokenCounterFor('gpt-4o', 'openai-chat').method).toBe('o200k_base');
    expect(tokenCounterFor('gpt-4o', 'openai-responses').method).toBe('o200k_base');
  });

  test('the estimate is UTF-8 JSON bytes / 4, rounded up, of the whole value', () => {
    const m = { role: 'user', content: 'héllo' };
    expect(tokenCounterFor('claude-sonnet-4-5').count(m)).toBe(Math.ceil(Buffer.byteLength(JSON.stringify(m)) / 4));
    expect(estimateCounter.count([m, m])).toBe(estimateTokens([m, m]));
  });
});

describe('memo and lazy load', () => {
  /** tokens.ts afresh, over an o200k_base whose loads and counts are seen. */
  function watched() {
    const seen = { loads: 0, counts: 0 };
    // A fresh registry rather than isolateModules: the encoding is required on the first count, after such a scope has closed.
    jest.resetModules();
    jest.doMock('gpt-tokenizer/cjs/encoding/o200k_base', () => {
      seen.loads++;
      const real = jest.requireActual<{ countTokens: (s: string, o?: unknown) => number }>('gpt-tokenizer/cjs/encoding/o200k_base');
      return { countTokens: (s: string, o?: unknown) => (seen.counts++, real.countTokens(s, o)) };
    });
    return { seen, tokens: jest.requireActual<typeof Tokens>('../../src/domain/tokens') };
  }
  afterAll(() => jest.dontMock('gpt-tokenizer/cjs/encoding/o200k_base'));

  test('the encoding loads on the first count that needs it, not with the module or for the estimate', () => {
    const { seen, tokens } = watched();
    const c = tokens.tokenCounterFor('gpt-4o');
    tokens.tokenCounterFor('claude-sonnet-4-5').count({ role: 'user', content: 'hi' });
    expect(seen.loads).toBe(0);
    c.count('hi');
    c.count('there');
    expect(seen.loads).toBe(1);
  });

  test('a message counted before is not tokenized again, even as a new object with the same JSON', () => {
    const { seen, tokens } = watched();
    const c = tokens.tokenCounterFor('gpt-4o');
    const m = { role: 'user', content: 'x'.repeat(2_000) }; // long enough to be keyed by its hash
    const first = c.count(m);
    const after = seen.counts;
    expect(c.count(m)).toBe(first);
    expect(c.count(JSON.parse(JSON.stringify(m)))).toBe(first);
    expect(c.count({ role: 'user', content: 'short' })).toBeGreaterThan(0);
    expect(c.count({ role: 'user', content: 'short' })).toBe(c.count({ role: 'user', content: 'short' }));
    expect(seen.counts).toBe(after + 2); // 'short': its role and content, once
  });

  test(`the memo keeps the last ${MEMO_SIZE} messages`, () => {
    const { seen, tokens } = watched();
    const c = tokens.tokenCounterFor('gpt-4o');
    const msgs = Array.from({ length: MEMO_SIZE + 1 }, (_, i) => ({ role: 'user', content: `m${i}` }));
    c.count(msgs);
    const after = seen.counts;
    c.count(msgs.at(-1));
    c.count(msgs[1]);
    expect(seen.counts).toBe(after);
    c.count(msgs[0]); // the oldest, forgotten
    expect(seen.counts).toBeGreaterThan(after);
  });
});
