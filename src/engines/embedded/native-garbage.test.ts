import { describe, expect, it } from 'vitest';
import { NativeGarbage } from './native-garbage.js';

describe('NativeGarbage', () => {
  it('runs a young-generation collection each time the garbage left behind passes the threshold', () => {
    const calls: string[] = [];
    // 128k vocabulary: 1.5 MiB per evaluation call; threshold 4 MiB → every third call.
    const g = new NativeGarbage(128_000, 4 * 1024 * 1024, (o) => calls.push(o.type));
    for (let i = 0; i < 9; i++) g.evaluated();
    expect(calls).toEqual(['minor', 'minor', 'minor']);
    expect(g.collections).toBe(3);
  });

  it('collects on demand only when something is pending, and counts without a gc function', () => {
    const calls: string[] = [];
    const g = new NativeGarbage(8192, 4 * 1024 * 1024, (o) => calls.push(o.type));
    g.collect();
    expect(calls).toEqual([]);
    g.evaluated();
    g.collect();
    expect(calls).toEqual(['minor']);
    const off = new NativeGarbage(8192, 1, undefined);
    off.evaluated();
    expect(off.enabled).toBe(false);
    expect(off.collections).toBe(0);
  });

  it('runs a full collection once calls overlapped (their samplers may have been promoted)', () => {
    const calls: string[] = [];
    // 8k vocabulary: 96 KiB per call; threshold 200 KiB → every third call.
    const g = new NativeGarbage(8192, 200 * 1024, (o) => calls.push(o.type));
    for (let i = 0; i < 3; i++) {
      g.started();
      g.evaluated();
    }
    expect(calls).toEqual(['minor']);
    // Two calls in flight together, then a third alone.
    g.started();
    g.started();
    g.evaluated();
    g.evaluated();
    g.started();
    g.evaluated();
    expect(calls).toEqual(['minor', 'major']);
    expect(g.majorCollections).toBe(1);
    // No overlap since: young-generation collections again.
    for (let i = 0; i < 3; i++) {
      g.started();
      g.evaluated();
    }
    expect(calls).toEqual(['minor', 'major', 'minor']);
    expect(g.collections).toBe(3);
  });

  it('still counts an overlap that lasts across a collection', () => {
    const calls: string[] = [];
    const g = new NativeGarbage(8192, 100 * 1024, (o) => calls.push(o.type));
    g.started(); // a generation, in flight throughout
    g.started();
    g.evaluated(); // 96 KiB
    g.started();
    g.evaluated(); // 192 KiB: collects (overlapped), the generation is still in flight
    g.started();
    g.evaluated();
    g.started();
    g.evaluated();
    expect(calls).toEqual(['major', 'major']);
  });

  it('finds the gc function the runner is started with (--expose-gc)', () => {
    const g = new NativeGarbage(1000);
    expect(g.enabled).toBe(typeof (globalThis as { gc?: unknown }).gc === 'function');
  });
});
