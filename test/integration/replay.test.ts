/**
 * Determinism guard: every recorded history in test/fixtures/histories (one per kind of run:
 * plain, streamed, tool loop, parallel tools, retry, approval, cancel with compensation, mixed
 * client/server tools, a session actor, a step moved after its process was lost and that process's
 * lapsed lease, recorded before the lease's sweep) must replay against the current workflow bundle without a nondeterminism
 * error. A failure here means runs in flight would break when this code is deployed: version the
 * change with `patched()` or, if it is meant to break, re-record (test/support/recordHistories.ts).
 * Replay compares commands (activity types and order, timers, ...), not activity options such as
 * task queue or timeouts, nor the workflow's result.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { DefaultLogger, Worker, bundleWorkflowCode, type ReplayResult, type WorkflowBundleOption } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { HISTORIES_DIR } from '../support/recordHistories';
import { testEnv } from '../support/stack';

interface Fixture extends HistoryAndWorkflowId {
  name: string;
  type: string;
}

const fixtures: Fixture[] = readdirSync(HISTORIES_DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => {
    const history = historyFromJSON(JSON.parse(readFileSync(join(HISTORIES_DIR, f), 'utf8')));
    // The workflow uses its id (the run id) in call ids and results, so replay under the recorded one.
    const workflowId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowId;
    if (!workflowId) throw new Error(`${f}: no workflowId in its WorkflowExecutionStarted event`);
    const type = history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name ?? '';
    return { name: f.replace(/\.json$/, ''), workflowId, type, history };
  })
  .sort((a, b) => a.name.localeCompare(b.name));

/** Replays every fixture; returns fixture name → its replay error (null when the replay was clean). */
async function replayAll(workflowBundle: WorkflowBundleOption, replayName: string, only: Fixture[] = fixtures): Promise<Record<string, ReplayResult['error'] | null>> {
  const byId = new Map(only.map((f) => [f.workflowId, f.name]));
  const out: Record<string, ReplayResult['error'] | null> = {};
  for await (const r of Worker.runReplayHistories({ workflowBundle, replayName }, only)) out[byId.get(r.workflowId) ?? r.workflowId] = r.error ?? null;
  return out;
}

test('the fixtures cover every kind of run', () => {
  expect(fixtures.map((f) => f.name)).toEqual(
    expect.arrayContaining(['plain-text', 'stream-usage', 'tool-loop', 'parallel-tools', 'retry-500', 'approval-approved', 'cancel-compensate', 'mixed-tools', 'session', 'fallback', 'responses-session', 'responses-session-turn2', 'lost-process', 'lost-process-lease']),
  );
});

test('every recorded history replays against the current workflow code', async () => {
  const results = await replayAll({ codePath: testEnv().bundlePath }, 'mix2api-replay');
  const messages = Object.fromEntries(Object.entries(results).map(([name, e]) => [name, e ? `${e.name}: ${e.message}` : null]));
  expect(messages).toEqual(Object.fromEntries(fixtures.map((f) => [f.name, null])));
});

test('the guard catches an unversioned change: the same workflow with one extra timer up front', async () => {
  // Inside .data/test-<pid> (removed by globalTeardown), so the bundler finds node_modules.
  const dir = join(dirname(process.env.MIX2API_TEST_ENV_FILE!), 'changed-workflow');
  mkdirSync(dir, { recursive: true });
  const real = join(__dirname, '..', '..', 'src', 'workflows', 'chatCompletion');
  writeFileSync(
    join(dir, 'index.ts'),
    [
      "import { sleep } from '@temporalio/workflow';",
      `import { chatCompletionWorkflow as current } from ${JSON.stringify(real)};`,
      'export async function chatCompletionWorkflow(input: Parameters<typeof current>[0]) {',
      "  await sleep('1 second');",
      '  return current(input);',
      '}',
      '',
    ].join('\n'),
  );
  const { code } = await bundleWorkflowCode({ workflowsPath: join(dir, 'index.ts'), logger: new DefaultLogger('WARN') });
  const completions = fixtures.filter((f) => f.type === 'chatCompletionWorkflow');
  const results = await replayAll({ code }, 'mix2api-replay-changed', completions);
  expect(Object.keys(results).sort((a, b) => a.localeCompare(b))).toEqual(completions.map((f) => f.name));
  for (const [name, error] of Object.entries(results)) {
    expect([name, error]).toEqual([name, expect.any(DeterminismViolationError)]);
    expect(error!.message).toMatch(/[Nn]ondeterminism/);
  }
});
