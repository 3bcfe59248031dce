import { SseDecoder } from '../../src/connectors/upstream';

/** Feeds `text` to a fresh decoder in pieces cut at `cuts`; returns every event's data. */
function decode(text: string, cuts: number[]): string[] {
  const d = new SseDecoder();
  const out: string[] = [];
  let from = 0;
  for (const at of [...cuts, text.length]) {
    out.push(...d.push(text.slice(from, at)));
    from = at;
  }
  return out;
}

describe('SseDecoder', () => {
  const events = ['{"a":1}', '{"b":"x y"}', '[DONE]'];

  test.each([
    ['\n', 'LF'],
    ['\r\n', 'CRLF'],
    ['\r', 'CR'],
  ])('events ended by %j (%s) come out whole wherever the chunks are cut', (eol) => {
    const text = events.map((e) => `data: ${e}${eol}${eol}`).join('');
    for (let cut = 0; cut <= text.length; cut++) expect(decode(text, [cut])).toEqual(events);
  });

  test('multi-line data is joined by newlines; comments, other fields and empty data are skipped', () => {
    const text = ': keepalive\n\nevent: x\nid: 3\ndata: one\ndata:two\n\ndata:\n\nretry: 5\n\n';
    expect(decode(text, [7, 20])).toEqual(['one\ntwo']);
  });

  test('a CR at the end of one chunk and its LF at the start of the next are one line end', () => {
    expect(decode('data: a\r\n\r\ndata: b\r\n\r\n', [8, 9, 10])).toEqual(['a', 'b']);
  });

  test('an unfinished event is held until its blank line arrives', () => {
    const d = new SseDecoder();
    expect(d.push('data: {"a"')).toEqual([]);
    expect(d.push(':1}\n')).toEqual([]);
    expect(d.push('\n')).toEqual(['{"a":1}']);
  });
});
