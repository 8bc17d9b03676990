import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forgeModel } from './forge.js';
import { GgufError, readGguf, readGgufBytes } from './reader.js';

let dir: string;
let file: string;
let bytes: Uint8Array;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-gguf-bytes-'));
  file = path.join(dir, 'm.gguf');
  await forgeModel({
    out: file,
    layers: 1,
    embd: 32,
    heads: 2,
    kvHeads: 1,
    ff: 64,
    vocab: 300,
    ctx: 256,
    type: 'q8_0',
  });
  bytes = new Uint8Array(await readFile(file));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readGgufBytes', () => {
  it('reads a forged file from memory exactly as readGguf reads it from disk', async () => {
    const fromDisk = await readGguf(file);
    const fromMemory = await readGgufBytes(bytes, file);
    expect(fromMemory).toEqual(fromDisk);
  });

  it('checks tensor data against the size of the file the bytes begin', async () => {
    const head = (await readGguf(file)).dataOffset;
    const start = bytes.subarray(0, head);
    await expect(readGgufBytes(start, 'start')).rejects.toMatchObject({ code: 'GGUF_TRUNCATED' });
    const f = await readGgufBytes(start, 'start', { fileSize: bytes.length });
    expect(f.tensors.length).toBeGreaterThan(0);
  });

  it('gives a typed error for every prefix of the header, naming the input', async () => {
    const head = (await readGguf(file)).dataOffset;
    // Every cut through magic, counts, metadata and tensor infos (a stride through the vocabulary).
    for (let cut = 0; cut < head; cut += cut < 512 ? 1 : 97) {
      const err = await readGgufBytes(bytes.subarray(0, cut), `cut-${cut}`).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, `cut at ${cut}`).toBeInstanceOf(GgufError);
      expect((err as GgufError).message).toContain(`cut-${cut}`);
      expect(['GGUF_TRUNCATED', 'GGUF_BAD_MAGIC']).toContain((err as GgufError).code);
    }
  });
});
