import path from 'node:path';
import { readConfigFile } from '../config/file.js';
import { homeLayout, resolveHome } from '../config/home.js';
import { ConfigError } from '../config/load.js';
import { configJsonSchemaText } from '../config/reference.js';
import { ExitCode, UsageError } from './exit.js';

/**
 * `headroom config validate [FILE]`: checks a config file (default: $HEADROOM_HOME/config.yaml)
 * and prints each problem as `key.path: what is wrong`, exiting non-zero when there is one.
 * `headroom config schema`: prints the JSON schema editors validate the file with.
 */
export async function config(
  values: Record<string, unknown>,
  positionals: string[],
): Promise<number> {
  const [sub, file, ...extra] = positionals;
  if (extra.length > 0)
    throw new UsageError(`unexpected argument "${extra[0]}". See headroom --help.`);
  if (sub === 'schema') {
    process.stdout.write(configJsonSchemaText());
    return ExitCode.ok;
  }
  if (sub !== 'validate')
    throw new UsageError(
      `${sub ? `unknown config command "${sub}"` : 'a config command is needed'}: headroom config validate [FILE] | headroom config schema`,
    );
  const target = file ? path.resolve(file) : homeLayout(resolveHome()).configFile;
  try {
    const c = await readConfigFile(target, { required: true });
    if (values.json) process.stdout.write(JSON.stringify({ file: target, valid: true }) + '\n');
    else
      process.stdout.write(
        `${target}: valid (${c.modelDirs.length} model directories, ${Object.keys(c.models).length} models configured)\n`,
      );
    return ExitCode.ok;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const issues = Array.isArray(err.details.issues)
      ? (err.details.issues as string[])
      : [
          err.message.startsWith(`${target}: `)
            ? err.message.slice(target.length + 2)
            : err.message,
        ];
    if (values.json)
      process.stdout.write(JSON.stringify({ file: target, valid: false, issues }) + '\n');
    else {
      process.stderr.write(
        `${target}: ${issues.length} problem${issues.length === 1 ? '' : 's'}\n`,
      );
      for (const i of issues) process.stderr.write(`  ${i}\n`);
    }
    return ExitCode.usage;
  }
}
