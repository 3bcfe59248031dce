/**
 * The MCP conformance suite's server scenarios (@modelcontextprotocol/conformance) that apply to a
 * gateway, run against `/mcp` of a real mix2api: the ones that need the suite's own test tools,
 * prompts, resources, sampling or elicitation are for a tool server, not a gateway.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { startStack, type Stack } from '../support/stack';

const ROOT = join(__dirname, '..', '..');
export const SCENARIOS = process.env.MIX2API_CONFORMANCE_SCENARIOS?.split(',') ?? ['server-initialize', 'ping', 'logging-set-level', 'tools-list', 'server-sse-multiple-streams', 'server-sse-polling', 'dns-rebinding-protection'];

let s: Stack;
beforeAll(async () => {
  s = await startStack({ config: () => ({ mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])] }) });
});
afterAll(async () => {
  await s?.stop();
});

function conformance(scenario: string): Promise<{ code: number | null; out: string }> {
  return new Promise((ok) => {
    const p = spawn(join(ROOT, 'node_modules', '.bin', 'conformance'), ['server', '--url', `${s.apiUrl}/mcp`, '--scenario', scenario], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (out += c.toString()));
    p.on('exit', (code) => ok({ code, out }));
  });
}

test.each(SCENARIOS)('conformance %s', async (scenario) => {
  const r = await conformance(scenario);
  if (r.code !== 0) console.error(r.out.slice(-3000));
  expect(r.out).toMatch(/Passed: (\d+)\/\1, 0 failed/);
  expect(r.code).toBe(0);
}, 120_000);
