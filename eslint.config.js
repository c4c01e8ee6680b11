// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'cdk.out/', 'layers/pg-dump/dist/', 'layers/pg-dump/cache/', 'coverage/', '.tmp/'] },
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
    files: ['lambda/cli/**', 'lambda/cli.ts', 'scripts/**', 'bench/**', 'test/**', 'infra/app.ts', 'bin/**'],
    rules: { 'no-console': 'off' },
  },
);
