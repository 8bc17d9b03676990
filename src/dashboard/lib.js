// The dashboard's pure parts: ring buffer, event-stream parser, chart series, formatting.
// No DOM here, so the unit tests run them in Node (lib.test.ts).

/** A fixed-capacity buffer: pushing past capacity drops the oldest item, so memory stays flat. */
export class Ring {
  /** @param {number} capacity */
  constructor(capacity) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be ≥ 1');
    this.capacity = capacity;
    /** @type {unknown[]} */
    this.items = new Array(capacity);
    this.start = 0;
    this.length = 0;
  }

  push(item) {
    if (this.length < this.capacity) {
      this.items[(this.start + this.length) % this.capacity] = item;
      this.length++;
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** The newest item, or undefined when empty. */
  last() {
    return this.length === 0
      ? undefined
      : this.items[(this.start + this.length - 1) % this.capacity];
  }

  /** Oldest first. */
  toArray() {
    const out = new Array(this.length);
    for (let i = 0; i < this.length; i++) out[i] = this.items[(this.start + i) % this.capacity];
    return out;
  }

  clear() {
    this.items = new Array(this.capacity);
    this.start = 0;
    this.length = 0;
  }
}

/**
 * Incremental server-sent-events parser: feed it text chunks as they arrive, get whole events
 * back. Comments (`: keep-alive`) are dropped. The unfinished tail is kept, but never more than
 * `maxPending` characters (a stream that never ends an event cannot grow the page's memory).
 */
export class SseParser {
  constructor(maxPending = 4 * 1024 * 1024) {
    this.buffer = '';
    this.maxPending = maxPending;
  }

  /** @returns {{ event: string, data: string }[]} */
  push(chunk) {
    this.buffer += chunk.replace(/\r\n?/g, '\n');
    const parts = this.buffer.split('\n\n');
    this.buffer = parts.pop() ?? '';
    if (this.buffer.length > this.maxPending) this.buffer = '';
    const events = [];
    for (const part of parts) {
      let event = 'message';
      const data = [];
      for (const line of part.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) events.push({ event, data: data.join('\n') });
    }
    return events;
  }
}

export const LEVELS = ['low', 'medium', 'high', 'critical'];

/**
 * One chart point from a monitor sample: seconds since the epoch, RAM total and available, the
 * budget known then, the pressure level (0–3), each runner's RSS by model and each GPU's memory.
 */
export function pointOf(sample, budget) {
  const runners = {};
  for (const p of sample.processes ?? []) if (p.role === 'runner') runners[p.name] = p.rss;
  return {
    t: sample.at / 1000,
    total: sample.memory.total,
    available: sample.pressure?.available ?? sample.memory.available,
    budget: budget ?? null,
    level: Math.max(0, LEVELS.indexOf(sample.pressure?.level ?? 'low')),
    runners,
    gpus: (sample.gpus ?? []).map((g) => ({ index: g.index, used: g.used, total: g.total })),
  };
}

/** Model names seen in the points, in first-seen order (stable stacking order). */
export function modelsIn(points) {
  const seen = new Set();
  for (const p of points) for (const name of Object.keys(p.runners)) seen.add(name);
  return [...seen];
}

/**
 * uPlot's columns for the memory chart: x, total, available, budget, then per model its measured
 * RSS stacked on the models before it, then per model the top of its predicted footprint on the
 * same base (so a model's prediction is drawn beside its measured band). A model without a runner
 * at a point adds nothing to the stack there (its band has no gap; its prediction line has one).
 * `predicted` maps model → predicted bytes (the plan of its current runner).
 */
export function chartColumns(points, models, predicted) {
  const n = points.length;
  const x = new Array(n);
  const total = new Array(n);
  const available = new Array(n);
  const budget = new Array(n);
  const stacks = models.map(() => new Array(n));
  const preds = models.map(() => new Array(n));
  for (let i = 0; i < n; i++) {
    const p = points[i];
    x[i] = p.t;
    total[i] = p.total;
    available[i] = p.available;
    budget[i] = p.budget;
    let base = 0;
    models.forEach((m, j) => {
      const rss = p.runners[m];
      const pred = predicted[m];
      preds[j][i] = rss !== undefined && pred !== undefined && pred !== null ? base + pred : null;
      base += rss ?? 0;
      stacks[j][i] = base;
    });
  }
  return [x, total, available, budget, ...stacks, ...preds];
}

/** Spans of time at medium pressure or above: [{ from, to, level }] in the points' seconds. */
export function pressureSpans(points) {
  const spans = [];
  let open;
  for (let i = 0; i < points.length; i++) {
    const p = points[i];
    if (open && open.level === p.level) {
      open.to = p.t;
      continue;
    }
    if (open) {
      open.to = p.t;
      spans.push(open);
      open = undefined;
    }
    if (p.level > 0) open = { from: p.t, to: p.t, level: p.level };
  }
  if (open) spans.push(open);
  return spans;
}

/** 1536 → "1.5 KiB"; null → "–". */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Math.abs(bytes);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const s = i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1);
  return `${bytes < 0 ? '-' : ''}${s} ${units[i]}`;
}

/** Milliseconds → "850 ms", "2.4 s", "3m 05s"; null → "–". */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
}

/** The TTL countdown of a model: "4m 10s", "never" when it does not expire, "–" when unloaded. */
export function countdown(expiresAt, state, now) {
  if (state !== 'ready' && state !== 'draining') return '–';
  if (expiresAt === null || expiresAt === undefined) return 'never';
  const s = Math.max(0, Math.round((expiresAt - now) / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** A model's conversations saved on disk: "2 · 31.0 MiB", "–" when there are none. */
export function savedText(saved) {
  return saved && saved.entries > 0 ? `${saved.entries} · ${formatBytes(saved.bytes)}` : '–';
}

/** Delay before the next reconnect attempt: 0.5 s doubling to 5 s. */
export function backoffMs(attempt) {
  return Math.min(5000, 500 * 2 ** Math.max(0, attempt));
}
