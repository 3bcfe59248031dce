/**
 * The fuzz suite: seeded malformed and abusive requests (test/fuzz/generate.ts) against a real
 * mix2api over every endpoint and header it reads. Each answer must be below 500, arrive within
 * 10 s, and, when it is an error, be OpenAI-shaped (`{"error":{"message","type","param","code"}}`),
 * on every stream chunk too; no key reads another key's run; the server is healthy afterwards.
 *
 * `npm test` runs a short seeded run (MIX2API_FUZZ_COUNT, default 1,000); `npm run fuzz` the full
 * 10,000. MIX2API_FUZZ_SEED picks another seed.
 */
import { request } from 'node:http';
import { startStack, type Stack } from '../support/stack';
import { Generator, type FuzzRequest, type Known } from './generate';

const COUNT = Number(process.env.MIX2API_FUZZ_COUNT ?? 1000);
const SEED = Number(process.env.MIX2API_FUZZ_SEED ?? 1);
const PARALLEL = 8;
const DEADLINE_MS = 10_000;
/** Most of a streamed answer read back (the default answer is short; a cap bounds a bad one). */
const MAX_READ = 4 * 1024 * 1024;

let s: Stack;
let errors: jest.SpyInstance;
beforeAll(async () => {
  s = await startStack({
    config: () => ({
      server: {
        port: 0,
        apiKeys: [
          { name: 'a', key: 'sk-a', limits: { requestsPerMinute: 0 } },
          { name: 'b', key: 'sk-b', limits: { requestsPerMinute: 0, concurrentRuns: 8, openStreams: 4, sessions: 2 } },
        ],
      },
    }),
  });
  s.upstream.setDefault({ steps: [{ kind: 'text', text: 'ok' }], usage: { prompt_tokens: 3, completion_tokens: 1 } });
  errors = jest.spyOn(console, 'error');
});
afterAll(async () => {
  errors?.mockRestore();
  await s?.stop();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  ms: number;
}

function send(r: FuzzRequest): Promise<Answer | { unsendable: string } | { failed: string }> {
  const url = new URL(s.apiUrl);
  const t0 = Date.now();
  return new Promise((resolve) => {
    let req: ReturnType<typeof request>;
    try {
      req = request({ host: url.hostname, port: url.port, method: r.method, path: r.path, headers: r.headers, timeout: DEADLINE_MS });
    } catch (e) {
      // The client itself refuses (a header Node will not send): nothing reached the server.
      return resolve({ unsendable: String(e) });
    }
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ failed: `no complete answer within ${DEADLINE_MS} ms` });
    }, DEADLINE_MS);
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_READ) parts.push(c);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts), ms: Date.now() - t0 });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        resolve({ failed: `response broke: ${String(e)}` });
      });
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      resolve({ failed: `no answer: ${String(e)}` });
    });
    req.end(r.body);
  });
}

/** Why `v` is not an OpenAI error body, or null when it is one. */
function notOpenAiError(v: unknown): string | null {
  const e = (v as { error?: Record<string, unknown> } | null)?.error;
  if (!e || typeof e !== 'object') return 'no error object';
  if (typeof e.message !== 'string' || e.message === '') return 'error.message is not a non-empty string';
  if (typeof e.type !== 'string') return 'error.type is not a string';
  if (!('param' in e) || (e.param !== null && typeof e.param !== 'string')) return 'error.param is not string|null';
  if (!('code' in e) || (e.code !== null && typeof e.code !== 'string')) return 'error.code is not string|null';
  return null;
}

/** What is wrong with this answer, or null. */
function judge(r: FuzzRequest, a: Answer): string | null {
  if (a.status >= 500) return `status ${a.status}: ${a.body.toString('utf8').slice(0, 300)}`;
  if (r.foreignRun && a.status < 300) return `read another key's run ${r.foreignRun}: status ${a.status}`;
  if (r.method === 'HEAD') return null;
  const type = String(a.headers['content-type'] ?? '');
  if (a.status >= 400) {
    let json: unknown;
    try {
      json = JSON.parse(a.body.toString('utf8'));
    } catch {
      return `status ${a.status} with a body that is not JSON (${type}): ${a.body.toString('utf8').slice(0, 200)}`;
    }
    const why = notOpenAiError(json);
    return why ? `status ${a.status}: ${why}: ${a.body.toString('utf8').slice(0, 200)}` : null;
  }
  if (type.startsWith('text/event-stream')) {
    for (const line of a.body.toString('utf8').split('\n')) {
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      let chunk: { error?: unknown };
      try {
        chunk = JSON.parse(line.slice(6)) as { error?: unknown };
      } catch {
        return `stream line is not JSON: ${line.slice(0, 200)}`;
      }
      if (chunk.error !== undefined) {
        const why = notOpenAiError(chunk);
        if (why) return `stream error chunk: ${why}`;
      }
    }
  }
  return null;
}

test(`fuzz: ${COUNT} seeded requests (seed ${SEED}) — no 5xx, OpenAI-shaped errors, no hang, no cross-key read`, async () => {
  const known: Known = { runsOf: { a: [], b: [] } };
  const gen = new Generator(SEED, known);
  const failures: string[] = [];
  const statuses = new Map<number, number>();
  let unsendable = 0;
  let slowest = 0;
  let n = 0;
  const worker = async () => {
    while (n < COUNT) {
      const i = n++;
      const r = gen.next();
      const a = await send(r);
      if ('unsendable' in a) {
        unsendable++;
        continue;
      }
      const label = `#${i} ${r.caller} ${r.method} ${r.path.slice(0, 120)} (${r.what})`;
      if ('failed' in a) {
        failures.push(`${label}: ${a.failed}; headers ${JSON.stringify(r.headers)}, body ${r.body?.toString('utf8').slice(0, 300) ?? ''}`);
        continue;
      }
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      slowest = Math.max(slowest, a.ms);
      const run = a.headers['x-run-id'];
      if (typeof run === 'string' && a.status < 300 && (r.caller === 'a' || r.caller === 'b') && known.runsOf[r.caller].length < 200) known.runsOf[r.caller].push(run);
      const why = judge(r, a);
      if (why) failures.push(`${label}: ${why}`);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  console.log(
    `fuzz seed ${SEED}: ${COUNT} requests, statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((x, y) => x[0] - y[0])))}, ` +
      `${unsendable} refused by the client itself, runs a ${known.runsOf.a.length} b ${known.runsOf.b.length}, slowest ${slowest} ms, ${failures.length} failures`,
  );
  expect(failures.slice(0, 20)).toEqual([]);
  // Nothing reached the catch-all "internal error" path.
  expect(errors.mock.calls.filter((c) => String(c[0]).includes('internal error'))).toEqual([]);

  // Healthy afterwards: probes answer, and a plain request still gets its answer.
  expect((await fetch(`${s.apiUrl}/healthz`)).status).toBe(200);
  expect((await fetch(`${s.apiUrl}/readyz`)).status).toBe(200);
  const ok = await fetch(`${s.apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk-a', 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'still there?' }] }),
  });
  expect(ok.status).toBe(200);
  expect(((await ok.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('ok');
}, 900_000);
