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

  it('finds the gc function the runner is started with (--expose-gc)', () => {
    const g = new NativeGarbage(1000);
    expect(g.enabled).toBe(typeof (globalThis as { gc?: unknown }).gc === 'function');
  });
});
