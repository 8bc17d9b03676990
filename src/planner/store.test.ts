import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  MeasuredStore,
  StoreError,
  fileIdentity,
  measurementKey,
  type MeasuredConfig,
  type MeasurementKey,
} from './store.js';

const config: MeasuredConfig = {
  contextSize: 4096,
  parallel: 1,
  batchSize: 512,
  flashAttention: true,
  kvCacheKeyType: 'f16',
  kvCacheValueType: 'f16',
  gpuLayers: 0,
  mmap: true,
};
const file = { path: '/models/a.gguf', size: 1000, mtimeMs: 1_700_000_000_000 };
const key: MeasurementKey = { file, config };
const m = { rss: 100, rssAnon: 60, peak: 120, loadMs: 300 };

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-store-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('MeasuredStore', () => {
  it('records, persists atomically and reads back in a new instance', async () => {
    const f = path.join(dir, 'sub', 'footprints.json');
    const store = await MeasuredStore.create(f);
    expect(store.lookup(key)).toBeUndefined();
    await store.record(key, { ...m, contextFill: 0.99 });
    expect(store.lookup(key)).toMatchObject({ ...m, contextFill: 0.99, samples: 1 });
    // Only the store file remains: the temporary file was renamed over it.
    expect(await readdir(path.dirname(f))).toEqual(['footprints.json']);
    const again = await MeasuredStore.create(f);
    expect(again.lookup(key)).toMatchObject({ ...m, samples: 1 });
    expect(again.warnings).toEqual([]);
  });

  it('keys on file identity and the memory-relevant config', async () => {
    const store = await MeasuredStore.create(path.join(dir, 's.json'));
    await store.record(key, m);
    expect(store.lookup({ file: { ...file, mtimeMs: file.mtimeMs + 1000 }, config })).toBe(
      undefined,
    );
    expect(store.lookup({ file: { ...file, size: 1001 }, config })).toBeUndefined();
    expect(store.lookup({ file, config: { ...config, contextSize: 8192 } })).toBeUndefined();
    expect(store.lookup({ file, config: { ...config, kvCacheKeyType: 'q8_0' } })).toBeUndefined();
    // Extra fields (a RunnerConfig's threads, modelPath) do not change the key.
    const runnerConfig = { ...config, threads: 2, modelPath: '/x' };
    expect(store.lookup({ file, config: runnerConfig })).toBeDefined();
    // A quantised V cache means flash attention on, whatever the flag says.
    const q = { ...config, kvCacheValueType: 'q8_0' as const };
    expect(measurementKey({ file, config: { ...q, flashAttention: false } })).toBe(
      measurementKey({ file, config: { ...q, flashAttention: true } }),
    );
  });

  it("keys on the engine: one engine's measurement never stands in for another's", async () => {
    const store = await MeasuredStore.create(path.join(dir, 's.json'));
    await store.record({ file, config: { ...config, engine: 'llama-server' } }, m);
    expect(store.lookup({ file, config: { ...config, engine: 'llama-server' } })).toBeDefined();
    expect(store.lookup({ file, config })).toBeUndefined();
    expect(store.lookup({ file, config: { ...config, engine: 'embedded' } })).toBeUndefined();
    // An embedded runner's key names no engine (absent = embedded), so store files whose keys
    // name none keep applying to it.
    expect(measurementKey({ file, config: { ...config, engine: 'embedded' } })).toBe(
      measurementKey({ file, config }),
    );
    expect(measurementKey({ file, config })).toBe(
      '/models/a.gguf|1000|1700000000000|ctx=4096|par=1|batch=512|fa=1|kv=f16/f16|gpu=0|mmap=1',
    );
    expect(measurementKey({ file, config: { ...config, engine: 'llama-server' } })).toBe(
      '/models/a.gguf|1000|1700000000000|ctx=4096|par=1|batch=512|fa=1|kv=f16/f16|gpu=0|mmap=1|engine=llama-server',
    );
  });

  it("keys on the engine's build: a new llama-server build is measured afresh", async () => {
    const store = await MeasuredStore.create(path.join(dir, 's.json'));
    const ls = { ...config, engine: 'llama-server' as const };
    await store.record({ file, config: ls, runtime: 'version: 1 (aaa)' }, m);
    expect(store.lookup({ file, config: ls, runtime: 'version: 1 (aaa)' })).toBeDefined();
    expect(store.lookup({ file, config: ls, runtime: 'version: 2 (bbb)' })).toBeUndefined();
    expect(store.lookup({ file, config: ls })).toBeUndefined();
    expect(measurementKey({ file, config: ls, runtime: 'version: 1 (aaa)' })).toMatch(
      /\|engine=llama-server\|bin=version: 1 \(aaa\)$/,
    );
  });

  it('keeps the peak and anonymous watermark; rss and load time are the latest', async () => {
    const store = await MeasuredStore.create(path.join(dir, 's.json'));
    await store.record(key, { rss: 500, rssAnon: 400, peak: 600, loadMs: 300, contextFill: 1 });
    const after = await store.record(key, { rss: 200, rssAnon: 100, peak: 250, loadMs: 250 });
    expect(after).toMatchObject({
      rss: 200,
      rssAnon: 400,
      peak: 600,
      loadMs: 250,
      contextFill: 1,
      samples: 2,
    });
  });

  it('is bounded: the least recently recorded keys go first', async () => {
    let t = 0;
    const f = path.join(dir, 's.json');
    const store = await MeasuredStore.create(f, { maxEntries: 3, now: () => ++t });
    const k = (ctx: number): MeasurementKey => ({ file, config: { ...config, contextSize: ctx } });
    for (const ctx of [1024, 2048, 3072]) await store.record(k(ctx), m);
    await store.record(k(1024), m); // refreshed: now the newest
    await store.record(k(4096), m);
    expect(store.size).toBe(3);
    expect(store.lookup(k(2048))).toBeUndefined();
    expect(store.lookup(k(1024))).toBeDefined();
    const reread = await MeasuredStore.create(f, { maxEntries: 2 });
    expect(reread.size).toBe(2);
    expect(reread.lookup(k(3072))).toBeUndefined();
    expect(reread.lookup(k(4096))).toBeDefined();
  });

  it('concurrent records all reach the file (writes are serialised)', async () => {
    const f = path.join(dir, 's.json');
    const store = await MeasuredStore.create(f);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.record({ file, config: { ...config, contextSize: 256 * (i + 1) } }, m),
      ),
    );
    const body = JSON.parse(await readFile(f, 'utf8')) as { entries: Record<string, unknown> };
    expect(Object.keys(body.entries)).toHaveLength(20);
  });

  it('starts empty, with a warning, on a corrupt or foreign file', async () => {
    const f = path.join(dir, 's.json');
    await writeFile(f, '{"version":1,"entries":');
    const a = await MeasuredStore.create(f);
    expect(a.size).toBe(0);
    expect(a.warnings[0]).toMatch(/is not a measurement store/);
    await writeFile(f, JSON.stringify({ version: 9, entries: {} }));
    expect((await MeasuredStore.create(f)).warnings[0]).toMatch(/not a version 1 store/);
    // Malformed entries are dropped, good ones kept.
    await writeFile(
      f,
      JSON.stringify({
        version: 1,
        entries: {
          bad: { rss: -1 },
          [measurementKey(key)]: { ...m, samples: 1, updatedAt: 1 },
        },
      }),
    );
    const c = await MeasuredStore.create(f);
    expect(c.size).toBe(1);
    expect(c.lookup(key)?.peak).toBe(120);
  });

  it('rejects malformed measurements and records after dispose with StoreError', async () => {
    const store = await MeasuredStore.create(path.join(dir, 's.json'));
    await expect(store.record(key, { ...m, peak: Number.NaN })).rejects.toBeInstanceOf(StoreError);
    await expect(store.record(key, { ...m, contextFill: 2 })).rejects.toThrow(/contextFill/);
    await store.dispose();
    await store.dispose();
    await expect(store.record(key, m)).rejects.toThrow(/disposed/);
    await expect(MeasuredStore.create(path.join(dir, 'x.json'), { maxEntries: 0 })).rejects.toThrow(
      /maxEntries/,
    );
  });

  it('reports a write failure as StoreError and keeps the entry in memory', async () => {
    // The store's directory is a file: mkdir fails.
    const blocker = path.join(dir, 'blocker');
    await writeFile(blocker, 'x');
    const store = await MeasuredStore.create(path.join(blocker, 's.json'));
    await expect(store.record(key, m)).rejects.toBeInstanceOf(StoreError);
    expect(store.lookup(key)?.peak).toBe(120);
  });
});

describe('fileIdentity', () => {
  it('is path, size and mtime; changes when the file is rewritten', async () => {
    const f = path.join(dir, 'm.gguf');
    await writeFile(f, 'abcd');
    await utimes(f, 1000, 1000);
    const id = await fileIdentity(f);
    expect(id).toEqual({ path: f, size: 4, mtimeMs: 1_000_000 });
    await writeFile(f, 'abcde');
    expect(measurementKey({ file: await fileIdentity(f), config })).not.toBe(
      measurementKey({ file: id, config }),
    );
    await expect(fileIdentity(path.join(dir, 'missing'))).rejects.toThrow(/ENOENT/);
  });
});
