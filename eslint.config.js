// Lint: type-aware promise rules and the import boundaries of STYLE.md.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The import boundaries of STYLE.md ("Imports run one way"): what each folder of src/ may import
 * from the others. `types` may be imported only with `import type`. Anything not listed is
 * banned; `main.ts`, `index.ts` and `daemon/` (the composition root) may import everything.
 * Tests beside their file are exempt (they build what the code under test is given).
 * test/imports.test.ts holds src/ to the same table for dynamic imports (which this rule does not
 * see) and checks that no import cycle exists, between files or between folders.
 */
export const FOLDERS = [
  'lib',
  'config',
  'gguf',
  'monitor',
  'planner',
  'engines',
  'supervisor',
  'scheduler',
  'state',
  'metrics',
  'server',
  'cli',
  'daemon',
  'dashboard',
];
export const boundaries = {
  lib: { values: [] },
  config: { values: ['lib'] },
  gguf: { values: ['lib', 'config'] },
  monitor: { values: ['lib', 'config'] },
  planner: { values: ['lib', 'gguf'], types: ['monitor'] },
  // The embedded runner reads its own memory with the monitor's /proc reader (a leaf).
  engines: { values: ['lib', 'monitor'] },
  supervisor: { values: ['lib', 'engines'] },
  // A runner's config and kind are the engines' types; which engine runs it is not the scheduler's.
  scheduler: { values: ['lib', 'planner'], types: ['supervisor', 'monitor', 'engines'] },
  // Saved sequence state on disk: files, index, LRU cap; the engines drive the runners.
  state: { values: ['lib'] },
  metrics: { values: ['lib'] },
  // The engine interface and the OpenAI request shapes, never an engine's own folder.
  server: { values: ['lib', 'scheduler', 'metrics', 'monitor', 'engines'], enginesTopOnly: true },
  // Talks to the daemon over HTTP; `serve` starts it through main.ts (loaded lazily).
  cli: { values: ['lib', 'config', 'gguf', 'monitor', 'planner', 'engines'] },
  // The web page's plain browser modules (served as files, imported by nothing in src/).
  dashboard: { values: [] },
};

const importsOf = (b) => [`**/${b}/*`, `**/${b}/**`, `../${b}`, `../../${b}`];

const boundaryConfigs = Object.entries(boundaries).map(([folder, allowed]) => {
  const values = new Set([folder, ...allowed.values]);
  const types = new Set(allowed.types ?? []);
  const message = (b, typesOnly) =>
    typesOnly
      ? `src/${folder} may import only types from src/${b} (see STYLE.md "Imports run one way").`
      : `src/${folder} may not import from src/${b} (see STYLE.md "Imports run one way").`;
  const patterns = FOLDERS.filter((b) => !values.has(b)).map((b) => ({
    group: importsOf(b),
    message: message(b, types.has(b)),
    ...(types.has(b) ? { allowTypeImports: true } : {}),
  }));
  if (allowed.enginesTopOnly)
    patterns.push({
      group: ['**/engines/*/**'],
      message: `src/${folder} may import the engine interface and shared shapes, not an engine's folder.`,
    });
  return {
    files: [`src/${folder}/**/*.ts`],
    ignores: ['src/**/*.test.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
  };
});

export default tseslint.config(
  {
    // examples/ import the built package by name: test/e2e/package.test.ts compiles them strictly.
    ignores: ['dist/**', 'node_modules/**', '.cache/**', 'coverage/**', 'examples/**'],
  },
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
  {
    // The dashboard runs in the browser.
    files: ['src/dashboard/**/*.js'],
    languageOptions: {
      globals: {
        window: 'readonly',
        document: 'readonly',
        sessionStorage: 'readonly',
        URLSearchParams: 'readonly',
        Headers: 'readonly',
        TextDecoderStream: 'readonly',
        ResizeObserver: 'readonly',
        setInterval: 'readonly',
        uPlot: 'readonly',
      },
    },
  },
  ...boundaryConfigs,
);
