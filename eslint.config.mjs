// Lint rules that catch real bugs in Temporal code: floating promises, and Node built-ins in workflow code.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.data/**', '.tools/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { project: './tsconfig.json', tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['fs', 'path', 'http', 'https', 'net', 'child_process', 'os', 'crypto', 'stream', 'events', 'timers', 'worker_threads']
          .map((name) => ({ name, message: 'Workflow code is deterministic: no Node built-ins.' })),
        patterns: [
        { group: ['node:*'], message: 'Workflow code is deterministic: no Node built-ins.' },
        { group: ['../connectors/*', '../api/*', '../activities/*'], allowTypeImports: true, message: 'Workflows import only activity types.' },
      ] }],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'Use workflow time; Date.now() is not replay-safe here.' },
        { object: 'Math', property: 'random', message: 'Use wf.uuid4() for randomness.' }],
    },
  },
);
