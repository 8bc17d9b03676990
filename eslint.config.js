// Lint: type-aware promise rules and the import boundaries of STYLE.md.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Folders each folder may not import from (STYLE.md "Imports run one way"). */
const boundaries = {
  lib: [
    'gguf',
    'monitor',
    'planner',
    'engines',
    'supervisor',
    'scheduler',
    'server',
    'cli',
    'daemon',
    'config',
    'metrics',
  ],
  gguf: [
    'monitor',
    'planner',
    'engines',
    'supervisor',
    'scheduler',
    'server',
    'cli',
    'daemon',
    'metrics',
  ],
  monitor: [
    'gguf',
    'planner',
    'engines',
    'supervisor',
    'scheduler',
    'server',
    'cli',
    'daemon',
    'metrics',
  ],
  planner: ['engines', 'supervisor', 'scheduler', 'server', 'cli', 'daemon', 'metrics'],
  engines: ['planner', 'supervisor', 'scheduler', 'server', 'cli', 'daemon', 'metrics'],
  supervisor: ['scheduler', 'server', 'cli', 'daemon', 'metrics', 'planner'],
  scheduler: ['server', 'cli', 'daemon', 'metrics'],
  server: ['cli', 'daemon'],
  cli: ['scheduler', 'supervisor', 'server', 'daemon'],
};

const boundaryConfigs = Object.entries(boundaries).map(([folder, banned]) => ({
  files: [`src/${folder}/**/*.ts`],
  ignores: ['src/**/*.test.ts'],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: banned.map((b) => ({
          group: [`**/${b}/*`, `../${b}`, `../../${b}`],
          message: `src/${folder} may not import from src/${b} (see STYLE.md).`,
        })),
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.cache/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        Buffer: 'readonly',
        fetch: 'readonly',
        AbortController: 'readonly',
        performance: 'readonly',
        TextDecoder: 'readonly',
      },
    },
  },
  ...boundaryConfigs,
);
