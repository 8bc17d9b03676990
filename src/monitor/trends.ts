/**
 * Trends, leak detection and alerts.
 *
 * Per component (the daemon, each runner) the tracker keeps the last window of (time, bytes,
 * idle) points and fits a least-squares line. Memory that grows steadily (slope over the leak
 * rate AND a straight line explains it, r² ≥ 0.8) while the component is idle for the whole
 * window is a leak: an idle runner holds a loaded model and should not grow at all, and an idle
 * daemon's heap saws up and down around a flat line (r² stays low). Bytes are anonymous RSS plus
 * swap: file pages (mmap'd weights) come and go with the page cache and are not a leak.
 *
 * Alerts carry a recommendation a person can act on. The AlertBook de-duplicates them by id
 * (kind + component): an alert is announced when raised or when its severity changes, not on
 * every sample. Pure apart from the clock values passed in.
 */
import { RingBuffer } from './ring.js';

export type AlertSeverity = 'info' | 'warn' | 'critical';

export interface Alert {
  /** Stable for one condition on one component ("leak:runner:chat"), so repeats update it. */
  id: string;
  severity: AlertSeverity;
  kind: 'leak' | 'growth' | 'pressure' | 'oom-kill' | 'oom-score' | 'thermal';
  /** 'daemon', 'runner:<model>', 'system'. */
  component: string;
  message: string;
  recommendation: string;
  /** When first raised and last confirmed (ms since the epoch). */
  since: number;
  at: number;
  data?: Record<string, number | string | boolean>;
}

export interface TrendPoint {
  /** Monotonic milliseconds. */
  t: number;
  bytes: number;
  idle: boolean;
}

export interface Trend {
  /** Bytes per second. */
  slope: number;
  /** Coefficient of determination of the fit, 0–1 (1 when the points are exactly on a line; 0 when flat). */
  r2: number;
  spanSeconds: number;
  points: number;
  /** Growth over the span by the fitted line, bytes. */
  growth: number;
}

/** Least-squares line through the points; undefined with fewer than 2 points or no time span. */
export function linearTrend(points: readonly TrendPoint[]): Trend | undefined {
  const n = points.length;
  if (n < 2) return undefined;
  const t0 = points[0]!.t;
  let sx = 0;
  let sy = 0;
  for (const p of points) {
    sx += (p.t - t0) / 1000;
    sy += p.bytes;
  }
  const mx = sx / n;
  const my = sy / n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (const p of points) {
    const dx = (p.t - t0) / 1000 - mx;
    const dy = p.bytes - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (sxx === 0) return undefined;
  const slope = sxy / sxx;
  const r2 = syy === 0 ? 0 : (sxy * sxy) / (sxx * syy);
  const spanSeconds = (points[n - 1]!.t - t0) / 1000;
  return { slope, r2, spanSeconds, points: n, growth: slope * spanSeconds };
}

export interface TrendOptions {
  windowSeconds: number;
  /** Slope at or above which steady growth while idle is a leak, bytes per second. */
  leakBytesPerSec: number;
  /** Least r² for "steady". Defaults to 0.8. */
  minR2?: number;
  /** Least growth over the window for a leak, bytes. Defaults to 8 MiB. */
  minGrowth?: number;
  /** Time to exhaustion under which a leak is critical, seconds. Defaults to 600. */
  criticalSeconds?: number;
}

export interface ComponentReading {
  /** 'daemon' or 'runner:<model>'. */
  key: string;
  /** Human name: 'the daemon', 'runner "chat" (pid 123)'. */
  label: string;
  /** Identifies one process: a new pid under the same key restarts the series. */
  pid: number;
  bytes: number;
  idle: boolean;
}

interface Series {
  pid: number;
  points: RingBuffer<TrendPoint>;
  seenAt: number;
}

const MiB = 1024 * 1024;
const fmtMiB = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;

/** Per-component series and the leak / growth verdicts over them. */
export class TrendTracker {
  readonly #opts: Required<TrendOptions>;
  readonly #series = new Map<string, Series>();
  /** Points kept per series: enough for the window at a fast interval, bounded regardless. */
  readonly #maxPoints: number;

  constructor(opts: TrendOptions, intervalMs: number) {
    this.#opts = { minR2: 0.8, minGrowth: 8 * MiB, criticalSeconds: 600, ...opts };
    this.#maxPoints = Math.min(
      3600,
      Math.max(10, Math.ceil((opts.windowSeconds * 1000) / intervalMs) + 1),
    );
  }

  /**
   * Adds one sample of every component and returns the alerts that hold now (leaks, growth).
   * `available` is the memory left (bytes) used to judge how soon a leak exhausts it.
   */
  update(
    mono: number,
    wall: number,
    components: readonly ComponentReading[],
    available: number,
  ): Alert[] {
    const alerts: Alert[] = [];
    for (const c of components) {
      let s = this.#series.get(c.key);
      if (!s || s.pid !== c.pid) {
        s = { pid: c.pid, points: new RingBuffer(this.#maxPoints), seenAt: mono };
        this.#series.set(c.key, s);
      }
      s.seenAt = mono;
      s.points.push({ t: mono, bytes: c.bytes, idle: c.idle });
      const a = this.#judge(c, s, wall, available);
      if (a) alerts.push(a);
    }
    // A component not seen in this sample is gone (unloaded): forget its series.
    for (const [k, s] of this.#series) if (s.seenAt !== mono) this.#series.delete(k);
    return alerts;
  }

  /** The current trend of a component over the window, if it has one. */
  trend(key: string, mono: number): Trend | undefined {
    const s = this.#series.get(key);
    return s ? linearTrend(this.#window(s, mono)) : undefined;
  }

  #window(s: Series, mono: number): TrendPoint[] {
    const from = mono - this.#opts.windowSeconds * 1000;
    return s.points.toArray().filter((p) => p.t >= from);
  }

  #judge(c: ComponentReading, s: Series, wall: number, available: number): Alert | undefined {
    const o = this.#opts;
    const pts = this.#window(s, s.seenAt);
    const tr = linearTrend(pts);
    // Half a window at least, so a model filling its KV cache right after a load is not judged early.
    if (!tr || tr.points < 5 || tr.spanSeconds < o.windowSeconds / 2) return undefined;
    if (tr.slope < o.leakBytesPerSec || tr.r2 < o.minR2 || tr.growth < o.minGrowth)
      return undefined;
    const perMin = fmtMiB(tr.slope * 60);
    const minutes = (tr.spanSeconds / 60).toFixed(1);
    const data = {
      slopeBytesPerSec: Math.round(tr.slope),
      r2: Number(tr.r2.toFixed(3)),
      growthBytes: Math.round(tr.growth),
      spanSeconds: Math.round(tr.spanSeconds),
      bytes: c.bytes,
    };
    const isRunner = c.key.startsWith('runner:');
    const model = isRunner ? c.key.slice('runner:'.length) : '';
    if (pts.every((p) => p.idle)) {
      const exhaustSeconds = tr.slope > 0 ? available / tr.slope : Infinity;
      const critical = exhaustSeconds < o.criticalSeconds;
      return {
        id: `leak:${c.key}`,
        severity: critical ? 'critical' : 'warn',
        kind: 'leak',
        component: c.key,
        message:
          `${c.label} grew ${fmtMiB(tr.growth)} in ${minutes} min while idle (+${perMin}/min, steady: r²=${tr.r2.toFixed(2)})` +
          (critical
            ? `; at this rate the free memory (${fmtMiB(available)}) is gone in ${Math.round(exhaustSeconds / 60)} min`
            : ''),
        recommendation: isRunner
          ? `Unload and reload the model (POST /admin/models/${model}/unload, or \`headroom unload ${model}\`); if it recurs, give the model an idle TTL so its runner is recycled, and report it with the runner log (/admin/logs/${model}).`
          : 'Restart headroom at a quiet moment; if the growth recurs, report it with /admin/resources/history attached.',
        since: wall,
        at: wall,
        data: { ...data, exhaustSeconds: Math.round(Math.min(exhaustSeconds, 1e9)) },
      };
    }
    // Growth while serving: expected as a KV cache fills, worth an info line when large.
    if (tr.growth < 8 * o.minGrowth) return undefined;
    return {
      id: `growth:${c.key}`,
      severity: 'info',
      kind: 'growth',
      component: c.key,
      message: `${c.label} grew ${fmtMiB(tr.growth)} in ${minutes} min while serving (+${perMin}/min)`,
      recommendation: isRunner
        ? `Expected while a context fills; if it keeps growing after requests end, unload "${model}" and report it.`
        : 'Expected under load; watch whether it falls back once requests end.',
      since: wall,
      at: wall,
      data,
    };
  }
}

const SEVERITY_RANK: Record<AlertSeverity, number> = { info: 0, warn: 1, critical: 2 };

/**
 * The set of active alerts plus a bounded list of recent ones. `sync(kindScope, alerts)` replaces
 * every active alert of the given kinds with `alerts`: conditions that no longer hold resolve.
 */
export class AlertBook {
  readonly #active = new Map<string, Alert>();
  readonly #recent: RingBuffer<Alert & { resolvedAt?: number }>;

  constructor(recentSize = 100) {
    this.#recent = new RingBuffer(recentSize);
  }

  /**
   * Sets the active alerts of some kinds. Returns the alerts that are new or whose severity
   * changed (to announce); resolved ones are stamped in the recent list.
   */
  sync(kinds: readonly Alert['kind'][], alerts: readonly Alert[], now: number): Alert[] {
    const announce: Alert[] = [];
    const keep = new Set<string>();
    for (const a of alerts) {
      keep.add(a.id);
      const prev = this.#active.get(a.id);
      if (prev && prev.severity === a.severity) {
        this.#active.set(a.id, { ...a, since: prev.since });
        continue;
      }
      const next = prev ? { ...a, since: prev.since } : a;
      this.#active.set(a.id, next);
      this.#recent.push(next);
      announce.push(next);
    }
    for (const [id, a] of this.#active) {
      if (kinds.includes(a.kind) && !keep.has(id)) {
        this.#active.delete(id);
        this.#recent.push({ ...a, resolvedAt: now });
      }
    }
    return announce;
  }

  /** Raises one alert of a kind without resolving others (events such as an OOM kill). */
  raise(a: Alert): Alert | undefined {
    const prev = this.#active.get(a.id);
    this.#active.set(a.id, prev ? { ...a, since: prev.since } : a);
    this.#recent.push(a);
    return a;
  }

  /** Active alerts, most severe first, then newest first. */
  active(): Alert[] {
    return [...this.#active.values()].sort(
      (x, y) => SEVERITY_RANK[y.severity] - SEVERITY_RANK[x.severity] || y.at - x.at,
    );
  }

  /** Raised and resolved alerts, newest last. */
  recent(): Array<Alert & { resolvedAt?: number }> {
    return this.#recent.toArray();
  }
}
