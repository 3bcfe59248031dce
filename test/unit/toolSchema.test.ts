/**
 * Tool input schemas: JSON Schema 2020-12 by default (MCP's dialect), draft-07 when a schema says
 * so; a schema no dialect compiles refuses the call with a clear tool error instead of letting
 * unchecked arguments through.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import type { McpPool } from '../../src/connectors/mcp/pool';
import { createToolActivities, validatorFor } from '../../src/activities/tools';
import type { CallToolInput } from '../../src/domain/run';
import { Metrics } from '../../src/telemetry/metrics';

const compiled = (schema: Record<string, unknown>) => {
  const v = validatorFor(schema);
  if ('uncompilable' in v) throw new Error(v.uncompilable);
  return v;
};

test('2020-12 keywords are checked without a $schema (MCP default)', () => {
  const v = compiled({ type: 'array', prefixItems: [{ type: 'number' }], items: false });
  expect(v([1])).toBe(true);
  expect(v([1, 2])).toBe(false);
  expect(v(['x'])).toBe(false);
});

test('a draft-07 schema with tuple items compiles as draft-07', () => {
  const v = compiled({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'array', items: [{ type: 'string' }], additionalItems: false });
  expect(v(['a'])).toBe(true);
  expect(v(['a', 'b'])).toBe(false);
});

test('an unresolvable $ref is uncompilable, with the reason', () => {
  const v = validatorFor({ type: 'object', properties: { a: { $ref: '#/$defs/missing' } } });
  expect('uncompilable' in v && v.uncompilable).toMatch(/missing/);
});

test('a call of a tool whose schema is uncompilable is a tool error, and the tool is not called', async () => {
  const calls: unknown[] = [];
  const pool = { callTool: async (...a: unknown[]) => (calls.push(a), { content: [{ type: 'text', text: 'ran' }] }) } as unknown as McpPool;
  const metrics = new Metrics();
  const { callTool } = createToolActivities({ pool, metrics });
  const input: CallToolInput = {
    runId: 'r',
    callId: 'c',
    idempotencyKey: 'r/c',
    server: 's',
    tool: 't',
    arguments: '{"a":1}',
    inputSchema: { type: 'object', properties: { a: { $ref: '#/$defs/missing' } } },
    timeoutSeconds: 5,
    maxOutputBytes: 1024,
  };
  const env = new MockActivityEnvironment();
  const bad = (await env.run(callTool, input)) as { isError: boolean; text: string };
  expect(bad.isError).toBe(true);
  expect(bad.text).toMatch(/input schema cannot be compiled .*the call was not made/);
  expect(calls).toHaveLength(0);
  const good = await env.run(callTool, { ...input, inputSchema: { type: 'object', properties: { a: { type: 'number' } } } });
  expect(good).toMatchObject({ text: 'ran', isError: false });
  expect(calls).toHaveLength(1);
  // Each call is counted once, by outcome; a refused one has no duration.
  const counted = (await metrics.toolCalls.get()).values.map((v) => [v.labels.outcome, v.value]);
  expect(counted).toEqual(expect.arrayContaining([['invalid_arguments', 1], ['ok', 1]]));
  expect((await metrics.toolDuration.get()).values.find((v) => v.metricName === 'mix2api_tool_call_duration_seconds_count')?.value).toBe(1);
});
