import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../lib/logger.js';
import { StateCache, stateKey, type PendingSave } from './cache.js';
import { STATE_SEQ_MAGIC, STATE_SEQ_VERSION, readStateHeader } from './format.js';

/** A sequence state file as llama-server writes it: packed token list, then `cells` bytes. */
function stateFile(tokens: number[], cells: number, packed = true): Buffer {
  const words = packed ? [-1, 1, tokens.length, ...tokens, 0] : tokens;
  const b = Buffer.alloc(12 + words.length * 4 + cells);
  b.writeUInt32LE(STATE_SEQ_MAGIC, 0);
  b.writeUInt32LE(STATE_SEQ_VERSION, 4);
  b.writeUInt32LE(words.length, 8);
  words.forEach((w, i) => b.writeInt32LE(w, 12 + i * 4));
  for (let i = 12 + words.length * 4; i < b.length; i++) b[i] = (i * 31) & 0xff;
  return b;
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

const KEY_PARTS = {
  file: { path: '/m.gguf', size: 1, mtimeMs: 2 },
  engine: 'llama-server',
  runtime: 'b1',
  kvCacheKeyType: 'f16',
  kvCacheValueType: 'f16',
  flashAttention: true,
} as const;
const KEY = stateKey(KEY_PARTS);

describe('StateCache', () => {
  let root: string;
  let cache: StateCache;
  const logs: string[] = [];
  const log = Object.assign(silentLogger(), {
    warn: (_o: unknown, msg?: string) => void logs.push(`warn ${msg}`),
    info: (_o: unknown, msg?: string) => void logs.push(`info ${msg}`),
  }) as unknown as ReturnType<typeof silentLogger>;

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'headroom-state-'));
    logs.length = 0;
  });
  afterEach(async () => {
    await cache?.dispose();
    await rm(root, { recursive: true, force: true });
  });

  async function save(model: string, tokens: number[], cells = 1000): Promise<PendingSave> {
    const p = await cache.pending(model);
    await writeFile(path.join(p.dir, p.name), stateFile(tokens, cells));
    return p;
  }

  it('reads the token list of both token layouts and refuses foreign headers', async () => {
    const f = path.join(root, 'x.bin');
    await writeFile(f, stateFile([5, 6, 7], 10));
    expect([...(await readStateHeader(f, 100)).tokens]).toEqual([5, 6, 7]);
    await writeFile(f, stateFile([5, 6, 7], 10, false));
    expect([...(await readStateHeader(f, 100)).tokens]).toEqual([5, 6, 7]);
    const bad = stateFile([1], 10);
    bad.writeUInt32LE(0x46554747, 0); // "GGUF": a model, not a state
    await writeFile(f, bad);
    await expect(readStateHeader(f, 100)).rejects.toThrow(/not a llama.cpp sequence state/);
    const huge = stateFile([1], 0);
    huge.writeUInt32LE(1_000_000, 8); // more tokens than the file holds
    await writeFile(f, huge);
    await expect(readStateHeader(f, 10_000_000)).rejects.toThrow(/exceeds/);
  });

  it('commits a save under its key and finds the entry sharing the longest prefix', async () => {
    cache = await StateCache.create({ root, maxBytes: 1 << 20, log });
    const a = await cache.commit(await save('m', range(0, 100)), KEY, 5);
    const b = await cache.commit(await save('m', [...range(0, 50), ...range(500, 100)]), KEY, 5);
    expect(a && b).toBeTruthy();
    const prompt = [...range(0, 100), 9, 9];
    const best = await cache.best(cache.entries('m', KEY), prompt, 10, 4096);
    expect(best?.entry.id).toBe(a!.id);
    expect(best?.prefix).toBe(100);
    // Below the minimum shared prefix, or larger than the slot: no match.
    expect(await cache.best(cache.entries('m', KEY), range(0, 5), 10, 4096)).toBeUndefined();
    expect(await cache.best(cache.entries('m', KEY), prompt, 10, 99)).toBeUndefined();
    // Another key (another model file or config) sees nothing.
    expect(cache.entries('m', 'other')).toEqual([]);
    expect(cache.stats()).toMatchObject({ saves: 2, entries: 2 });
  });

  it('drops an earlier save that a longer save of the same conversation extends', async () => {
    cache = await StateCache.create({ root, maxBytes: 1 << 20, log });
    await cache.commit(await save('m', range(0, 100)), KEY, 1);
    const longer = await cache.commit(await save('m', range(0, 150)), KEY, 1);
    expect(cache.entries('m', KEY).map((e) => e.id)).toEqual([longer!.id]);
  });

  it('gives a runner of another slot count a rewritten copy, or leaves a state it cannot rewrite', async () => {
    cache = await StateCache.create({ root, maxBytes: 1 << 20, log });
    const e = (await cache.commit(await save('m', range(0, 100)), KEY, 1))!;
    const file = cache.fileOf(e);
    const saved = (await readFile(file)).readUInt32LE(
      (await readStateHeader(file, 1000)).headerBytes,
    );
    const own = (await cache.forStreams(e, saved))!;
    expect(own.name).toBe(path.basename(file));
    // These cells are not a KV cache's layout: not rewritten, not discarded either.
    expect(await cache.forStreams(e, saved + 1)).toBeUndefined();
    expect(logs).toContain('info saved state left for a runner of its own slot count');
    expect(cache.entries('m', KEY)).toHaveLength(1);
  });

  it('keeps the files under the byte cap, least recently used first', async () => {
    const one = stateFile(range(0, 10), 1000).length;
    let t = 0;
    cache = await StateCache.create({ root, maxBytes: one * 2, log, now: () => ++t });
    const a = await cache.commit(await save('m', range(0, 10)), KEY, 1);
    const b = await cache.commit(await save('m', range(100, 10)), KEY, 1);
    cache.restored(a!, 1); // a is now more recent than b
    const c = await cache.commit(await save('m', range(200, 10)), KEY, 1);
    const ids = cache.entries('m', KEY).map((e) => e.id);
    expect(ids.sort()).toEqual([a!.id, c!.id].sort());
    expect(cache.stats()).toMatchObject({ evicted: 1, bytes: one * 2 });
    expect(await readdir(path.join(root, 'm'))).toHaveLength(2);
    expect(b).toBeDefined();
    // A save larger than the whole cap is not kept at all.
    expect(await cache.commit(await save('m', range(300, 10), one * 3), KEY, 1)).toBeUndefined();
    expect(logs.some((l) => /larger than the cache/.test(l))).toBe(true);
  });

  it('discards a corrupt or truncated file at verify, with a log line', async () => {
    cache = await StateCache.create({ root, maxBytes: 1 << 20, log });
    const a = await cache.commit(await save('m', range(0, 10)), KEY, 1);
    const b = await cache.commit(await save('m', range(50, 10)), KEY, 1);
    const fa = cache.fileOf(a!);
    const bytes = await readFile(fa);
    bytes[bytes.length - 10] = bytes[bytes.length - 10]! ^ 0xff;
    await writeFile(fa, bytes);
    await writeFile(cache.fileOf(b!), (await readFile(cache.fileOf(b!))).subarray(0, 200));
    expect(await cache.verify(a!)).toBe(false);
    expect(await cache.verify(b!)).toBe(false);
    expect(cache.entries('m', KEY)).toEqual([]);
    expect(await readdir(path.join(root, 'm'))).toEqual([]);
    expect(logs.filter((l) => /discarded: (corrupt|truncated)/.test(l))).toHaveLength(2);
    expect(cache.stats().discarded).toBe(2);
  });

  it('refuses to commit a file that is not a sequence state', async () => {
    cache = await StateCache.create({ root, maxBytes: 1 << 20, log });
    const p = await cache.pending('m');
    await writeFile(path.join(p.dir, p.name), 'GGUF not a state at all');
    expect(await cache.commit(p, KEY, 1)).toBeUndefined();
    expect(await readdir(p.dir)).toEqual([]);
    expect(cache.stats().saveFailures).toBe(1);
  });

  it('on open, deletes partial saves and files the index does not name, and keeps the rest', async () => {
    cache = await StateCache.create({ root, maxBytes: 1 << 20, log });
    const kept = await cache.commit(await save('m', range(0, 10)), KEY, 1);
    await save('m', range(0, 10)); // a partial save, never committed (a kill)
    await writeFile(path.join(root, 'm', 'stray.bin'), stateFile(range(0, 10), 10));
    await cache.dispose();
    cache = await StateCache.create({ root, maxBytes: 1 << 20, log });
    expect(await readdir(path.join(root, 'm'))).toEqual([`${kept!.id}.bin`]);
    expect(cache.entries('m', KEY).map((e) => e.id)).toEqual([kept!.id]);
    // An unreadable index starts empty (and its files are then strays).
    await cache.dispose();
    await writeFile(path.join(root, 'index.json'), '{ not json');
    cache = await StateCache.create({ root, maxBytes: 1 << 20, log });
    expect(cache.entries('m', KEY)).toEqual([]);
    expect(await readdir(path.join(root, 'm'))).toEqual([]);
  });

  it('keys states by the model file and the config that shapes the cells', () => {
    const base = KEY_PARTS;
    const keys = new Set([
      stateKey(base),
      stateKey({ ...base, file: { ...base.file, mtimeMs: 3 } }),
      stateKey({ ...base, file: { ...base.file, size: 2 } }),
      stateKey({ ...base, engine: 'embedded' }),
      stateKey({ ...base, runtime: 'b2' }),
      stateKey({ ...base, kvCacheKeyType: 'q8_0' }),
      stateKey({ ...base, kvCacheValueType: 'q8_0' }),
      stateKey({ ...base, flashAttention: false }),
    ]);
    expect(keys.size).toBe(8);
    expect(stateKey(base)).toBe(KEY);
  });
});
