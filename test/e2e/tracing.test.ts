/**
 * OpenTelemetry traces end to end: `mix2api start` (a child process) with OTEL_EXPORTER_OTLP_ENDPOINT
 * set exports, to a real OTLP/HTTP receiver, one trace per completion that continues the caller's
 * `traceparent`: the HTTP request, the workflow start, the workflow, each activity, each upstream
 * call (`chat {model}`, with gen_ai.* attributes) and each tool call (`execute_tool {tool}`); the
 * upstream and the HTTP MCP server are sent that trace's context. A tool loop whose process is
 * killed mid-tool and restarted stays in its trace.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { runIdFor } from '../../src/api/engine/startRun';
import { childMix2api, type ChildMix2api } from '../support/childMix2api';
import { COUNT_TOOL, startCountingMcpServer, type CountingMcpServer } from '../support/countingMcpServer';
import { freePort } from '../support/mcpServers';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../support/otlpReceiver';
import { startScriptedUpstream, type ScriptedUpstream } from '../support/scriptedUpstream';
import { testEnv, uniqueQueue } from '../support/stack';
import { waitFor } from '../support/waitFor';

let dir: string;
let otlp: OtlpReceiver;
let upstream: ScriptedUpstream;
let counter: CountingMcpServer;
let child: ChildMix2api;
let connection: Connection;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mix2api-tracing-'));
  [otlp, upstream, counter] = await Promise.all([startOtlpReceiver(), startScriptedUpstream(), startCountingMcpServer({ workMs: 2500 })]);
  // Whatever the run: call the tool once, then answer with what it said.
  upstream.setDefault((req) => {
    const tool = ((req.body.messages ?? []) as Array<{ role: string; content?: unknown }>).find((m) => m.role === 'tool');
    if (tool) return { steps: [{ kind: 'text', text: `done: ${String(tool.content)}` }], usage: { prompt_tokens: 30, completion_tokens: 4 } };
    const label = String(((req.body.messages ?? []) as Array<{ content?: unknown }>)[0]?.content ?? '');
    return { steps: [{ kind: 'toolCalls', calls: [{ name: `counter__${COUNT_TOOL}`, arguments: JSON.stringify({ label }) }] }], usage: { prompt_tokens: 12, completion_tokens: 6 } };
  });
  child = childMix2api({
    dir,
    port: await freePort(),
    config: {
      temporal: { address: testEnv().address, taskQueue: uniqueQueue('tracing') },
      upstreams: [{ name: 'scripted', baseURL: upstream.url, retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 } }],
      mcpServers: [{ name: 'counter', transport: 'http', url: counter.url, timeoutSeconds: 60 }],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted-model', mcpServers: ['counter'] }],
      stream: { heartbeatSeconds: 1 },
    },
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_SERVICE_NAME: 'mix2api-under-test' },
  });
  connection = await Connection.connect({ address: testEnv().address });
  await child.start();
});
afterAll(async () => {
  await child?.kill();
  await Promise.all([otlp?.close(), upstream?.close(), counter?.close(), connection?.close()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const traceparentFor = (traceId: string) => `00-${traceId}-${'ab'.repeat(8)}-01`;
const newTraceId = () => [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
const post = (body: unknown, headers: Record<string, string>) =>
  fetch(`${child.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

function ancestry(spans: ReceivedSpan[], s: ReceivedSpan): string[] {
  const byId = new Map(spans.map((x) => [x.spanId, x]));
  const names: string[] = [];
  for (let p = s.parentSpanId ? byId.get(s.parentSpanId) : undefined; p; p = p.parentSpanId ? byId.get(p.parentSpanId) : undefined) names.push(p.name);
  return names;
}

test('one trace per completion: request → workflow → activities → upstream calls and tool calls', async () => {
  const traceId = newTraceId();
  const res = await post({ model: 'agent', messages: [{ role: 'user', content: 'traced-once' }] }, { traceparent: traceparentFor(traceId) });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toMatch(/^done: counted traced-once/);

  const spans = await waitFor(async () => {
    const mine = otlp.spans.filter((s) => s.traceId === traceId);
    return mine.some((s) => s.name.startsWith('POST ')) && mine.filter((s) => s.name === 'chat scripted-model').length === 2 && mine.some((s) => s.name === `execute_tool ${COUNT_TOOL}`) ? mine : null;
  }, 20_000);
  const one = (name: string) => {
    const found = spans.filter((s) => s.name === name);
    expect(found.map((s) => s.name)).toEqual([name]);
    return found[0]!;
  };
  const http = one('POST /v1/chat/completions');
  // The caller's span is the request's parent: the trace is the edge's.
  expect(http.parentSpanId).toBe('ab'.repeat(8));
  expect(http.kind).toBe(2); // SERVER
  expect(http.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.route': '/v1/chat/completions', 'http.response.status_code': 200, 'mix2api.run_id': expect.stringMatching(/^chatcmpl-/) });
  expect(http.resource).toMatchObject({ 'service.name': 'mix2api-under-test' });

  const chats = spans.filter((s) => s.name === 'chat scripted-model').sort((a, b) => Number(a.startNs - b.startNs));
  for (const c of chats) {
    expect(c.kind).toBe(3); // CLIENT
    expect(ancestry(spans, c)).toEqual(expect.arrayContaining(['RunActivity:callModel', 'StartActivity:callModel', 'RunWorkflow:chatCompletionWorkflow', 'StartWorkflow:chatCompletionWorkflow', 'POST /v1/chat/completions']));
  }
  expect(chats[0]!.attributes).toMatchObject({ 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'scripted-model', 'mix2api.upstream': 'scripted', 'mix2api.step': 0, 'mix2api.attempt': 1, 'gen_ai.response.finish_reasons': ['tool_calls'], 'gen_ai.usage.input_tokens': 12, 'gen_ai.usage.output_tokens': 6, 'mix2api.ttft_ms': expect.any(Number) });
  expect(chats[1]!.attributes).toMatchObject({ 'mix2api.step': 1, 'gen_ai.response.finish_reasons': ['stop'], 'gen_ai.usage.input_tokens': 30 });

  const tool = one(`execute_tool ${COUNT_TOOL}`);
  expect(tool.attributes).toMatchObject({ 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': COUNT_TOOL, 'mix2api.mcp.server': 'counter', 'mix2api.tool.outcome': 'ok', 'mix2api.tool.ms': expect.any(Number) });
  expect(ancestry(spans, tool)).toEqual(expect.arrayContaining(['RunActivity:callTool', 'StartActivity:callTool', 'RunWorkflow:chatCompletionWorkflow', 'POST /v1/chat/completions']));
  expect((tool.attributes['mix2api.tool.ms'] as number) >= 2000).toBe(true);

  // The context went on: the upstream saw each chat span as its parent, the MCP server the tool's.
  const sent = upstream.requests.filter((r) => String(r.headers.traceparent ?? '').includes(traceId)).map((r) => String(r.headers.traceparent).split('-')[2]);
  expect(sent).toEqual(chats.map((c) => c.spanId));
  expect(counter.traceparents.filter((t) => t?.includes(traceId)).map((t) => t!.split('-')[2])).toContain(tool.spanId);
  // The default protocol: OTLP/HTTP protobuf.
  expect(otlp.requests.every((t) => t === 'application/x-protobuf')).toBe(true);
});

test('a tool loop killed mid-tool and resumed by the restarted process stays in its trace', async () => {
  const traceId = newTraceId();
  const key = `traced-crash-${Date.now()}`;
  const runId = runIdFor(key, 'anonymous');
  const cut = post({ model: 'agent', messages: [{ role: 'user', content: 'traced-crash' }] }, { traceparent: traceparentFor(traceId), 'idempotency-key': key }).catch(() => null);
  await waitFor(async () => counter.keysFor('traced-crash').length > 0 && counter.inFlight.size > 0, 20_000);
  // What has ended so far (the start, the first model call) leaves the process within the batch delay.
  await waitFor(async () => otlp.spans.some((s) => s.traceId === traceId && s.name === 'StartWorkflow:chatCompletionWorkflow') && otlp.spans.some((s) => s.traceId === traceId && s.name === 'chat scripted-model'), 10_000);
  expect(counter.inFlight.size).toBeGreaterThan(0);
  const before = new Set(otlp.spans.filter((s) => s.traceId === traceId).map((s) => s.resource['service.instance.id']));
  await child.kill();
  await cut;
  await child.start();
  const client = new Client({ connection });
  const result = (await client.workflow.getHandle(runId).result()) as { message: { content: string } };
  expect(result.message.content).toMatch(/^done: counted traced-crash/);

  const spans = await waitFor(async () => {
    const mine = otlp.spans.filter((s) => s.traceId === traceId);
    return mine.some((s) => s.name === 'chat scripted-model' && s.attributes['mix2api.step'] === 1) ? mine : null;
  }, 30_000);
  expect(before.size).toBe(1);
  const after = spans.filter((s) => !before.has(s.resource['service.instance.id']));
  // The restarted process's spans: the tool call again (the killed one never ended) and the last step, in the same trace.
  expect(after.map((s) => s.name)).toEqual(expect.arrayContaining(['RunActivity:callTool', `execute_tool ${COUNT_TOOL}`, 'RunActivity:callModel', 'chat scripted-model']));
  // Its parents reach back, through the workflow, to the start the killed process made and exported.
  const retried = after.find((s) => s.name === 'RunActivity:callTool')!;
  expect(ancestry(spans, retried)).toEqual(expect.arrayContaining(['StartActivity:callTool', 'RunWorkflow:chatCompletionWorkflow', 'StartWorkflow:chatCompletionWorkflow']));
  const start = spans.find((s) => s.name === 'StartWorkflow:chatCompletionWorkflow')!;
  expect(before.has(start.resource['service.instance.id'])).toBe(true);
  expect(ancestry(spans, after.find((s) => s.name === 'chat scripted-model')!)).toContain('StartWorkflow:chatCompletionWorkflow');
});
