import { canonicalJson } from '../../src/api/engine/implicitKey';

test('canonical JSON ignores key order and undefined fields, keeps array order and values', () => {
  expect(canonicalJson({ b: 1, a: { d: [2, 1], c: 'x' }, u: undefined })).toBe('{"a":{"c":"x","d":[2,1]},"b":1}');
  expect(canonicalJson({ a: { c: 'x', d: [2, 1] }, b: 1 })).toBe(canonicalJson({ b: 1, a: { d: [2, 1], c: 'x' } }));
  expect(canonicalJson({ a: [1, 2] })).not.toBe(canonicalJson({ a: [2, 1] }));
  expect(canonicalJson([null, true, 'é'])).toBe('[null,true,"é"]');
});
