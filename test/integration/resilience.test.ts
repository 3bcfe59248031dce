/**
 * Fallbacks, the circuit breaker, the bulkhead's fail-over and the context window guard, through
 * the real openai client and a real Temporal server. The upstreams speak different dialects on
 * one scripted server, so the path of each recorded request says which upstream it went to.
 */
import type OpenAI from 'openai';
import { startStack, type Stack } from '../support/stack';

const CHAT = '/v1/chat/completions';
const MESSAGES = '/v1/messages';
const GEMINI = '/v1beta/models/fb-model:streamGenerateContent';

let s: Stack;
beforeAll(async () => {
  s = await startStack({
    config: (url) => {
      const root = url.replace(/\/v1$/, '');
      const one = { retry: { maxAttempts: 1 }, breaker: { failures: 0 } };
      return {
        upstreams: [
          { name: 'primary', baseURL: url, ...one },
          { name: 'secondary', api: 'anthropic-messages', baseURL: root, ...one },
          { name: 'tertiary', api: 'gemini', baseURL: root, ...one },
          { name: 'flaky', baseURL: url, retry: { maxAttempts: 1 }, breaker: { failures: 2, cooldownSeconds: 1 } },
          { name: 'narrow', baseURL: url, maxConcurrent: 1, queueSeconds: 0, ...one },
        ],
        models: [
          { id: 'resilient', upstream: 'primary', model: 'p-model', fallbacks: [{ upstream: 'secondary', model: 'fb-model' }, { upstream: 'tertiary', model: 'fb-model' }] },
          { id: 'solo', upstream: 'flaky', model: 'f-model' },
          { id: 'guarded', upstream: 'flaky', model: 'f-model', fallbacks: [{ upstream: 'secondary', model: 'fb-model' }] },
          { id: 'crowded', upstream: 'narrow', model: 'n-model', fallbacks: [{ upstream: 'secondary', model: 'fb-model' }] },
          { id: 'small', upstream: 'primary', model: 'p-model', contextTokens: 300 },
          { id: 'strict', upstream: 'primary', model: 'p-model', contextTokens: 300, trim: false },
        ],
      };
    },
  });
});
afterAll(() => s?.stop());
beforeEach(() => s.upstream.reset());

const ask = [{ role: 'user' as const, content: 'hi' }];
const paths = () => s.upstream.requests.map((r) => r.path);
async function rejection(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    return e as InstanceType<typeof OpenAI.APIError>;
  }
  throw new Error('expected a rejection');
}
const runOf = async (id: string) => (await fetch(`${s.apiUrl}/v1/runs/${id}`)).json() as Promise<{ steps: Array<{ kind: string; upstream?: string }> }>;
const breakerOf = async (name: string) => ((await (await fetch(`${s.apiUrl}/readyz`)).json()) as { upstreams: Record<string, { breaker: { state: string } }> }).upstreams[name]!.breaker.state;

test('fallbacks in order on retryable failures before the first byte; the run records who answered', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http500' }] }, { steps: [{ kind: 'fault', fault: 'overloaded' }] }, { steps: [{ kind: 'text', text: 'from the third' }] });
  const r = await s.openai.chat.completions.create({ model: 'resilient', messages: ask });
  expect(r.choices[0]!.message.content).toBe('from the third');
  expect(paths()).toEqual([CHAT, MESSAGES, GEMINI]);
  expect(s.upstream.requests.map((q) => q.body.model ?? 'in path')).toEqual(['p-model', 'fb-model', 'in path']);
  expect((await runOf(r.id)).steps).toEqual([expect.objectContaining({ kind: 'model', upstream: 'tertiary' })]);
  // The Temporal Web UI shows the same as the workflow's current details.
  const meta = (await s.temporal.workflow.getHandle(r.id).query('__temporal_workflow_metadata')) as { currentDetails?: string };
  expect(meta.currentDetails).toBe('step 0: resilient answered by upstream tertiary');
});

test('a rate limit falls back too; the first healthy upstream answers', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http429' }] }, { steps: [{ kind: 'text', text: 'second' }] });
  const r = await s.openai.chat.completions.create({ model: 'resilient', messages: ask });
  expect(r.choices[0]!.message.content).toBe('second');
  expect(paths()).toEqual([CHAT, MESSAGES]);
});

test('no fallback once the stream has started, nor for a request the upstream refused', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'half an ans' }, { kind: 'fault', fault: 'drop' }] });
  const cut = await rejection(s.openai.chat.completions.create({ model: 'resilient', messages: ask }));
  expect(cut.status).toBe(502);
  expect(cut.code).toBe('upstream_connection');
  expect(paths()).toEqual([CHAT]);

  s.upstream.reset();
  s.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http400', message: 'bad field' }] });
  const bad = await rejection(s.openai.chat.completions.create({ model: 'resilient', messages: ask }));
  expect(bad.status).toBe(400);
  expect(paths()).toEqual([CHAT]);
});

test('the breaker opens after consecutive failures, answers 503 without calling, probes after the cool-down and closes', async () => {
  const down = { steps: [{ kind: 'fault' as const, fault: 'http500' as const }] };
  s.upstream.enqueue(down, down);
  for (let i = 0; i < 2; i++) expect((await rejection(s.openai.chat.completions.create({ model: 'solo', messages: ask }))).status).toBe(502);
  expect(await breakerOf('flaky')).toBe('open');
  const open = await rejection(s.openai.chat.completions.create({ model: 'solo', messages: ask }));
  expect(open.status).toBe(503);
  expect(open.code).toBe('upstream_unavailable');
  expect(open.headers?.get('retry-after')).toMatch(/^\d+$/);
  expect(s.upstream.requests).toHaveLength(2);

  // Open, with a fallback: the broken upstream is skipped without a request.
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'covered' }] });
  const covered = await s.openai.chat.completions.create({ model: 'guarded', messages: ask });
  expect(covered.choices[0]!.message.content).toBe('covered');
  expect(paths().slice(2)).toEqual([MESSAGES]);

  await new Promise((ok) => setTimeout(ok, 1100));
  expect(await breakerOf('flaky')).toBe('half_open');
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'probe ok' }] });
  const probe = await s.openai.chat.completions.create({ model: 'solo', messages: ask });
  expect(probe.choices[0]!.message.content).toBe('probe ok');
  expect(await breakerOf('flaky')).toBe('closed');
});

test('a full bulkhead fails over to the fallback before anything is sent', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'slow and steady', chunks: 5, delayMs: 200 }] }, { steps: [{ kind: 'text', text: 'overflow' }] });
  const slow = s.openai.chat.completions.create({ model: 'crowded', messages: ask });
  await new Promise((ok) => setTimeout(ok, 300));
  const quick = await s.openai.chat.completions.create({ model: 'crowded', messages: ask });
  expect(quick.choices[0]!.message.content).toBe('overflow');
  expect((await slow).choices[0]!.message.content).toBe('slow and steady');
  expect(paths()).toEqual([CHAT, MESSAGES]);
  expect((await runOf(quick.id)).steps[0]!.upstream).toBe('secondary');
});

const long = 'word '.repeat(120); // ~150 tokens as estimated
const history = [
  { role: 'system' as const, content: 'Keep me.' },
  { role: 'user' as const, content: `first ${long}` },
  { role: 'assistant' as const, content: null, tool_calls: [{ id: 'call_a', type: 'function' as const, function: { name: 'lookup', arguments: '{}' } }] },
  { role: 'tool' as const, tool_call_id: 'call_a', content: `looked up ${long}` },
  { role: 'assistant' as const, content: 'done' },
  { role: 'user' as const, content: 'and now?' },
];

test('over the context window: the oldest turns are trimmed, the system prompt stays, no tool result loses its call', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'trimmed fine' }] });
  const r = await s.openai.chat.completions.create({ model: 'small', messages: history });
  expect(r.choices[0]!.message.content).toBe('trimmed fine');
  const sent = s.upstream.requests[0]!.body.messages as Array<{ role: string; content: string | null }>;
  expect(sent).toEqual([{ role: 'system', content: 'Keep me.' }, { role: 'user', content: 'and now?' }]);
  const meta = (await s.temporal.workflow.getHandle(r.id).query('__temporal_workflow_metadata')) as { currentDetails?: string };
  expect(meta.currentDetails).toContain('4 older messages trimmed');
});

test('over the window with trimming off, or too big to trim: 400 context_length_exceeded before anything starts', async () => {
  const strict = await rejection(s.openai.chat.completions.create({ model: 'strict', messages: history }));
  expect(strict.status).toBe(400);
  expect(strict.code).toBe('context_length_exceeded');
  expect(strict.param).toBe('messages');
  const huge = await rejection(s.openai.chat.completions.create({ model: 'small', messages: [{ role: 'user', content: long.repeat(3) }] }));
  expect(huge.status).toBe(400);
  expect(huge.code).toBe('context_length_exceeded');
  expect(s.upstream.requests).toHaveLength(0);
});
