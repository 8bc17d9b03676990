import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, EXIT_CODES } from './error-codes.js';

const DOC = path.resolve(import.meta.dirname, '../../docs/TROUBLESHOOTING.md');

describe('docs/TROUBLESHOOTING.md', () => {
  it('has a section for every error code, and none for a code that does not exist', async () => {
    const text = await readFile(DOC, 'utf8');
    const documented = [...text.matchAll(/^### `([A-Za-z_]+)`$/gm)].map((m) => m[1]);
    const codes = Object.keys(ERROR_CODES);
    const missing = codes.filter((c) => !documented.includes(c));
    expect(missing, 'codes without a section in docs/TROUBLESHOOTING.md').toEqual([]);
    expect(documented.filter((c) => !codes.includes(c!))).toEqual([]);
    expect(new Set(documented).size).toBe(documented.length);
  });

  it('gives each public code its HTTP status and each CLI exit status its meaning', async () => {
    const text = await readFile(DOC, 'utf8');
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      if (!info.public) continue;
      const section = text.split(`### \`${code}\``)[1]!.split('\n### ')[0]!;
      expect(section, code).toContain(`HTTP ${info.status}`);
    }
    for (const [name, status] of Object.entries(EXIT_CODES))
      expect(text).toMatch(new RegExp(`\\| ${status}\\s+\\| ${name}\\s+\\|`));
  });
});
