/**
 * Records the workflow histories that test/integration/replay.test.ts replays to guard
 * determinism. Starts its own Temporal dev server (headless, temp SQLite file, free port), a
 * scripted upstream and mix2api in-process (worker + API, as test/support/stack.ts does), drives
 * one run per scenario through the API, and writes each run's history as JSON
 * (`historyToJSON`, loadable with `historyFromJSON`) to test/fixtures/histories/<name>.json.
 *
 *   npx tsx test/support/recordHistories.ts            # every scenario
 *   npx tsx test/support/recordHistories.ts cancel-compensate tool-loop   # only these
 *
 * Re-record after an intended, versioned change of the workflow; a replay failure after any other
 * change of src/workflows means running workflows would break on deploy.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils';
import OpenAI from 'openai';
import { ledgerIdOf } from '../../src/api/http/limits';
import { sessionWorkflowId } from '../../src/api/engine/startRun';
import { LEDGER_QUERY, type LedgerView } from '../../src/domain/limits';
import { parseConfig } from '../../src/config/load';
import { startDevServer } from '../../src/connectors/temporalDevServer';
import { installLogger } from '../../src/roles/logging';
import { startSystem } from '../../src/roles/system';
import { startGhost } from './ghostProcess';
import { EVERYTHING, MEMORY, freePort, stdioServer } from './mcpServers';
import { startScriptedUpstream, type ScriptedUpstream } from './scriptedUpstream';
import { contentOf, sseEvents } from './sse';
import { waitFor } from './waitFor';

const ROOT = join(__dirname, '..', '..');
export const HISTORIES_DIR = join(ROOT, 'test', 'fixtures', 'histories');

interface Ctx {
  apiUrl: string;
  openai: OpenAI;
  upstream: ScriptedUpstream;
  memoryFile: string;
  taskQueue: string;
  temporal: Client;
  address: string;
}

/** A scenario drives one or more runs and returns their ids, each saved under `<name>[-<suffix>]`. */
/** `open`: the workflow stays open (a session actor); record its history as it is now. */
type Scenario = (c: Ctx) => Promise<Array<{ runId: string; suffix?: string; open?: boolean }>>;

const call = (name: string, args: unknown, id?: string) => ({ name, arguments: JSON.stringify(args), ...(id ? { id } : {}) });
const ask = (model: string, content: string) => ({ model, messages: [{ role: 'user' as const, content }] });

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`recording went wrong: ${what}`);
}

const post = (c: Ctx, path: string, body: unknown) =>
  fetch(`${c.apiUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

/** Starts a streaming completion with fetch; returns its run id and a promise of every SSE data line. */
async function startStreaming(c: Ctx, body: Record<string, unknown>): Promise<{ runId: string; done: Promise<string[]> }> {
  const res = await post(c, '/v1/chat/completions', { ...body, stream: true });
  check(res.status === 200, `streaming POST answered ${res.status}`);
  const runId = res.headers.get('x-run-id')!;
  const done = (async () => {
    const out: string[] = [];
    for await (const e of sseEvents(res)) out.push(e.data);
    return out;
  })();
  return { runId, done };
}

const scenarios: Record<string, Scenario> = {
  // (a) one model call, no MCP servers, non-streaming.
  'plain-text': async (c) => {
    c.upstream.enqueue({ steps: [{ kind: 'text', text: 'Hello there.' }], usage: { prompt_tokens: 3, completion_tokens: 2 } });
    const r = await c.openai.chat.completions.create(ask('plain', 'hi'));
    check(r.choices[0]!.message.content === 'Hello there.', 'plain-text answer');
    return [{ runId: r.id }];
  },

  // (b) streaming through the live task queue, with stream_options.include_usage, tools listed first.
  'stream-usage': async (c) => {
    c.upstream.enqueue({ steps: [{ kind: 'text', text: 'Streamed in a few pieces.', chunks: 4, delayMs: 30 }], usage: { prompt_tokens: 5, completion_tokens: 4 } });
    const stream = await c.openai.chat.completions.create({ ...ask('agent', 'stream please'), stream: true, stream_options: { include_usage: true } });
    let id = '';
    let content = '';
    let total = 0;
    for await (const chunk of stream) {
      id = chunk.id;
      content += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) total = chunk.usage.total_tokens;
    }
    check(content === 'Streamed in a few pieces.' && total === 9, `stream-usage got ${JSON.stringify({ content, total })}`);
    return [{ runId: id }];
  },

  // (c) a two-round loop: memory__create_entities, then the answer.
  'tool-loop': async (c) => {
    c.upstream.enqueue(
      { steps: [{ kind: 'toolCalls', calls: [call('memory__create_entities', { entities: [{ name: 'Loop', entityType: 'thing', observations: ['x'] }] }, 'c1')] }] },
      { steps: [{ kind: 'text', text: 'stored' }] },
    );
    const r = await c.openai.chat.completions.create(ask('agent', 'store it'));
    check(r.choices[0]!.message.content === 'stored', 'tool-loop answer');
    check(readFileSync(c.memoryFile, 'utf8').includes('"Loop"'), 'tool-loop entity stored');
    return [{ runId: r.id }];
  },

  // Two server calls in one turn run as parallel activities (their order is part of the history).
  'parallel-tools': async (c) => {
    c.upstream.enqueue(
      {
        steps: [
          {
            kind: 'toolCalls',
            calls: [
              call('guarded__echo', { message: 'left' }, 'p1'),
              call('memory__create_entities', { entities: [{ name: 'Par', entityType: 'thing', observations: [] }] }, 'p2'),
            ],
          },
        ],
      },
      { steps: [{ kind: 'text', text: 'both done' }] },
    );
    const r = await c.openai.chat.completions.create(ask('agent', 'two at once'));
    check(r.choices[0]!.message.content === 'both done', 'parallel-tools answer');
    const results = (c.upstream.requests[1]!.body.messages as Array<{ role: string; tool_call_id?: string }>).filter((m) => m.role === 'tool');
    check(results.map((m) => m.tool_call_id).join() === 'p1,p2', 'parallel-tools results in call order');
    return [{ runId: r.id }];
  },

  // (d) the upstream fails once with HTTP 500; the activity's retry succeeds.
  'retry-500': async (c) => {
    c.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http500' }] }, { steps: [{ kind: 'text', text: 'second time lucky' }] });
    const r = await c.openai.chat.completions.create(ask('plain', 'retry'));
    check(r.choices[0]!.message.content === 'second time lucky' && c.upstream.requests.length === 2, 'retry-500 answer');
    return [{ runId: r.id }];
  },

  // (e) a call that needs approval, approved through POST /v1/runs/{id}/approvals/{approvalId}.
  'approval-approved': async (c) => {
    c.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [call('guarded__get-sum', { a: 20, b: 22 }, 'c1')] }] }, { steps: [{ kind: 'text', text: 'the sum is 42' }] });
    const { runId, done } = await startStreaming(c, ask('agent', 'sum'));
    const run = await waitFor(async () => {
      const r = (await (await fetch(`${c.apiUrl}/v1/runs/${runId}`)).json()) as { pending_approvals: Array<{ approvalId: string }> };
      return r.pending_approvals.length > 0 ? r : null;
    });
    const ok = await post(c, `/v1/runs/${runId}/approvals/${run.pending_approvals[0]!.approvalId}`, { approve: true });
    check(ok.status === 200, `approval answered ${ok.status}`);
    const content = (await done).map(contentOf).join('');
    check(content === 'the sum is 42', `approval-approved answer: ${content}`);
    const toolMsg = (c.upstream.requests[1]!.body.messages as Array<{ role: string; content: string }>).find((m) => m.role === 'tool');
    check(/42/.test(toolMsg?.content ?? ''), 'approved tool ran');
    return [{ runId }];
  },

  // (f) cancelled while the second model call stalls; the create_entities undo runs.
  'cancel-compensate': async (c) => {
    c.upstream.enqueue(
      { steps: [{ kind: 'toolCalls', calls: [call('memory__create_entities', { entities: [{ name: 'Temp', entityType: 'thing', observations: ['undo me'] }] }, 'c1')] }] },
      { steps: [{ kind: 'text', text: 'thinking' }, { kind: 'fault', fault: 'stall' }] },
    );
    const { runId, done } = await startStreaming(c, ask('agent', 'cancel me'));
    await waitFor(async () => existsSync(c.memoryFile) && readFileSync(c.memoryFile, 'utf8').includes('"Temp"') && c.upstream.requests.length === 2);
    const res = await post(c, `/v1/runs/${runId}/cancel`, {});
    check(res.status === 202, `cancel answered ${res.status}`);
    const data = (await done).join('');
    check(data.includes('"code":"run_cancelled"'), 'cancel-compensate stream ends with run_cancelled');
    check(!readFileSync(c.memoryFile, 'utf8').includes('"Temp"'), 'compensation removed the entity');
    return [{ runId }];
  },

  // (g) one turn with a server call (hidden) and a client call (returned), then the client's follow-up.
  'mixed-tools': async (c) => {
    const weather = { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
    c.upstream.enqueue({ steps: [{ kind: 'toolCalls', calls: [call('guarded__echo', { message: 'server side' }, 'srv1'), call('get_weather', { city: 'Oslo' }, 'cli1')] }] });
    const first = await c.openai.chat.completions.create({ ...ask('agent', 'weather?'), tools: [weather] });
    const calls = first.choices[0]!.message.tool_calls ?? [];
    check(first.choices[0]!.finish_reason === 'tool_calls' && calls.length === 1, 'mixed-tools returns only the client call');
    c.upstream.enqueue({ steps: [{ kind: 'text', text: 'Oslo is sunny.' }] });
    const second = await c.openai.chat.completions.create({
      model: 'agent',
      tools: [weather],
      messages: [{ role: 'user', content: 'weather?' }, first.choices[0]!.message, { role: 'tool', tool_call_id: calls[0]!.id, content: 'sunny' }],
    });
    check(second.choices[0]!.message.content === 'Oslo is sunny.', 'mixed-tools follow-up answer');
    return [{ runId: first.id }, { runId: second.id, suffix: 'followup' }];
  },

  // (i) a run whose model step was taken by a process that then vanished: its lease (renewed,
  // naming the step) lapses, the lease workflow fails the step as ProcessLost and the run moves it.
  // Two histories: the run (`lost-process`) and the lapsed lease (`lost-process-lease`).
  'lost-process': async (c) => {
    c.upstream.setDefault({ steps: [{ kind: 'text', text: 'moved answer' }] });
    const seedRun = await c.openai.chat.completions.create(ask('plain', 'seed'));
    const started = (await c.temporal.workflow.getHandle(seedRun.id).fetchHistory()).events![0]!.workflowExecutionStartedEventAttributes!;
    const seed = defaultPayloadConverter.fromPayload<Record<string, unknown>>(started.input!.payloads![0]!);
    let held: unknown[] | null = null;
    const ghost = await startGhost({
      address: c.address,
      client: c.temporal,
      sharedQueue: c.taskQueue,
      queue: `${c.taskQueue}-ghost`,
      onStep: (info, input) => (held = [info.workflowExecution!.workflowId, info.workflowExecution!.runId, info.activityId, info.attempt, input.step, 0, '']),
    });
    const leaseId = ghost.leaseId;
    ghost.renew(() => (held ? [held] : []), 300);
    const runId = 'record-lost-process';
    const run = await c.temporal.workflow.start('chatCompletionWorkflow', { taskQueue: c.taskQueue, workflowId: runId, args: [{ ...seed, liveTaskQueue: ghost.queue }] });
    await waitFor(async () => held !== null);
    await new Promise((r) => setTimeout(r, 1000)); // renewals name the step
    await ghost.vanish();
    const result = (await run.result()) as { message?: { content?: string } };
    check(result.message?.content === 'moved answer', `lost-process answer: ${result.message?.content}`);
    check(JSON.stringify((await run.fetchHistory()).events).includes('stopped renewing its lease'), 'lost-process step moved by the lapse');
    return [{ runId }, { runId: leaseId, suffix: 'lease' }];
  },

  // (h) a session actor with two turns, run one at a time as child runs.
  session: async (c) => {
    const headers = { 'X-Session-Id': 'record-session' };
    for (const text of ['first turn', 'second turn']) {
      c.upstream.enqueue({ steps: [{ kind: 'text', text }] });
      const r = await c.openai.chat.completions.create(ask('plain', text), { headers });
      check(r.choices[0]!.message.content === text, `session turn answered ${r.choices[0]!.message.content}`);
    }
    return [{ runId: sessionWorkflowId('anonymous', 'record-session'), open: true }];
  },

  // (j) a fallback: the route's upstream fails before its first byte, an Anthropic-dialect fallback answers.
  fallback: async (c) => {
    c.upstream.enqueue({ steps: [{ kind: 'fault', fault: 'http500' }] }, { steps: [{ kind: 'text', text: 'from the fallback' }] });
    const r = await c.openai.chat.completions.create(ask('resilient', 'anyone there?'));
    check(r.choices[0]!.message.content === 'from the fallback', `fallback answered ${r.choices[0]!.message.content}`);
    return [{ runId: r.id }];
  },

  // (k) a session on a Responses upstream that stores responses: turn 2 continues turn 1's response.
  'responses-session': async (c) => {
    const headers = { 'X-Session-Id': 'record-responses' };
    const messages: Array<{ role: 'user' | 'assistant'; content: string }> = [];
    const ids: string[] = [];
    for (const text of ['first stored turn', 'second stored turn']) {
      messages.push({ role: 'user', content: text });
      c.upstream.enqueue({ steps: [{ kind: 'text', text: `re: ${text}` }] });
      const r = await c.openai.chat.completions.create({ model: 'stateful', messages }, { headers });
      check(r.choices[0]!.message.content === `re: ${text}`, `responses-session turn answered ${r.choices[0]!.message.content}`);
      messages.push({ role: 'assistant', content: r.choices[0]!.message.content! });
      ids.push(r.id);
    }
    check(typeof c.upstream.requests.at(-1)!.body.previous_response_id === 'string', 'responses-session turn 2 continued turn 1');
    return [{ runId: sessionWorkflowId('anonymous', 'record-responses'), open: true }, { runId: ids[1]!, suffix: 'turn2' }];
  },

  // (i) the key's ledger: a run's lease taken and handed back by the API's signals.
  'key-ledger': async (c) => {
    c.upstream.enqueue({ steps: [{ kind: 'text', text: 'leased' }] });
    const r = await c.openai.chat.completions.create(ask('plain', 'leased'));
    check(r.choices[0]!.message.content === 'leased', `key-ledger run answered ${r.choices[0]!.message.content}`);
    // The API reports the lease, then the run's end, each within its 0.1-s flush.
    const ledger = ledgerIdOf('anonymous', c.taskQueue);
    await waitFor(async () => (await c.temporal.workflow.getHandle(ledger).query<LedgerView, [string]>(LEDGER_QUERY, 'recorder')).runs === 0);
    return [{ runId: ledger, open: true }];
  },
};

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const unknown = only.filter((n) => !(n in scenarios));
  if (unknown.length) throw new Error(`unknown scenario(s): ${unknown.join(', ')}; known: ${Object.keys(scenarios).join(', ')}`);
  installLogger('ERROR');
  const dir = mkdtempSync(join(tmpdir(), 'mix2api-record-'));
  const memoryFile = join(dir, 'memory.jsonl');
  const stops: Array<() => Promise<void>> = [];
  try {
    const server = await startDevServer({ root: ROOT, dbFile: join(dir, 'temporal.db'), port: await freePort(), headless: true });
    stops.unshift(() => server.stop());
    const upstream = await startScriptedUpstream();
    stops.unshift(() => upstream.close());
    const config = parseConfig(
      {
        server: { port: 0 },
        temporal: { address: server.address, taskQueue: `record-${process.pid}` },
        upstreams: [
          {
            name: 'scripted',
            baseURL: upstream.url,
            apiKey: 'upstream-secret',
            retry: { maxAttempts: 3, initialIntervalSeconds: 0.2, maxIntervalSeconds: 1 },
            timeouts: { connectSeconds: 5, idleSeconds: 30, totalSeconds: 60 },
          },
          { name: 'anthro', api: 'anthropic-messages', baseURL: upstream.root, retry: { maxAttempts: 1 } },
          { name: 'stateful', api: 'openai-responses', baseURL: upstream.url, storeResponses: true, retry: { maxAttempts: 1 } },
        ],
        // Small tool lists keep the recorded payloads (catalog, every model call's tools) small.
        mcpServers: [
          {
            ...stdioServer('memory', MEMORY, [], { MEMORY_FILE_PATH: memoryFile }),
            tools: { allow: ['create_entities'] },
            compensations: { create_entities: { tool: 'delete_entities', args: { entityNames: '$.args.entities[*].name' } } },
          },
          { ...stdioServer('guarded', EVERYTHING, ['stdio']), tools: { allow: ['get-sum', 'echo'] }, approval: { tools: ['get-sum'] } },
        ],
        models: [
          { id: 'plain', upstream: 'scripted', model: 'scripted' },
          { id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['memory', 'guarded'] },
          { id: 'resilient', upstream: 'scripted', model: 'scripted', fallbacks: [{ upstream: 'anthro' }] },
          { id: 'stateful', upstream: 'stateful', model: 'scripted' },
        ],
        stream: { heartbeatSeconds: 1 },
      },
      {},
    );
    const system = await startSystem({ config, temporalAddress: server.address, roles: { worker: true, api: true } });
    stops.unshift(() => system.stop());
    const connection = await Connection.connect({ address: server.address });
    stops.unshift(() => connection.close());
    const temporal = new Client({ connection, namespace: config.temporal.namespace });
    const apiUrl = system.apiUrl!;
    const ctx: Ctx = { address: server.address, apiUrl, upstream, memoryFile, taskQueue: config.temporal.taskQueue, temporal, openai: new OpenAI({ baseURL: `${apiUrl}/v1`, apiKey: 'none', maxRetries: 0, timeout: 60_000 }) };

    mkdirSync(HISTORIES_DIR, { recursive: true });
    for (const [name, scenario] of Object.entries(scenarios)) {
      if (only.length && !only.includes(name)) continue;
      upstream.reset();
      const t0 = Date.now();
      for (const { runId, suffix, open } of await scenario(ctx)) {
        const handle = temporal.workflow.getHandle(runId);
        // A streamed answer ends before the workflow task that closes the run; wait for the close.
        if (!open) await handle.result().catch(() => undefined);
        const history = await handle.fetchHistory();
        const file = join(HISTORIES_DIR, `${suffix ? `${name}-${suffix}` : name}.json`);
        // Failures' stack traces name this machine's paths and play no part in replay.
        const text = historyToJSON(history).replace(/"stackTrace": "(?:[^"\\]|\\.)*"/g, '"stackTrace": ""');
        const back = historyFromJSON(JSON.parse(text));
        check(back.events?.length === history.events?.length, `${name}: the written history loads back`);
        writeFileSync(file, `${text}\n`);
        console.log(`${file}: ${history.events?.length ?? 0} events, ${text.length} bytes, ${Date.now() - t0} ms`);
      }
    }
  } finally {
    for (const stop of stops) await stop().catch((e: unknown) => console.error(`stop failed: ${String(e)}`));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
