/**
 * The workflow bundle cache (roles/workflowBundle): a bundle is reused only for the same code and
 * options, and a start with a cached bundle does not bundle again.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleKey, workflowBundle } from '../../src/roles/workflowBundle';
import { workflowInterceptorModules } from '../../src/roles/workers';
import { ENCRYPTED_FAILURE_CONVERTER } from '../../src/connectors/payloadCodec';

jest.setTimeout(60_000);

const plain = { dir: null, workflowInterceptorModules: workflowInterceptorModules(false) };

test('the key is stable for the same code and options, and differs with tracing or encryption', () => {
  expect(bundleKey(plain)).toBe(bundleKey({ ...plain }));
  expect(bundleKey({ ...plain, workflowInterceptorModules: workflowInterceptorModules(true) })).not.toBe(bundleKey(plain));
  expect(bundleKey({ ...plain, failureConverterPath: ENCRYPTED_FAILURE_CONVERTER })).not.toBe(bundleKey(plain));
});

test('the first start bundles and keeps the bundle; the next one reads it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mix2api-bundle-'));
  try {
    const first = await workflowBundle({ ...plain, dir });
    expect('code' in first && first.code.length).toBeGreaterThan(100_000);
    const kept = join(dir, `workflow-bundle-${bundleKey(plain)}.js`);
    expect(existsSync(kept)).toBe(true);
    expect(await workflowBundle({ ...plain, dir })).toEqual({ codePath: kept });
    expect(readdirSync(dir)).toEqual([`workflow-bundle-${bundleKey(plain)}.js`]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
