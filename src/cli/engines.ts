import { BACKENDS, type Backend, type BuildHow } from '../engines/llama-server/build.js';
import { ExitCode, UsageError } from './exit.js';
import { table } from './table.js';

/**
 * `headroom engines`: which engines this install can run and where they come from, without a
 * daemon. `headroom engines build` (re)builds llama-server from node-llama-cpp's llama.cpp source
 * into the engine cache, showing its progress on stderr.
 */

const RECIPES: readonly BuildHow[] = ['prebuilt-libs', 'full-source'];

interface EngineRow {
  name: string;
  available: boolean;
  version?: string;
  backend?: string;
  obtained?: string;
  path?: string;
  reason?: string;
  fix?: string;
  [k: string]: unknown;
}

export async function engines(
  values: Record<string, unknown>,
  positionals: string[],
): Promise<number> {
  const [sub, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  if (sub === 'build') return build(values);
  if (sub !== undefined && sub !== 'list')
    throw new UsageError(
      `unknown engines command "${sub}": use \`headroom engines\` or \`headroom engines build\``,
    );
  return list(values);
}

async function list(values: Record<string, unknown>): Promise<number> {
  const { resolveLlamaServer } = await import('../engines/llama-server/binary.js');
  const { nodeLlamaCppPackage } = await import('../engines/llama-server/source.js');
  const rows: EngineRow[] = [];
  const r = await resolveLlamaServer();
  if (r.unavailable)
    rows.push({ name: 'llama-server', available: false, reason: r.reason, fix: r.fix });
  else
    rows.push({
      name: 'llama-server',
      available: true,
      version: r.version.replace(/^version:\s*/i, ''),
      backend: r.backend,
      obtained: r.obtained,
      ...(r.how ? { how: r.how } : {}),
      path: r.path,
    });
  try {
    const pkg = nodeLlamaCppPackage();
    rows.push({
      name: 'embedded',
      available: true,
      version: `node-llama-cpp ${pkg.version} (llama.cpp ${pkg.tag})`,
      backend: 'auto',
      obtained: 'npm',
      path: pkg.dir,
    });
  } catch (err) {
    rows.push({
      name: 'embedded',
      available: false,
      reason: `node-llama-cpp is not installed: ${(err as Error).message}`,
      fix: 'run `npm install` in headroom',
    });
  }
  if (values.json === true) {
    process.stdout.write(JSON.stringify({ engines: rows }, null, 2) + '\n');
    return ExitCode.ok;
  }
  process.stdout.write(
    table(
      ['ENGINE', 'STATUS', 'VERSION', 'BACKEND', 'FROM', 'PATH'],
      rows.map((e) => [
        e.name,
        e.available ? 'ready' : 'unavailable',
        e.version ?? '-',
        e.backend ?? '-',
        e.obtained ? `${e.obtained}${e.how ? ` (${String(e.how)})` : ''}` : '-',
        e.path ?? '-',
      ]),
    ) + '\n',
  );
  for (const e of rows.filter((x) => !x.available))
    process.stdout.write(`\n${e.name}: ${e.reason}\n  to fix: ${e.fix}\n`);
  return ExitCode.ok;
}

async function build(values: Record<string, unknown>): Promise<number> {
  const backend = values.backend as string | undefined;
  if (backend !== undefined && !BACKENDS.includes(backend as Backend))
    throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}, got "${backend}"`);
  const recipe = values.recipe as string | undefined;
  if (recipe !== undefined && !RECIPES.includes(recipe as BuildHow))
    throw new UsageError(`--recipe must be one of ${RECIPES.join(', ')}, got "${recipe}"`);

  const { buildLlamaServer } = await import('../engines/llama-server/builder.js');
  const { buildReporter } = await import('../engines/llama-server/report.js');
  const reporter = buildReporter(process.stderr);
  const ac = new AbortController();
  const onSignal = (): void => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const r = await buildLlamaServer({
      backend: backend as Backend | undefined,
      only: recipe as BuildHow | undefined,
      force: values.force === true,
      signal: ac.signal,
      onEvent: reporter.onEvent,
    });
    reporter.end();
    if (values.json === true) process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    if (!r.ok) {
      if (values.json !== true)
        process.stderr.write(
          `llama-server: build failed: ${r.failure.reason}\n${r.failure.logTail ? `--- log tail ---\n${r.failure.logTail}\n---\n` : ''}to fix: ${r.failure.fix}\n`,
        );
      return ExitCode.failure;
    }
    if (values.json !== true)
      process.stdout.write(
        `${r.binary}\n${r.manifest.version} (${r.manifest.backend}, ${r.manifest.how}${r.reused ? ', cached' : `, ${r.manifest.buildSeconds} s`})\n`,
      );
    return ExitCode.ok;
  } finally {
    reporter.end();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
