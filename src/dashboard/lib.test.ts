import { describe, expect, it } from 'vitest';

// The dashboard's pure parts (a browser module in plain JS, loaded here by a computed specifier
// since it has no type declarations).

interface Point {
  t: number;
  total: number;
  available: number;
  budget: number | null;
  level: number;
  runners: Record<string, number>;
  gpus: Array<{ index: number; used: number; total: number }>;
}
interface Lib {
  Ring: new (capacity: number) => {
    push(x: unknown): void;
    last(): unknown;
    toArray(): unknown[];
    length: number;
    items: unknown[];
  };
  SseParser: new (maxPending?: number) => {
    push(chunk: string): Array<{ event: string; data: string }>;
    buffer: string;
  };
  pointOf(sample: unknown, budget: number | null): Point;
  modelsIn(points: Point[]): string[];
  chartColumns(
    points: Point[],
    models: string[],
    predicted: Record<string, number>,
  ): Array<Array<number | null>>;
  pressureSpans(points: Point[]): Array<{ from: number; to: number; level: number }>;
  formatBytes(n: number | null): string;
  formatMs(n: number | undefined): string;
  countdown(expiresAt: number | null, state: string, now: number): string;
  backoffMs(attempt: number): number;
  savedText(saved: { entries: number; bytes: number } | null | undefined): string;
}

const LIB = './lib.js';
const lib = (await import(LIB)) as Lib;

const MiB = 1024 * 1024;
const point = (t: number, runners: Record<string, number>, level = 0): Point => ({
  t,
  total: 1000 * MiB,
  available: 500 * MiB,
  budget: 800 * MiB,
  level,
  runners,
  gpus: [],
});

describe('Ring', () => {
  it('keeps the newest `capacity` items, oldest first, and never grows past its capacity', () => {
    const r = new lib.Ring(3);
    for (let i = 1; i <= 10; i++) r.push(i);
    expect(r.toArray()).toEqual([8, 9, 10]);
    expect(r.last()).toBe(10);
    expect(r.length).toBe(3);
    expect(r.items.length).toBe(3);
    expect(() => new lib.Ring(0)).toThrow(RangeError);
  });
});

describe('SseParser', () => {
  it('returns whole events across chunk boundaries and drops comments', () => {
    const p = new lib.SseParser();
    expect(p.push('event: sample\ndata: {"a"')).toEqual([]);
    expect(p.push(':1}\n\n: keep-alive\n\nevent: model\r\ndata: x\r\n\r\ndata: y\n')).toEqual([
      { event: 'sample', data: '{"a":1}' },
      { event: 'model', data: 'x' },
    ]);
    expect(p.push('\n')).toEqual([{ event: 'message', data: 'y' }]);
  });

  it('drops an unfinished event that grows past its bound', () => {
    const p = new lib.SseParser(100);
    p.push('data: ' + 'x'.repeat(200));
    expect(p.buffer).toBe('');
    expect(p.push('\n\ndata: ok\n\n')).toEqual([{ event: 'message', data: 'ok' }]);
  });
});

describe('chart data', () => {
  it('turns a monitor sample into a point: runners by model, available for new work, level', () => {
    const p = lib.pointOf(
      {
        at: 5000,
        memory: { total: 100, available: 60 },
        pressure: { level: 'high', available: 40 },
        processes: [
          { role: 'daemon', name: 'headroom', rss: 5 },
          { role: 'runner', name: 'chat', rss: 20 },
        ],
        gpus: [{ index: 0, name: 'g', used: 1, total: 2 }],
      },
      70,
    );
    expect(p).toEqual({
      t: 5,
      total: 100,
      available: 40,
      budget: 70,
      level: 2,
      runners: { chat: 20 },
      gpus: [{ index: 0, used: 1, total: 2 }],
    });
  });

  it('stacks each model on the ones before it and draws its prediction on the same base', () => {
    const points = [point(1, { a: 10 }), point(2, { a: 10, b: 5 }), point(3, { b: 6 })];
    const models = lib.modelsIn(points);
    expect(models).toEqual(['a', 'b']);
    const [x, total, available, budget, stackA, stackB, predA, predB] = lib.chartColumns(
      points,
      models,
      { a: 12, b: 8 },
    );
    expect(x).toEqual([1, 2, 3]);
    expect(total).toEqual([1000 * MiB, 1000 * MiB, 1000 * MiB]);
    expect(available![0]).toBe(500 * MiB);
    expect(budget![0]).toBe(800 * MiB);
    expect(stackA).toEqual([10, 10, 0]);
    expect(stackB).toEqual([10, 15, 6]);
    // A prediction only where the model runs; b's sits on top of a's measured band.
    expect(predA).toEqual([12, 12, null]);
    expect(predB).toEqual([null, 18, 8]);
  });

  it('finds the spans at medium pressure or above', () => {
    const levels = [0, 1, 1, 3, 0, 0, 2];
    const points = levels.map((l, i) => point(i, {}, l));
    expect(lib.pressureSpans(points)).toEqual([
      { from: 1, to: 3, level: 1 },
      { from: 3, to: 4, level: 3 },
      { from: 6, to: 6, level: 2 },
    ]);
  });
});

describe('formatting', () => {
  it('formats bytes, durations, TTL countdowns and the reconnect backoff', () => {
    expect(lib.formatBytes(1536)).toBe('1.5 KiB');
    expect(lib.formatBytes(null)).toBe('–');
    expect(lib.formatMs(850)).toBe('850 ms');
    expect(lib.formatMs(2400)).toBe('2.4 s');
    expect(lib.formatMs(185_000)).toBe('3m 05s');
    expect(lib.formatMs(undefined)).toBe('–');
    expect(lib.countdown(70_000, 'ready', 0)).toBe('1m 10s');
    expect(lib.countdown(null, 'ready', 0)).toBe('never');
    expect(lib.countdown(70_000, 'unloaded', 0)).toBe('–');
    expect([0, 1, 2, 3, 4, 10].map(lib.backoffMs)).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
    expect(lib.savedText({ entries: 2, bytes: 3 * MiB })).toBe('2 · 3.0 MiB');
    expect(lib.savedText({ entries: 0, bytes: 0 })).toBe('–');
    expect(lib.savedText(null)).toBe('–');
  });
});
