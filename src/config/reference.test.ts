import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchemaText, configReferenceMarkdown, referenceRows } from './reference.js';

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
