/**
 * `headroom plan` as a user runs it: `node bin/headroom.js plan …` in a child process (dist/ must
 * be built: `npm run build`), with $HEADROOM_HOME pointing at a temporary home whose models
 * directory holds two quantisations of one forged model. No daemon runs.
 */
import { copyFile, mkdir, mkdtemp, open, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedModel } from '../helpers/models.js';
import { runProcess, type Run } from '../helpers/run.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'headroom.js');

let home: string;
let f16: string;
let q8: string;

function headroom(...args: string[]): Promise<Run> {
  return runProcess(process.execPath, [BIN, ...args], {
    env: { ...process.env, HEADROOM_HOME: home },
  });
}

/** The fields of `headroom plan --json` these tests read. */
interface PlanOut {
  file: string;
  engine: string;
  verdict: string;
  reasons: string[];
  guidance: string[];
  causes: string[];
  fit: Record<string, unknown> | null;
  predicted: { total: number; weights: number; byKind: { anonymous: number; fileBacked: number } };
  model: { architecture: string };
  alternatives: Array<{ variant?: string }>;
}

async function planJson(...args: string[]): Promise<{ run: Run; out: PlanOut }> {
  const run = await headroom('plan', ...args, '--json');
  expect(run.stderr).toBe('');
  return { run, out: JSON.parse(run.stdout) as PlanOut };
}

/** A GGUF header whose architecture no llama.cpp knows, with the keys a spec needs. */
function unknownArchitectureGguf(): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    parts.push(b);
  };
  const u64 = (n: number): void => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    parts.push(b);
  };
  const str = (s: string): void => {
    u64(Buffer.byteLength(s));
    parts.push(Buffer.from(s));
  };
  parts.push(Buffer.from('GGUF'));
  u32(3); // version
  u64(0); // tensors
  u64(4); // metadata entries
  str('general.architecture');
  u32(8); // string
  str('nosucharch');
  for (const [k, v] of [
    ['block_count', 2],
    ['embedding_length', 64],
    ['context_length', 2048],
  ] as const) {
    str(`nosucharch.${k}`);
    u32(4); // uint32
    u32(v);
  }
  const buf = Buffer.concat(parts);
  return Buffer.concat([buf, Buffer.alloc((32 - (buf.length % 32)) % 32)]);
}

beforeAll(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'headroom-plan-'));
  const models = path.join(home, 'models');
  await mkdir(models, { recursive: true });
  const shape = { params: 6_000_000, ctx: 2048, seed: 3, chatTemplate: 'chatml' } as const;
  const srcF16 = await cachedModel('gguf-llama-f16-6m-ctx2048-seed3', { ...shape, type: 'f16' });
  const srcQ8 = await cachedModel('gguf-llama-q8_0-6m-ctx2048-seed3', { ...shape, type: 'q8_0' });
  f16 = path.join(models, 'demo-F16.gguf');
  q8 = path.join(models, 'demo-Q8_0.gguf');
  await symlink(srcF16, f16);
  await symlink(srcQ8, q8);
});

afterAll(async () => {
  if (home) await rm(home, { recursive: true, force: true });
});

describe('headroom plan', () => {
  it('plans a file by path: --json gives predicted.total, verdict, reasons and fit', async () => {
    const { run, out } = await planJson(f16);
    expect(run.code).toBe(0);
    expect(out.file).toBe(f16);
    expect(out.verdict).toBe('ok');
    expect(out.reasons).toEqual([]);
    expect(typeof out.predicted.total).toBe('number');
    expect(out.predicted.total).toBeGreaterThan(out.predicted.weights);
    expect(out.predicted.total).toBe(
      out.predicted.byKind.anonymous + out.predicted.byKind.fileBacked,
    );
    // The trained context (2048), one slot, flash attention on, f16 KV: the defaults.
    expect(out.fit).toMatchObject({
      contextSize: 2048,
      parallel: 1,
      flashAttention: true,
      kvCacheKeyType: 'f16',
      kvCacheValueType: 'f16',
      mmap: true,
    });
    expect(out.model.architecture).toBe('llama');
  });

  it('finds a model by name in $HEADROOM_HOME/models, without a daemon', async () => {
    const { run, out } = await planJson('demo-Q8_0');
    expect(run.code).toBe(0);
    expect(out.file).toBe(q8);
    expect(out.verdict).toBe('ok');
  });

  it('applies --ctx, --kv, --fa and --parallel', async () => {
    const { out } = await planJson(f16, '--ctx', '1024', '--kv', 'q8_0', '--parallel', '2');
    expect(out.fit).toMatchObject({
      contextSize: 1024,
      parallel: 2,
      kvCacheKeyType: 'q8_0',
      kvCacheValueType: 'q8_0',
      flashAttention: true,
    });
    const off = await planJson(f16, '--fa', 'off');
    expect(off.out.fit?.flashAttention).toBe(false);
    // Flash attention off costs the attention matrix: more than with it on.
    const on = await planJson(f16, '--fa', 'on');
    expect(off.out.predicted.total).toBeGreaterThan(on.out.predicted.total);
  });

  it('refuses a budget that no setting fits, naming the variant that does (exit 6)', async () => {
    const small = await planJson(q8);
    const large = await planJson(f16);
    expect(small.out.predicted.total).toBeLessThan(large.out.predicted.total);
    // Bytes between what the Q8_0 file needs and what the F16 file needs (decimal MB, as --budget reads).
    const budget = Math.floor((small.out.predicted.total + 1e6) / 1e6);
    expect(budget * 1e6).toBeLessThan(large.out.predicted.total);
    const { run, out } = await planJson(f16, '--budget', `${budget}MB`);
    expect(run.code).toBe(6);
    expect(out.verdict).toBe('refuse');
    expect(out.fit).toBeNull();
    expect(out.causes).toContain('budget');
    expect(out.reasons[0]).toMatch(new RegExp(`the model budget leaves ${budget} MB$`));
    expect(out.guidance).toContain('or the Q8_0 variant');
    expect(out.alternatives.at(-1)).toMatchObject({ variant: 'Q8_0' });
  });

  it('--engine picks the footprint profile: llama-server by default, the embedded runner on request', async () => {
    const server = await planJson(f16);
    const explicit = await planJson(f16, '--engine', 'llama-server');
    const embedded = await planJson(f16, '--engine', 'embedded');
    expect(server.out.engine).toBe('llama-server');
    expect(embedded.out.engine).toBe('embedded');
    expect(explicit.out.predicted).toEqual(server.out.predicted);
    // No Node.js runtime in a llama-server process: tens of MB less at the same config.
    expect(embedded.out.predicted.total - server.out.predicted.total).toBeGreaterThan(40e6);
    const bad = await headroom('plan', f16, '--engine', 'ollama');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--engine must be embedded or llama-server, got "ollama"/);
  });

  it('prints the breakdown, the verdict and the alternatives as a table', async () => {
    const run = await headroom('plan', f16);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^verdict {2}OK: fits: needs \d+ MB/m);
    expect(run.stdout).toMatch(/^TERM +BYTES +NOTE$/m);
    for (const term of ['weights', 'KV cache', 'compute', 'overhead', 'total \\(peak RSS\\)'])
      expect(run.stdout).toMatch(new RegExp(`^${term} +\\d+ MB`, 'm'));
    const refused = await headroom('plan', f16, '--budget', '20MB', '--ctx', '2048');
    expect(refused.code).toBe(6);
    expect(refused.stdout).toMatch(
      /^verdict {2}REFUSE: needs \d+ MB, the model budget leaves 20 MB/m,
    );
    expect(refused.stdout).toMatch(/^guidance$/m);
  });

  describe('bad input exits non-zero with one line naming the file and the cause', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-plan-bad-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    const oneLine = (r: Run): string => {
      expect(r.stdout).toBe('');
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines).toHaveLength(1);
      return lines[0]!;
    };

    it('a path that does not exist', async () => {
      const file = path.join(dir, 'missing.gguf');
      const r = await headroom('plan', file);
      expect(r.code).toBe(5);
      expect(oneLine(r)).toBe(`headroom: ${file}: no such file (at byte 0)`);
    });

    it('a file that is not GGUF', async () => {
      const file = path.join(dir, 'notes.gguf');
      await writeFile(file, 'these are not weights\n'.repeat(10));
      const r = await headroom('plan', file);
      expect(r.code).toBe(5);
      expect(oneLine(r)).toMatch(new RegExp(`^headroom: ${file}: not a GGUF file`));
    });

    it('a truncated file', async () => {
      const file = path.join(dir, 'truncated.gguf');
      await copyFile(f16, file);
      const fh = await open(file, 'r+');
      await fh.truncate(2_000_000);
      await fh.close();
      const r = await headroom('plan', file);
      expect(r.code).toBe(5);
      expect(oneLine(r)).toMatch(
        new RegExp(`^headroom: ${file}: file ends inside the data of tensor`),
      );
    });

    it('an unknown architecture', async () => {
      const file = path.join(dir, 'alien.gguf');
      await writeFile(file, unknownArchitectureGguf());
      const r = await headroom('plan', file);
      expect(r.code).toBe(5);
      expect(oneLine(r)).toBe(
        `headroom: ${file}: unknown architecture "nosucharch": the bundled llama.cpp cannot run it, so headroom cannot plan it`,
      );
    });

    it('an unknown model name (exit 3) and bad flags (exit 2)', async () => {
      const r = await headroom('plan', 'no-such-model');
      expect(r.code).toBe(3);
      expect(oneLine(r)).toMatch(/^headroom: no model named "no-such-model" in .*models/);
      const kv = await headroom('plan', f16, '--kv', 'q5_1');
      expect(kv.code).toBe(2);
      expect(oneLine(kv)).toBe('headroom: --kv must be f16, q8_0 or q4_0, got "q5_1"');
      const fa = await headroom('plan', f16, '--kv', 'q4_0', '--fa', 'off');
      expect(fa.code).toBe(2);
      expect(oneLine(fa)).toBe(
        'headroom: --kv q4_0 needs flash attention: use --fa on, or --kv f16',
      );
      const budget = await headroom('plan', f16, '--budget', 'lots');
      expect(budget.code).toBe(2);
      const none = await headroom('plan');
      expect(none.code).toBe(2);
    });
  });
});
