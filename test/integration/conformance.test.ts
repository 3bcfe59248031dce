/**
 * MCP client conformance (@modelcontextprotocol/conformance): runs test/conformance/run.sh, which drives
 * McpPool through the suite's initialize, tools_call and sse-retry scenarios.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const SCENARIOS = ['initialize', 'tools_call', 'sse-retry'];

test('McpPool passes the MCP client conformance scenarios', () => {
  const run = spawnSync('bash', [join(ROOT, 'test', 'conformance', 'run.sh'), ...SCENARIOS], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });
  // On failure, show the suite's per-check output (run.sh writes it to stderr).
  if (run.status !== 0) console.error(`run.sh exited with ${run.status}:\n${run.stdout}\n${run.stderr}`);
  expect(run.error).toBeUndefined();
  for (const scenario of SCENARIOS) expect(run.stdout).toContain(`conformance ${scenario}: PASSED`);
  expect(run.status).toBe(0);
}, 130_000);
