import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { envelopeOf } from './envelope.js';
import { ERROR_CODES, EXIT_CODES, isErrorCode, type ErrorCode } from './error-codes.js';
import { HeadroomError } from './errors.js';

const SRC = path.resolve(import.meta.dirname, '..');

/** Every production source file under src/, with its text. */
function sources(): Array<{ file: string; text: string }> {
  return readdirSync(SRC, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => ({ file: f, text: readFileSync(path.join(SRC, f), 'utf8') }));
}

const INTERNAL_PREFIXES = [
  'GGUF',
  'RUNNER',
  'PLAN',
  'CONFIG',
  'MONITOR',
  'FORGE',
  'SCHEDULER',
  'CLI',
  'INTERNAL',
];
const SNAKE = "'([a-z]+(?:_[a-z0-9]+)+)'";
/** Where a code is written in src: the places a public (lower_snake) code can appear. */
const PUBLIC_CODE_SITES = [
  new RegExp(`\\bcode\\s*(?::|===|!==|=)\\s*${SNAKE}`, 'g'),
  new RegExp(`\\bnew \\w*Error\\(\\s*${SNAKE}`, 'g'),
  new RegExp(`\\bsuper\\(\\s*${SNAKE}`, 'g'),
  // A code after the message (NotFoundError(message, 'unknown_route')) or a union of codes.
  new RegExp(`\\bnew (?:NotFoundError|BadRequestError)\\([^;]*?,\\s*${SNAKE},?\\s*\\)`, 'g'),
  new RegExp(`\\bcode: ${SNAKE}(?:\\s*\\|\\s*${SNAKE})+`, 'g'),
];
/** zod's issue codes, which src/ compares with `code ===` too: not ours. */
const ZOD_ISSUE_CODES = new Set(['unrecognized_keys', 'invalid_type', 'too_small', 'too_big']);
const INTERNAL_CODE = new RegExp(`'((?:${INTERNAL_PREFIXES.join('|')})_[A-Z0-9_]+)'`, 'g');

function codesWritten(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const add = (code: string, file: string): void => {
    found.set(code, [...(found.get(code) ?? []), file]);
  };
  for (const { file, text } of sources()) {
    if (file === path.join('lib', 'error-codes.ts')) continue;
    for (const m of text.matchAll(INTERNAL_CODE)) add(m[1]!, file);
    for (const re of PUBLIC_CODE_SITES)
      for (const m of text.matchAll(re))
        for (const code of m.slice(1))
          if (code !== undefined && !ZOD_ISSUE_CODES.has(code)) add(code, file);
  }
  return found;
}

describe('error code registry', () => {
  it('registers every error code written in src/', () => {
    const written = codesWritten();
    // The scan does find codes (a guard against a pattern that matches nothing).
    expect(written.get('model_not_found')).toBeDefined();
    expect(written.get('RUNNER_START_TIMEOUT')).toBeDefined();
    expect(written.get('unknown_route')).toBeDefined();
    const unregistered = [...written].filter(([code]) => !isErrorCode(code));
    expect(unregistered.map(([code, files]) => `${code} (${files.join(', ')})`)).toEqual([]);
  });

  it('lists no code that src/ never uses', () => {
    const all = sources()
      .filter((s) => s.file !== path.join('lib', 'error-codes.ts'))
      .map((s) => s.text)
      .join('\n');
    const unused = Object.keys(ERROR_CODES).filter((c) => !all.includes(`'${c}'`));
    expect(unused).toEqual([]);
  });

  it('names public codes in lower_snake_case and internal ones UPPER_SNAKE_CASE with their folder', () => {
    for (const [code, info] of Object.entries(ERROR_CODES)) {
      if (info.public) expect(code, code).toMatch(/^[a-z]+(_[a-z0-9]+)+$/);
      else expect(code, code).toMatch(new RegExp(`^(${INTERNAL_PREFIXES.join('|')})_[A-Z0-9_]+$`));
      expect(info.status, code).toBeGreaterThanOrEqual(400);
      expect(info.status, code).toBeLessThan(600);
      expect(Object.keys(EXIT_CODES), code).toContain(info.exit);
      expect(info.meaning, code).toMatch(/^[^\n]{8,120}$/);
    }
  });

  it('keeps the public codes clients already match on', () => {
    for (const code of [
      'context_length_exceeded',
      'model_not_found',
      'queue_full',
      'queue_timeout',
      'memory_pressure',
      'insufficient_memory',
      'model_load_failed',
      'invalid_parameter',
      'runner_failed',
    ])
      expect(ERROR_CODES[code as ErrorCode]?.public, code).toBe(true);
  });

  it("renders an error with its code's status unless the error names another", () => {
    const e = envelopeOf(new HeadroomError('queue_full', 'full'));
    expect(e.status).toBe(429);
    expect(e.body.error).toMatchObject({ code: 'queue_full', type: 'rate_limit_error' });
    expect(envelopeOf(new HeadroomError('runner_failed', 'x', { status: 500 })).status).toBe(500);
  });

  it('builds no error envelope by hand outside lib/envelope.ts', () => {
    const handBuilt = sources()
      .filter((s) => s.file !== path.join('lib', 'envelope.ts'))
      .filter((s) => /\berror:\s*\{\s*message\b/.test(s.text))
      .map((s) => s.file);
    expect(handBuilt).toEqual([]);
  });
});
