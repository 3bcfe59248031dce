/**
 * Budgets per run (`loop.maxModelCalls`, `loop.maxToolCalls`, `loop.maxTokens`): a loop that
 * reaches one ends with `run_budget_exceeded` naming it, before the step that would pass it; the
 * tool calls it made are compensated as on a cancel, and what it spent is in the error's usage.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EVERYTHING, MEMORY, stdioServer } from '../support/mcpServers';
import { sseEvents } from '../support/sse';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-budgets-'));
  s = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, retry: { maxAttempts: 3, initialIntervalSeconds: 0.1, maxIntervalSeconds: 0.2 }, timeouts: { connectSeconds: 5, idleSeconds: 10, totalSeconds: 30 } }],
      mcpServers: [
        {
          ...stdioServer('memory', MEMORY, [], { MEMORY_FILE_PATH: join(dir, 'memory.jsonl') }),
          compensations: { create_entities: { tool: 'delete_entities', args: { entityNames: '$.args.entities[*].name' } } },
        },
        stdioServer('everything', EVERYTHING, ['stdio']),
      ],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['memory', 'everything'] }],
      loop: { maxModelCalls: 3, maxToolCalls: 2, maxTokens: 1000 },
    }),
  });
});
afterAll(async () => {
  await s?.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => s.upstream.reset());

const small = { prompt_tokens: 10, completion_tokens: 5 };
const echo = (message: string) => ({ name: 'everything__echo', arguments: JSON.stringify({ message }) });
const create = (name: string) => ({ name: 'memory__create_entities', arguments: JSON.stringify({ entities: [{ name, entityType: 'thing', observations: [] }] }) });

/** Streams `content` to the agent; the error chunk it ends with, and the run's steps. */
async function runToError(content: string) {
  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'agent', stream: true, messages: [{ role: 'user', content }] }),
  });
  const runId = res.headers.get('x-run-id')!;
  const data: string[] = [];
  for await (const e of sseEvents(res)) data.push(e.data);
  const error = data.map((d) => (d.startsWith('{') ? (JSON.parse(d) as { error?: { code: string; param: string; message: string }; usage?: { total_tokens: number }; choices: Array<{ finish_reason: string | null }> }) : null)).find((c) => c?.error)!;
  const run = (await (await fetch(`${s.apiUrl}/v1/runs/${runId}`)).json()) as { status: string; steps: Array<{ kind: string; tool?: string }> };
  return { error, run, done: data[data.length - 1] };
}

test('maxToolCalls: the step that asks past it runs none of its calls; the calls made are compensated', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [create('Spent')] }], usage: small },
    { steps: [{ kind: 'toolCalls', calls: [echo('one'), echo('two')] }], usage: small },
  );
  const { error, run, done } = await runToError('two budgets of tools');
  expect(error.error).toMatchObject({ code: 'run_budget_exceeded', param: 'loop.maxToolCalls' });
  expect(error.error!.message).toMatch(/1 tool calls made, and the model asked for 2 more/);
  expect(error.choices[0]!.finish_reason).toBe('error');
  expect(error.usage?.total_tokens).toBe(30);
  expect(done).toBe('[DONE]');
  expect(s.upstream.requests).toHaveLength(2);
  expect(run.status).toBe('failed');
  expect(run.steps.filter((x) => x.kind === 'tool').map((x) => x.tool)).toEqual(['create_entities']);
  expect(run.steps.some((x) => x.kind === 'compensation' && x.tool === 'delete_entities')).toBe(true);
  expect(readFileSync(join(dir, 'memory.jsonl'), 'utf8')).not.toContain('"Spent"');
});

test('maxTokens: the loop stops before the step whose prompt alone would pass it, never past it', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [echo('a')] }], usage: { prompt_tokens: 300, completion_tokens: 50 } },
    { steps: [{ kind: 'toolCalls', calls: [echo('b')] }], usage: { prompt_tokens: 400, completion_tokens: 50 } },
    { steps: [{ kind: 'text', text: 'never asked' }], usage: small },
  );
  const { error } = await runToError('tokens');
  expect(error.error).toMatchObject({ code: 'run_budget_exceeded', param: 'loop.maxTokens' });
  // 800 spent; a third step's prompt would hold at least the second's 400.
  expect(error.usage?.total_tokens).toBe(800);
  expect(s.upstream.requests).toHaveLength(2);
});

test('maxModelCalls: retries count, and the loop stops when the budget leaves no call for the next step', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'fault', fault: 'http500' }] },
    { steps: [{ kind: 'toolCalls', calls: [echo('x')] }], usage: small },
    { steps: [{ kind: 'toolCalls', calls: [echo('y')] }], usage: small },
    { steps: [{ kind: 'text', text: 'never asked' }], usage: small },
  );
  const { error, run } = await runToError('calls');
  expect(error.error).toMatchObject({ code: 'run_budget_exceeded', param: 'loop.maxModelCalls' });
  expect(error.error!.message).toMatch(/3 model calls made/);
  expect(s.upstream.requests).toHaveLength(3);
  expect(run.steps.filter((x) => x.kind === 'tool')).toHaveLength(1);
});

test('a JSON request gets the budget error as a 400, and an answer within every budget is untouched', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [echo('1'), echo('2'), echo('3')] }], usage: small },
    { steps: [{ kind: 'toolCalls', calls: [echo('fine')] }], usage: small },
    { steps: [{ kind: 'text', text: 'within budget' }], usage: small },
  );
  const json = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'three at once' }] }).catch((e: unknown) => e);
  expect(json).toMatchObject({ status: 400, code: 'run_budget_exceeded', param: 'loop.maxToolCalls' });
  const ok = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'one' }] });
  expect(ok.choices[0]!.message.content).toBe('within budget');
  expect(ok.usage?.total_tokens).toBe(30);
});
