import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  STATE_SEQ_MAGIC,
  STATE_SEQ_VERSION,
  StateFormatError,
  readStateHeader,
  readStateLayout,
  writeWithStreams,
} from './format.js';

const u32 = (...v: number[]): Buffer => {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeUInt32LE(x, i * 4));
  return b;
};
const u64 = (v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const filled = (n: number, seed: number): Buffer =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

/**
 * A stream record as llama.cpp's KV cache writes a sequence's cells: the cell count, per cell its
 * position, seq-id count (1) and seq id, then the K rows of each layer and the V rows (or, with
 * `vTrans`, V's elements by row) of each layer, each led by its type and row/element size.
 */
function cellsRecord(cells: number, layers = 2, vTrans = false, row = 16): Buffer {
  const parts: Buffer[] = [u32(cells)];
  for (let i = 0; i < cells; i++) parts.push(u32(i, 1, 0));
  parts.push(u32(vTrans ? 1 : 0, layers));
  for (let l = 0; l < layers; l++) parts.push(u32(1), u64(row), filled(cells * row, l));
  for (let l = 0; l < layers; l++)
    if (vTrans) parts.push(u32(1, 2, row / 2), filled(cells * row, 100 + l));
    else parts.push(u32(1), u64(row), filled(cells * row, 100 + l));
  return Buffer.concat(parts);
}

/** A sequence state file: header with plain tokens, then `streams` streams, cells in `at`. */
function stateFile(tokens: number, streams: number, at: number, record: Buffer): Buffer {
  const head = Buffer.concat([
    u32(STATE_SEQ_MAGIC, STATE_SEQ_VERSION, tokens),
    u32(...Array.from({ length: tokens }, (_, i) => 100 + i)),
  ]);
  const body = Array.from({ length: streams }, (_, s) => (s === at ? record : u32(0)));
  return Buffer.concat([head, u32(streams), ...body]);
}

describe('state layout', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-state-format-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function layoutOf(bytes: Buffer): Promise<Awaited<ReturnType<typeof readStateLayout>>> {
    const f = path.join(dir, `s-${Math.random()}.bin`);
    await writeFile(f, bytes);
    const { headerBytes } = await readStateHeader(f, 1 << 20);
    return readStateLayout(f, headerBytes, 1000);
  }

  it('finds the one stream holding cells, with V rows or V transposed', async () => {
    for (const vTrans of [false, true]) {
      const record = cellsRecord(5, 3, vTrans);
      const file = stateFile(5, 4, 2, record);
      const layout = await layoutOf(file);
      expect(layout.streams).toBe(4);
      const start = 12 + 5 * 4 + 4 + 2 * 4;
      expect(layout.cells).toEqual({ offset: start, bytes: record.length });
    }
    expect((await layoutOf(stateFile(0, 2, -1, Buffer.alloc(0)))).cells).toBeUndefined();
  });

  it('refuses what is not one plain KV cache ending at the end of the file', async () => {
    const record = cellsRecord(4);
    const good = stateFile(4, 1, 0, record);
    const bad: Buffer[] = [
      // A second cache after the first (a sliding-window model writes two).
      Buffer.concat([good, u32(1), u32(0)]),
      // Cut short.
      good.subarray(0, good.length - 3),
      // Cells in two streams.
      Buffer.concat([stateFile(4, 2, 0, record).subarray(0, -4), record]),
      // A cell shared by two sequences (not a sequence's own state).
      (() => {
        const b = Buffer.from(good);
        b.writeUInt32LE(2, 12 + 16 + 4 + 4 + 4);
        return b;
      })(),
      // No stream count at all, or an absurd one.
      Buffer.concat([stateFile(4, 1, 0, record).subarray(0, 28), u32(0)]),
      Buffer.concat([stateFile(4, 1, 0, record).subarray(0, 28), u32(1 << 30)]),
    ];
    for (const b of bad) await expect(layoutOf(b)).rejects.toThrow(StateFormatError);
    // More cells than the cap: refused before their meta is read into memory.
    const f = path.join(dir, 'many.bin');
    await writeFile(f, good);
    const { headerBytes } = await readStateHeader(f, 1 << 20);
    await expect(readStateLayout(f, headerBytes, 3)).rejects.toThrow(/4 cells, more than 3/);
  });

  it('rewrites a state for another stream count, and back to the same bytes', async () => {
    const record = cellsRecord(6, 2, true);
    const one = stateFile(6, 1, 0, record);
    const src = path.join(dir, 'one.bin');
    await writeFile(src, one);
    const { headerBytes } = await readStateHeader(src, 1 << 20);

    const three = path.join(dir, 'three.bin');
    await writeWithStreams(src, await readStateLayout(src, headerBytes, 1000), three, 3);
    expect(await readFile(three)).toEqual(stateFile(6, 3, 0, record));
    const l3 = await readStateLayout(three, headerBytes, 1000);
    expect(l3.streams).toBe(3);

    // Saved from the third of four slots, restored into a one-slot runner.
    const fourth = path.join(dir, 'four.bin');
    await writeFile(fourth, stateFile(6, 4, 2, record));
    const back = path.join(dir, 'back.bin');
    await writeWithStreams(fourth, await readStateLayout(fourth, headerBytes, 1000), back, 1);
    expect(await readFile(back)).toEqual(one);
    // Never over an existing file.
    await expect(writeWithStreams(src, l3, back, 1)).rejects.toThrow(/EEXIST/);
  });
});
