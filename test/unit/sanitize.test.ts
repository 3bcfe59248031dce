/** Upstream error text as a client may see it: the leaks the abuse review found, each removed. */
import { MAX_CLIENT_MESSAGE, clientSafeMessage } from '../../src/domain/sanitize';

test('file paths go, URLs stay', () => {
  const s = clientSafeMessage('failed to load /srv/app/models/llama.py (see C:\\deploy\\logs\\err.txt, file:///var/log/x) at https://api.example.com/v1/chat');
  expect(s).not.toMatch(/srv|deploy|var\/log/);
  expect(s).toContain('https://api.example.com/v1/chat');
  expect(s).toContain('failed to load <path>');
});

test('an HTML error page or a traceback becomes one plain sentence', () => {
  expect(clientSafeMessage('<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1><pre>nginx/1.25</pre></body></html>')).toBe('the upstream answered with an HTML error page');
  const tb = clientSafeMessage('internal error\nTraceback (most recent call last):\n  File "/app/server.py", line 12, in handle\n    raise ValueError("x")\nValueError: x');
  expect(tb).toBe('internal error (traceback omitted)');
});

test('keys, masked key tails and bearer tokens are redacted', () => {
  const s = clientSafeMessage('Incorrect API key provided: sk-proj-****************abcd. Authorization: Bearer eyJhbGciOi.x.y; api_key="live_123456"');
  expect(s).not.toMatch(/abcd|eyJ|live_123456/);
  expect(s).toContain('Incorrect API key provided: <redacted>');
});

test('a 200 KB message is capped, on one line', () => {
  const s = clientSafeMessage(`${'x'.repeat(100_000)}\n${'y'.repeat(100_000)}`);
  expect(s.length).toBe(MAX_CLIENT_MESSAGE);
  expect(s).not.toContain('\n');
  expect(s.endsWith('…')).toBe(true);
});

test('an ordinary message passes unchanged', () => {
  expect(clientSafeMessage("This model's maximum context length is 8192 tokens.")).toBe("This model's maximum context length is 8192 tokens.");
  expect(clientSafeMessage('')).toBe('the upstream gave no message');
});
