/**
 * Structured logs: one JSON line per request and one per run outcome, with the fields an
 * operator joins on (run id, trace id, key, model, status, timings); prompts, tool arguments,
 * tool output and secrets are absent at `info`, and at `debug` secrets are still censored.
 */
import { Writable } from 'node:stream';
import { createLogger } from '../../src/telemetry/log';
import { EVERYTHING, stdioServer } from '../support/mcpServers';
import { startStack, type Stack } from '../support/stack';
import { waitFor } from '../support/waitFor';

function capture(level: 'info' | 'debug') {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) {
        raw.push(l);
        lines.push(JSON.parse(l) as Record<string, unknown>);
      }
      done();
    },
  });
  return { lines, raw, logger: createLogger({ level, format: 'json' }, sink) };
}

const KEY = 'sk-mix2api-log-test';
const stackLogging = (level: 'info' | 'debug') => {
  const c = capture(level);
  return startStack({
    apiKey: KEY,
    logger: c.logger,
    config: (url) => ({
      server: { port: 0, apiKeys: [{ name: 'team-a', key: KEY }] },
      upstreams: [{ name: 'scripted', baseURL: url, apiKey: 'upstream-secret-value' }],
      mcpServers: [stdioServer('everything', EVERYTHING, ['stdio'])],
      models: [{ id: 'agent', upstream: 'scripted', model: 'scripted', mcpServers: ['everything'] }],
    }),
  }).then((s) => ({ s, ...c }));
};

async function toolLoop(s: Stack, words: string, traceparent?: string): Promise<string> {
  s.upstream.enqueue(
    { steps: [{ kind: 'toolCalls', calls: [{ name: 'everything__echo', arguments: JSON.stringify({ message: `tool-arg ${words}` }) }] }] },
    { steps: [{ kind: 'text', text: `answer ${words}` }] },
  );
  const r = await s.openai.chat.completions.create({ model: 'agent', messages: [{ role: 'user', content: `prompt ${words}` }] }, traceparent ? { headers: { traceparent } } : {}).withResponse();
  return r.response.headers.get('x-run-id')!;
}

test('info: a line per request and per run, nothing users sent or tools said', async () => {
  const { s, lines, raw } = await stackLogging('info');
  try {
    const trace = '0af7651916cd43dd8448eb211c80319c';
    const runId = await toolLoop(s, 'octopus-17', `00-${trace}-b7ad6b7169203331-01`);
    expect((await fetch(`${s.apiUrl}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: '{"model":"agent"}' })).status).toBe(400);
    const run = await waitFor(async () => lines.find((l) => l.event === 'run' && l.runId === runId));
    expect(run).toMatchObject({ level: 'info', status: 'completed', finishReason: 'stop', model: 'agent', keyName: 'team-a', steps: 2, durationMs: expect.any(Number) });
    const requests = lines.filter((l) => l.event === 'request');
    expect(requests).toEqual([
      expect.objectContaining({ method: 'POST', route: '/v1/chat/completions', status: 200, model: 'agent', keyName: 'team-a', runId, traceId: trace, stream: false, ms: expect.any(Number) }),
      expect.objectContaining({ route: '/v1/chat/completions', status: 400, keyName: 'team-a' }),
    ]);
    for (const l of lines) expect(typeof l.time).toBe('string');
    const all = raw.join('\n');
    for (const secret of ['octopus-17', KEY, 'upstream-secret-value']) expect(all).not.toContain(secret);
  } finally {
    await s.stop();
  }
});

test('debug: bodies and tool calls are logged, credentials censored', async () => {
  const { s, lines, raw } = await stackLogging('debug');
  try {
    const runId = await toolLoop(s, 'walrus-4');
    await waitFor(async () => lines.find((l) => l.event === 'run' && l.runId === runId));
    const all = raw.join('\n');
    expect(all).toContain('prompt walrus-4');
    expect(lines.find((l) => l.event === 'tool_started')).toMatchObject({ server: 'everything', tool: 'echo', arguments: expect.stringContaining('tool-arg walrus-4') });
    const req = lines.find((l) => l.event === 'request') as { headers: Record<string, string> };
    expect(req.headers.authorization).toBe('[redacted]');
    for (const secret of [KEY, 'upstream-secret-value']) expect(all).not.toContain(secret);
  } finally {
    await s.stop();
  }
});
