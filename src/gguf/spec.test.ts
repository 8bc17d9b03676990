import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GGUF_MAGIC, GgufValueType as T, ggmlTypeByName } from './constants.js';
import { forgeModel } from './forge.js';
import { GgufError, readGguf } from './reader.js';
import { readModelSpec, specFromGguf } from './spec.js';
import { ByteWriter } from './writer.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-gguf-spec-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface TensorDesc {
  name: string;
  dims: number[];
  type: string;
}

/** Writes a GGUF file the way other writers lay it out: metadata, tensor infos, packed aligned data. */
async function writeGguf(
  name: string,
  o: { version?: number; kvs: ((w: ByteWriter) => void)[]; tensors?: TensorDesc[] },
): Promise<string> {
  const tensors = o.tensors ?? [];
  // Sized for every file built here: ByteWriter's scalar writes fail when they make it grow.
  const w = new ByteWriter(1 << 20);
  w.u32(GGUF_MAGIC)
    .u32(o.version ?? 3)
    .u64(tensors.length)
    .u64(o.kvs.length);
  for (const kv of o.kvs) kv(w);
  let offset = 0;
  for (const t of tensors) {
    const type = ggmlTypeByName(t.type)!;
    w.tensorInfo(t.name, t.dims, type.id, offset);
    const bytes = (t.dims.reduce((a, b) => a * b, 1) / type.blockSize) * type.typeSize;
    offset += Math.ceil(bytes / 32) * 32;
  }
  w.pad(32);
  const p = path.join(dir, name);
  await writeFile(p, Buffer.concat([w.toBuffer(), Buffer.alloc(offset)]));
  return p;
}

async function specOf(kvs: ((w: ByteWriter) => void)[], tensors?: TensorDesc[], version?: number) {
  return specFromGguf(
    await readGguf(
      await writeGguf(`m${Math.random().toString(36).slice(2)}.gguf`, { kvs, tensors, version }),
    ),
  );
}

const arch = (a: string) => (w: ByteWriter) => w.kvString('general.architecture', a);
const u32 = (k: string, v: number) => (w: ByteWriter) => w.kvU32(k, v);

describe('specFromGguf', () => {
  it('a qwen2 header in GGUF v2, with the vocabulary taken from the tokenizer', async () => {
    const tokens = Array.from({ length: 1000 }, (_, i) => `t${i}`);
    const spec = await specOf(
      [
        arch('qwen2'),
        (w) => w.kvString('general.name', 'Qwen2 test'),
        u32('general.file_type', 15),
        u32('qwen2.block_count', 24),
        u32('qwen2.context_length', 32768),
        u32('qwen2.embedding_length', 896),
        u32('qwen2.feed_forward_length', 4864),
        u32('qwen2.attention.head_count', 14),
        u32('qwen2.attention.head_count_kv', 2),
        (w) => w.kvF32('qwen2.rope.freq_base', 1e6),
        (w) => w.kvString('tokenizer.ggml.model', 'gpt2'),
        (w) => w.kvStrings('tokenizer.ggml.tokens', tokens),
        (w) => w.kvString('tokenizer.chat_template', '{{ messages }}'),
      ],
      [
        { name: 'token_embd.weight', dims: [896, 1000], type: 'Q8_0' },
        { name: 'output_norm.weight', dims: [896], type: 'F32' },
        { name: 'blk.0.ffn_down.weight', dims: [4864, 896], type: 'Q4_K' },
      ],
      2,
    );
    expect(spec).toEqual({
      architecture: 'qwen2',
      name: 'Qwen2 test',
      fileType: 'MOSTLY_Q4_K_M',
      parameterCount: 896 * 1000 + 896 + 4864 * 896,
      tensorBytes: (896 * 1000 * 34) / 32 + 896 * 4 + (4864 * 896 * 144) / 256,
      bytesByType: { Q8_0: (896 * 1000 * 34) / 32, F32: 896 * 4, Q4_K: (4864 * 896 * 144) / 256 },
      layers: 24,
      embeddingSize: 896,
      feedForwardSize: 4864,
      headCount: 14,
      headCountKv: 2,
      headDimK: 64,
      headDimV: 64,
      contextLength: 32768,
      vocabSize: 1000,
      hasChatTemplate: true,
    });
  });

  it('a gemma2 header: explicit key/value lengths and a sliding window', async () => {
    const spec = await specOf([
      arch('gemma2'),
      u32('gemma2.block_count', 26),
      u32('gemma2.context_length', 8192),
      u32('gemma2.embedding_length', 2304),
      u32('gemma2.feed_forward_length', 9216),
      u32('gemma2.attention.head_count', 8),
      u32('gemma2.attention.head_count_kv', 4),
      u32('gemma2.attention.key_length', 256),
      u32('gemma2.attention.value_length', 256),
      u32('gemma2.attention.sliding_window', 4096),
      u32('gemma2.vocab_size', 256000),
    ]);
    expect(spec).toMatchObject({
      architecture: 'gemma2',
      headDimK: 256,
      headDimV: 256,
      slidingWindow: 4096,
      vocabSize: 256000,
      hasChatTemplate: false,
    });
    expect(spec.headDimK).not.toBe(spec.embeddingSize / spec.headCount);
    // llama.cpp's gemma2 pattern: every other layer within the window, the last of each pair whole.
    expect(spec.slidingWindowLayers).toEqual(Array.from({ length: 26 }, (_, i) => i % 2 === 0));
  });

  describe('recurrent layers, as llama.cpp assigns them', () => {
    const ssm = (a: string) => [
      u32(`${a}.ssm.conv_kernel`, 4),
      u32(`${a}.ssm.inner_size`, 1024),
      u32(`${a}.ssm.state_size`, 64),
      u32(`${a}.ssm.group_count`, 8),
    ];
    // (d_conv − 1) × (d_inner + 2 × groups × d_state) + d_state × d_inner, in f32.
    const perLayer = (3 * (1024 + 2 * 8 * 64) + 64 * 1024) * 4;

    it('qwen35: all but every full_attention_interval-th layer; no KV cache in them', async () => {
      const spec = await specOf([
        arch('qwen35'),
        u32('qwen35.block_count', 8),
        u32('qwen35.embedding_length', 512),
        u32('qwen35.attention.head_count', 8),
        u32('qwen35.attention.head_count_kv', 2),
        u32('qwen35.full_attention_interval', 4),
        ...ssm('qwen35'),
      ]);
      expect(spec.recurrentLayers).toEqual([true, true, true, false, true, true, true, false]);
      expect(spec.recurrentStateBytes).toBe(6 * perLayer);
    });

    it('jamba: the layers without KV heads', async () => {
      const spec = await specOf([
        arch('jamba'),
        u32('jamba.block_count', 4),
        u32('jamba.embedding_length', 512),
        u32('jamba.attention.head_count', 8),
        (w) => w.kvU32s('jamba.attention.head_count_kv', [0, 0, 0, 2]),
        ...ssm('jamba'),
      ]);
      expect(spec.recurrentLayers).toEqual([true, true, true, false]);
      expect(spec.recurrentStateBytes).toBe(3 * perLayer);
    });

    it('mamba: every layer; an architecture not listed: none', async () => {
      const mamba = await specOf([
        arch('mamba'),
        u32('mamba.block_count', 2),
        u32('mamba.embedding_length', 512),
        u32('mamba.ssm.conv_kernel', 4),
        u32('mamba.ssm.inner_size', 1024),
        u32('mamba.ssm.state_size', 16),
      ]);
      expect(mamba.recurrentLayers).toEqual([true, true]);
      expect(mamba.recurrentStateBytes).toBe(2 * (3 * 1024 + 16 * 1024) * 4);
      const rwkv = await specOf([
        arch('rwkv7'),
        u32('rwkv7.block_count', 2),
        u32('rwkv7.embedding_length', 512),
      ]);
      expect(rwkv.recurrentLayers).toBeUndefined();
    });
  });

  describe('sliding-window layers, as llama.cpp assigns them', () => {
    const gemma3 = (extra: ((w: ByteWriter) => void)[]) =>
      specOf([
        arch('gemma3'),
        u32('gemma3.block_count', 12),
        u32('gemma3.embedding_length', 640),
        u32('gemma3.attention.head_count', 4),
        u32('gemma3.attention.head_count_kv', 1),
        ...extra,
      ]);

    it("gemma3: the architecture's period of 6, the last layer of each whole", async () => {
      const spec = await gemma3([u32('gemma3.attention.sliding_window', 512)]);
      expect(spec.slidingWindow).toBe(512);
      expect(spec.slidingWindowLayers).toEqual([
        ...[true, true, true, true, true, false],
        ...[true, true, true, true, true, false],
      ]);
    });

    it('gemma3 without a window: every layer whole', async () => {
      const spec = await gemma3([]);
      expect(spec.slidingWindow).toBeUndefined();
      expect(spec.slidingWindowLayers).toBeUndefined();
    });

    it("the file's pattern: a period, or one flag per layer", async () => {
      const period = await gemma3([
        u32('gemma3.attention.sliding_window', 512),
        u32('gemma3.attention.sliding_window_pattern', 3),
      ]);
      expect(period.slidingWindowLayers).toEqual(Array.from({ length: 12 }, (_, i) => i % 3 < 2));
      const flags = Array.from({ length: 12 }, (_, i) => i >= 6);
      const listed = await gemma3([
        u32('gemma3.attention.sliding_window', 512),
        (w) => w.kvBools('gemma3.attention.sliding_window_pattern', flags),
      ]);
      expect(listed.slidingWindowLayers).toEqual(flags);
    });

    it('llama with a sliding_window key (Mistral): llama.cpp ignores it, every layer whole', async () => {
      const spec = await specOf([
        arch('llama'),
        u32('llama.block_count', 4),
        u32('llama.embedding_length', 256),
        u32('llama.attention.sliding_window', 4096),
      ]);
      expect(spec.slidingWindow).toBe(4096);
      expect(spec.slidingWindowLayers).toBeUndefined();
    });
  });

  it('a phi3 header without head_count_kv: as many KV heads as heads', async () => {
    const spec = await specOf([
      arch('phi3'),
      u32('phi3.block_count', 32),
      u32('phi3.context_length', 4096),
      u32('phi3.embedding_length', 3072),
      u32('phi3.feed_forward_length', 8192),
      u32('phi3.attention.head_count', 32),
      u32('phi3.rope.dimension_count', 96),
    ]);
    expect(spec).toMatchObject({
      headCount: 32,
      headCountKv: 32,
      headDimK: 96,
      headDimV: 96,
      contextLength: 4096,
    });
    expect(spec.headCountKvPerLayer).toBeUndefined();
  });

  it('per-layer arrays: the max, with the lists kept', async () => {
    const spec = await specOf([
      arch('openelm'),
      u32('openelm.block_count', 4),
      u32('openelm.embedding_length', 1280),
      (w) => w.kvI32s('openelm.attention.head_count', [12, 16, 20, 16]),
      (w) => w.kvU32s('openelm.attention.head_count_kv', [3, 4, 5, 0]),
      (w) => w.kvI32s('openelm.feed_forward_length', [768, 2048, 3584, 1024]),
      u32('openelm.attention.key_length', 64),
      u32('openelm.attention.value_length', 64),
    ]);
    expect(spec).toMatchObject({
      headCount: 20,
      headCountKv: 5,
      feedForwardSize: 3584,
      headDimK: 64,
    });
    expect(spec.headCountKvPerLayer).toEqual([3, 4, 5, 0]);
    expect(spec.feedForwardSizePerLayer).toEqual([768, 2048, 3584, 1024]);
  });

  it('a mixture of experts', async () => {
    const spec = await specOf([
      arch('qwen3moe'),
      u32('qwen3moe.block_count', 48),
      u32('qwen3moe.embedding_length', 2048),
      u32('qwen3moe.attention.head_count', 32),
      u32('qwen3moe.expert_count', 128),
      u32('qwen3moe.expert_used_count', 8),
      (w) => w.kvU64('qwen3moe.context_length', 262144),
    ]);
    expect(spec).toMatchObject({ expertCount: 128, expertUsedCount: 8, contextLength: 262144 });
  });

  it('a model without attention or vocabulary keys: zeros, vocabulary from token_embd', async () => {
    const spec = await specOf(
      [arch('mamba'), u32('mamba.block_count', 2), u32('mamba.embedding_length', 64)],
      [{ name: 'token_embd.weight', dims: [64, 500], type: 'F16' }],
    );
    expect(spec).toMatchObject({
      headCount: 0,
      headCountKv: 0,
      headDimK: 0,
      feedForwardSize: 0,
      contextLength: 0,
      vocabSize: 500,
      parameterCount: 32000,
    });
  });

  it.each([
    ['general.architecture', [u32('llama.block_count', 2), u32('llama.embedding_length', 64)]],
    ['llama.block_count', [arch('llama'), u32('llama.embedding_length', 64)]],
    ['llama.embedding_length', [arch('llama'), u32('llama.block_count', 2)]],
  ])('missing %s: GGUF_UNSUPPORTED_MODEL naming the key', async (key, kvs) => {
    const err = await specOf(kvs).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GgufError);
    expect((err as GgufError).code).toBe('GGUF_UNSUPPORTED_MODEL');
    expect((err as GgufError).status).toBe(400);
    expect((err as GgufError).message).toContain(key);
  });

  it.each<[string, (w: ByteWriter) => void]>([
    ['a string block count', (w) => w.kvString('llama.block_count', '2')],
    ['a zero block count', u32('llama.block_count', 0)],
    ['a negative block count', (w) => w.kvI32('llama.block_count', -2)],
    ['a fractional block count', (w) => w.kvF32('llama.block_count', 2.5)],
    ['a block count of 2^63', (w) => w.kvU64('llama.block_count', 2n ** 63n)],
  ])('%s: GGUF_UNSUPPORTED_MODEL', async (_label, kv) => {
    const err = await specOf([arch('llama'), u32('llama.embedding_length', 64), kv]).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(GgufError);
    expect((err as GgufError).code).toBe('GGUF_UNSUPPORTED_MODEL');
    expect((err as GgufError).message).toContain('llama.block_count');
  });

  it("an architecture string is a prefix, nothing more: another architecture's keys are ignored", async () => {
    const err = await specOf([
      arch('phi3'),
      u32('llama.block_count', 2),
      u32('llama.embedding_length', 64),
    ]).catch((e: unknown) => e);
    expect((err as GgufError).message).toContain('phi3.block_count');
  });
});

describe('readModelSpec', () => {
  it('reads a forged model', async () => {
    const forged = await forgeModel({
      out: path.join(dir, 'forged.gguf'),
      layers: 2,
      embd: 64,
      heads: 4,
      kvHeads: 2,
      ff: 128,
      vocab: 300,
      type: 'f16',
    });
    const spec = await readModelSpec(forged.path);
    expect(spec).toMatchObject({
      architecture: 'llama',
      parameterCount: forged.parameterCount,
      tensorBytes: forged.tensorBytes,
      vocabSize: 300,
      headCountKv: 2,
    });
  });

  it('rejects with the reason of an aborted signal', async () => {
    const reason = new Error('stop');
    await expect(
      readModelSpec(path.join(dir, 'forged.gguf'), AbortSignal.abort(reason)),
    ).rejects.toBe(reason);
  });

  describe('split models', () => {
    const hyper = [arch('llama'), u32('llama.block_count', 1), u32('llama.embedding_length', 64)];
    const part = (no: number, count: number) => [
      (w: ByteWriter) => w.string('split.no').u32(T.UINT16).u16(no),
      (w: ByteWriter) => w.string('split.count').u32(T.UINT16).u16(count),
    ];

    it('sums the tensors of every part', async () => {
      await writeGguf('big-00001-of-00003.gguf', {
        kvs: [...hyper, ...part(0, 3)],
        tensors: [{ name: 'token_embd.weight', dims: [64, 300], type: 'F16' }],
      });
      await writeGguf('big-00002-of-00003.gguf', {
        kvs: part(1, 3),
        tensors: [{ name: 'blk.0.attn_q.weight', dims: [64, 64], type: 'Q8_0' }],
      });
      await writeGguf('big-00003-of-00003.gguf', {
        kvs: part(2, 3),
        tensors: [{ name: 'output.weight', dims: [64, 300], type: 'F16' }],
      });
      const spec = await readModelSpec(path.join(dir, 'big-00001-of-00003.gguf'));
      expect(spec.parameterCount).toBe(64 * 300 * 2 + 64 * 64);
      expect(spec.bytesByType).toEqual({ F16: 64 * 300 * 2 * 2, Q8_0: (64 * 64 * 34) / 32 });
      expect(spec.vocabSize).toBe(300);
    });

    it('a missing part: GGUF_NOT_FOUND naming it', async () => {
      await writeGguf('gap-00001-of-00002.gguf', { kvs: [...hyper, ...part(0, 2)] });
      const err = await readModelSpec(path.join(dir, 'gap-00001-of-00002.gguf')).catch(
        (e: unknown) => e,
      );
      expect((err as GgufError).code).toBe('GGUF_NOT_FOUND');
      expect((err as GgufError).message).toContain('gap-00002-of-00002.gguf');
    });

    it('a part whose name hides the others: GGUF_UNSUPPORTED_MODEL', async () => {
      const p = await writeGguf('renamed.gguf', { kvs: [...hyper, ...part(0, 2)] });
      const err = await readModelSpec(p).catch((e: unknown) => e);
      expect((err as GgufError).code).toBe('GGUF_UNSUPPORTED_MODEL');
    });
  });
});
