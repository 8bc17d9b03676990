/**
 * `headroom config validate [FILE]` and `headroom config schema` as a user runs them (dist/ must be
 * built: `npm run build`).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProcess, type Run } from '../helpers/run.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'headroom.js');

let home: string;

function headroom(...args: string[]): Promise<Run> {
  return runProcess(process.execPath, [BIN, ...args], {
    env: { ...process.env, HEADROOM_HOME: home },
  });
}

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'headroom-config-cli-'));
});
afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('headroom config validate', () => {
  it('accepts a valid file and exits 0', async () => {
    const file = path.join(home, 'good.yaml');
    await writeFile(file, 'modelDirs: [/models]\nscheduler:\n  ttl: 10m\n  budget: { cap: 8GB }\n');
    const r = await headroom('config', 'validate', file);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('valid');
  });

  it('exits 2 and names every wrong key and what is wrong with it', async () => {
    const file = path.join(home, 'bad.yaml');
    await writeFile(
      file,
      'port: 99999\nscheduler:\n  ttl: soon\n  budgett: {}\nrunner:\n  kvCacheType: q2\n',
    );
    const r = await headroom('config', 'validate', file);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toBe(`${file}: 4 problems`);
    expect(r.stderr).toMatch(/port: .*65535/);
    expect(r.stderr).toMatch(/scheduler\.ttl: .*duration/);
    expect(r.stderr).toContain('scheduler: unknown key(s) "budgett"');
    expect(r.stderr).toMatch(/runner\.kvCacheType: .*"f16"/);

    const json = await headroom('config', 'validate', file, '--json');
    expect(json.code).toBe(2);
    expect((JSON.parse(json.stdout) as { issues: string[] }).issues).toHaveLength(4);
  });

  it('reports a YAML syntax error with its line, and a missing file', async () => {
    const file = path.join(home, 'syntax.yaml');
    await writeFile(file, 'port: 1\nmodels: [\n');
    const r = await headroom('config', 'validate', file);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/YAML syntax error.*line/);
    const missing = await headroom('config', 'validate', path.join(home, 'nope.yaml'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read the config file');
  });

  it('validates $HEADROOM_HOME/config.yaml without a FILE', async () => {
    await writeFile(path.join(home, 'config.yaml'), 'bogus: 1\n');
    const r = await headroom('config', 'validate');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('(top level): unknown key(s) "bogus"');
  });

  it('prints the JSON schema that docs/config.schema.json holds', async () => {
    const r = await headroom('config', 'schema');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(await readFile(path.join(ROOT, 'docs', 'config.schema.json'), 'utf8'));
  });
});
