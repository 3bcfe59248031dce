/** What the model reads back from a tool: every MCP content type rendered, and a hard byte cap. */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { capUtf8, cappedStructured, toolResultToText, utf8Length } from '../../src/connectors/mcp/toolResult';

const MAX = 65536;

describe('toolResultToText', () => {
  it('joins text blocks and reports isError', () => {
    const result: CallToolResult = {
      content: [
        { type: 'text', text: 'first' },
        { type: 'text', text: 'second' },
      ],
      isError: true,
    };
    expect(toolResultToText(result, MAX)).toEqual({ text: 'first\nsecond', truncated: false, isError: true });
    expect(toolResultToText({ content: [{ type: 'text', text: 'ok' }] }, MAX).isError).toBe(false);
  });

  it('notes images and audio instead of inlining base64', () => {
    const result: CallToolResult = {
      content: [
        { type: 'image', data: 'AAAA', mimeType: 'image/png' },
        { type: 'audio', data: 'AAA=', mimeType: 'audio/wav' },
      ],
    };
    expect(toolResultToText(result, MAX).text).toBe('[image: image/png, 3 bytes]\n[audio: audio/wav, 2 bytes]');
  });

  it('renders resource links and embedded resources', () => {
    const result: CallToolResult = {
      content: [
        { type: 'resource_link', uri: 'file:///a.txt', name: 'a.txt', mimeType: 'text/plain', description: 'A file' },
        { type: 'resource', resource: { uri: 'file:///b.txt', mimeType: 'text/plain', text: 'hello' } },
        { type: 'resource', resource: { uri: 'file:///c.bin', blob: 'AAAAAAAA' } },
      ],
    };
    expect(toolResultToText(result, MAX).text).toBe(
      [
        '[resource link: file:///a.txt (a.txt, text/plain)] A file',
        '[resource: file:///b.txt (text/plain)]',
        'hello',
        '[resource: file:///c.bin, binary, 6 bytes]',
      ].join('\n'),
    );
  });

  it('adds structuredContent as JSON unless a text block already mirrors it', () => {
    const structured = { b: 2, a: [1, { c: 'x' }] };
    const alone: CallToolResult = { content: [], structuredContent: structured };
    expect(toolResultToText(alone, MAX).text).toBe(JSON.stringify(structured));

    const mirrored: CallToolResult = {
      content: [{ type: 'text', text: '{"a":[1,{"c":"x"}],"b":2}' }],
      structuredContent: structured,
    };
    expect(toolResultToText(mirrored, MAX).text).toBe('{"a":[1,{"c":"x"}],"b":2}');

    const different: CallToolResult = { content: [{ type: 'text', text: 'Done.' }], structuredContent: structured };
    expect(toolResultToText(different, MAX).text).toBe(`Done.\n${JSON.stringify(structured)}`);
  });

  it('never returns an empty string', () => {
    expect(toolResultToText({ content: [] }, MAX).text).toBe('[no output]');
    expect(toolResultToText({ content: [], isError: true }, MAX).text).toBe('[tool failed without output]');
  });

  it('names unknown content types', () => {
    const result = { content: [{ type: 'hologram' }] } as unknown as CallToolResult;
    expect(toolResultToText(result, MAX).text).toBe('[unsupported content: hologram]');
  });

  it('caps the output and says how much was shown', () => {
    const result: CallToolResult = { content: [{ type: 'text', text: 'a'.repeat(100) }] };
    expect(toolResultToText(result, 10)).toEqual({
      text: `${'a'.repeat(10)}\n[truncated: 10 of 100 bytes shown]`,
      truncated: true,
      isError: false,
    });
  });
});

describe('capUtf8', () => {
  it('counts UTF-8 bytes like TextEncoder', () => {
    for (const s of ['', 'abc', 'é€', '😀x', 'a\uD800b']) {
      expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
    }
  });

  it('cuts on character boundaries', () => {
    expect(capUtf8('€€€€€', 7)).toEqual({ text: '€€\n[truncated: 6 of 15 bytes shown]', truncated: true });
    expect(capUtf8('a😀', 4)).toEqual({ text: 'a\n[truncated: 1 of 5 bytes shown]', truncated: true });
    expect(capUtf8('€€', 6)).toEqual({ text: '€€', truncated: false });
  });
});

test('structuredContent is kept only within the output cap', () => {
  const small = { content: [], structuredContent: { id: 7 } };
  expect(cappedStructured(small, 100)).toEqual({ id: 7 });
  const big = { content: [], structuredContent: { blob: 'x'.repeat(5000) } };
  expect(cappedStructured(big, 1000)).toBeUndefined();
  expect(cappedStructured({ content: [] }, 1000)).toBeUndefined();
});
