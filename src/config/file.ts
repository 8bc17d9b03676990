import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { ConfigError, normaliseConfig, type Config } from './load.js';

/**
 * Reading the config file: `headroom serve` at start, the daemon on every reload, and
 * `headroom config validate`. One function, so a reload reads the file exactly as the start did
 * (the same command-line overrides applied on top).
 */

export interface ConfigFileOptions {
  /** A missing file is an error (a file named on the command line); else it is an empty config. */
  required?: boolean;
  /** Changes the parsed YAML before validation (the command line's flags). */
  override?: (raw: Record<string, unknown>) => void;
}

/** Reads, parses and validates a config file. Throws ConfigError naming the file and each key. */
export async function readConfigFile(file: string, opts: ConfigFileOptions = {}): Promise<Config> {
  let text = '';
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (opts.required || (err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new ConfigError(`cannot read the config file ${file}: ${(err as Error).message}`);
  }
  return parseConfigText(text, file, opts.override);
}

/** parse → override → validate → normalise over the file's text. */
export function parseConfigText(
  text: string,
  source: string,
  override?: (raw: Record<string, unknown>) => void,
): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!.message.split('\n')[0];
    throw new ConfigError(`${source}: YAML syntax error: ${first}`, {
      issues: doc.errors.map((e) => `YAML syntax error: ${e.message.split('\n')[0]}`),
    });
  }
  const raw: unknown = doc.toJS() ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ConfigError(
      `${source}: the top level must be a mapping of keys (host, port, modelDirs, …)`,
    );
  override?.(raw as Record<string, unknown>);
  return normaliseConfig(raw, source);
}
