// The circuit breaker's states and the context window guard's trimming, as pure units.
import { Breaker } from '../../src/connectors/breaker';
import { contextLengthMessage, estimateTokens, fitToWindow, fixedCost } from '../../src/domain/contextGuard';
import { tokenCounterFor } from '../../src/domain/tokens';
import type { ChatMessage } from '../../src/domain/chat';

describe('Breaker', () => {
  let now = 0;
  const moves: string[] = [];
  const breaker = () => new Breaker('up', 3, 10_000, (m) => moves.push(m), () => now);
  beforeEach(() => {
    now = 0;
    moves.length = 0;
  });

  test('opens after N consecutive failures, skips for the cool-down, lets one probe through, closes on its success', () => {
    const b = breaker();
    b.failure();
    b.failure();
    expect(b.allow()).toBe(true);
    b.success(); // a success in between resets the count
    b.failure();
    b.failure();
    expect(b.snapshot().state).toBe('closed');
    b.failure();
    expect(b.snapshot()).toMatchObject({ state: 'open', consecutiveFailures: 3, retryAt: new Date(10_000).toISOString() });
    expect(b.allow()).toBe(false);
    expect(b.waitMs()).toBe(10_000);
    now = 10_000;
    expect(b.snapshot().state).toBe('half_open');
    expect(b.allow()).toBe(true); // the probe
    expect(b.allow()).toBe(false); // only one at a time
    b.success();
    expect(b.snapshot()).toEqual({ state: 'closed', consecutiveFailures: 0 });
    expect(moves).toEqual(['upstream up: circuit breaker closed -> open', 'upstream up: circuit breaker open -> half_open', 'upstream up: circuit breaker half_open -> closed']);
  });

  test('a failed probe opens it for another cool-down; an abandoned probe frees the slot', () => {
    const b = breaker();
    for (let i = 0; i < 3; i++) b.failure();
    now = 10_000;
    expect(b.allow()).toBe(true);
    b.abandon();
    expect(b.allow()).toBe(true);
    b.failure();
    expect(b.snapshot().state).toBe('open');
    now = 15_000;
    expect(b.allow()).toBe(false);
    now = 20_000;
    expect(b.allow()).toBe(true);
  });

  test('threshold 0 never opens', () => {
    const b = new Breaker('up', 0, 1000);
    for (let i = 0; i < 100; i++) b.failure();
    expect(b.allow()).toBe(true);
  });
});

describe('fitToWindow', () => {
  const big = 'x'.repeat(400); // ~100 tokens and a bit
  const conversation: ChatMessage[] = [
    { role: 'system', content: 'rules' },
    { role: 'user', content: `q1 ${big}` },
    { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }, { id: 'c2', type: 'function', function: { name: 'g', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: 'c1', content: big },
    { role: 'tool', tool_call_id: 'c2', content: big },
    { role: 'assistant', content: `a1 ${big}` },
    { role: 'user', content: `q2 ${big}` },
    { role: 'assistant', content: `a2 ${big}` },
    { role: 'user', content: 'q3' },
  ];
  const total = conversation.reduce((n, m) => n + estimateTokens(m), 0);

  test('fits as it is: nothing dropped', () => {
    expect(fitToWindow(conversation, total)).toEqual({ messages: conversation, dropped: 0, tokens: total });
  });

  test('the oldest turns go first; a tool call never loses its results; the system prompt stays; the kept turns start with a user message', () => {
    const r = fitToWindow(conversation, total - 1)!;
    // One token over: the first user turn goes, and with it what would have led the rest (the call and its results, the answer).
    expect(r.messages.map((m) => m.content && String(m.content).slice(0, 5))).toEqual(['rules', `q2 ${big.slice(0, 2)}`, `a2 ${big.slice(0, 2)}`, 'q3']);
    expect(r.dropped).toBe(5);
    expect(r.tokens).toBeLessThan(total);
    for (let limit = 50; limit < total; limit += 7) {
      const f = fitToWindow(conversation, limit);
      if (!f) continue;
      expect(f.tokens).toBeLessThanOrEqual(limit);
      expect(f.messages[0]!.role).toBe('system');
      expect(f.messages.at(-1)!.content).toBe('q3');
      const ids = new Set(f.messages.flatMap((m) => ((m.tool_calls as Array<{ id: string }>) ?? []).map((c) => c.id)));
      const results = f.messages.filter((m) => m.role === 'tool').map((m) => m.tool_call_id as string);
      expect(results.every((id) => ids.has(id))).toBe(true);
      expect([...ids].every((id) => results.includes(id))).toBe(true);
      expect(f.messages.find((m) => m.role !== 'system')!.role).toBe('user');
    }
  });

  test('a tool loop in progress keeps its call and results with the question they answer', () => {
    const loop: ChatMessage[] = [
      { role: 'user', content: `old ${big}` },
      { role: 'assistant', content: `old answer ${big}` },
      { role: 'user', content: 'now' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'k', type: 'function', function: { name: 'f', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'k', content: 'result' },
    ];
    const r = fitToWindow(loop, 100)!;
    expect(r.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(r.messages[0]!.content).toBe('now');
  });

  test('null when even what is never dropped is over the window (and the output cap counts)', () => {
    expect(fitToWindow(conversation, 5)).toBeNull();
    const small: ChatMessage[] = [{ role: 'user', content: 'hi' }];
    expect(fitToWindow(small, 10, 0)).not.toBeNull();
    expect(fitToWindow(small, 10, 8)).toBeNull();
  });

  test('counted with the model\'s encoding, English prose that the estimate would trim fits', () => {
    const o200k = tokenCounterFor('gpt-4o');
    const prose = 'The guard keeps the newest turns. '.repeat(40);
    const chat: ChatMessage[] = [
      { role: 'user', content: `old ${prose}` },
      { role: 'assistant', content: `answer ${prose}` },
      { role: 'user', content: 'now' },
    ];
    const counted = o200k.count(chat);
    expect(counted).toBeLessThan(chat.reduce((n, m) => n + estimateTokens(m), 0));
    expect(fitToWindow(chat, counted, 0, o200k)).toEqual({ messages: chat, dropped: 0, tokens: counted });
    expect(fitToWindow(chat, counted)!.messages.map((m) => m.content)).toEqual(['now']);
  });

  test('the tools are counted with the same counter, and the refusal names how tokens were had', () => {
    const o200k = tokenCounterFor('gpt-4o');
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }];
    expect(fixedCost({ max_tokens: 100 }, tools, o200k)).toBe(100 + o200k.count(tools));
    expect(fixedCost({ max_tokens: 100, tools })).toBe(100 + estimateTokens(tools));
    expect(contextLengthMessage(900, 800, true, o200k.method)).toContain('(counted with o200k_base, with the output cap and tools)');
    expect(contextLengthMessage(900, 800, true)).toContain('(estimated: UTF-8 bytes / 4, with the output cap and tools)');
  });
});
