/** The config: defaults, env overrides, and errors that name the path. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../../src/config/load';
import { policyLines } from '../../src/config/policy';

test('no file and no env: demo mode with documented defaults', () => {
  const c = parseConfig({}, {});
  expect(c.demo).toBe(true);
  expect(c.server.port).toBe(8080);
  expect(c.temporal).toMatchObject({ address: 'embedded', namespace: 'default', taskQueue: 'mix2api', port: 7233, uiPort: 8233, searchAttributes: true });
  expect(c.loop).toMatchObject({ maxSteps: 16, progress: 'reasoning', keepaliveSeconds: 10, onDisconnect: 'continue', approvalTimeoutSeconds: 900 });
  expect(Object.isFrozen(c.server)).toBe(true);
});

test('OPENAI_BASE_URL + OPENAI_API_KEY alone configure one pass-through upstream', () => {
  const c = parseConfig({}, { OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', OPENAI_API_KEY: 'sk-x', PORT: '9999', TEMPORAL_ADDRESS: 'temporal:7233' });
  expect(c.demo).toBe(false);
  expect(c.passthroughModels).toBe(true);
  expect(c.upstreams[0]).toMatchObject({ name: 'openai', baseURL: 'http://127.0.0.1:9/v1', apiKey: 'sk-x' });
  expect(c.server.port).toBe(9999);
  expect(c.temporal.searchAttributes).toBe(false);
});

test('API key names are unique and "anonymous" is reserved: names scope runs', () => {
  const problems = (keys: Array<{ name: string; key: string }>) => {
    try {
      parseConfig({ server: { apiKeys: keys } }, {});
      return [];
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).problems;
    }
  };
  expect(problems([{ name: 'team', key: 'k1' }, { name: 'other', key: 'k2' }])).toEqual([]);
  expect(problems([{ name: 'team', key: 'k1' }, { name: 'team', key: 'k2' }]).join('\n')).toMatch(/^server\.apiKeys\[1\]\.name: duplicate key name "team"/m);
  expect(problems([{ name: 'anonymous', key: 'k1' }]).join('\n')).toMatch(/^server\.apiKeys\[0\]\.name: "anonymous" is reserved/m);
});

test('a tool output cap above Temporal\'s payload limit is a config error', () => {
  const server = (maxOutputBytes: number) => ({ mcpServers: [{ name: 'fs', transport: 'stdio', command: 'node', maxOutputBytes }] });
  expect(parseConfig(server(1024 * 1024), {}).mcpServers[0]!.maxOutputBytes).toBe(1024 * 1024);
  expect(() => parseConfig(server(16 * 1024 * 1024), {})).toThrow(/mcpServers\[0\]\.maxOutputBytes/);
});

test('errors name the path of every problem', () => {
  const bad = {
    upstreams: [{ name: 'a', baseURL: 'not a url' }],
    models: [{ id: 'm', upstream: 'missing', mcpServers: ['nope'] }],
    mcpServers: [{ name: 'fs', transport: 'stdio' }],
  };
  try {
    parseConfig(bad, {});
    throw new Error('expected a ConfigError');
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    const problems = (e as ConfigError).problems.join('\n');
    expect(problems).toMatch(/^upstreams\[0\]\.baseURL: /m);
    expect(problems).toMatch(/^mcpServers\[0\]\.command: required/m);
  }
  expect(() => parseConfig({ upstreams: [{ name: 'a', baseURL: 'http://x/v1' }], models: [{ id: 'm', upstream: 'missing', mcpServers: ['nope'] }] }, {})).toThrow(
    /models\[0\]\.upstream: no upstream named "missing"[\s\S]*models\[0\]\.mcpServers\[0\]: no mcpServers entry named "nope"/,
  );
  expect(() => parseConfig({ upstreams: [{ name: 'a', baseURL: 'http://x/v1', apiKey: 'env:NOT_SET_ANYWHERE' }] }, {})).toThrow(/upstreams\[0\]\.apiKey: environment variable NOT_SET_ANYWHERE is not set/);
});

test('mix2api check-config exits non-zero and prints the problems', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mix2api-config-'));
  const file = join(dir, 'mix2api.yaml');
  writeFileSync(file, 'server:\n  port: "eighty"\n');
  const cli = join(__dirname, '..', '..', 'src', 'cli.ts');
  const tsx = join(__dirname, '..', '..', 'node_modules', '.bin', 'tsx');
  let out = '';
  let code = 0;
  try {
    execFileSync(tsx, [cli, 'check-config', file], { encoding: 'utf8', stdio: 'pipe' });
  } catch (e) {
    const err = e as { status: number; stderr: string };
    code = err.status;
    out = err.stderr;
  }
  expect(code).toBe(1);
  expect(out).toMatch(/server\.port: /);
  writeFileSync(file, 'upstreams:\n  - name: a\n    baseURL: http://127.0.0.1:1/v1\n');
  expect(execFileSync(tsx, [cli, 'check-config', file], { encoding: 'utf8' })).toMatch(/config OK/);
}, 30000);

test('encryption keys: 32 bytes of base64 each, ids unique; MIX2API_ENCRYPTION_KEY becomes the current key', () => {
  const k1 = Buffer.alloc(32, 1).toString('base64');
  const k2 = Buffer.alloc(32, 2).toString('base64');
  const c = parseConfig({ encryption: { keys: [{ id: 'old', key: k1 }] } }, { MIX2API_ENCRYPTION_KEY: k2, MIX2API_ENCRYPTION_KEY_ID: 'new' });
  expect(c.encryption.keys).toEqual([{ id: 'new', key: k2 }, { id: 'old', key: k1 }]);
  expect(() => parseConfig({ encryption: { keys: [{ id: 'short', key: Buffer.alloc(16).toString('base64') }] } }, {})).toThrow(/encryption\.keys\[0\]\.key: must be 32 bytes, base64-encoded/);
  expect(() => parseConfig({ encryption: { keys: [{ id: 'a', key: k1 }, { id: 'a', key: k2 }] } }, {})).toThrow(/duplicate key id "a"/);
  expect(() => parseConfig({ encryption: { keys: [{ id: 'e', key: 'env:NOPE' }] } }, {})).toThrow(ConfigError);
});

test('logging and metrics: defaults, and their environment overrides', () => {
  expect(parseConfig({}, {})).toMatchObject({ logging: { level: 'info', format: 'auto' }, metrics: { enabled: true, temporal: true } });
  expect(parseConfig({}, { LOG_LEVEL: 'debug', LOG_FORMAT: 'json', METRICS_PORT: '9464', METRICS_HOST: '0.0.0.0' })).toMatchObject({ logging: { level: 'debug', format: 'json' }, metrics: { port: 9464, host: '0.0.0.0' } });
  expect(() => parseConfig({}, { LOG_LEVEL: 'loud' })).toThrow(/logging\.level/);
});

test('an API key\'s gatewayServers must name configured MCP servers', () => {
  const raw = { server: { apiKeys: [{ name: 'a', key: 'sk-a', gatewayServers: ['nowhere'] }] }, mcpServers: [{ name: 'fs', transport: 'stdio', command: 'x' }] };
  expect(() => parseConfig(raw, {})).toThrow(/server\.apiKeys\[0\]\.gatewayServers\[0\]: no mcpServers entry named "nowhere"/);
});

test('shipped defaults fit a gateway channel: no per-key limits, implicit idempotency for tool-running requests, no answer replay; startup says so', () => {
  const c = parseConfig({}, {});
  expect(c.server.limits).toEqual({ requestsPerMinute: 0, concurrentRuns: 0, sessions: 0, openStreams: 0 });
  expect(c.idempotency).toEqual({ implicitSeconds: 300, replayCompleted: false });
  const [limits, retries] = policyLines(c);
  expect(limits).toMatch(/^limits: +per key none/);
  expect(retries).toMatch(/keyed by API key \+ body for 300 s/);
  expect(retries).toMatch(/after a completed run it is a new run/);

  const tenant = parseConfig({ server: { limits: { requestsPerMinute: 600 }, apiKeys: [{ name: 'team-a', key: 'sk-a', limits: { concurrentRuns: 8 } }] }, idempotency: { implicitSeconds: 0 } }, {});
  const [l2, r2] = policyLines(tenant);
  expect(l2).toContain('per key requestsPerMinute 600; team-a: requestsPerMinute 600, concurrentRuns 8');
  expect(r2).toMatch(/implicit idempotency off/);
});
