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
