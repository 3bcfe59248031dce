/**
 * Upstream session reuse over a 20-turn session (`X-Session-Id`), each turn resending the whole
 * history as chat clients do. `openai-responses` with `storeResponses`: every turn after the first
 * sends `previous_response_id` and only the new user message. `anthropic-messages` with
 * `cachePrompts`: the earlier turns are read from the prompt cache. Each is compared with the same
 * session without reuse; the figures are printed for the README.
 */
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { startStack, type Stack } from '../support/stack';

const TURNS = 20;
let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => {
      const root = url.replace(/\/v1$/, '');
      return {
        upstreams: [
          { name: 'stored', api: 'openai-responses', baseURL: url, storeResponses: true },
          { name: 'stateless', api: 'openai-responses', baseURL: url },
          { name: 'cached', api: 'anthropic-messages', baseURL: root },
          { name: 'uncached', api: 'anthropic-messages', baseURL: root, cachePrompts: false },
        ],
        mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
        models: [
          ...['stored', 'stateless', 'cached', 'uncached'].map((u) => ({ id: u, upstream: u, model: 'm' })),
          { id: 'stored-agent', upstream: 'stored', model: 'm', mcpServers: ['everything'] },
        ],
      };
    },
  });
});
afterAll(() => s?.stop());
beforeEach(() => s.upstream.reset());

interface Turn {
  bytes: number;
  prompt: number;
  cached: number;
  body: Record<string, unknown>;
}

/** Runs a session of TURNS turns against `model`; per turn: request bytes upstream and the usage reported. */
async function session(model: string): Promise<Turn[]> {
  const history: Array<{ role: 'system' | 'user' | 'assistant'; content: string }> = [{ role: 'system', content: 'You are a patient assistant. '.repeat(20) }];
  const sessionId = `reuse-${model}-${Date.now()}`;
  const out: Turn[] = [];
  for (let i = 0; i < TURNS; i++) {
    history.push({ role: 'user', content: `Question ${i}: tell me something about the number ${i}. ${'context '.repeat(30)}` });
    s.upstream.enqueue({ steps: [{ kind: 'text', text: `Answer ${i}: ${'the number is interesting '.repeat(10)}` }] });
    const r = await s.openai.chat.completions.create({ model, messages: history }, { headers: { 'x-session-id': sessionId } });
    history.push({ role: 'assistant', content: r.choices[0]!.message.content! });
    const req = s.upstream.requests.at(-1)!;
    const usage = r.usage as { prompt_tokens: number; prompt_tokens_details?: { cached_tokens?: number } };
    out.push({ bytes: Buffer.byteLength(JSON.stringify(req.body)), prompt: usage.prompt_tokens, cached: usage.prompt_tokens_details?.cached_tokens ?? 0, body: req.body });
  }
  return out;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const report = (name: string, on: Turn[], off: Turn[]) =>
  console.log(
    `${name} over ${TURNS} turns: bytes sent ${sum(on.map((t) => t.bytes))} vs ${sum(off.map((t) => t.bytes))} without reuse; ` +
      `uncached prompt tokens ${sum(on.map((t) => t.prompt - t.cached))} vs ${sum(off.map((t) => t.prompt - t.cached))}; last turn ${on.at(-1)!.prompt - on.at(-1)!.cached} vs ${off.at(-1)!.prompt - off.at(-1)!.cached}`,
  );

test('openai-responses with storeResponses: each later turn continues the last response and sends only the new message', async () => {
  const on = await session('stored');
  const off = await session('stateless');
  // Turn 1 has nothing to continue; every later turn names the previous turn's response.
  expect(on[0]!.body.previous_response_id).toBeUndefined();
  for (let i = 1; i < TURNS; i++) {
    expect(on[i]!.body.previous_response_id).toMatch(/^resp_/);
    expect(on[i]!.body.input).toEqual([{ role: 'user', content: [{ type: 'input_text', text: expect.stringContaining(`Question ${i}:`) }] }]);
    expect(on[i]!.body.store).toBe(true);
  }
  expect(off.every((t) => t.body.previous_response_id === undefined && t.body.store === false)).toBe(true);
  expect((off.at(-1)!.body.input as unknown[]).length).toBe(2 * TURNS - 1);
  // What goes over the wire stays flat; without reuse it grows with the history.
  expect(on.at(-1)!.bytes).toBeLessThan(on[0]!.bytes * 1.5);
  expect(sum(off.map((t) => t.bytes))).toBeGreaterThan(5 * sum(on.map((t) => t.bytes)));
  report('openai-responses', on, off);
});

test('anthropic-messages with cachePrompts: later turns read the earlier conversation from the prompt cache', async () => {
  const on = await session('cached');
  const off = await session('uncached');
  for (let i = 1; i < TURNS; i++) expect(on[i]!.cached).toBeGreaterThan(on[i - 1]!.cached);
  expect(off.every((t) => t.cached === 0)).toBe(true);
  // Uncached input per turn stays near one turn's size; without caching it is the whole history.
  expect(on.at(-1)!.prompt - on.at(-1)!.cached).toBeLessThan(on[0]!.prompt);
  expect(sum(off.map((t) => t.prompt - t.cached))).toBeGreaterThan(5 * sum(on.map((t) => t.prompt - t.cached)));
  report('anthropic-messages', on, off);
});

test('openai-responses with storeResponses: the next step of a tool loop sends only the tool results', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message":"loop on"}' }] }] },
    { steps: [{ kind: 'text', text: 'looped' }] },
  );
  const r = await s.openai.chat.completions.create({ model: 'stored-agent', messages: [{ role: 'user', content: 'echo please' }] });
  expect(r.choices[0]!.message.content).toBe('looped');
  const [first, second] = s.upstream.requests;
  expect(first!.body.previous_response_id).toBeUndefined();
  expect(second!.body.previous_response_id).toMatch(/^resp_/);
  expect(second!.body.input).toEqual([{ type: 'function_call_output', call_id: expect.any(String), output: expect.stringContaining('loop on') }]);
});
