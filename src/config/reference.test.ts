import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig } from './load.js';
import {
  configJsonSchema,
  configJsonSchemaText,
  configReferenceMarkdown,
  referenceRows,
} from './reference.js';

const DOCS = path.resolve(import.meta.dirname, '../../docs');
const REGENERATE = 'out of date: run `npm run docs` and commit the result';

describe('generated config docs', () => {
  it('docs/config.schema.json is what the zod schema generates', async () => {
    const file = await readFile(path.join(DOCS, 'config.schema.json'), 'utf8');
    expect(file, `docs/config.schema.json is ${REGENERATE}`).toBe(configJsonSchemaText());
  });

  it('docs/CONFIG.md is what the zod schema generates', async () => {
    const file = await readFile(path.join(DOCS, 'CONFIG.md'), 'utf8');
    expect(file, `docs/CONFIG.md is ${REGENERATE}`).toBe(configReferenceMarkdown());
  });

  it('lists every key with its type and default, nested keys by dotted path', () => {
    const rows = new Map(referenceRows().map((r) => [r.key, r]));
    expect(rows.get('port')).toMatchObject({ type: 'integer 0–65535', default: '8642' });
    expect(rows.get('scheduler.budget.reserve')).toMatchObject({
      type: 'size ("512MiB", "8GB") or bytes',
      default: '"1GiB"',
    });
    expect(rows.get('scheduler.ttl')?.type).toMatch(/^duration/);
    expect(rows.get('models.<name>.contextSize')?.description).toContain('runner.contextSize');
    expect(rows.get('scheduler')?.type).toBe('mapping');
  });
});

describe('the JSON schema as an editor uses it', () => {
  const validate = new Ajv2020({ strict: false, allErrors: true }).compile(configJsonSchema());

  it('accepts docs/config.example.yaml, which the config loader accepts too', async () => {
    const text = await readFile(path.join(DOCS, 'config.example.yaml'), 'utf8');
    expect(() => loadConfig(text, 'config.example.yaml')).not.toThrow();
    expect(validate(parse(text)), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({})).toBe(true);
  });

  it.each([
    ['an unknown key', { bogus: 1 }],
    ['an unknown nested key', { scheduler: { budgett: {} } }],
    ['a bad duration', { scheduler: { ttl: 'soon' } }],
    ['a bad size', { scheduler: { budget: { cap: 'lots' } } }],
    ['a value out of range', { port: 70000 }],
    ['a value not in the enum', { runner: { kvCacheType: 'q2' } }],
    ['a bad model name', { models: { 'bad name': {} } }],
  ])('refuses %s, as the config loader does', (_what, config) => {
    expect(validate(config)).toBe(false);
    expect(() => loadConfig(JSON.stringify(config))).toThrow();
  });
});
