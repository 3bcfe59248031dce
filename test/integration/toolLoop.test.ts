/**
 * The server-side MCP tool loop inside /v1/chat/completions, with real MCP servers from npm
 * (server-everything over stdio and Streamable HTTP, server-filesystem, server-memory), the
 * scripted upstream emitting tool calls, and the real openai client.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RecordedRequest } from '../support/scriptedUpstream';
import { EVERYTHING, FILESYSTEM, MEMORY, freePort, startEverything, stdioServer, stopProcess } from '../support/mcpServers';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
let dir: string;
let httpPort: number;
let httpServer: ChildProcess | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-tools-'));
  httpPort = await freePort();
  s = await startStack({
    config: (url) => ({
      upstreams: [{ name: 'scripted', baseURL: url, retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 } }],
      mcpServers: [
        { ...stdioServer('everything', EVERYTHING, ['stdio']), timeoutSeconds: 2 },
        stdioServer('memory', MEMORY, [], { MEMORY_FILE_PATH: join(dir, 'memory.jsonl') }),
        stdioServer('fs', FILESYSTEM, [dir]),
        { name: 'remote', transport: 'http', url: `http://127.0.0.1:${httpPort}/mcp` },
      ],
      models: [
        { id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything', 'memory', 'fs'] },
        { id: 'plain', upstream: 'scripted', model: 'scripted' },
        { id: 'remote-agent', upstream: 'scripted', model: 'scripted', mcpServers: ['remote'] },
      ],
      loop: { maxSteps: 3, keepaliveSeconds: 1 },
    }),
  });
});
afterAll(async () => {
  await s?.stop();
  await stopProcess(httpServer);
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => s.upstream.reset());

const call = (name: string, args: unknown, id?: string) => ({ name, arguments: JSON.stringify(args), ...(id ? { id } : {}) });
const toolMessages = (r: RecordedRequest) => (r.body.messages as Array<{ role: string; content?: string; tool_call_id?: string }>).filter((m) => m.role === 'tool');
const usage = { prompt_tokens: 10, completion_tokens: 5 };

test('a multi-round loop runs real MCP tools and answers once, with usage summed', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [call('everything__echo', { message: 'hello tools' })] }], usage },
    { steps: [{ kind: 'toolCalls', calls: [call('everything__get-sum', { a: 2, b: 3 })] }], usage },
    { steps: [{ kind: 'text', text: 'Echoed and summed.' }], usage },
  );
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'go' }] });
  expect(r.choices[0]!.message.content).toBe('Echoed and summed.');
  expect(r.choices[0]!.message.tool_calls).toBeUndefined();
  expect(r.choices[0]!.finish_reason).toBe('stop');
  expect(r.usage).toMatchObject({ prompt_tokens: 30, completion_tokens: 15, total_tokens: 45 });
  const [first, second, third] = s.upstream.requests;
  const names = (first!.body.tools as Array<{ function: { name: string } }>).map((t) => t.function.name);
  expect(names).toEqual(expect.arrayContaining(['everything__echo', 'everything__get-sum', 'memory__create_entities', 'fs__write_file']));
  expect(toolMessages(second!)[0]!.content).toContain('hello tools');
  expect(toolMessages(third!).map((m) => m.content).join(' ')).toMatch(/\b5\b/);
  // The Temporal UI names each step.
  const history = await s.temporal.workflow.getHandle(r.id).fetchHistory();
  const summaries = (history.events ?? [])
    .filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => Buffer.from(e.userMetadata?.summary?.data ?? new Uint8Array()).toString().replace(/"/g, ''));
  expect(summaries).toEqual(expect.arrayContaining(['mcp everything/echo', 'mcp everything/get-sum', 'llm agent step 0', 'llm agent step 2']));
  // …and can filter runs by model and by the tools they used.
  const desc = await s.temporal.workflow.getHandle(r.id).describe();
  expect(desc.searchAttributes).toMatchObject({ Mix2apiModel: ['agent'], Mix2apiTools: ['everything/echo', 'everything/get-sum'] });
  expect(await desc.staticSummary()).toBe('agent: go');
});

test('parallel calls in one turn run as separate activities and both results reach the model', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [call('everything__echo', { message: 'left' }, 'c1'), call('everything__echo', { message: 'right' }, 'c2')] }] },
    { steps: [{ kind: 'text', text: 'both done' }] },
  );
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'two' }] });
  expect(r.choices[0]!.message.content).toBe('both done');
  const results = toolMessages(s.upstream.requests[1]!);
  expect(results.map((m) => m.tool_call_id)).toEqual(['c1', 'c2']);
  expect(results[0]!.content).toContain('left');
  expect(results[1]!.content).toContain('right');
});

test('invalid arguments and tool errors go back to the model, which recovers', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [call('everything__get-sum', { a: 'two', b: 3 })] }] },
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: '{"message": ' }] }] },
    { steps: [{ kind: 'text', text: 'I could not compute it.' }] },
  );
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'sum' }] });
  expect(r.choices[0]!.message.content).toBe('I could not compute it.');
  expect(toolMessages(s.upstream.requests[1]!)[0]!.content).toMatch(/input schema/);
  expect(toolMessages(s.upstream.requests[2]!)[1]!.content).toMatch(/not valid JSON/);
});

test('a tool that outlives its timeout becomes a failed result, not a failed run', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [call('everything__trigger-long-running-operation', { duration: 6, steps: 1 })] }] },
    { steps: [{ kind: 'text', text: 'it timed out' }] },
  );
  const t0 = Date.now();
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'slow' }] });
  expect(r.choices[0]!.message.content).toBe('it timed out');
  expect(toolMessages(s.upstream.requests[1]!)[0]!.content).toMatch(/did not answer within 2s/);
  expect(Date.now() - t0).toBeLessThan(6000);
});

test('maxSteps ends a runaway loop with finish_reason length and a clear note', async () => {
  const again = { steps: [{ kind: 'toolCalls' as const, calls: [call('everything__echo', { message: 'again' })] }] };
  s.upstream.enqueue(again, again, again, again);
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'loop' }] });
  expect(r.choices[0]!.finish_reason).toBe('length');
  expect(r.choices[0]!.message.content).toMatch(/stopped after 3 model steps/);
  expect(s.upstream.requests).toHaveLength(3);
});

test('a mixed turn returns only the client call; the follow-up is re-joined with the hidden step', async () => {
  const weather = { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [call('everything__echo', { message: 'server side' }, 'srv1'), call('get_weather', { city: 'Oslo' }, 'cli1')] }] });
  const first = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'weather?' }], tools: [weather] });
  expect(first.choices[0]!.finish_reason).toBe('tool_calls');
  const calls = first.choices[0]!.message.tool_calls!;
  expect(calls).toHaveLength(1);
  expect(calls[0]).toMatchObject({ type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } });
  expect(calls[0]!.id).toMatch(/^call_mx[0-9a-f]{32}x0$/);

  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'Oslo is sunny.' }] });
  const second = await s.openai.chat.completions.create({
    model: 'agent',
    tools: [weather],
    messages: [{ role: 'user', content: 'weather?' }, first.choices[0]!.message, { role: 'tool', tool_call_id: calls[0]!.id, content: 'sunny' }],
  });
  expect(second.choices[0]!.message.content).toBe('Oslo is sunny.');
  const seen = s.upstream.requests[1]!.body.messages as Array<{ role: string; tool_call_id?: string; content?: string; tool_calls?: Array<{ id: string }> }>;
  expect(seen.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool']);
  expect(seen[1]!.tool_calls!.map((c) => c.id)).toEqual(['srv1', 'cli1']);
  expect(seen[2]).toMatchObject({ tool_call_id: 'srv1' });
  expect(seen[2]!.content).toContain('server side');
  expect(seen[3]).toMatchObject({ tool_call_id: 'cli1', content: 'sunny' });
});

test('side effects happen exactly once even when the next model call is retried', async () => {
  const file = join(dir, 'note.txt');
  s.upstream.enqueue(
    {
      steps: [
        {
          kind: 'toolCalls',
          calls: [call('fs__write_file', { path: file, content: 'written once' }), call('memory__create_entities', { entities: [{ name: 'Ada', entityType: 'person', observations: ['wrote a note'] }] })],
        },
      ],
    },
    { steps: [{ kind: 'fault', fault: 'http500' }] },
    { steps: [{ kind: 'text', text: 'saved' }] },
  );
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'save' }] });
  expect(r.choices[0]!.message.content).toBe('saved');
  expect(readFileSync(file, 'utf8')).toBe('written once');
  const entities = readFileSync(join(dir, 'memory.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"Ada"'));
  expect(entities).toHaveLength(1);
  const history = await s.temporal.workflow.getHandle(r.id).fetchHistory();
  const toolStarts = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'callTool');
  expect(toolStarts).toHaveLength(2);
});

test('the openai client streams a three-tool run as one message, with progress and keepalives', async () => {
  s.upstream.enqueue(
    { steps: [{ kind: 'text', text: 'Let me check. ' }, { kind: 'toolCalls', calls: [call('everything__echo', { message: 'a' })] }] },
    { steps: [{ kind: 'toolCalls', calls: [call('everything__get-sum', { a: 1, b: 1 }), call('everything__trigger-long-running-operation', { duration: 1.5, steps: 3 })] }] },
    { steps: [{ kind: 'text', text: 'All three tools ran.' }] },
  );
  const stream = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: 'three' }], stream: true });
  let content = '';
  let reasoning = '';
  let keepalives = 0;
  const finishes: Array<string | null> = [];
  for await (const c of stream) {
    const choice = c.choices[0];
    if (!choice) continue;
    const delta = choice.delta as { content?: string; reasoning_content?: string; tool_calls?: unknown };
    expect(delta.tool_calls).toBeUndefined();
    content += delta.content ?? '';
    reasoning += delta.reasoning_content ?? '';
    // Keepalives (loop.keepalive: reasoning) are `{"reasoning_content":""}` deltas.
    if (delta.reasoning_content === '' && Object.keys(delta).length === 1 && !choice.finish_reason) keepalives++;
    if (choice.finish_reason) finishes.push(choice.finish_reason);
  }
  expect(content).toBe('Let me check. All three tools ran.');
  expect(finishes).toEqual(['stop']);
  expect(reasoning).toMatch(/everything\/echo/);
  expect(reasoning).toMatch(/everything\/trigger-long-running-operation done in \d+ ms/);
  expect(keepalives).toBeGreaterThanOrEqual(1);
  // And the SDK's stream helper accepts the same kind of stream.
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [call('everything__echo', { message: 'x' })] }] }, { steps: [{ kind: 'text', text: 'ok' }] });
  const final = await s.openai.chat.completions.stream({ model: 'agent', messages: [{ role: 'user', content: 'x' }] }).finalChatCompletion();
  expect(final.choices[0]!.message.content).toBe('ok');
});

test('a request names a configured server OpenAI-style; an unknown label is a 400', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [call('everything__echo', { message: 'named' })] }] }, { steps: [{ kind: 'text', text: 'done' }] });
  const r = await s.openai.chat.completions.create({
    model: 'plain',
    messages: [{ role: 'user', content: 'x' }],
    // @ts-expect-error: the openai types do not know chat-completions MCP tools
    tools: [{ type: 'mcp', server_label: 'everything', allowed_tools: ['echo'], require_approval: 'never' }],
  });
  expect(r.choices[0]!.message.content).toBe('done');
  expect((s.upstream.requests[0]!.body.tools as Array<{ function: { name: string } }>).map((t) => t.function.name)).toEqual(['everything__echo']);

  const res = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'plain', messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'mcp', server_label: 'nope' }] }),
  });
  expect(res.status).toBe(400);
  expect(((await res.json()) as { error: { param: string } }).error.param).toBe('tools[0].server_label');
});

test('a Streamable HTTP server that is down at start is waited for, and used when it comes back', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [call('remote__echo', { message: 'over http' })] }] }, { steps: [{ kind: 'text', text: 'remote ok' }] });
  const pending = s.openai.chat.completions.create({ model: 'remote-agent', messages: [{ role: 'user', content: 'x' }] });
  await new Promise((r) => setTimeout(r, 1500));
  expect(existsSync(join(dir, 'never'))).toBe(false);
  httpServer = await startEverything('streamableHttp', httpPort);
  const r = await pending;
  expect(r.choices[0]!.message.content).toBe('remote ok');
  expect(toolMessages(s.upstream.requests[1]!)[0]!.content).toContain('over http');
});
