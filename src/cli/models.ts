import { formatBytes } from '../config/units.js';
import { UsageError } from './exit.js';
import { callDaemon, daemonUrl } from './http.js';
import { intFlag } from './main.js';
import { table } from './table.js';

interface ModelRow {
  name: string;
  state: string;
  inFlight: number;
  pid?: number;
  config?: { contextSize: number; kvCacheKeyType: string };
  memory?: { measured?: { rss: number } };
  lastError?: string;
}

function rowsOf(models: ModelRow[]): string[][] {
  return models.map((m) => [
    m.name,
    m.state,
    String(m.inFlight),
    m.pid !== undefined ? String(m.pid) : '-',
    m.config ? String(m.config.contextSize) : '-',
    m.config ? m.config.kvCacheKeyType : '-',
    m.memory?.measured ? formatBytes(m.memory.measured.rss) : '-',
  ]);
}

const HEADERS = ['NAME', 'STATE', 'IN FLIGHT', 'PID', 'CONTEXT', 'KV', 'RSS'];

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

export async function load(
  values: Record<string, unknown>,
  positionals: string[],
): Promise<number> {
  const m = await callDaemon<ModelRow>(
    daemonUrl(values.url as string | undefined),
    'POST',
    `/admin/models/${nameArg(positionals, 'load')}/load`,
    {},
  );
  print(values, m, [m]);
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
  const text = await callDaemon<string>(
    daemonUrl(values.url as string | undefined),
    'GET',
    `/admin/logs/${nameArg(positionals, 'logs')}?bytes=${bytes}`,
  );
  process.stdout.write(text);
  return 0;
}
