import { describe, expect, it } from 'vitest';
import { AlertBook, TrendTracker, linearTrend, type Alert, type TrendPoint } from './trends.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('linearTrend', () => {
  it('fits slope (bytes/s) and r²', () => {
    const pts: TrendPoint[] = [0, 1, 2, 3].map((s) => ({
      t: s * 1000,
      bytes: 100 + 10 * s,
      idle: true,
    }));
    expect(linearTrend(pts)).toEqual({ slope: 10, r2: 1, spanSeconds: 3, points: 4, growth: 30 });
    const flat = linearTrend(pts.map((p) => ({ ...p, bytes: 5 })));
    expect(flat).toMatchObject({ slope: 0, r2: 0 });
    expect(linearTrend(pts.slice(0, 1))).toBeUndefined();
    expect(linearTrend([pts[0]!, pts[0]!])).toBeUndefined();
  });
});

/** Feeds `seconds` samples at 1 s of one component whose bytes follow `f(second)`. */
function feed(
  tracker: TrendTracker,
  seconds: number,
  f: (s: number) => number,
  opts: { idle?: (s: number) => boolean; key?: string; pid?: number; available?: number } = {},
): Alert[] {
  let last: Alert[] = [];
  for (let s = 0; s < seconds; s++) {
    last = tracker.update(
      s * 1000,
      1_700_000_000_000 + s * 1000,
      [
        {
          key: opts.key ?? 'runner:chat',
          label: 'runner "chat" (pid 42)',
          pid: opts.pid ?? 42,
          bytes: f(s),
          idle: opts.idle?.(s) ?? true,
        },
      ],
      opts.available ?? 16 * GiB,
    );
  }
  return last;
}

const OPTS = { windowSeconds: 120, leakBytesPerSec: MiB / 60 };

describe('TrendTracker', () => {
  it('flags steady growth while idle as a leak with a recommendation', () => {
    const t = new TrendTracker(OPTS, 1000);
    // 200 MiB, +6 MiB/min with a little noise.
    const alerts = feed(t, 120, (s) => 200 * MiB + s * 0.1 * MiB + (s % 3) * 64 * 1024);
    expect(alerts).toHaveLength(1);
    const a = alerts[0]!;
    expect(a).toMatchObject({ id: 'leak:runner:chat', kind: 'leak', severity: 'warn' });
    expect(a.message).toMatch(
      /^runner "chat" \(pid 42\) grew 11\.\d MiB in 2\.0 min while idle \(\+6\.0 MiB\/min, steady/,
    );
    expect(a.recommendation).toContain('POST /admin/models/chat/unload');
    expect(t.trend('runner:chat', 119_000)?.slope).toBeCloseTo(0.1 * MiB, -3);
  });

  it('makes a leak critical when it would exhaust the free memory within 10 minutes', () => {
    const t = new TrendTracker(OPTS, 1000);
    const alerts = feed(t, 120, (s) => 200 * MiB + s * MiB, { available: 300 * MiB });
    expect(alerts[0]).toMatchObject({ severity: 'critical' });
    expect(alerts[0]!.message).toMatch(/gone in 5 min/);
  });

  it('does not flag a flat sawtooth (a garbage-collected heap), a short series, or slow growth', () => {
    const saw = new TrendTracker(OPTS, 1000);
    expect(feed(saw, 120, (s) => 60 * MiB + (s % 20) * MiB)).toEqual([]);
    const short = new TrendTracker(OPTS, 1000);
    expect(feed(short, 50, (s) => 60 * MiB + s * MiB)).toEqual([]);
    const slow = new TrendTracker(OPTS, 1000);
    expect(feed(slow, 120, (s) => 60 * MiB + s * 4096)).toEqual([]);
  });

  it('reports growth while serving as info only when large, never as a leak', () => {
    const t = new TrendTracker(OPTS, 1000);
    const busy = feed(t, 120, (s) => 200 * MiB + s * MiB, { idle: (s) => s % 10 !== 0 });
    expect(busy).toEqual([
      expect.objectContaining({ id: 'growth:runner:chat', severity: 'info', kind: 'growth' }),
    ]);
    const small = new TrendTracker(OPTS, 1000);
    expect(feed(small, 120, (s) => 200 * MiB + s * 0.2 * MiB, { idle: () => false })).toEqual([]);
  });

  it('restarts the series when the component gets a new pid (a reload) and forgets gone ones', () => {
    const t = new TrendTracker(OPTS, 1000);
    feed(t, 100, (s) => 200 * MiB + s * MiB);
    // Reloaded: a fresh process, so 30 s of history is not enough to judge.
    expect(feed(t, 30, (s) => 300 * MiB + s * MiB, { pid: 43 })).toEqual([]);
    t.update(200_000, 0, [], GiB);
    expect(t.trend('runner:chat', 200_000)).toBeUndefined();
  });
});

describe('AlertBook', () => {
  const alert = (id: string, severity: Alert['severity'], at: number): Alert => ({
    id,
    severity,
    kind: 'leak',
    component: 'daemon',
    message: id,
    recommendation: 'r',
    since: at,
    at,
  });

  it('announces an alert once, again on a severity change, and resolves it when it stops holding', () => {
    const book = new AlertBook(10);
    expect(book.sync(['leak'], [alert('a', 'warn', 1)], 1)).toHaveLength(1);
    expect(book.sync(['leak'], [alert('a', 'warn', 2)], 2)).toEqual([]);
    expect(book.active()).toEqual([{ ...alert('a', 'warn', 2), since: 1 }]);
    const changed = book.sync(['leak'], [alert('a', 'critical', 3)], 3);
    expect(changed).toEqual([{ ...alert('a', 'critical', 3), since: 1 }]);
    expect(book.sync(['leak'], [], 4)).toEqual([]);
    expect(book.active()).toEqual([]);
    expect(book.recent().map((a) => [a.severity, a.resolvedAt])).toEqual([
      ['warn', undefined],
      ['critical', undefined],
      ['critical', 4],
    ]);
  });

  it('leaves alerts of other kinds alone and orders active ones by severity', () => {
    const book = new AlertBook(10);
    book.raise({ ...alert('oom', 'critical', 1), kind: 'oom-kill' });
    book.sync(['leak'], [alert('a', 'warn', 5)], 5);
    book.sync(['leak'], [alert('a', 'warn', 6)], 6);
    expect(book.active().map((a) => a.id)).toEqual(['oom', 'a']);
  });
});
