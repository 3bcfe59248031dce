/**
 * Schema trimming may only remove what validation ignores: a trimmed schema accepts exactly the
 * arguments its original accepts (checked with ajv on random schemas and values), and the trims
 * for a budget come in the documented order.
 */
import Ajv from 'ajv';
import Ajv2020 from 'ajv/dist/2020';
import fc from 'fast-check';
import { estimateTokens } from '../../src/domain/contextGuard';
import { trimDescription, trimSchema } from '../../src/domain/schemaTrim';

type Json = unknown;
type Schema = Record<string, unknown>;

// Both dialects mix2api validates arguments with; unoptimised code compiles twice as fast.
const options = { strict: false, logger: false, code: { optimize: false } } as const;
const ajv07 = new Ajv(options);
const ajv2020 = new Ajv2020(options);

const trim = (schema: Schema, budget = Infinity) => trimSchema(schema, budget).schema;
const long = (words: number, word = 'word') => Array.from({ length: words }, (_, i) => `${word}${i}`).join(' ') + '.';

/** An object with own keys, even one named `__proto__`. */
function object(entries: Array<[string, Json]>): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const [k, v] of entries) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

describe('what always goes', () => {
  it('removes annotations and vendor keys at every level', () => {
    const schema = {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      title: 'Args',
      $comment: 'generated',
      'x-generator': 'pydantic',
      type: 'object',
      properties: {
        tags: {
          type: 'array',
          title: 'Tags',
          deprecated: true,
          items: { type: 'string', title: 'Tag', examples: ['a'], readOnly: true, writeOnly: false, 'x-order': 1 },
        },
        choice: { anyOf: [{ type: 'string', title: 'A' }, { type: 'null', $comment: 'none' }] },
      },
    };
    expect(trim(schema)).toEqual({
      type: 'object',
      properties: { tags: { type: 'array', items: { type: 'string' } }, choice: { anyOf: [{ type: 'string' }, { type: 'null' }] } },
    });
  });

  it('keeps properties named like annotations, and lists naming them', () => {
    const schema = {
      type: 'object',
      properties: {
        title: { type: 'string', title: 'Title' },
        default: { type: 'boolean' },
        examples: { type: 'array' },
        $comment: { type: 'string' },
        'x-request-id': { type: 'string' },
        nested: { type: 'object', properties: { title: { type: 'string' }, default: { type: 'number' } }, required: ['title', 'default'] },
      },
      patternProperties: { '^x-': { type: 'string' } },
      required: ['title', 'default', 'x-request-id'],
      dependentRequired: { title: ['default'] },
    };
    expect(trim(schema)).toEqual({ ...schema, properties: { ...schema.properties, title: { type: 'string' } } });
  });

  it('leaves data alone: enum, const, examples and default values keep their keys', () => {
    const schema = {
      type: 'object',
      properties: {
        mode: { enum: [{ title: 'fast', $comment: 'x' }, { title: 'slow', 'x-k': 1 }], const: { title: 't' } },
        size: { type: 'object', default: { title: 'kept', examples: [1] } },
      },
    };
    expect(trim(schema)).toEqual(schema);
  });

  it('keeps a default on the root object and its properties, drops deeper ones', () => {
    const schema = {
      type: 'object',
      default: {},
      properties: {
        limit: { type: 'integer', default: 10 },
        opts: { type: 'object', default: { a: 1 }, properties: { a: { type: 'integer', default: 1 } } },
        list: { type: 'array', items: { type: 'string', default: 'x' } },
        either: { anyOf: [{ type: 'string', default: 'y' }] },
      },
    };
    expect(trim(schema)).toEqual({
      type: 'object',
      default: {},
      properties: {
        limit: { type: 'integer', default: 10 },
        opts: { type: 'object', default: { a: 1 }, properties: { a: { type: 'integer' } } },
        list: { type: 'array', items: { type: 'string' } },
        // A branch of a root property describes that same property: its default stays.
        either: { anyOf: [{ type: 'string', default: 'y' }] },
      },
    });
  });

  it('drops $id only when nothing refers, and a $ref into $defs still resolves', () => {
    expect(trim({ $id: 'https://x.test/a', type: 'object', properties: { $ref: { type: 'string' } } })).toEqual({
      $id: 'https://x.test/a',
      type: 'object',
      properties: { $ref: { type: 'string' } },
    });
    expect(trim({ $id: 'https://x.test/b', type: 'object' })).toEqual({ type: 'object' });
    const schema = {
      $id: 'https://x.test/c',
      type: 'object',
      properties: { user: { $ref: '#/$defs/user', description: 'Who' } },
      required: ['user'],
      $defs: { user: { type: 'object', title: 'User', properties: { id: { type: 'integer', title: 'Id' } }, required: ['id'] } },
    };
    const trimmed = trim(schema, 0);
    expect(trimmed.$defs).toEqual({ user: { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'] } });
    const validate = new Ajv2020({ strict: false }).compile(trimmed);
    expect(validate({ user: { id: 1 } })).toBe(true);
    expect(validate({ user: {} })).toBe(false);
  });

  it('never touches a validation keyword, even at a budget of 0', () => {
    const schema: Schema = {
      type: 'object',
      required: ['a'],
      additionalProperties: false,
      minProperties: 1,
      maxProperties: 5,
      propertyNames: { pattern: '^[a-z]+$' },
      properties: {
        a: { type: 'string', format: 'email', pattern: '@', minLength: 3, maxLength: 99 },
        n: { type: 'number', minimum: 0, maximum: 9, exclusiveMinimum: -1, exclusiveMaximum: 10, multipleOf: 0.5 },
        list: { type: 'array', prefixItems: [{ const: 1 }], items: { enum: [1, 2] }, minItems: 1, maxItems: 3, uniqueItems: true, contains: { const: 2 } },
        pick: { oneOf: [{ type: 'string' }, { not: { type: 'null' } }], allOf: [{ if: { type: 'string' }, then: { minLength: 1 }, else: { type: 'number' } }] },
        ref: { $ref: '#/definitions/d' },
      },
      patternProperties: { '^z': { type: 'boolean' } },
      dependentRequired: { a: ['n'] },
      dependentSchemas: { n: { required: ['a'] } },
      unevaluatedProperties: false,
      definitions: { d: { type: 'integer' } },
      'unknown-keyword': { title: 'kept, since nobody knows what it is' },
    };
    expect(trim(schema, 0)).toEqual(schema);
  });

  it('keeps a property named __proto__ as a property, on an ordinary object', () => {
    const schema = { type: 'object', properties: object([['__proto__', { type: 'string', title: 'P' }]]) };
    const trimmed = trim(schema);
    const props = trimmed.properties as Record<string, unknown>;
    expect(Object.getPrototypeOf(props)).toBe(Object.prototype);
    expect(Object.keys(props)).toEqual(['__proto__']);
    expect(Object.getOwnPropertyDescriptor(props, '__proto__')?.value).toEqual({ type: 'string' });
  });

  it('does not change its input', () => {
    const schema = {
      $schema: 'x',
      type: 'object',
      title: 'T',
      properties: { a: { type: 'object', description: long(80), properties: { b: { type: 'string', default: 'x', description: long(80) } } } },
    };
    const before = JSON.stringify(schema);
    const deepFreeze = (v: unknown): void => {
      if (v && typeof v === 'object') Object.values(Object.freeze(v)).forEach(deepFreeze);
    };
    deepFreeze(schema);
    for (const budget of [Infinity, 60, 0]) trimSchema(schema, budget);
    expect(JSON.stringify(schema)).toBe(before);
  });
});

describe('trims for a budget', () => {
  const schema = {
    type: 'object',
    description: long(40, 'root'),
    properties: {
      user_id: { type: 'string', description: 'The user ID.' },
      query: { type: 'string', description: long(40, 'top') },
      filter: {
        type: 'object',
        description: 'Filter.',
        properties: { since: { type: 'string', description: long(40, 'deep') }, tags: { type: 'array', items: { type: 'string', description: long(40, 'item') } } },
      },
    },
  };
  type Props = { user_id: Schema; query: Schema; filter: Schema & { properties: { since: Schema; tags: { items: Schema } } } };
  const at = (budget: number) => trimSchema(schema, budget);
  const props = (s: Schema) => s.properties as Props;
  // The estimate of each stage, from the least to the most trimmed.
  const sizes: number[] = [];
  for (let b = 2000; b >= 0; b--) {
    const t = at(b).tokens;
    if (sizes[sizes.length - 1] !== t) sizes.push(t);
  }

  it('has five stages, and reports the estimate of what it returns', () => {
    expect(sizes).toHaveLength(5);
    for (const b of [2000, ...sizes, 0]) expect(at(b).tokens).toBe(estimateTokens(at(b).schema));
  });

  it('sends everything when it fits', () => {
    expect(at(sizes[0]!).schema).toEqual(schema);
  });

  it('first cuts nested descriptions to 120 chars, then drops them', () => {
    const cut = props(at(sizes[1]!).schema);
    expect(cut.filter.properties.since.description).toMatch(/^deep0 .*…$/);
    expect((cut.filter.properties.since.description as string).length).toBeLessThanOrEqual(120);
    expect((cut.filter.properties.tags.items.description as string).length).toBeLessThanOrEqual(120);
    expect(cut.query.description).toBe(schema.properties.query.description);

    const dropped = props(at(sizes[2]!).schema);
    expect(dropped.filter.properties.since).toEqual({ type: 'string' });
    expect(dropped.filter.properties.tags.items).toEqual({ type: 'string' });
    expect(dropped.query.description).toBe(schema.properties.query.description);
  });

  it('then cuts top-level descriptions to 80 chars, then drops those that only repeat the name', () => {
    const cut = at(sizes[3]!).schema;
    expect((props(cut).query.description as string).length).toBeLessThanOrEqual(80);
    expect((cut.description as string).length).toBeLessThanOrEqual(80);
    expect(props(cut).user_id.description).toBe('The user ID.');
    expect(props(cut).filter.description).toBe('Filter.');

    const last = at(sizes[4]!).schema;
    expect(props(last).user_id).toEqual({ type: 'string' });
    expect(props(last).filter.description).toBeUndefined();
    expect(props(last).query.description).toBe(props(cut).query.description);
  });

  it('returns the most trimmed form when nothing fits, and counts with the given estimate', () => {
    expect(at(0)).toEqual(at(sizes[4]!));
    const calls: unknown[] = [];
    const result = trimSchema(schema, 5, (v) => (calls.push(v), 1));
    expect(result).toEqual({ schema: at(sizes[0]!).schema, tokens: 1 });
    expect(calls).toHaveLength(1);
  });
});

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe('trimDescription', () => {
  const text = 'Creates a new issue in the repository. Labels and assignees are optional; the body is Markdown.';

  it('leaves text that fits alone', () => {
    expect(trimDescription(text, text.length)).toBe(text);
  });

  it('cuts at the last whole sentence, else at a word, else mid-word', () => {
    expect(trimDescription(text, 60)).toBe('Creates a new issue in the repository. …');
    expect(trimDescription('Creates a new issue in the repository, with labels', 40)).toBe('Creates a new issue in the repository…');
    expect(trimDescription('x'.repeat(50), 10)).toBe(`${'x'.repeat(9)}…`);
    expect(trimDescription('First line\nsecond line that goes on', 14)).toBe('First line …');
  });

  it('is never longer than asked, and never splits a surrogate pair', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.integer({ min: 0, max: 220 }), (s, max) => {
        const out = trimDescription(s, max);
        expect(out.length).toBeLessThanOrEqual(max);
        expect(out).not.toMatch(LONE_SURROGATE);
        if (s.length <= max) expect(out).toBe(s);
      }),
    );
  });
});

// --- Property: trimming never changes what validates ----------------------------------------

/** Property names that collide with keywords, and one that would be a prototype. */
const NAMES = ['title', 'default', 'description', 'examples', '$comment', 'type', 'properties', 'x-id', 'enum', '__proto__', 'name', 'a'];
const PATTERNS = ['^[a-z]+$', '^\\d{3}-\\d{2}$', 'b', '^(title|default)$'];
const DEF_NAMES = ['title', 'item'];

const text = fc.string({ maxLength: 160 });
const data = (maxDepth: number) => fc.jsonValue({ maxDepth, depthSize: 'xsmall' });
const annotations = fc.record(
  {
    title: fc.string({ maxLength: 10 }),
    description: fc.oneof(text, fc.constantFrom('Name', 'The title.', 'a')),
    examples: fc.array(data(1), { maxLength: 2 }),
    default: data(1),
    $comment: text,
    deprecated: fc.boolean(),
    readOnly: fc.boolean(),
    writeOnly: fc.boolean(),
    'x-vendor': data(1),
  },
  { requiredKeys: [] },
);
/** Data that looks like schemas: an enum of objects with `title`, `default`, `$comment`. */
const schemaLikeData = fc.oneof(data(1), fc.record({ title: fc.string({ maxLength: 5 }), default: fc.integer(), $comment: fc.string({ maxLength: 5 }) }));

const leaves = (refs: boolean): Array<fc.Arbitrary<Schema>> => [
  fc.record(
    { type: fc.constant('string'), minLength: fc.nat(3), maxLength: fc.integer({ min: 3, max: 12 }), pattern: fc.constantFrom(...PATTERNS), format: fc.constantFrom('email', 'date') },
    { requiredKeys: ['type'] },
  ),
  fc.record(
    { type: fc.constantFrom('integer', 'number'), minimum: fc.integer({ min: -5, max: 0 }), maximum: fc.integer({ min: 0, max: 50 }), exclusiveMaximum: fc.integer({ min: 10, max: 60 }), multipleOf: fc.constantFrom(1, 2, 5) },
    { requiredKeys: ['type'] },
  ),
  fc.record({ type: fc.constantFrom('boolean', 'null') }),
  fc.record({ enum: fc.uniqueArray(schemaLikeData, { minLength: 1, maxLength: 4, selector: (v) => JSON.stringify(v) }) }),
  fc.record({ const: schemaLikeData }),
  // Definitions hold no references, so no reference loops back to itself.
  ...(refs ? [fc.record({ $ref: fc.constantFrom(...DEF_NAMES.map((d) => `#/$defs/${d}`)) })] : []),
];

const annotated = (core: fc.Arbitrary<Schema>) => fc.tuple(annotations, core).map(([a, c]) => object([...Object.entries(a), ...Object.entries(c)]));

function objectSchema(sub: fc.Arbitrary<Schema>): fc.Arbitrary<Schema> {
  return fc
    .record(
      {
        props: fc.uniqueArray(fc.tuple(fc.constantFrom(...NAMES), sub), { selector: (p) => p[0], maxLength: 4 }),
        extraRequired: fc.subarray(NAMES, { maxLength: 1 }),
        additionalProperties: fc.oneof(fc.boolean(), sub),
        patternProperties: fc.constantFrom(...PATTERNS).chain((p) => sub.map((s) => object([[p, s]]))),
        minProperties: fc.nat(2),
      },
      { requiredKeys: ['props'] },
    )
    .chain(({ props, extraRequired, ...rest }) =>
      // Mostly names of its properties, now and then one it does not define.
      fc.subarray(props.map(([name]) => name)).map((required) =>
        object([['type', 'object'], ['properties', object(props)], ['required', [...new Set([...required, ...(extraRequired ?? [])])]], ...Object.entries(rest)]),
      ),
    );
}

function schemaArb(depth: number, refs: boolean): fc.Arbitrary<Schema> {
  if (depth === 0) return annotated(fc.oneof(...leaves(refs)));
  const sub = schemaArb(depth - 1, refs);
  const array = fc.record(
    { type: fc.constant('array'), items: sub, minItems: fc.nat(2), maxItems: fc.integer({ min: 2, max: 4 }), uniqueItems: fc.boolean() },
    { requiredKeys: ['type', 'items'] },
  );
  const branches = fc.tuple(fc.constantFrom('anyOf', 'oneOf', 'allOf'), fc.array(sub, { minLength: 1, maxLength: 3 })).map(([k, v]) => object([[k, v]]));
  return annotated(fc.oneof(...leaves(refs), objectSchema(sub), array, branches));
}

const rootSchema = fc
  .tuple(objectSchema(schemaArb(2, true)), annotations, fc.tuple(...DEF_NAMES.map(() => schemaArb(1, false))))
  .map(([root, a, defs]) => object([...Object.entries(a), ...Object.entries(root), ['$defs', object(DEF_NAMES.map((d, i) => [d, defs[i]!]))]]));

/** Values aimed at the schema, so that a fair share of candidates is valid. */
function valueFor(schema: Json, defs: Schema, depth = 0): fc.Arbitrary<Json> {
  if (typeof schema !== 'object' || schema === null || depth > 6) return data(1);
  const s = schema as Schema;
  if (typeof s.$ref === 'string') return valueFor(defs[s.$ref.slice('#/$defs/'.length)], defs, depth + 1);
  if ('const' in s) return fc.constant(s.const);
  if (Array.isArray(s.enum)) return fc.constantFrom(...(s.enum as Json[]));
  for (const k of ['anyOf', 'oneOf', 'allOf']) if (Array.isArray(s[k])) return fc.oneof(...(s[k] as Json[]).map((b) => valueFor(b, defs, depth + 1)));
  switch (s.type) {
    case 'object': {
      const props = Object.entries(s.properties as Schema);
      const required = new Set(s.required as string[] | undefined);
      return fc
        .tuple(...props.map(([k, p]) => (required.has(k) ? valueFor(p, defs, depth + 1) : fc.option(valueFor(p, defs, depth + 1), { nil: undefined }))))
        .map((vs) => object(props.flatMap(([k], i) => (vs[i] === undefined ? [] : [[k, vs[i]] as [string, Json]]))));
    }
    case 'array':
      return fc.array(valueFor(s.items, defs, depth + 1), { maxLength: 3 });
    case 'string':
      return typeof s.pattern === 'string' ? fc.stringMatching(new RegExp(s.pattern)) : fc.string({ maxLength: 12 });
    case 'integer':
    case 'number':
      return fc.integer({ min: -5, max: 60 });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    default:
      return data(1);
  }
}

test('a trimmed schema accepts exactly what its original accepts (random schemas, 500 runs)', () => {
  let valid = 0;
  let candidates = 0;
  const cases = rootSchema.chain((schema) =>
    fc.record({
      schema: fc.constant(schema),
      budget: fc.oneof(fc.constant(Infinity), fc.integer({ min: 0, max: 400 })),
      values: fc.tuple(fc.array(valueFor(schema, schema.$defs as Schema), { minLength: 1, maxLength: 4 }), fc.array(data(2), { maxLength: 3 })).map(([a, b]) => [...a, ...b, {}]),
    }),
  );
  fc.assert(
    // Through JSON, as schemas and arguments arrive (fast-check makes some objects without a prototype).
    fc.property(cases.map((c) => ({ ...c, ...(JSON.parse(JSON.stringify({ schema: c.schema, values: c.values })) as { schema: Schema; values: Json[] }) })), ({ schema, budget, values }) => {
      const before = JSON.stringify(schema);
      const trimmed = trimSchema(schema, budget).schema;
      expect(JSON.stringify(schema)).toBe(before);
      for (const ajv of [ajv2020, ajv07]) {
        const original = ajv.compile(schema);
        const cut = ajv.compile(trimmed);
        for (const v of values) {
          const ok = original(v);
          candidates++;
          if (ok) valid++;
          expect(cut(v)).toBe(ok);
        }
        ajv.removeSchema(schema);
        ajv.removeSchema(trimmed);
      }
    }),
    { numRuns: 500 },
  );
  // Not vacuous: some candidates are valid, most are not.
  expect(valid / candidates).toBeGreaterThan(0.1);
  expect(valid / candidates).toBeLessThan(0.9);
});
