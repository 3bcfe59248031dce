/** With no `models` configured (e.g. only OPENAI_BASE_URL), every model id goes to the upstream as is. */
import { startStack, type Stack } from '../support/stack';

let s: Stack;
beforeAll(async () => {
  s = await startStack({ config: () => ({ models: [] }) });
});
afterAll(async () => {
  await s?.stop();
});

test('the upstream lists the models and receives the model id unchanged', async () => {
  expect((await s.openai.models.list()).data.map((m) => m.id)).toEqual(['scripted']);
  s.upstream.enqueue({ steps: [{ kind: 'text', text: 'passed through' }] });
  const r = await s.openai.chat.completions.create({ model: 'any-model-name', messages: [{ role: 'user', content: 'hi' }] });
  expect(r.model).toBe('any-model-name');
  expect(r.choices[0]!.message.content).toBe('passed through');
  expect(s.upstream.requests[0]!.body.model).toBe('any-model-name');
});

test('the model list and the completions go out through one HTTP stack: the same client headers, the key, nothing a browser fetch adds', () => {
  // Recorded by the test above (the list is cached after its first fetch).
  const listing = s.upstream.listings[0]!;
  const completion = s.upstream.requests[0]!.headers;
  expect(listing.authorization).toBe('Bearer upstream-secret');
  expect(listing['user-agent']).toBe(completion['user-agent']);
  expect(listing['sec-fetch-mode']).toBeUndefined();
  expect(listing['accept-language']).toBeUndefined();
});
