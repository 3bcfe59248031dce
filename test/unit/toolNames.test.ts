/** Catalog naming is part of the workflow's deterministic state: names must be valid, unique and stable. */
import {
  MAX_OPENAI_TOOLS,
  OPENAI_TOOL_NAME_PATTERN,
  ToolLimitError,
  assertToolLimit,
  buildToolCatalog,
  filterTools,
  openAiToolName,
  shortHash,
  toOpenAiParameters,
  toOpenAiTool,
  type McpToolInfo,
} from '../../src/domain/toolNames';

const tool = (name: string, extra: Partial<McpToolInfo> = {}): McpToolInfo => ({
  name,
  inputSchema: { type: 'object', properties: {} },
  ...extra,
});

describe('openAiToolName', () => {
  it('joins server and tool with a double underscore', () => {
    expect(openAiToolName('fs', 'read_file')).toBe('fs__read_file');
    expect(openAiToolName('everything', 'get-sum')).toBe('everything__get-sum');
  });

  it('replaces characters OpenAI rejects', () => {
    expect(openAiToolName('gh', 'repos.get/issue ü')).toBe('gh__repos_get_issue__');
  });

  it('truncates long names to 64 chars with a stable hash suffix', () => {
    const long = 'x'.repeat(100);
    const a = openAiToolName('server', `${long}a`);
    const b = openAiToolName('server', `${long}b`);
    expect(a).toHaveLength(64);
    expect(a).toMatch(OPENAI_TOOL_NAME_PATTERN);
    expect(a.startsWith('server__xxx')).toBe(true);
    expect(a).not.toBe(b);
    expect(openAiToolName('server', `${long}a`)).toBe(a);
    expect(a.endsWith(`_${shortHash(`server__${long}a`)}`)).toBe(true);
  });

  it('keeps names of exactly 64 chars as they are', () => {
    const name = openAiToolName('s', 'y'.repeat(61));
    expect(name).toBe(`s__${'y'.repeat(61)}`);
    expect(name).toHaveLength(64);
  });
});

describe('shortHash', () => {
  it('is FNV-1a, fixed width', () => {
    // FNV-1a 32 of "" is the offset basis 0x811c9dc5; of "a" is 0xe40c292c.
    expect(shortHash('')).toBe((0x811c9dc5).toString(36).padStart(7, '0'));
    expect(shortHash('a')).toBe((0xe40c292c).toString(36).padStart(7, '0'));
    expect(shortHash('anything at all')).toHaveLength(7);
  });
});

describe('toOpenAiParameters', () => {
  it('drops $schema, forces an object schema and keeps required', () => {
    const input = {
      $schema: 'http://json-schema.org/draft-07/schema#',
      type: 'object',
      properties: { path: { type: 'string' } },
      required: ['path'],
      additionalProperties: false,
    };
    expect(toOpenAiParameters(input)).toEqual({
      type: 'object',
      properties: { path: { type: 'string' } },
      required: ['path'],
      additionalProperties: false,
    });
    expect(input.$schema).toBeDefined(); // the original is not mutated
  });

  it('adds type and properties a minimal schema lacks', () => {
    expect(toOpenAiParameters({})).toEqual({ type: 'object', properties: {} });
    expect(toOpenAiParameters({ type: 'object', required: [] })).toEqual({ type: 'object', properties: {} });
  });

  it('copies deeply', () => {
    const input = { type: 'object', properties: { a: { type: 'array', items: { type: 'string' } } } };
    const out = toOpenAiParameters(input);
    (out.properties as Record<string, Record<string, unknown>>).a!.items = 'changed';
    expect(input.properties.a.items).toEqual({ type: 'string' });
  });
});

describe('buildToolCatalog', () => {
  it('sorts by server then tool and indexes by OpenAI name', () => {
    const catalog = buildToolCatalog([
      { server: 'zeta', tools: [tool('b'), tool('a')] },
      { server: 'alpha', tools: [tool('c', { description: 'see', annotations: { readOnlyHint: true } })] },
    ]);
    expect(catalog.entries.map((e) => e.name)).toEqual(['alpha__c', 'zeta__a', 'zeta__b']);
    const entry = catalog.byName.get('alpha__c');
    expect(entry).toMatchObject({ server: 'alpha', tool: 'c', description: 'see', annotations: { readOnlyHint: true } });
    expect(catalog.byName.get('zeta__a')?.description).toBe('');
  });

  it('resolves collisions after sanitising deterministically, preferring the tool already named validly', () => {
    const tools = [tool('x_y'), tool('x.y'), tool('x y')];
    const catalog = buildToolCatalog([{ server: 'a', tools }]);
    const names = Object.fromEntries(catalog.entries.map((e) => [e.tool, e.name]));
    expect(names).toEqual({ x_y: 'a__x_y', 'x y': 'a__x_y_2', 'x.y': 'a__x_y_3' });
    expect(catalog.byName.size).toBe(3);

    const shuffled = buildToolCatalog([{ server: 'a', tools: [...tools].reverse() }]);
    expect(shuffled.entries.map((e) => [e.tool, e.name])).toEqual(catalog.entries.map((e) => [e.tool, e.name]));
  });

  it('never gives a suffixed name that another tool has naturally', () => {
    const catalog = buildToolCatalog([{ server: 'a', tools: [tool('x.y'), tool('x y'), tool('x_y_2')] }]);
    const names = Object.fromEntries(catalog.entries.map((e) => [e.tool, e.name]));
    expect(names).toEqual({ 'x_y_2': 'a__x_y_2', 'x y': 'a__x_y', 'x.y': 'a__x_y_3' });
  });

  it('keeps suffixed names within 64 characters', () => {
    const base = 'q'.repeat(60); // a__ + 61 = 64 chars
    const catalog = buildToolCatalog([{ server: 'a', tools: [tool(`${base}.`), tool(`${base} `)] }]);
    for (const e of catalog.entries) {
      expect(e.name).toMatch(OPENAI_TOOL_NAME_PATTERN);
    }
    expect(new Set(catalog.entries.map((e) => e.name)).size).toBe(2);
    expect(catalog.entries.some((e) => e.name.endsWith('_2'))).toBe(true);
  });

  it('separates the same tool name on different servers', () => {
    const catalog = buildToolCatalog([
      { server: 'one', tools: [tool('echo')] },
      { server: 'two', tools: [tool('echo')] },
    ]);
    expect([...catalog.byName.keys()]).toEqual(['one__echo', 'two__echo']);
  });

  it('converts entries to OpenAI function tools', () => {
    const catalog = buildToolCatalog([
      {
        server: 'fs',
        tools: [tool('read', { description: 'Read', inputSchema: { $schema: 'x', properties: { p: { type: 'string' } } } })],
      },
    ]);
    const entry = catalog.entries[0]!;
    expect(entry.inputSchema).toEqual({ $schema: 'x', properties: { p: { type: 'string' } } });
    expect(toOpenAiTool(entry)).toEqual({
      type: 'function',
      function: { name: 'fs__read', description: 'Read', parameters: { type: 'object', properties: { p: { type: 'string' } } } },
    });
  });
});

describe('filterTools', () => {
  const tools = [tool('read_file'), tool('read_dir'), tool('write_file'), tool('delete')];
  const names = (filter: Parameters<typeof filterTools>[1]) => filterTools(tools, filter).map((t) => t.name);

  it('keeps everything without a filter', () => {
    expect(names(undefined)).toHaveLength(4);
    expect(names({})).toHaveLength(4);
  });

  it('applies allow, then deny, with * globs', () => {
    expect(names({ allow: ['read_*', 'delete'] })).toEqual(['read_file', 'read_dir', 'delete']);
    expect(names({ deny: ['*_file'] })).toEqual(['read_dir', 'delete']);
    expect(names({ allow: ['read_*'], deny: ['read_dir'] })).toEqual(['read_file']);
    expect(names({ allow: [] })).toEqual([]);
  });

  it('treats regex characters literally', () => {
    expect(filterTools([tool('a.b'), tool('axb')], { allow: ['a.b'] }).map((t) => t.name)).toEqual(['a.b']);
  });
});

describe('assertToolLimit', () => {
  it('accepts up to the limit', () => {
    expect(() => assertToolLimit(MAX_OPENAI_TOOLS, ['a'])).not.toThrow();
  });

  it('names the servers and suggests tools.allow beyond it', () => {
    expect(() => assertToolLimit(MAX_OPENAI_TOOLS + 1, ['github', 'fs'])).toThrow(ToolLimitError);
    expect(() => assertToolLimit(200, ['github', 'fs'])).toThrow(/200 tools .*github, fs.*tools\.allow/);
  });
});
