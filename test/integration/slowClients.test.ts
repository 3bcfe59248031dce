/**
 * Clients that never finish their request: a slow-loris trickling headers, a body that stalls,
 * and bytes that are not HTTP at all. Each gets an OpenAI-shaped error from Node's own parser
 * path within its timeout, and its socket is closed.
 */
import { connect } from 'node:net';
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ config: () => ({ server: { port: 0, headersTimeoutSeconds: 1, requestTimeoutSeconds: 2 } }) });
});
afterAll(async () => {
  await s?.stop();
});

/** Opens a raw socket, lets `drive` write to it, and resolves with what the server sent before closing, and when. */
function raw(drive: (write: (s: string) => void) => void): Promise<{ text: string; ms: number }> {
  const url = new URL(s.apiUrl);
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const sock = connect(Number(url.port), url.hostname);
    let text = '';
    const timers: NodeJS.Timeout[] = [];
    sock.on('data', (d) => (text += d.toString('utf8')));
    sock.on('close', () => {
      timers.forEach(clearInterval);
      resolve({ text, ms: Date.now() - t0 });
    });
    sock.on('error', reject);
    sock.on('connect', () =>
      drive((x) => {
        if (!sock.destroyed) sock.write(x);
      }),
    );
    // Keep trickling (a slow-loris never stops on its own).
    timers.push(setInterval(() => !sock.destroyed && sock.write(''), 200));
  });
}

function errorOf(text: string): { status: number; error: { message: string; type: string; param: unknown; code: string } } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return { status, ...(JSON.parse(body) as { error: { message: string; type: string; param: unknown; code: string } }) };
}

test('a slow-loris that trickles header lines gets a 408 once headersTimeoutSeconds has passed', async () => {
  const r = await raw((write) => {
    write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    let n = 0;
    const t = setInterval(() => (n++ < 50 ? write(`X-Slow-${n}: y\r\n`) : clearInterval(t)), 200);
  });
  const e = errorOf(r.text);
  expect([e.status, e.error.type, e.error.code]).toEqual([408, 'invalid_request_error', 'request_timeout']);
  expect(r.ms).toBeLessThan(5000);
});

test('a body that stops arriving gets a 408 once requestTimeoutSeconds has passed, and starts no run', async () => {
  s.upstream.reset();
  const r = await raw((write) => {
    write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":"test-model",');
  });
  const e = errorOf(r.text);
  expect([e.status, e.error.code]).toEqual([408, 'request_timeout']);
  expect(r.ms).toBeLessThan(6000);
  expect(s.upstream.requests).toHaveLength(0);
});

test('bytes that are not HTTP get a 400 in the OpenAI shape', async () => {
  const r = await raw((write) => write('\x16\x03\x01 this is not http\r\n\r\n'));
  const e = errorOf(r.text);
  expect([e.status, e.error.type, e.error.code]).toEqual([400, 'invalid_request_error', 'malformed_request']);
  // The API still answers afterwards.
  expect((await fetch(`${s.apiUrl}/healthz`)).status).toBe(200);
});
