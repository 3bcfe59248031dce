/** Pure pieces the loop stands on: delta folding, client tool-call filtering, re-joining, arg mapping. */
import { MessageAccumulator, addUsage } from '../../src/domain/chat';
import { mapArgs } from '../../src/domain/argMapping';
import { referencedRuns, rejoin } from '../../src/domain/rejoin';
import { ClientCallFilter, clientCallId, runOfClientCallId } from '../../src/domain/toolCalls';
import { PrefixSkipper } from '../../src/domain/prefixSkipper';

const RUN = `chatcmpl-${'ab'.repeat(16)}`;

test('MessageAccumulator folds content, reasoning and tool calls by index', () => {
  const acc = new MessageAccumulator();
  acc.add({ content: 'Hel' });
  acc.add({ reasoning_content: 'think' });
  acc.add({ content: 'lo', tool_calls: [{ index: 1, id: 'b', type: 'function', function: { name: 'f2', arguments: '{"x"' } }] });
  acc.add({ tool_calls: [{ index: 0, id: 'a', type: 'function', function: { name: 'f1', arguments: '{}' } }] });
  acc.add({ tool_calls: [{ index: 1, function: { arguments: ':1}' } }] });
  expect(acc.message()).toEqual({
    role: 'assistant',
    content: 'Hello',
    reasoning_content: 'think',
    tool_calls: [
      { id: 'a', type: 'function', function: { name: 'f1', arguments: '{}' } },
      { id: 'b', type: 'function', function: { name: 'f2', arguments: '{"x":1}' } },
    ],
  });
  expect(addUsage({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }, undefined)).toEqual({ prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });
});

test('ClientCallFilter hides server calls, renumbers client calls and gives them run-scoped ids', () => {
  const f = new ClientCallFilter((n) => n.startsWith('srv__'), (i) => clientCallId(RUN, i));
  expect(f.pass({ tool_calls: [{ index: 0, id: 's1', type: 'function', function: { name: 'srv__x', arguments: '' } }] })).toBeNull();
  // A client call whose name arrives after its id is held, then released in one piece.
  expect(f.pass({ tool_calls: [{ index: 1, id: 'c1' }] })).toBeNull();
  expect(f.pass({ content: 'hi', tool_calls: [{ index: 1, function: { name: 'weather', arguments: '{"a"' } }] })).toEqual({
    content: 'hi',
    tool_calls: [{ index: 0, id: `call_mx${'ab'.repeat(16)}x0`, type: 'function', function: { name: 'weather', arguments: '{"a"' } }],
  });
  expect(f.pass({ tool_calls: [{ index: 0, function: { arguments: '{}' } }, { index: 1, function: { arguments: ':1}' } }] })).toEqual({
    tool_calls: [{ index: 0, function: { arguments: ':1}' } }],
  });
  expect(runOfClientCallId(`call_mx${'ab'.repeat(16)}x0`)).toBe(RUN);
  expect(runOfClientCallId('call_abc')).toBeNull();
});

test('rejoin swaps the client-facing assistant turn for the hidden transcript and maps ids back', () => {
  const cid = clientCallId(RUN, 0)!;
  const messages = [
    { role: 'user', content: 'q' },
    { role: 'assistant', content: null, tool_calls: [{ id: cid, type: 'function', function: { name: 'weather', arguments: '{}' } }] },
    { role: 'tool', tool_call_id: cid, content: 'sunny' },
  ];
  expect(referencedRuns(messages)).toEqual([RUN]);
  const hidden = {
    messages: [
      { role: 'assistant', content: null, tool_calls: [{ id: 'srv', type: 'function', function: { name: 'x__y', arguments: '{}' } }, { id: 'orig', type: 'function', function: { name: 'weather', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 'srv', content: 'server result' },
    ],
    callIds: { [cid]: 'orig' },
  };
  const out = rejoin(messages, new Map([[RUN, hidden]]));
  expect(out.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool']);
  expect(out[3]).toEqual({ role: 'tool', tool_call_id: 'orig', content: 'sunny' });
  // Unknown run: the conversation is left as the client sent it.
  expect(rejoin(messages, new Map())).toEqual(messages);
});

test('mapArgs reads paths into the original call and keeps literals', () => {
  const args = { entities: [{ name: 'Ada' }, { name: 'Bob' }], id: 7 };
  expect(mapArgs({ entityNames: '$.args.entities[*].name', first: '$.args.entities[0].name', mode: 'hard', rid: '$.result.id' }, { args, result: { id: 'r1' } })).toEqual({
    entityNames: ['Ada', 'Bob'],
    first: 'Ada',
    mode: 'hard',
    rid: 'r1',
  });
});

test('PrefixSkipper swallows a restarted step while it repeats what was published', () => {
  const p = new PrefixSkipper('Hello wor');
  expect(p.pass({ content: 'Hello ' })).toBeNull();
  expect(p.pass({ content: 'world!' })).toEqual({ content: 'ld!' });
  expect(p.pass({ content: ' more' })).toEqual({ content: ' more' });
  const d = new PrefixSkipper('abc');
  expect(d.pass({ content: 'axyz' })).toEqual({ content: 'xyz' });
});
