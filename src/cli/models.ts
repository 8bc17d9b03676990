import { formatBytes } from '../config/units.js';
import { DaemonUnreachableError, UsageError } from './exit.js';
import { callDaemon, daemonUrl, streamDaemon } from './http.js';
import { loadProgress } from './progress.js';
import { intFlag } from './flags.js';
import { table } from './table.js';

interface ModelRow {
  name: string;
  state: string;
  inFlight: number;
  queued?: number;
  pinned?: boolean;
  pid?: number;
  config?: { contextSize: number; parallel: number; kvCacheKeyType: string; engine?: string };
  predicted?: number | null;
  measured?: number | null;
  peak?: number | null;
  expiresAt?: number | null;
  loadMs?: number;
  lastError?: string;
  source?: { kind: string };
  savedState?: { entries: number; bytes: number } | null;
}

const bytes = (n: number | null | undefined): string =>
  n === null || n === undefined ? '-' : formatBytes(n);

/** "4m 10s" until the TTL unloads it; "-" when it does not expire. */
function expiresIn(at: number | null | undefined, now: number): string {
  if (at === null || at === undefined) return '-';
  const s = Math.max(0, Math.round((at - now) / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

function rowsOf(models: ModelRow[]): string[][] {
  const now = Date.now();
  return models.map((m) => [
    m.name + (m.pinned ? ' (pinned)' : ''),
    m.state,
    m.config?.engine ?? '-',
    String(m.inFlight),
    String(m.queued ?? 0),
    m.pid !== undefined ? String(m.pid) : '-',
    m.config ? String(m.config.contextSize) : '-',
    m.config ? m.config.kvCacheKeyType : '-',
    bytes(m.predicted),
    bytes(m.measured),
    bytes(m.peak),
    expiresIn(m.expiresAt, now),
    m.savedState?.entries ? `${m.savedState.entries} · ${formatBytes(m.savedState.bytes)}` : '-',
    m.source?.kind ?? 'headroom',
  ]);
}

const HEADERS = [
  'NAME',
  'STATE',
  'ENGINE',
  'IN FLIGHT',
  'QUEUED',
  'PID',
  'CONTEXT',
  'KV',
  'PREDICTED',
  'RSS',
  'PEAK',
  'EXPIRES IN',
  'SAVED',
  'SOURCE',
];

function print(values: Record<string, unknown>, data: unknown, models: ModelRow[]): void {
  process.stdout.write(
    values.json ? JSON.stringify(data, null, 2) + '\n' : table(HEADERS, rowsOf(models)) + '\n',
  );
}

function nameArg(positionals: string[], command: string): string {
  const name = positionals[0];
  if (!name)
    throw new UsageError(`headroom ${command} needs a model name (headroom ps lists them)`);
  return encodeURIComponent(name);
}

export async function ps(values: Record<string, unknown>): Promise<number> {
  const data = await callDaemon<{ models: ModelRow[] }>(
    daemonUrl(values.url as string | undefined),
    'GET',
    '/admin/models',
  );
  print(values, data, data.models);
  return 0;
}

/** The optional config of `headroom load` (--ctx, --kv, --parallel), checked before any request. */
function loadBody(values: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  // Range checks are the daemon's: it answers 400 naming the field.
  const ctx = intFlag(values, 'ctx');
  if (ctx !== undefined) body.contextSize = ctx;
  const parallel = intFlag(values, 'parallel');
  if (parallel !== undefined) body.parallel = parallel;
  const kv = values.kv as string | undefined;
  if (kv !== undefined) {
    if (!['f16', 'q8_0', 'q4_0'].includes(kv))
      throw new UsageError(`--kv must be f16, q8_0 or q4_0, not "${kv}"`);
    body.kv = kv;
  }
  return body;
}

export async function load(
  values: Record<string, unknown>,
  positionals: string[],
): Promise<number> {
  const url = daemonUrl(values.url as string | undefined);
  const name = nameArg(positionals, 'load');
  const body = loadBody(values);
  // The progress line goes to stderr, and only to a terminal: stdout stays the table or JSON.
  const progress =
    values.json !== true && process.stderr.isTTY
      ? loadProgress(process.stderr, decodeURIComponent(name), () =>
          callDaemon<ModelRow>(url, 'GET', `/admin/models/${name}`),
        )
      : undefined;
  try {
    const m = await callDaemon<ModelRow>(url, 'POST', `/admin/models/${name}/load`, body);
    progress?.done(m);
    print(values, m, [m]);
  } catch (err) {
    progress?.failed();
    throw err;
  }
  return 0;
}

export async function unload(
  values: Record<string, unknown>,
  positionals: string[],
): Promise<number> {
  const m = await callDaemon<ModelRow>(
    daemonUrl(values.url as string | undefined),
    'POST',
    `/admin/models/${nameArg(positionals, 'unload')}/unload`,
    {
      force: values.force === true,
    },
  );
  print(values, m, [m]);
  return 0;
}

export async function logs(
  values: Record<string, unknown>,
  positionals: string[],
): Promise<number> {
  const bytes = intFlag(values, 'bytes') ?? 16384;
  const url = daemonUrl(values.url as string | undefined);
  const path = `/admin/logs/${nameArg(positionals, 'logs')}?bytes=${bytes}`;
  if (values.follow !== true) {
    process.stdout.write(await callDaemon<string>(url, 'GET', path));
    return 0;
  }
  // Follows until Ctrl-C (exit 0) or until the daemon goes away (an error).
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const res = await streamDaemon(url, `${path}&follow=true`, stop.signal);
    if (!res.body) return 0;
    for await (const chunk of res.body) {
      if (!process.stdout.write(chunk as Uint8Array))
        await new Promise((r) => process.stdout.once('drain', r));
    }
    throw new DaemonUnreachableError(`the daemon at ${url} closed the log stream (it stopped?)`);
  } catch (err) {
    if (stop.signal.aborted) return 0;
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
