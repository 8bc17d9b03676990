import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ForgeError,
  forgeModel,
  forgeVocabulary,
  llamaParamCount,
  parseParamCount,
  resolveForgeOptions,
  shapeForParams,
  type ForgeOptions,
} from './forge.js';
import { readGguf } from './reader.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-forge-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/**
 * A signal that reads as aborted from its `n`-th check on. The forge checks its signal between
 * chunks; counting checks stops it mid-file deterministically, where a timer would race the writes.
 */
function abortAfterChecks(n: number, reason: unknown): AbortSignal {
  let checks = 0;
  return {
    get aborted() {
      return ++checks >= n;
    },
    reason,
  } as unknown as AbortSignal;
}

const small: Omit<ForgeOptions, 'out'> = {
  layers: 2,
  embd: 64,
  heads: 4,
  kvHeads: 2,
  ff: 128,
  vocab: 300,
  type: 'q8_0',
};

describe('forgeModel', () => {
  it('is deterministic: the same options and seed give identical bytes, another seed other weights', async () => {
    const a = await forgeModel({ ...small, seed: 5, out: path.join(dir, 'a.gguf') });
    const b = await forgeModel({ ...small, seed: 5, out: path.join(dir, 'b.gguf') });
    const c = await forgeModel({ ...small, seed: 6, out: path.join(dir, 'c.gguf') });
    expect(await sha256(a.path)).toBe(await sha256(b.path));
    expect(await sha256(a.path)).not.toBe(await sha256(c.path));
    // Only the weights differ: the headers are the same.
    const [ha, hc] = await Promise.all([readGguf(a.path), readGguf(c.path)]);
    expect(hc.dataOffset).toBe(ha.dataOffset);
    expect(c.bytes).toBe(a.bytes);
  });

  it('reports the size it wrote and a file the reader accepts', async () => {
    const r = await forgeModel({ ...small, type: 'f16', out: path.join(dir, 'sized.gguf') });
    expect((await stat(r.path)).size).toBe(r.bytes);
    const f = await readGguf(r.path);
    expect(f.tensors.reduce((a, t) => a + t.bytes, 0)).toBe(r.tensorBytes);
    expect(r.parameterCount).toBe(llamaParamCount(r.shape, false));
  });

  it('gemma3: its block, its sliding window, and the weights it counts', async () => {
    const r = await forgeModel({
      ...small,
      architecture: 'gemma3',
      slidingWindow: 128,
      tied: true,
      out: path.join(dir, 'gemma3.gguf'),
    });
    expect(r.architecture).toBe('gemma3');
    expect(r.parameterCount).toBe(llamaParamCount(r.shape, true, 'gemma3'));
    const f = await readGguf(r.path);
    expect(f.metadata.get('general.architecture')).toBe('gemma3');
    expect(f.metadata.get('gemma3.attention.sliding_window')).toBe(128);
    expect(f.metadata.get('gemma3.attention.key_length')).toBe(16);
    const names = f.tensors.map((t) => t.name);
    for (const n of ['attn_q_norm', 'attn_k_norm', 'post_attention_norm', 'post_ffw_norm'])
      expect(names).toContain(`blk.1.${n}.weight`);
    expect(f.tensors.find((t) => t.name === 'blk.0.attn_k_norm.weight')?.dims).toEqual([16]);
    expect(names).not.toContain('output.weight');
    expect(() =>
      resolveForgeOptions({ ...small, slidingWindow: 128, out: path.join(dir, 'x.gguf') }),
    ).toThrow(/slidingWindow needs architecture gemma3/);
  });

  it('mamba2: its block, no attention, and the weights it counts', async () => {
    const r = await forgeModel({
      ...small,
      type: 'f16',
      architecture: 'mamba2',
      ssmState: 16,
      ssmGroups: 2,
      out: path.join(dir, 'mamba2.gguf'),
    });
    expect(r.parameterCount).toBe(
      llamaParamCount(r.shape, false, 'mamba2', { state: 16, groups: 2 }),
    );
    const f = await readGguf(r.path);
    expect(f.metadata.get('mamba2.ssm.inner_size')).toBe(128);
    expect(f.metadata.get('mamba2.ssm.group_count')).toBe(2);
    const names = f.tensors.map((t) => t.name);
    expect(names).toContain('blk.1.ssm_conv1d.weight');
    expect(names.some((n) => n.includes('attn_q'))).toBe(false);
    // in: inner 128 + conv channels (128 + 2 × 2 × 16) + 4 heads.
    expect(f.tensors.find((t) => t.name === 'blk.0.ssm_in.weight')?.dims).toEqual([64, 324]);
    expect(() =>
      resolveForgeOptions({ ...small, ssmState: 16, out: path.join(dir, 'x.gguf') }),
    ).toThrow(/need architecture mamba2/);
  });

  it('streams models larger than its chunk buffers', async () => {
    // About 3M parameters in F32: 11 MB of data, three 4 MiB chunks.
    const r = await forgeModel({
      params: 3_000_000,
      type: 'f32',
      out: path.join(dir, 'chunked.gguf'),
    });
    expect(r.tensorBytes).toBeGreaterThan(2 * 4 * 1024 * 1024);
    const f = await readGguf(r.path);
    expect(f.fileSize).toBe(r.bytes);
    expect(f.tensors.reduce((a, t) => a + t.elements, 0)).toBe(r.parameterCount);
  });

  describe('is atomic', () => {
    it('an abort mid-way leaves neither the file nor a temporary file', async () => {
      const sub = await mkdtemp(path.join(dir, 'abort-'));
      const out = path.join(sub, 'model.gguf');
      const reason = new Error('stop');
      await expect(
        forgeModel({ params: 3_000_000, type: 'f32', out }, abortAfterChecks(3, reason)),
      ).rejects.toBe(reason);
      expect(await readdir(sub)).toEqual([]);
    });

    it('an abort leaves an existing file untouched', async () => {
      const sub = await mkdtemp(path.join(dir, 'abort-existing-'));
      const out = path.join(sub, 'model.gguf');
      await writeFile(out, 'previous contents');
      await expect(
        forgeModel({ params: 3_000_000, type: 'f32', out }, abortAfterChecks(3, new Error('stop'))),
      ).rejects.toThrow('stop');
      expect(await readdir(sub)).toEqual(['model.gguf']);
      expect(await readFile(out, 'utf8')).toBe('previous contents');
    });

    it('an already aborted signal writes nothing', async () => {
      const sub = await mkdtemp(path.join(dir, 'pre-aborted-'));
      const reason = new Error('stop');
      await expect(
        forgeModel({ ...small, out: path.join(sub, 'm.gguf') }, AbortSignal.abort(reason)),
      ).rejects.toBe(reason);
      expect(await readdir(sub)).toEqual([]);
    });

    it('creates the output directory', async () => {
      const out = path.join(dir, 'deep', 'er', 'm.gguf');
      await forgeModel({ ...small, out });
      expect((await stat(out)).isFile()).toBe(true);
    });
  });
});

describe('shapeForParams', () => {
  // The width is picked from a fixed list and the depth rounded to whole layers, so the count
  // lands within half a layer of the target: a few percent, more for the shallowest models.
  it('lands within half a layer of the target, and within a few percent', () => {
    fc.assert(
      fc.property(fc.double({ min: 6, max: 10.5, noNaN: true }), fc.boolean(), (exp, tied) => {
        const target = Math.round(10 ** exp);
        const shape = shapeForParams(target, { tied });
        const n = llamaParamCount(shape, tied);
        const perLayer =
          llamaParamCount({ ...shape, layers: 1 }, tied) -
          llamaParamCount({ ...shape, layers: 0 }, tied);
        expect(Math.abs(n - target)).toBeLessThanOrEqual(perLayer / 2 + 1);
        const bound = target < 1e7 ? 0.09 : target < 1e8 ? 0.06 : target < 1e9 ? 0.045 : 0.03;
        expect(Math.abs(n / target - 1)).toBeLessThan(bound);
        expect(shape.embd % shape.heads).toBe(0);
        expect(shape.heads % shape.kvHeads).toBe(0);
        expect((shape.embd / shape.heads) % 2).toBe(0);
      }),
      { numRuns: 2000, seed: 11 },
    );
  });

  it.each([15e6, 50e6, 500e6, 1e9, 7e9])(
    '%d parameters: within 3%% (the sizes the docs and demos use)',
    (target) => {
      const shape = shapeForParams(target);
      expect(Math.abs(llamaParamCount(shape) / target - 1)).toBeLessThan(0.03);
    },
  );

  it('gives shapes the forge accepts, in every tensor type', () => {
    for (const params of [1e6, 15e6, 1e9]) {
      for (const type of ['f32', 'f16', 'q8_0'] as const) {
        expect(() => resolveForgeOptions({ out: 'x.gguf', params, type })).not.toThrow();
      }
    }
  });

  it('keeps the requested vocabulary', () => {
    expect(shapeForParams(50e6, { vocab: 32000 }).vocab).toBe(32000);
  });

  it('rejects a non-positive count', () => {
    expect(() => shapeForParams(0)).toThrow(ForgeError);
    expect(() => shapeForParams(Number.NaN)).toThrow(ForgeError);
  });
});

describe('parseParamCount', () => {
  it.each<[string | number, number]>([
    ['50M', 50_000_000],
    ['1.5B', 1_500_000_000],
    ['7b', 7_000_000_000],
    ['3K', 3000],
    [' 2 m ', 2_000_000],
    ['1_000_000', 1_000_000],
    ['1e6', 1_000_000],
    ['0.5G', 500_000_000],
    ['1T', 1e12],
    ['123', 123],
    [42, 42],
  ])('%s → %d', (text, n) => {
    expect(parseParamCount(text)).toBe(n);
  });

  it.each<string | number>([
    '',
    'abc',
    '-5',
    '0',
    '0M',
    '1.5.3',
    '5X',
    'M',
    '1e400',
    0,
    -1,
    1.5,
    Number.NaN,
    2 ** 60,
  ])('rejects %s with a ForgeError', (text) => {
    let err: unknown;
    try {
      parseParamCount(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ForgeError);
    expect((err as ForgeError).code).toBe('FORGE_INVALID_OPTIONS');
    expect((err as ForgeError).status).toBe(400);
  });
});

describe('forgeVocabulary', () => {
  it('has the specials, the 256 byte tokens and unique pieces', () => {
    const v = forgeVocabulary(1000, true);
    expect(v.tokens.slice(0, 5)).toEqual(['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>']);
    expect(v.tokens[5]).toBe('<0x00>');
    expect(v.tokens[260]).toBe('<0xFF>');
    expect(v.tokens).toHaveLength(1000);
    expect(new Set(v.tokens).size).toBe(1000);
    expect(v.types).toHaveLength(1000);
  });

  it('rejects a vocabulary too small for the specials and byte tokens', () => {
    expect(() => forgeVocabulary(200, false)).toThrow(ForgeError);
  });
});
