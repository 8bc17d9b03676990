import { formatBytes } from '../config/units.js';
import { HeadroomError } from '../lib/errors.js';
import { UsageError } from './exit.js';
import { callDaemon, daemonUrl } from './http.js';
import { table } from './table.js';

/**
 * `headroom top`: a live view of the daemon, like htop or `ollama ps`: pressure, RAM, the budget
 * with each model's bar, the models table and the last requests, redrawn every interval on a
 * terminal until q or Ctrl-C. With --once, or when stdout is not a terminal, one frame is printed.
 */

interface TopModel {
  name: string;
  state: string;
  inFlight: number;
  queued?: number;
  pinned?: boolean;
  config?: { contextSize: number; parallel: number; kvCacheKeyType: string; engine?: string };
  predicted?: number | null;
  measured?: number | null;
  peak?: number | null;
  expiresAt?: number | null;
}

interface TopRequest {
  startedAt: number;
  model: string;
  endpoint: string;
  outcome: string;
  status: number;
  queuedMs?: number;
  loadMs?: number;
  ttftMs?: number;
  generationTokensPerS?: number;
  durationMs: number;
}

interface TopSample {
  memory: { total: number; available: number; swapTotal: number; swapUsed: number };
  pressure: { level: string; available: number; reasons: string[] };
  gpus: Array<{ index: number; name: string; total: number; used: number }>;
}

interface TopAlert {
  severity: string;
  component: string;
  message: string;
  recommendation: string;
}

/** What one frame shows; read from the admin API. */
export interface TopSnapshot {
  url: string;
  at: number;
  models: TopModel[];
  budget: number | null;
  reserved: number;
  measured: number;
  /** Absent when the monitor is off. */
  sample?: TopSample;
  level?: string;
  requests: TopRequest[];
  /** Active alerts (none when the monitor is off). */
  alerts?: TopAlert[];
}

/** A monitor route's answer, or undefined when the monitor is off (503). */
const unlessMonitorOff = (err: unknown): undefined => {
  if (err instanceof HeadroomError && err.status === 503) return undefined;
  throw err;
};

export async function readSnapshot(url: string): Promise<TopSnapshot> {
  const [models, resources, history, requests, alerts] = await Promise.all([
    callDaemon<{ models: TopModel[] }>(url, 'GET', '/admin/models'),
    callDaemon<{ budget: number | null; reserved: number; measured: number }>(
      url,
      'GET',
      '/admin/resources',
    ),
    callDaemon<{ level: string; samples: TopSample[] }>(
      url,
      'GET',
      '/admin/resources/history?limit=1',
    ).catch(unlessMonitorOff),
    callDaemon<{ requests: TopRequest[] }>(url, 'GET', '/admin/requests?limit=5'),
    callDaemon<{ active: TopAlert[] }>(url, 'GET', '/admin/alerts').catch(unlessMonitorOff),
  ]);
  const sample = history?.samples.at(-1);
  return {
    url,
    at: Date.now(),
    models: models.models,
    budget: resources.budget,
    reserved: resources.reserved,
    measured: resources.measured,
    ...(sample ? { sample } : {}),
    ...(history ? { level: history.level } : {}),
    requests: requests.requests,
    ...(alerts ? { alerts: alerts.active } : {}),
  };
}

const b = (n: number | null | undefined): string =>
  n === null || n === undefined ? '-' : formatBytes(n);

const ms = (n: number | undefined): string =>
  n === undefined ? '-' : n < 1000 ? `${Math.round(n)}ms` : `${(n / 1000).toFixed(1)}s`;

/** A bar of `width` cells filled to `part / whole` (clamped). */
export function bar(part: number, whole: number, width: number): string {
  const cells = Math.max(1, width);
  // Anything above zero shows as at least one cell, so a small model is still seen.
  const filled =
    whole > 0 && Number.isFinite(whole) && part > 0
      ? Math.min(cells, Math.max(1, Math.round((part / whole) * cells)))
      : 0;
  return `[${'█'.repeat(filled)}${'░'.repeat(cells - filled)}]`;
}

function ttl(m: TopModel, now: number): string {
  if (m.state !== 'ready' && m.state !== 'draining') return '-';
  if (m.pinned) return 'pinned';
  if (m.expiresAt === null || m.expiresAt === undefined) return 'never';
  const s = Math.max(0, Math.round((m.expiresAt - now) / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** One frame as text, `width` columns wide (bars shrink to fit; tables are not cut). */
export function renderTop(s: TopSnapshot, width = 100): string {
  const out: string[] = [];
  const level = s.level ?? s.sample?.pressure.level;
  const head = [`headroom ${s.url}`, `pressure ${level ?? 'unknown (monitor off)'}`];
  if (s.sample) {
    const m = s.sample.memory;
    head.push(`RAM ${b(s.sample.pressure.available)} available of ${b(m.total)}`);
    if (m.swapTotal > 0) head.push(`swap ${b(m.swapUsed)} of ${b(m.swapTotal)}`);
  }
  out.push(head.join(' · '));
  if (s.sample && s.sample.pressure.reasons.length > 0 && level !== 'low')
    out.push(`  why: ${s.sample.pressure.reasons.join('; ')}`);

  const used = s.measured + s.reserved;
  const label = (name: string): string => name.slice(0, 18).padEnd(18);
  const barWidth = Math.max(10, Math.min(50, width - 18 - 40));
  out.push('');
  if (s.budget !== null) {
    out.push(
      `${label('budget')} ${bar(used, s.budget, barWidth)} ${b(used)} of ${b(s.budget)}` +
        (s.reserved > 0 ? ` (${b(s.reserved)} reserved by loads)` : ''),
    );
    for (const m of s.models) {
      if (m.state === 'unloaded' || m.state === 'failed') continue;
      const bytes = m.measured ?? m.predicted ?? 0;
      out.push(
        `${label(`  ${m.name}`)} ${bar(bytes, s.budget, barWidth)} ${b(m.measured)}` +
          ` (predicted ${b(m.predicted)}${m.peak ? `, peak ${b(m.peak)}` : ''})`,
      );
    }
  } else out.push(`budget: none (unlimited) · ${b(used)} used by models`);
  for (const g of s.sample?.gpus ?? [])
    out.push(
      `${label(`GPU ${g.index}`)} ${bar(g.used, g.total, barWidth)} ${b(g.used)} of ${b(g.total)} (${g.name})`,
    );

  for (const a of s.alerts ?? []) {
    out.push('');
    out.push(`! ${a.severity} ${a.component}: ${a.message}`);
    out.push(`  → ${a.recommendation}`);
  }

  out.push('');
  out.push(
    table(
      [
        'NAME',
        'STATE',
        'ENGINE',
        'CTX',
        'PAR',
        'KV',
        'PREDICTED',
        'RSS',
        'PEAK',
        'REQS',
        'QUEUED',
        'TTL',
      ],
      s.models.map((m) => [
        m.name,
        m.state,
        m.config?.engine ?? '-',
        m.config ? String(m.config.contextSize) : '-',
        m.config ? String(m.config.parallel) : '-',
        m.config?.kvCacheKeyType ?? '-',
        b(m.predicted),
        b(m.measured),
        b(m.peak),
        String(m.inFlight),
        String(m.queued ?? 0),
        ttl(m, s.at),
      ]),
    ),
  );
  if (s.requests.length > 0) {
    out.push('');
    out.push(
      table(
        ['AT', 'MODEL', 'ENDPOINT', 'OUTCOME', 'QUEUE', 'LOAD', 'TTFT', 'TOK/S', 'TOTAL'],
        s.requests.map((r) => [
          new Date(r.startedAt).toLocaleTimeString(),
          r.model,
          r.endpoint,
          r.outcome === 'error' ? `error ${r.status}` : r.outcome,
          ms(r.queuedMs),
          ms(r.loadMs),
          ms(r.ttftMs),
          r.generationTokensPerS === undefined ? '-' : r.generationTokensPerS.toFixed(1),
          ms(r.durationMs),
        ]),
      ),
    );
  }
  return out.join('\n') + '\n';
}

const ALT_SCREEN = '\x1b[?1049h\x1b[?25l';
const MAIN_SCREEN = '\x1b[?25h\x1b[?1049l';
const HOME_CLEAR = '\x1b[H\x1b[2J';

export async function top(values: Record<string, unknown>): Promise<number> {
  const url = daemonUrl(values.url as string | undefined);
  const intervalText = (values.interval as string | undefined) ?? '1';
  const interval = Number(intervalText);
  if (!Number.isFinite(interval) || interval < 0.2 || interval > 3600)
    throw new UsageError(`--interval must be seconds between 0.2 and 3600, got "${intervalText}"`);
  const out = process.stdout;
  if (values.once === true || !out.isTTY) {
    out.write(renderTop(await readSnapshot(url), out.columns ?? 100));
    return 0;
  }
  // The first read fails fast (daemon down) before the screen is taken over.
  let frame = renderTop(await readSnapshot(url), out.columns);
  const stdin = process.stdin;
  return new Promise<number>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      process.off('SIGINT', finish);
      process.off('SIGTERM', finish);
      out.off('resize', draw);
      if (stdin.isTTY) {
        stdin.off('data', onKey);
        stdin.setRawMode(false);
        stdin.pause();
      }
      out.write(MAIN_SCREEN);
      resolve(0);
    };
    function draw(): void {
      if (!done) out.write(HOME_CLEAR + frame);
    }
    const onKey = (key: Buffer): void => {
      const k = key.toString();
      if (k === 'q' || k === 'Q' || k === '\x03' || k === '\x1b') finish();
    };
    const tick = async (): Promise<void> => {
      try {
        frame = renderTop(await readSnapshot(url), out.columns);
      } catch (err) {
        frame = `headroom ${url}: ${(err as Error).message}\n(retrying; q to quit)\n`;
      }
      draw();
      if (!done) timer = setTimeout(() => void tick(), interval * 1000);
    };
    out.write(ALT_SCREEN);
    draw();
    process.on('SIGINT', finish);
    process.on('SIGTERM', finish);
    out.on('resize', draw);
    if (stdin.isTTY) {
      stdin.setRawMode(true);
      stdin.resume();
      stdin.on('data', onKey);
    }
    timer = setTimeout(() => void tick(), interval * 1000);
  });
}
