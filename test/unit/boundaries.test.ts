/**
 * The architecture as imports: each front door (src/api/<door>/) takes the shared HTTP plumbing
 * (src/api/http/), the engine (src/api/engine/) and anything outside src/api, never another door;
 * the plumbing and the engine take no door; src/domain takes nothing outside itself.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const SRC = resolve(__dirname, '..', '..', 'src');
const API = join(SRC, 'api');
const SHARED = ['http', 'engine'];

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Each relative import of `file`, as the path it names (relative to src/). */
function importsOf(file: string): string[] {
  return ts
    .preProcessFile(readFileSync(file, 'utf8'), true, true)
    .importedFiles.map((f) => f.fileName)
    .filter((s) => s.startsWith('.'))
    .map((s) => relative(SRC, resolve(dirname(file), s)));
}

const doors = readdirSync(API).filter((n) => statSync(join(API, n)).isDirectory() && !SHARED.includes(n));
/** The folder under src/api a path (relative to src/) is in, or null when it is not in one. */
const areaOf = (p: string) => (p.startsWith('api/') && p.split('/').length > 2 ? p.split('/')[1]! : null);

test('the front doors are the folders the README names', () => {
  expect(doors.sort()).toEqual(['chatCompletions', 'mcpGateway', 'responses', 'runs']);
});

test('no door imports another door; the plumbing and the engine import no door', () => {
  const arrows: string[] = [];
  for (const file of filesUnder(API)) {
    const from = areaOf(relative(SRC, file));
    if (from === null) continue; // src/api/app.ts wires the doors together
    for (const to of importsOf(file).map(areaOf)) {
      if (to === null || to === from || SHARED.includes(to)) continue;
      arrows.push(`${relative(SRC, file)} → ${to}`);
    }
  }
  expect(arrows).toEqual([]);
});

test('src/domain imports nothing outside itself', () => {
  const out = filesUnder(join(SRC, 'domain')).flatMap((file) => importsOf(file).filter((p) => !p.startsWith('domain/')).map((p) => `${relative(SRC, file)} → ${p}`));
  expect(out).toEqual([]);
});

test('the check sees arrows: this file\'s own reading finds app.ts importing the doors', () => {
  const fromApp = importsOf(join(API, 'app.ts')).map(areaOf);
  expect(fromApp).toEqual(expect.arrayContaining(doors));
});
