/** Parsing of the human units used in config and flags. Pure. */

const durationUnits: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** `"5m"` → 300000; a number is taken as milliseconds; `"never"` → Infinity. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  if (value === 'never') return Number.POSITIVE_INFINITY;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim());
  if (!m)
    throw new RangeError(
      `"${value}" is not a duration (use e.g. "500ms", "30s", "5m", "1h" or "never")`,
    );
  return Math.round(Number(m[1]) * durationUnits[m[2]!]!);
}

const sizeUnits: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
  t: 1e12,
  tb: 1e12,
  tib: 1024 ** 4,
};

/** `"8GB"` → 8e9, `"512MiB"` → 536870912; a number is taken as bytes. */
export function parseByteSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m ? sizeUnits[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined)
    throw new RangeError(`"${value}" is not a size (use e.g. "512MB", "8GiB")`);
  return Math.round(Number(m[1]) * unit);
}

/** 1536 → "1.5 KiB"; for tables and messages. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const abs = Math.abs(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = abs;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const s = i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : 1);
  return `${bytes < 0 ? '-' : ''}${s} ${units[i]}`;
}
