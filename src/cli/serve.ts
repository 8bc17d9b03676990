import path from 'node:path';
import { readConfigFile } from '../config/file.js';
import { homeLayout, resolveHome } from '../config/home.js';
import { createLogger } from '../lib/logger.js';
import { Daemon } from '../main.js';
import { intFlag } from './flags.js';

/** `headroom serve`: runs the daemon until SIGINT or SIGTERM. */
export async function serve(values: Record<string, unknown>): Promise<number> {
  const home = resolveHome();
  const explicit = values.config as string | undefined;
  const file = explicit ? path.resolve(explicit) : homeLayout(home).configFile;
  const port = intFlag(values, 'port');
  const models = values.models as string[] | undefined;
  // The API key: --api-key, else $HEADROOM_API_KEY, else security.apiKey in the file.
  const apiKey = (values['api-key'] as string | undefined) ?? process.env.HEADROOM_API_KEY;
  // The command line over the file, applied again on every reload of the file.
  const override = (raw: Record<string, unknown>): void => {
    if (values.host !== undefined) raw.host = values.host;
    if (port !== undefined) raw.port = port;
    if (models)
      raw.modelDirs = [
        ...((raw.modelDirs as string[] | undefined) ?? []),
        ...models.map((m) => path.resolve(m)),
      ];
    if (apiKey !== undefined && apiKey !== '') {
      const security = raw.security;
      raw.security = {
        ...(typeof security === 'object' && security !== null ? security : {}),
        apiKey,
      };
    }
  };
  // The daemon refuses a non-loopback bind without a key (server/security.ts).
  const config = await readConfigFile(file, { required: explicit !== undefined, override });

  const daemon = await Daemon.start({
    config,
    home,
    baseDir: path.dirname(file),
    log: createLogger({ format: config.logFormat }),
    configFile: { path: file, override },
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
    process.on('SIGHUP', () => void daemon.reload('SIGHUP'));
  });
  return 0;
}
