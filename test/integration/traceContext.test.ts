/**
 * W3C trace context with tracing off (no OTLP export, nothing recorded): the caller's
 * `traceparent` and `tracestate` still reach the upstream on every model step and the HTTP MCP
 * server on every tool call, through the workflow and whichever worker runs each activity; a
 * session's second turn carries its own caller's trace, not the first's; the MCP gateway's calls
 * carry theirs; a request without one (or with an invalid one) sends none.
 */
import { Client as McpClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { COUNT_TOOL, startCountingMcpServer, type CountingMcpServer } from '../support/countingMcpServer';
import type { RecordedRequest } from '../support/scriptedUpstream';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
let counter: CountingMcpServer;

beforeAll(async () => {
  counter = await startCountingMcpServer({ workMs: 50 });
  s = await startStack({
    config: () => ({
      mcpServers: [{ name: 'counter', transport: 'http', url: counter.url, timeoutSeconds: 30 }],
      models: [
        { id: 'test-model', upstream: 'scripted', model: 'scripted' },
        { id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['counter'] },
      ],
    }),
  });
});
afterAll(async () => {
  await s?.stop();
  await counter?.close();
});

const traceId = (n: number) => `4bf92f3577b34da6a3ce929d0e0e${String(n).padStart(4, '0')}`;
const traceparentOf = (n: number) => `00-${traceId(n)}-00f067aa0ba902b7-01`;
const header = (r: RecordedRequest, name: string) => r.headers[name] as string | undefined;
const sentFor = (word: string) => s.upstream.requests.filter((r) => JSON.stringify(r.body.messages).includes(word));

function toolThenAnswer(label: string) {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: `counter__${COUNT_TOOL}`, arguments: JSON.stringify({ label }) }] }] },
    { steps: [{ kind: 'text', text: `answer ${label}` }] },
  );
}

test('a tool loop forwards the caller’s trace context to every model step and the MCP call', async () => {
  toolThenAnswer('trace-loop');
  const tracestate = 'edge=t61rcWkgMzE,other=x';
  const r = await s.openai.chat.completions.create(
    { model: 'agent', messages: [{ role: 'user', content: 'trace-loop please' }] },
    { headers: { traceparent: traceparentOf(1), tracestate } },
  );
  expect(r.choices[0]!.message.content).toBe('answer trace-loop');
  const steps = sentFor('trace-loop');
  expect(steps).toHaveLength(2);
  for (const step of steps) {
    expect(header(step, 'traceparent')).toBe(traceparentOf(1));
    expect(header(step, 'tracestate')).toBe(tracestate);
  }
  const calls = counter.keysFor('trace-loop');
  expect(calls).toHaveLength(1);
  const i = counter.metas.findIndex((m) => JSON.stringify(m).includes(calls[0]!));
  expect(counter.traceparents[i]).toBe(traceparentOf(1));
});

test('a streamed answer (its first step started by the API itself) forwards it too', async () => {
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'streamed words', chunks: 3 }] });
  const stream = await s.openai.chat.completions.create(
    { model: 'test-model', stream: true, messages: [{ role: 'user', content: 'trace-stream please' }] },
    { headers: { traceparent: traceparentOf(2) } },
  );
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
  expect(text).toBe('streamed words');
  const [step] = sentFor('trace-stream');
  expect(header(step!, 'traceparent')).toBe(traceparentOf(2));
  expect(header(step!, 'tracestate')).toBeUndefined();
});

test('each turn of a session carries its own caller’s trace', async () => {
  const session = `trace-session-${Date.now()}`;
  for (const [n, word] of [[3, 'trace-turn-one'], [4, 'trace-turn-two']] as const) {
    s.upstream.enqueue({ steps: [{ kind: 'text', text: `ok ${word}` }] });
    const r = await s.openai.chat.completions.create(
      { model: 'test-model', messages: [{ role: 'user', content: `${word} please` }] },
      { headers: { traceparent: traceparentOf(n), 'x-session-id': session } },
    );
    expect(r.choices[0]!.message.content).toBe(`ok ${word}`);
    const steps = s.upstream.requests.filter((q) => JSON.stringify(q.body.messages).endsWith(`${word} please"}]`));
    expect(steps.map((q) => header(q, 'traceparent'))).toEqual([traceparentOf(n)]);
  }
});

test('an MCP gateway call forwards the MCP client’s trace context', async () => {
  const transport = new StreamableHTTPClientTransport(new URL(`${s.apiUrl}/mcp`), { requestInit: { headers: { traceparent: traceparentOf(5) } } });
  const client = new McpClient({ name: 'trace-test', version: '1.0.0' });
  await client.connect(transport);
  try {
    const r = await client.callTool({ name: `counter__${COUNT_TOOL}`, arguments: { label: 'trace-gateway' } });
    expect(r.isError).toBe(false);
  } finally {
    await client.close();
  }
  const key = counter.keysFor('trace-gateway')[0]!;
  const i = counter.metas.findIndex((m) => JSON.stringify(m).includes(key));
  expect(counter.traceparents[i]).toBe(traceparentOf(5));
});

test('no traceparent, or an invalid one: none is sent', async () => {
  for (const [word, headers] of [
    ['trace-none', {}],
    ['trace-bad', { traceparent: `ff-${traceId(6)}-00f067aa0ba902b7-01` }],
    ['trace-zero', { traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01` }],
  ] as const) {
    toolThenAnswer(word);
    await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: `${word} please` }] }, { headers });
    expect(sentFor(word).map((q) => header(q, 'traceparent'))).toEqual([undefined, undefined]);
    const key = counter.keysFor(word)[0]!;
    expect(counter.traceparents[counter.metas.findIndex((m) => JSON.stringify(m).includes(key))]).toBeUndefined();
  }
});
