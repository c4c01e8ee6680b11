// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'cdk.out/', 'layers/pg-dump/dist/', 'layers/pg-dump/cache/', 'layers/pg-server/dist/', 'layers/pg-server/cache/', 'coverage/', '.tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // The Lambda logs through Powertools Logger; console is for the CLI, scripts and benchmarks only.
      'no-console': 'error',
    },
  },
  {
    // Imports point down only: front doors (lambda/, cli/) → engine/ → adapters. The CDK app, the
    // scripts and the benchmark are not CLI users: they take what they need from engine/ or layers/.
    files: ['engine/**', 'lambda/**', 'infra/**', 'bench/**', 'scripts/layer.ts', 'scripts/local-services.ts', 'scripts/sample-shop.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/cli/*', '**/cli/**'], message: 'cli/ is a front door: import from engine/ or layers/ instead.' }] }],
    },
  },
  {
    files: ['engine/**'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/cli/*', '**/lambda/*', '**/infra/*', '**/scripts/*', '**/bench/*'], message: 'engine/ must not import a front door, infra, scripts or bench.' }] }],
    },
  },
  {
    // Settings sit below every feature: the declarations, their checks and config.ts import none of
    // them (a validator a setting needs moves down into engine/settings/).
    files: ['engine/settings/**', 'engine/config.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['**/cli/*', '**/lambda/*', '**/infra/*', '**/scripts/*', '**/bench/*'], message: 'engine/ must not import a front door, infra, scripts or bench.' },
            { regex: '^\\.\\.?/(?!settings/|errors\\.ts$|values\\.ts$|fields\\.ts$|settings\\.ts$|limits\\.ts$)', message: 'config and settings import only engine/settings/ and errors.ts: move the validator down.' },
          ],
        },
      ],
    },
  },
  {
    files: ['cli/**', 'scripts/**', 'bench/**', 'test/**', 'infra/app.ts', 'bin/**'],
    rules: { 'no-console': 'off' },
  },
);
