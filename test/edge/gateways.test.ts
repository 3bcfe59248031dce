/**
 * mix2api as one channel behind real edge gateways — one-api (the relay new-api forked) and the
 * LiteLLM proxy — with the real `openai` client talking to the gateway: what the end client sees
 * and what each gateway bills. The numbered cases are the failures issue 8 found behind them:
 *   1 an error after the first byte, 2 gateway retries repeating tool side effects, 3 keepalives
 *   LiteLLM drops, 4 progress billed as reasoning, 5 usage the client did not ask for, 6 MCP tools
 *   in a body the gateway rebuilt.
 * The upstream is the scripted one; Temporal, MCP servers and both gateways are real.
 */
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import type OpenAI from 'openai';
import { APIError } from 'openai';
import { COUNT_TOOL, startCountingMcpServer, type CountingMcpServer } from '../support/countingMcpServer';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { sseEvents } from '../support/sse';
import { startStack, type Stack } from '../support/stack';
import { startLiteLLM, startOneApi, type Bill, type Gateway } from './support/gateways';

const CHANNEL_KEY = 'mix2api-channel-key';
const MODELS = ['agent', 'test-model'];
const TOOL_MS = 4000;
const KEEPALIVE_S = 1;

let s: Stack;
let counter: CountingMcpServer;
let oneApi: Gateway;
let oneApiEnforced: Gateway;
let litellm: Gateway;
const dir = join(__dirname, '..', '..', '.data', `edge-${process.pid}`);

beforeAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  counter = await startCountingMcpServer({ workMs: TOOL_MS });
  s = await startStack({
    config: (url) => ({
      server: { port: 0, apiKeys: [{ name: 'edge', key: CHANNEL_KEY }] },
      upstreams: [{ name: 'scripted', baseURL: url, apiKey: 'upstream-secret', retry: { maxAttempts: 1 } }],
      models: [
        { id: 'test-model', upstream: 'scripted', model: 'scripted' },
        { id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything', 'counter'] },
      ],
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio']), { name: 'counter', transport: 'http', url: counter.url, timeoutSeconds: 60 }],
      loop: { keepaliveSeconds: KEEPALIVE_S },
      // No `server.limits`, no `idempotency`: the shipped defaults are what a channel gets.
    }),
  });
  const common = { mix2apiUrl: s.apiUrl, channelKey: CHANNEL_KEY, models: MODELS };
  [oneApi, oneApiEnforced, litellm] = await Promise.all([
    // one-api retries nothing unless told; a team that turns it on is who case 2 is for. It draws
    // each retry's channel at random and skips (spends) a draw of the channel that failed, so with
    // two channels a low RetryTimes would leave case 2 to chance.
    startOneApi({ ...common, dir: join(dir, 'one-api'), channels: 2, options: { RetryTimes: '16' } }),
    startOneApi({ ...common, dir: join(dir, 'one-api-enforced'), env: { ENFORCE_INCLUDE_USAGE: 'true' } }),
    startLiteLLM({ ...common, dir: join(dir, 'litellm') }),
  ]);
}, 180_000);

afterAll(async () => {
  await Promise.all([oneApi?.stop(), oneApiEnforced?.stop(), litellm?.stop()]);
  await s?.stop();
  await counter?.close();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => s.upstream.reset());

const gateways = () => ({ 'one-api': oneApi, litellm });
const each = ['one-api', 'litellm'] as const;

interface Seen {
  content: string;
  reasoning: string;
  chunks: OpenAI.ChatCompletionChunk[];
  finishReasons: string[];
  toolCalls: Map<number, { id?: string; name?: string; arguments: string }>;
  usage?: OpenAI.CompletionUsage;
  error?: unknown;
}

/** Reads a stream the way an app does, keeping what it saw and the error it raised, if any. */
async function read(stream: AsyncIterable<OpenAI.ChatCompletionChunk>): Promise<Seen> {
  const seen: Seen = { content: '', reasoning: '', chunks: [], finishReasons: [], toolCalls: new Map() };
  try {
    for await (const c of stream) {
      seen.chunks.push(c);
      if (c.usage) seen.usage = c.usage;
      for (const ch of c.choices) {
        const d = ch.delta as OpenAI.ChatCompletionChunk.Choice.Delta & { reasoning_content?: string };
        seen.content += d.content ?? '';
        seen.reasoning += d.reasoning_content ?? '';
        if (ch.finish_reason) seen.finishReasons.push(ch.finish_reason);
        for (const t of d.tool_calls ?? []) {
          const cur = seen.toolCalls.get(t.index) ?? { arguments: '' };
          cur.id ??= t.id;
          cur.name ??= t.function?.name;
          cur.arguments += t.function?.arguments ?? '';
          seen.toolCalls.set(t.index, cur);
        }
      }
    }
  } catch (e) {
    seen.error = e;
  }
  return seen;
}

const lastBill = async (gw: Gateway, before: number): Promise<Bill> => {
  const fresh = await gw.billsAfter(before);
  return fresh[fresh.length - 1]!;
};
const billCount = async (gw: Gateway) => (await gw.bills()).length;

const usage = (prompt_tokens: number, completion_tokens: number) => ({ prompt_tokens, completion_tokens });
const countCall = (label: string) => ({ kind: 'toolCalls' as const, calls: [{ id: 'call_c1', name: `counter__${COUNT_TOOL}`, arguments: JSON.stringify({ label }) }] });
const echoCall = (message: string) => ({ kind: 'toolCalls' as const, calls: [{ id: 'call_e1', name: 'everything__echo', arguments: JSON.stringify({ message }) }] });

describe.each(each)('behind %s: the cases that passed before still do', (name) => {
  const gw = () => gateways()[name];

  test('a JSON answer, billed with the upstream\'s usage', async () => {
    s.upstream.enqueue({ steps: [{ kind: 'text', text: 'plain answer' }], usage: usage(9, 2) });
    const before = await billCount(gw());
    const r = await gw().openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] });
    expect(r.choices[0]!.message.content).toBe('plain answer');
    expect(r.choices[0]!.finish_reason).toBe('stop');
    const bill = await lastBill(gw(), before);
    expect([bill.outcome, bill.promptTokens, bill.completionTokens]).toEqual(['success', 9, 2]);
  });

  test('a stream with include_usage: the text, one finish, the usage chunk', async () => {
    s.upstream.enqueue({ steps: [{ kind: 'text', text: 'streamed answer here', chunks: 4 }], usage: usage(6, 4) });
    const seen = await read(await gw().openai.chat.completions.create({ model: 'test-model', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }));
    expect(seen.error).toBeUndefined();
    expect(seen.content).toBe('streamed answer here');
    expect(seen.finishReasons).toEqual(['stop']);
    expect(seen.usage).toMatchObject({ prompt_tokens: 6, completion_tokens: 4 });
  });

  test('streamed parallel client tool calls arrive whole', async () => {
    s.upstream.enqueue({
      steps: [{ kind: 'toolCalls', calls: [{ id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}' }, { id: 'call_b', name: 'get_time', arguments: '{"tz":"CET"}' }] }],
      usage: usage(20, 11),
    });
    const tools: OpenAI.ChatCompletionTool[] = ['get_weather', 'get_time'].map((n) => ({ type: 'function', function: { name: n, parameters: { type: 'object', properties: {} } } }));
    const seen = await read(await gw().openai.chat.completions.create({ model: 'test-model', stream: true, tools, messages: [{ role: 'user', content: 'weather and time' }] }));
    expect(seen.error).toBeUndefined();
    expect(seen.finishReasons).toEqual(['tool_calls']);
    expect([...seen.toolCalls.values()]).toEqual([
      { id: 'call_a', name: 'get_weather', arguments: '{"city":"Paris"}' },
      { id: 'call_b', name: 'get_time', arguments: '{"tz":"CET"}' },
    ]);
  });

  test('a server-side MCP loop comes back as one answer', async () => {
    s.upstream.enqueue({ steps: [echoCall('through the edge')], usage: usage(12, 5) }, { steps: [{ kind: 'text', text: 'echoed' }], usage: usage(30, 2) });
    const r = await gw().openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: `echo it via ${name}` }] });
    expect(r.choices[0]!.message.content).toBe('echoed');
    expect(r.choices[0]!.message.tool_calls ?? []).toEqual([]);
    const toolMsg = (s.upstream.requests[1]!.body.messages as Array<{ role: string; content: string }>).find((m) => m.role === 'tool');
    expect(toolMsg?.content).toContain('through the edge');
  });

  test('an error status before the first byte reaches the client as that status', async () => {
    s.upstream.setDefault({ steps: [{ kind: 'fault', fault: 'http400', message: 'the upstream refused this request' }] });
    const err = await gw().openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: 'bad' }] }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).message).toContain('the upstream refused this request');
  });
});

describe.each(each)('behind %s: case 1, an error after the first byte', (name) => {
  const gw = () => gateways()[name];

  test('the client raises the error after the partial text and sees no clean finish; the gateway bills what the run spent, or a failure', async () => {
    // A tool step (usage 14/6), then an answer that breaks off mid-stream.
    s.upstream.enqueue({ steps: [echoCall('first')], usage: usage(14, 6) }, { steps: [{ kind: 'text', text: 'partial answer' }, { kind: 'fault', fault: 'drop' }] });
    const before = await billCount(gw());
    const seen = await read(await gw().openai.chat.completions.create({ model: 'agent', stream: true, messages: [{ role: 'user', content: `break via ${name}` }] }));
    expect({ content: seen.content, error: String(seen.error) }).toEqual({ content: 'partial answer', error: expect.any(String) });
    expect(seen.finishReasons).not.toContain('stop');
    expect(seen.error).toBeInstanceOf(APIError);
    const bill = await lastBill(gw(), before);
    if (name === 'one-api') {
      // one-api relays mix2api's own chunk, so the code survives; it logs every relayed stream as
      // consumption, and what it logs is what the run used.
      expect((seen.error as APIError).code).toBe('upstream_connection');
      expect([bill.promptTokens, bill.completionTokens]).toEqual([14, 6]);
      // A client that reads choices and ignores `error` sees the choice end as "error".
      s.upstream.enqueue({ steps: [{ kind: 'text', text: 'partial' }, { kind: 'fault', fault: 'drop' }] });
      const res = await fetch(`${gw().baseURL}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${gw().clientKey}` },
        body: JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'break raw' }] }),
      });
      const data: string[] = [];
      for await (const e of sseEvents(res)) data.push(e.data);
      expect(data[data.length - 1]).toBe('[DONE]');
      const last = JSON.parse(data[data.length - 2]!) as { choices: Array<{ finish_reason: string }>; error: { code: string } };
      expect([last.choices[0]!.finish_reason, last.error.code]).toEqual(['error', 'upstream_connection']);
    } else {
      // LiteLLM raises its own error frame and records the call as failed, not as a success.
      expect(bill.outcome).toBe('failure');
    }
  });
});

describe.each(each)('behind %s: case 2, gateway retries', (name) => {
  const gw = () => gateways()[name];

  test('a retried request whose run failed after a tool call does not run the tool again', async () => {
    const label = `retry-${name}`;
    // Run 1: the tool runs, then the upstream fails; mix2api answers 502 and the gateway retries
    // the same body. Run 2 asks for the same call and gets run 1's result, then answers.
    s.upstream.enqueue(
      { steps: [countCall(label)], usage: usage(10, 3) },
      { steps: [{ kind: 'fault', fault: 'http500' }] },
      { steps: [countCall(label)], usage: usage(10, 3) },
      { steps: [{ kind: 'text', text: 'counted once' }], usage: usage(25, 2) },
    );
    const before = await billCount(gw());
    const r = await gw().openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: `count ${label}` }] });
    expect(r.choices[0]!.message.content).toBe('counted once');
    // The gateway did retry (4 upstream calls: two runs), and the side effect happened once.
    expect(s.upstream.requests).toHaveLength(4);
    expect(counter.effectsFor(label)).toBe(1);
    const ok = (await gw().billsAfter(before, (fresh) => fresh.some((b) => b.outcome === 'success'))).filter((b) => b.outcome === 'success');
    expect(ok).toHaveLength(1);
    expect([ok[0]!.promptTokens, ok[0]!.completionTokens]).toEqual([35, 5]);
  });

  test('the same request after a completed answer (a chat UI\'s regenerate) is a new run: a fresh answer, its tool run anew', async () => {
    const label = `regen-${name}`;
    s.upstream.enqueue(
      { steps: [countCall(label)], usage: usage(10, 3) },
      { steps: [{ kind: 'text', text: 'first answer' }], usage: usage(25, 2) },
      { steps: [countCall(label)], usage: usage(10, 3) },
      { steps: [{ kind: 'text', text: 'second answer' }], usage: usage(25, 2) },
    );
    const body = { model: 'agent', messages: [{ role: 'user' as const, content: `count ${label}` }] };
    expect((await gw().openai.chat.completions.create(body)).choices[0]!.message.content).toBe('first answer');
    expect((await gw().openai.chat.completions.create(body)).choices[0]!.message.content).toBe('second answer');
    expect(s.upstream.requests).toHaveLength(4);
    expect(counter.effectsFor(label)).toBe(2);
  });
});

describe('behind litellm: one key carries every user', () => {
  test('a burst of 200 concurrent requests on the channel\'s one key: none refused', async () => {
    s.upstream.setDefault({ steps: [{ kind: 'text', text: 'fine', chunks: 2, delayMs: 200 }] });
    const statuses = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        litellm.openai.chat.completions.create({ model: 'test-model', messages: [{ role: 'user', content: `burst ${i}` }] }).then(
          (r) => (r.choices[0]!.message.content === 'fine' ? 200 : -1),
          (e: unknown) => (e instanceof APIError ? (e.status ?? 0) : 0),
        ),
      ),
    );
    expect(statuses.filter((x) => x !== 200)).toEqual([]);
  }, 120_000);
});

describe.each(each)('behind %s: case 3, keepalives through a long tool', (name) => {
  const gw = () => gateways()[name];

  test('the client keeps receiving chunks while a tool works, and none of them adds text', async () => {
    const label = `slow-${name}`;
    s.upstream.enqueue({ steps: [countCall(label)] }, { steps: [{ kind: 'text', text: 'after the wait' }] });
    const seen = await read(await gw().openai.chat.completions.create({ model: 'agent', stream: true, messages: [{ role: 'user', content: `wait ${label}` }] }));
    expect(seen.error).toBeUndefined();
    expect(seen.content).toBe('after the wait');
    // Between the tool's start and end lines, only keepalives: about one per second of work.
    const text = (c: OpenAI.ChatCompletionChunk) => (c.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content;
    const started = seen.chunks.findIndex((c) => text(c)?.includes(`▶ counter/${COUNT_TOOL}`));
    const finished = seen.chunks.findIndex((c) => text(c)?.includes(`counter/${COUNT_TOOL} done`));
    expect(started).toBeGreaterThanOrEqual(0);
    const between = seen.chunks.slice(started + 1, finished);
    expect(between.length).toBeGreaterThanOrEqual(Math.floor(TOOL_MS / 1000 / KEEPALIVE_S) - 1);
    for (const c of between) expect(c.choices[0]!.delta).toEqual(expect.objectContaining({ reasoning_content: '' }));
    expect(between.every((c) => !c.choices[0]!.delta.content)).toBe(true);
  }, 60_000);
});

describe.each(each)('behind %s: cases 4 and 5, billing a tool loop', (name) => {
  const gw = () => gateways()[name];
  const loop = () =>
    s.upstream.enqueue({ steps: [echoCall('bill me')], usage: usage(17, 8) }, { steps: [{ kind: 'text', text: 'the answer, in several words', chunks: 5 }], usage: usage(40, 9) });

  test('a streamed tool loop without include_usage is billed with the run\'s usage, none of it as reasoning', async () => {
    loop();
    const before = await billCount(gw());
    const seen = await read(await gw().openai.chat.completions.create({ model: 'agent', stream: true, messages: [{ role: 'user', content: `bill via ${name}` }] }));
    expect(seen.error).toBeUndefined();
    expect(seen.reasoning).toContain('everything/echo');
    const bill = await lastBill(gw(), before);
    expect([bill.outcome, bill.promptTokens, bill.completionTokens]).toEqual(['success', 57, 17]);
    if (name === 'litellm') expect(bill.reasoningTokens ?? 0).toBe(0);
  });

  test('a streamed client tool call is billed its completion tokens', async () => {
    s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [{ id: 'call_w', name: 'get_weather', arguments: '{"city":"Lyon"}' }] }], usage: usage(15, 13) });
    const before = await billCount(gw());
    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }];
    const seen = await read(await gw().openai.chat.completions.create({ model: 'test-model', stream: true, tools, messages: [{ role: 'user', content: 'weather' }] }));
    expect(seen.finishReasons).toEqual(['tool_calls']);
    const bill = await lastBill(gw(), before);
    expect([bill.promptTokens, bill.completionTokens]).toEqual([15, 13]);
  });
});

describe('behind one-api with ENFORCE_INCLUDE_USAGE: case 6, a rebuilt body', () => {
  test('an mcp tool one-api re-serialised without its label still selects the model\'s servers', async () => {
    s.upstream.enqueue({ steps: [echoCall('rebuilt')], usage: usage(11, 4) }, { steps: [{ kind: 'text', text: 'still works' }], usage: usage(22, 2) });
    const before = await billCount(oneApiEnforced);
    const seen = await read(
      await oneApiEnforced.openai.chat.completions.create({
        model: 'agent',
        stream: true,
        messages: [{ role: 'user', content: 'use the tools' }],
        tools: [{ type: 'mcp', server_label: 'everything' }] as unknown as OpenAI.ChatCompletionTool[],
      }),
    );
    expect(seen.error).toBeUndefined();
    expect(seen.content).toBe('still works');
    // one-api forwarded {"type":"mcp","function":{}}; the upstream still got the server's tools.
    const sent = (s.upstream.requests[0]!.body.tools as Array<{ function: { name: string } }>).map((t) => t.function.name);
    expect(sent).toContain('everything__echo');
    const bill = await lastBill(oneApiEnforced, before);
    expect([bill.promptTokens, bill.completionTokens]).toEqual([33, 6]);
  });
});
