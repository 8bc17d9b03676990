import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { homeLayout, resolveHome } from '../config/home.js';
import { ConfigError, normaliseConfig } from '../config/load.js';
import { createLogger } from '../lib/logger.js';
import { Daemon } from '../main.js';
import { UsageError } from './exit.js';
import { intFlag } from './flags.js';

/** `headroom serve`: runs the daemon until SIGINT or SIGTERM. */
export async function serve(values: Record<string, unknown>): Promise<number> {
  const home = resolveHome();
  const explicit = values.config as string | undefined;
  const file = explicit ? path.resolve(explicit) : homeLayout(home).configFile;
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (explicit || (err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UsageError(`cannot read the config file ${file}: ${(err as Error).message}`);
    }
  }
  let raw: Record<string, unknown>;
  try {
    raw = (parseYaml(text) as Record<string, unknown> | null) ?? {};
  } catch (err) {
    throw new ConfigError(`${file}: YAML syntax error: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof raw !== 'object' || Array.isArray(raw))
    throw new ConfigError(`${file}: the top level must be a mapping of keys`);
  if (values.host !== undefined) raw.host = values.host;
  const port = intFlag(values, 'port');
  if (port !== undefined) raw.port = port;
  const models = values.models as string[] | undefined;
  if (models)
    raw.modelDirs = [
      ...((raw.modelDirs as string[] | undefined) ?? []),
      ...models.map((m) => path.resolve(m)),
    ];
  // The API key: --api-key, else $HEADROOM_API_KEY, else security.apiKey in the file.
  const apiKey = (values['api-key'] as string | undefined) ?? process.env.HEADROOM_API_KEY;
  if (apiKey !== undefined && apiKey !== '') {
    const security = raw.security;
    raw.security = {
      ...(typeof security === 'object' && security !== null ? security : {}),
      apiKey,
    };
  }
  // The daemon refuses a non-loopback bind without a key (server/security.ts).
  const config = normaliseConfig(raw, file);

  const daemon = await Daemon.start({
    config,
    home,
    baseDir: path.dirname(file),
    log: createLogger({ format: config.logFormat }),
  });
  process.stdout.write(
    `headroom listening on ${daemon.url} (models: ${daemon.core.manager.names().join(', ') || 'none'})\n`,
  );
  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) {
        process.stderr.write(`headroom: ${sig} again, exiting now\n`);
        process.exit(130);
      }
      stopping = true;
      daemon.core.log.info({ signal: sig }, 'shutting down');
      void daemon.close().then(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  return 0;
}
