import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, truncate, writeFile, mkdir, copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HeadroomError } from '../lib/errors.js';
import { GGUF_MAGIC, GgufValueType as T, ggmlTypeByName } from './constants.js';
import { forgeModel, llamaParamCount, type ForgeOptions } from './forge.js';
import { GgufError, readGguf, type GgufErrorCode, type GgufFile } from './reader.js';
import { specFromGguf } from './spec.js';
import { ByteWriter } from './writer.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-gguf-reader-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileNo = 0;
async function tmpFile(bytes: Uint8Array): Promise<string> {
  const p = path.join(dir, `f${fileNo++}.gguf`);
  await writeFile(p, bytes);
  return p;
}

/** Awaits a rejection that must be a GgufError (with `code` when given) and returns it. */
async function ggufError(p: Promise<unknown>, code?: GgufErrorCode): Promise<GgufError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').toBeInstanceOf(GgufError);
  if (code) expect((err as GgufError).code).toBe(code);
  return err as GgufError;
}

interface TensorDesc {
  name: string;
  dims: (number | bigint)[];
  type: number;
  offset: number | bigint;
}

interface BuildOptions {
  version?: number;
  /** Overrides the tensor count written in the header. */
  tensorCount?: bigint;
  /** Overrides the key/value count written in the header. */
  kvCount?: bigint;
  kvs?: ((w: ByteWriter) => void)[];
  tensors?: TensorDesc[];
  alignment?: number;
  /** Bytes of tensor data after the aligned header. */
  dataBytes?: number;
}

/** A GGUF file built by hand with the writer the forge uses, the way other writers lay them out. */
function build(o: BuildOptions = {}): Buffer {
  const kvs = o.kvs ?? [];
  const tensors = o.tensors ?? [];
  // Sized for every file built here: ByteWriter's scalar writes fail when they make it grow.
  const w = new ByteWriter(4 << 20);
  w.u32(GGUF_MAGIC).u32(o.version ?? 3);
  if (o.version === 1)
    w.u32(Number(o.tensorCount ?? tensors.length)).u32(Number(o.kvCount ?? kvs.length));
  else w.u64(o.tensorCount ?? BigInt(tensors.length)).u64(o.kvCount ?? BigInt(kvs.length));
  for (const kv of kvs) kv(w);
  for (const t of tensors) w.tensorInfo(t.name, t.dims, t.type, t.offset);
  w.pad(o.alignment ?? 32);
  const data = Buffer.alloc(o.dataBytes ?? 0);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
  return Buffer.concat([w.toBuffer(), data]);
}

const F32 = ggmlTypeByName('F32')!.id;
const Q8_0 = ggmlTypeByName('Q8_0')!.id;

/**
 * A small valid file with every value type, nested arrays and two tensors whose data ends
 * exactly at the end of the file, so that every strict prefix of it is truncated.
 */
function sampleFile(version = 3): Buffer {
  return build({
    version,
    kvs: [
      (w) => w.kvString('general.architecture', 'llama'),
      (w) => w.kvU32('general.alignment', 32),
      (w) => w.kvU32('llama.block_count', 2),
      (w) => w.kvU64('llama.embedding_length', 64),
      (w) => w.string('t.u8').u32(T.UINT8).u8(200),
      (w) => w.string('t.i8').u32(T.INT8).i8(-5),
      (w) => w.string('t.u16').u32(T.UINT16).u16(65000),
      (w) => w.string('t.i16').u32(T.INT16).i16(-30000),
      (w) => w.kvI32('t.i32', -123456),
      (w) => w.kvF32('t.f32', 0.5),
      (w) => w.string('t.f64').u32(T.FLOAT64).f64(Math.PI),
      (w) => w.kvBool('t.bool', true),
      (w) =>
        w
          .string('t.i64')
          .u32(T.INT64)
          .i64(-(2n ** 62n)),
      (w) => w.kvU64('t.u64.small', 42),
      (w) => w.kvStrings('t.strings', ['a', '', 'héllo']),
      (w) => w.kvF32s('t.f32s', [1, 2.5]),
      (w) => w.string('t.bools').u32(T.ARRAY).u32(T.BOOL).u64(3).bool(true).bool(false).bool(true),
      (w) =>
        w
          .string('t.u64s')
          .u32(T.ARRAY)
          .u32(T.UINT64)
          .u64(2)
          .u64(1)
          .u64(2n ** 64n - 1n),
      // [[1, 2], []] of u32, then [["x"], ["y", "z"]] of strings.
      (w) =>
        w
          .string('t.nested')
          .u32(T.ARRAY)
          .u32(T.ARRAY)
          .u64(2)
          .u32(T.UINT32)
          .u64(2)
          .u32(1)
          .u32(2)
          .u32(T.UINT32)
          .u64(0),
      (w) =>
        w
          .string('t.nested.str')
          .u32(T.ARRAY)
          .u32(T.ARRAY)
          .u64(2)
          .u32(T.STRING)
          .u64(1)
          .string('x')
          .u32(T.STRING)
          .u64(2)
          .string('y')
          .string('z'),
    ],
    tensors: [
      { name: 'norm.weight', dims: [8], type: F32, offset: 0 },
      { name: 'w.weight', dims: [32, 2], type: Q8_0, offset: 32 },
    ],
    dataBytes: 32 + 68,
  });
}

describe('readGguf on well-formed files', () => {
  it('reads every value type, nested arrays and tensor infos', async () => {
    const bytes = sampleFile();
    const f = await readGguf(await tmpFile(bytes));
    expect(f.version).toBe(3);
    expect(f.fileSize).toBe(bytes.length);
    expect(f.alignment).toBe(32);
    expect(f.dataOffset % 32).toBe(0);
    expect(f.dataOffset).toBe(bytes.length - 100);
    const md = f.metadata;
    expect(md.get('general.architecture')).toBe('llama');
    expect(md.get('llama.embedding_length')).toBe(64);
    expect(md.get('t.u8')).toBe(200);
    expect(md.get('t.i8')).toBe(-5);
    expect(md.get('t.u16')).toBe(65000);
    expect(md.get('t.i16')).toBe(-30000);
    expect(md.get('t.i32')).toBe(-123456);
    expect(md.get('t.f32')).toBe(0.5);
    expect(md.get('t.f64')).toBe(Math.PI);
    expect(md.get('t.bool')).toBe(true);
    expect(md.get('t.i64')).toBe(-(2n ** 62n));
    expect(md.get('t.u64.small')).toBe(42);
    expect(md.get('t.strings')).toEqual(['a', '', 'héllo']);
    expect(md.get('t.f32s')).toEqual(new Float32Array([1, 2.5]));
    expect(md.get('t.bools')).toEqual([true, false, true]);
    expect(md.get('t.u64s')).toEqual(new BigUint64Array([1n, 2n ** 64n - 1n]));
    expect(md.get('t.nested')).toEqual([new Uint32Array([1, 2]), new Uint32Array([])]);
    expect(md.get('t.nested.str')).toEqual([['x'], ['y', 'z']]);
    expect([...md.keys()][0]).toBe('general.architecture');
    expect(f.tensors).toEqual([
      {
        name: 'norm.weight',
        dims: [8],
        type: F32,
        typeName: 'F32',
        elements: 8,
        offset: f.dataOffset,
        bytes: 32,
      },
      {
        name: 'w.weight',
        dims: [32, 2],
        type: Q8_0,
        typeName: 'Q8_0',
        elements: 64,
        offset: f.dataOffset + 32,
        bytes: 68,
      },
    ]);
  });

  it('reads GGUF v2 files', async () => {
    const f = await readGguf(await tmpFile(sampleFile(2)));
    expect(f.version).toBe(2);
    expect(f.tensors).toHaveLength(2);
    expect(f.metadata.get('t.nested.str')).toEqual([['x'], ['y', 'z']]);
  });

  it('honours general.alignment when placing the data section', async () => {
    const bytes = build({
      kvs: [(w) => w.kvU32('general.alignment', 256)],
      tensors: [{ name: 'a', dims: [4], type: F32, offset: 0 }],
      alignment: 256,
      dataBytes: 16,
    });
    const f = await readGguf(await tmpFile(bytes));
    expect(f.alignment).toBe(256);
    expect(f.dataOffset).toBe(256);
    expect(f.tensors[0]!.offset).toBe(256);
  });

  it('reads strings longer than its 64 KiB buffer, and many small values across buffer refills', async () => {
    const long = 'x'.repeat(200_000) + 'é';
    const ints = Array.from({ length: 50_000 }, (_, i) => i * 3 - 7);
    const strings = Array.from({ length: 20_000 }, (_, i) => `tok${i}`);
    const bytes = build({
      kvs: [
        (w) => w.kvString('long', long),
        (w) => w.kvI32s('ints', ints),
        (w) => w.kvStrings('strings', strings),
      ],
    });
    const f = await readGguf(await tmpFile(bytes));
    expect(f.metadata.get('long')).toBe(long);
    expect(f.metadata.get('ints')).toEqual(Int32Array.from(ints));
    expect(f.metadata.get('strings')).toEqual(strings);
  });
});

describe('forged models round-trip through the reader', () => {
  const cases: [string, Omit<ForgeOptions, 'out'>][] = [
    ['f32', { layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128, vocab: 300, type: 'f32' }],
    [
      'f16 tied with ChatML',
      {
        layers: 3,
        embd: 128,
        heads: 4,
        kvHeads: 1,
        ff: 320,
        vocab: 400,
        type: 'f16',
        tied: true,
        chatTemplate: 'chatml',
        ctx: 4096,
      },
    ],
    ['q8_0', { layers: 2, embd: 96, heads: 3, kvHeads: 3, ff: 256, vocab: 512, type: 'q8_0' }],
    ['q8_0 from a parameter count', { params: 3_000_000, type: 'q8_0', tied: true }],
  ];
  it.each(cases)('%s', async (_label, opts) => {
    const forged = await forgeModel({ ...opts, out: path.join(dir, `forged-${fileNo++}.gguf`) });
    const f = await readGguf(forged.path);
    expect(f.fileSize).toBe(forged.bytes);
    const spec = specFromGguf(f);
    const { shape } = forged;
    expect(spec).toMatchObject({
      architecture: 'llama',
      parameterCount: forged.parameterCount,
      tensorBytes: forged.tensorBytes,
      layers: shape.layers,
      embeddingSize: shape.embd,
      feedForwardSize: shape.ff,
      headCount: shape.heads,
      headCountKv: shape.kvHeads,
      headDimK: shape.embd / shape.heads,
      headDimV: shape.embd / shape.heads,
      contextLength: forged.ctx,
      vocabSize: shape.vocab,
      hasChatTemplate: opts.chatTemplate !== undefined,
      fileType: { f32: 'ALL_F32', f16: 'MOSTLY_F16', q8_0: 'MOSTLY_Q8_0' }[forged.type],
    });
    expect(spec.parameterCount).toBe(llamaParamCount(shape, forged.tied));
    expect(f.tensors.some((t) => t.name === 'output.weight')).toBe(!forged.tied);
    const normBytes = (2 * shape.layers + 1) * shape.embd * 4;
    const weightType = { f32: 'F32', f16: 'F16', q8_0: 'Q8_0' }[forged.type];
    expect(spec.bytesByType).toEqual(
      weightType === 'F32'
        ? { F32: forged.tensorBytes }
        : { F32: normBytes, [weightType]: forged.tensorBytes - normBytes },
    );
    for (const t of f.tensors) {
      expect(t.offset % f.alignment).toBe(0);
      expect(t.offset + t.bytes).toBeLessThanOrEqual(f.fileSize);
    }
    // The offsets point at the data: forged norm weights are 1 ± 0.01.
    const norm = f.tensors.find((t) => t.name === 'output_norm.weight')!;
    const fh = await open(forged.path, 'r');
    try {
      const buf = Buffer.alloc(norm.bytes);
      await fh.read(buf, 0, norm.bytes, norm.offset);
      const values = new Float32Array(buf.buffer, buf.byteOffset, norm.elements);
      expect(values.every((v) => v > 0.98 && v < 1.02)).toBe(true);
    } finally {
      await fh.close();
    }
  });
});

describe('truncated files', () => {
  it('every strict prefix of a small file gives a GgufError (GGUF_TRUNCATED from 4 bytes on)', async () => {
    const bytes = sampleFile();
    const p = path.join(dir, 'prefix.gguf');
    await writeFile(p, bytes);
    expect((await readGguf(p)).tensors).toHaveLength(2);
    // Shrinking the same file step by step: one file, every length from size - 1 down to 0.
    for (let n = bytes.length - 1; n >= 0; n--) {
      await truncate(p, n);
      const err = await ggufError(readGguf(p));
      expect(err.code, `prefix of ${n} bytes`).toBe(n < 4 ? 'GGUF_BAD_MAGIC' : 'GGUF_TRUNCATED');
      expect(err.details.offset).toBeLessThanOrEqual(bytes.length);
    }
  });

  it('prefixes of a forged model (all through its tensor infos, a stride elsewhere) are GGUF_TRUNCATED', async () => {
    const forged = await forgeModel({
      out: path.join(dir, 'tiny.gguf'),
      layers: 1,
      embd: 64,
      heads: 2,
      kvHeads: 1,
      ff: 64,
      vocab: 300,
      type: 'f16',
    });
    const full = await readGguf(forged.path);
    const p = path.join(dir, 'tiny-prefix.gguf');
    await copyFile(forged.path, p);
    // The last tensor's data ends at the end of the file (all sizes are multiples of 32).
    const last = full.tensors.reduce((a, t) => (t.offset > a.offset ? t : a));
    expect(last.offset + last.bytes).toBe(forged.bytes);
    // Every length through the tensor infos and the start of the data, the fixed fields and the
    // first tokens; a stride through the rest of the vocabulary and through the tensor data.
    const tensorInfoStart = full.dataOffset - 1200;
    const lengths: number[] = [];
    for (let n = forged.bytes - 1; n > full.dataOffset + 64; n -= 509) lengths.push(n);
    for (let n = full.dataOffset + 64; n >= tensorInfoStart; n--) lengths.push(n);
    for (let n = tensorInfoStart - 1; n > 1500; n -= 7) lengths.push(n);
    for (let n = 1500; n >= 4; n--) lengths.push(n);
    for (const n of lengths) {
      await truncate(p, n);
      expect((await ggufError(readGguf(p))).code, `prefix of ${n} bytes`).toBe('GGUF_TRUNCATED');
    }
  });
});

describe('mutated headers', () => {
  it('random byte changes give a GgufFile or a GgufError, nothing else', async () => {
    const base = sampleFile();
    const p = path.join(dir, 'mutant.gguf');
    let ok = 0;
    let failed = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 })), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.option(fc.nat(base.length), { nil: undefined }),
        async (changes, cut) => {
          const bytes = Buffer.from(base);
          for (const [at, v] of changes) bytes[at] = v;
          await writeFile(p, cut === undefined ? bytes : bytes.subarray(0, cut));
          let f: GgufFile | undefined;
          try {
            f = await readGguf(p);
          } catch (err) {
            expect(err).toBeInstanceOf(GgufError);
            expect((err as GgufError).message).toContain(p);
            failed++;
            return;
          }
          ok++;
          for (const t of f.tensors) {
            expect(t.offset + t.bytes).toBeLessThanOrEqual(f.fileSize);
            expect(t.offset % f.alignment).toBe(0);
          }
        },
      ),
      { numRuns: 400, seed: 20_260_101 },
    );
    // Both outcomes occur: the property is exercised on both sides.
    expect(ok).toBeGreaterThan(0);
    expect(failed).toBeGreaterThan(0);
  });

  it('mutated 64-bit counts and lengths give a GgufError without reading past the header', async () => {
    const base = sampleFile();
    const p = path.join(dir, 'mutant64.gguf');
    await fc.assert(
      fc.asyncProperty(
        fc.nat(base.length - 8),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        async (at, v) => {
          const bytes = Buffer.from(base);
          bytes.writeBigUInt64LE(v, at);
          await writeFile(p, bytes);
          await readGguf(p).catch((err: unknown) => expect(err).toBeInstanceOf(GgufError));
        },
      ),
      { numRuns: 300, seed: 7 },
    );
  });
});

describe('hostile sizes fail before allocating', () => {
  it('a tensor count of 2^63', async () => {
    const err = await ggufError(
      readGguf(await tmpFile(build({ tensorCount: 2n ** 63n }))),
      'GGUF_LIMIT',
    );
    expect(err.details.offset).toBe(8);
  });

  it('a metadata count of 2^64 - 1', async () => {
    await ggufError(readGguf(await tmpFile(build({ kvCount: 2n ** 64n - 1n }))), 'GGUF_LIMIT');
  });

  it('counts under the caps that the file cannot hold', async () => {
    await ggufError(readGguf(await tmpFile(build({ tensorCount: 900_000n }))), 'GGUF_TRUNCATED');
    await ggufError(readGguf(await tmpFile(build({ kvCount: 999_999n }))), 'GGUF_TRUNCATED');
  });

  it('a 2^40-byte string value, and a 2^40-byte key', async () => {
    const value = build({
      kvs: [
        (w) =>
          w
            .string('k')
            .u32(T.STRING)
            .u64(2n ** 40n),
      ],
    });
    const err = await ggufError(readGguf(await tmpFile(value)), 'GGUF_LIMIT');
    expect(err.details.offset).toBe(24 + 8 + 1 + 4);
    await ggufError(
      readGguf(await tmpFile(build({ kvs: [(w) => w.u64(2n ** 40n).bytes(Buffer.alloc(64))] }))),
      'GGUF_LIMIT',
    );
  });

  it('a 1 MiB string in a small file', async () => {
    await ggufError(
      readGguf(
        await tmpFile(
          build({
            kvs: [
              (w) =>
                w
                  .string('k')
                  .u32(T.STRING)
                  .u64(1 << 20),
            ],
          }),
        ),
      ),
      'GGUF_TRUNCATED',
    );
  });

  it('arrays of 2^62 items, of every item type', async () => {
    for (const type of [T.UINT8, T.BOOL, T.UINT32, T.UINT64, T.STRING, T.ARRAY]) {
      const bytes = build({
        kvs: [
          (w) =>
            w
              .string('k')
              .u32(T.ARRAY)
              .u32(type)
              .u64(2n ** 62n),
        ],
      });
      await ggufError(readGguf(await tmpFile(bytes)), 'GGUF_TRUNCATED');
    }
  });

  it('arrays nested deeper than 8 levels', async () => {
    const nest = (depth: number) => (w: ByteWriter) => {
      w.string('deep').u32(T.ARRAY);
      for (let i = 1; i < depth; i++) w.u32(T.ARRAY).u64(1);
      w.u32(T.UINT8).u64(1).u8(7);
    };
    const f = await readGguf(await tmpFile(build({ kvs: [nest(8)] })));
    expect(f.metadata.get('deep')).toEqual([[[[[[[new Uint8Array([7])]]]]]]]);
    await ggufError(readGguf(await tmpFile(build({ kvs: [nest(9)] }))), 'GGUF_LIMIT');
  });

  it('metadata that would balloon on the heap: empty nested arrays, bools', async () => {
    // 4000 empty arrays take 48 KB of file but ~100 bytes of heap each; bools take 8 bytes each.
    const empties = build({
      kvs: [
        (w) => {
          w.string('k').u32(T.ARRAY).u32(T.ARRAY).u64(4000);
          for (let i = 0; i < 4000; i++) w.u32(T.UINT8).u64(0);
        },
      ],
    });
    const bools = build({
      kvs: [
        (w) => w.string('k').u32(T.ARRAY).u32(T.BOOL).u64(60_000).bytes(Buffer.alloc(60_000, 1)),
      ],
    });
    for (const bytes of [empties, bools]) {
      const p = await tmpFile(bytes);
      const err = await ggufError(readGguf(p, { maxMetadataBytes: 64 * 1024 }), 'GGUF_LIMIT');
      expect(err.message).toContain('memory');
      await expect(readGguf(p)).resolves.toBeDefined();
    }
  });

  it('a header larger than maxMetadataBytes', async () => {
    const p = await tmpFile(build({ kvs: [(w) => w.kvString('k', 'y'.repeat(5000))] }));
    await ggufError(readGguf(p, { maxMetadataBytes: 4096 }), 'GGUF_LIMIT');
    await expect(readGguf(p, { maxMetadataBytes: 8192 })).resolves.toBeDefined();
  });
});

describe('malformed headers', () => {
  const tensor = (t: Partial<TensorDesc>, dataBytes = 64): Buffer =>
    build({ tensors: [{ name: 't', dims: [16], type: F32, offset: 0, ...t }], dataBytes });

  it.each<[string, Buffer, GgufErrorCode]>([
    [
      'bad magic',
      Buffer.from('GGML\x03\x00\x00\x00' + '\x00'.repeat(16), 'latin1'),
      'GGUF_BAD_MAGIC',
    ],
    ['an empty file', Buffer.alloc(0), 'GGUF_BAD_MAGIC'],
    ['GGUF v1', build({ version: 1 }), 'GGUF_UNSUPPORTED_VERSION'],
    ['GGUF v4', build({ version: 4 }), 'GGUF_UNSUPPORTED_VERSION'],
    ['a big-endian file', build({ version: 0x03000000 }), 'GGUF_UNSUPPORTED_VERSION'],
    [
      'an unknown value type',
      build({ kvs: [(w) => w.string('k').u32(13).u32(0)] }),
      'GGUF_BAD_VALUE',
    ],
    [
      'an array of an unknown type',
      build({ kvs: [(w) => w.string('k').u32(T.ARRAY).u32(99).u64(0)] }),
      'GGUF_BAD_VALUE',
    ],
    [
      'a duplicate key',
      build({ kvs: [(w) => w.kvU32('k', 1), (w) => w.kvU32('k', 2)] }),
      'GGUF_DUPLICATE',
    ],
    [
      'alignment 48',
      build({ kvs: [(w) => w.kvU32('general.alignment', 48)] }),
      'GGUF_BAD_ALIGNMENT',
    ],
    ['alignment 0', build({ kvs: [(w) => w.kvU32('general.alignment', 0)] }), 'GGUF_BAD_ALIGNMENT'],
    [
      'alignment as a string',
      build({ kvs: [(w) => w.kvString('general.alignment', '32')] }),
      'GGUF_BAD_ALIGNMENT',
    ],
    ['an unknown ggml type', tensor({ type: 4 }), 'GGUF_UNKNOWN_TYPE'],
    ['ggml type 1000', tensor({ type: 1000 }), 'GGUF_UNKNOWN_TYPE'],
    ['zero dimensions', tensor({ dims: [] }), 'GGUF_BAD_TENSOR'],
    ['nine dimensions', tensor({ dims: [1, 1, 1, 1, 1, 1, 1, 1, 1] }), 'GGUF_BAD_TENSOR'],
    ['a zero dimension', tensor({ dims: [16, 0] }), 'GGUF_BAD_TENSOR'],
    ['a dimension of 2^63', tensor({ dims: [16, 2n ** 63n] }), 'GGUF_BAD_TENSOR'],
    ['2^60 elements', tensor({ dims: [2 ** 30, 2 ** 30] }), 'GGUF_BAD_TENSOR'],
    ['Q8_0 rows not a multiple of 32', tensor({ dims: [16], type: Q8_0 }), 'GGUF_BAD_TENSOR'],
    ['an unaligned offset', tensor({ offset: 4 }), 'GGUF_BAD_TENSOR'],
    ['data past the end of the file', tensor({ offset: 32 }, 64), 'GGUF_TRUNCATED'],
    ['an offset of 2^64 - 32', tensor({ offset: 2n ** 64n - 32n }), 'GGUF_TRUNCATED'],
    [
      'overlapping tensors',
      build({
        tensors: [
          { name: 'a', dims: [16], type: F32, offset: 0 },
          { name: 'b', dims: [8], type: F32, offset: 32 },
        ],
        dataBytes: 128,
      }),
      'GGUF_BAD_TENSOR',
    ],
    [
      'a duplicate tensor name',
      build({
        tensors: [
          { name: 'a', dims: [8], type: F32, offset: 0 },
          { name: 'a', dims: [8], type: F32, offset: 32 },
        ],
        dataBytes: 64,
      }),
      'GGUF_DUPLICATE',
    ],
  ])('%s', async (_label, bytes, code) => {
    const p = await tmpFile(bytes);
    const err = await ggufError(readGguf(p), code);
    expect(err).toBeInstanceOf(HeadroomError);
    expect(err.status).toBe(400);
    expect(err.details.path).toBe(p);
    expect(err.message).toContain(p);
    expect(err.message).toMatch(/at byte \d+/);
  });

  it('reports the offset of the faulty field', async () => {
    const bytes = build({
      kvs: [(w) => w.kvU32('abc', 1)],
      tensors: [{ name: 't', dims: [16], type: 1000, offset: 0 }],
      dataBytes: 64,
    });
    const err = await ggufError(readGguf(await tmpFile(bytes)), 'GGUF_UNKNOWN_TYPE');
    // magic 4 + version 4 + counts 16 + kv (8 + 3 + 4 + 4) + name (8 + 1) + n_dims 4 + dim 8
    expect(err.details.offset).toBe(24 + 19 + 9 + 4 + 8);
  });
});

describe('what is not a GGUF file', () => {
  it('a missing file', async () => {
    const err = await ggufError(readGguf(path.join(dir, 'nope.gguf')), 'GGUF_NOT_FOUND');
    expect(err.details).toMatchObject({ path: path.join(dir, 'nope.gguf'), offset: 0 });
  });

  it('a path under a regular file', async () => {
    const p = await tmpFile(sampleFile());
    await ggufError(readGguf(path.join(p, 'x.gguf')), 'GGUF_NOT_FOUND');
  });

  it('a directory', async () => {
    const d = path.join(dir, 'a-dir.gguf');
    await mkdir(d);
    await ggufError(readGguf(d), 'GGUF_NOT_A_FILE');
  });

  it('a FIFO, without blocking on it', async () => {
    const fifo = path.join(dir, 'fifo.gguf');
    execFileSync('mkfifo', [fifo]);
    await ggufError(readGguf(fifo), 'GGUF_NOT_A_FILE');
  });

  it('a character device', async () => {
    await ggufError(readGguf('/dev/zero'), 'GGUF_NOT_A_FILE');
  });

  it('resolves relative paths', async () => {
    const p = await tmpFile(sampleFile());
    const f = await readGguf(path.relative(process.cwd(), p));
    expect(f.path).toBe(p);
  });
});

describe('abort', () => {
  it('an aborted signal rejects with its reason before touching the file', async () => {
    const reason = new Error('stop');
    await expect(
      readGguf(path.join(dir, 'nope.gguf'), { signal: AbortSignal.abort(reason) }),
    ).rejects.toBe(reason);
  });

  it('is checked between chunks', async () => {
    // A header of ~1 MiB takes many 64 KiB reads. The signal reports aborted from its third
    // check on: deterministic, where aborting a real controller from a timer would race the reads.
    const p = await tmpFile(
      build({
        kvs: [
          (w) =>
            w.kvStrings(
              'tokens',
              Array.from({ length: 100_000 }, (_, i) => `t${i}`),
            ),
        ],
      }),
    );
    const reason = new Error('stop');
    let checks = 0;
    const signal = {
      get aborted() {
        return ++checks > 3;
      },
      reason,
    } as unknown as AbortSignal;
    await expect(readGguf(p, { signal })).rejects.toBe(reason);
    expect(checks).toBe(4);
  });
});
