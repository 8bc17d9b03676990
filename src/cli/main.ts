import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ExitCode, UsageError, exitCodeFor, renderCliError } from './exit.js';

/**
 * The CLI: a thin layer that parses flags and lazily loads one command module, so `headroom ps`
 * does not load the daemon and `headroom serve` does not load the forge's tables.
 */

const USAGE = `headroom — memory-aware resource manager for local LLMs

Usage:
  headroom serve [--config FILE] [--host ADDR] [--port N] [--models DIR]... [--api-key KEY]
  headroom forge --out FILE [--params 50M | --layers N --embd N --heads N --kv-heads N --ff N --vocab N]
                 [--ctx N] [--type f32|f16|q8_0] [--tied] [--chat-template chatml] [--seed N]
                 [--arch llama | gemma3 [--sliding-window N] | mamba2 [--ssm-state N --ssm-groups N]]
  headroom plan NAME|FILE [--ctx N] [--kv f16|q8_0|q4_0] [--fa on|off] [--parallel N] [--budget 8GB]
                 [--engine llama-server|embedded] [--json]
  headroom ps [--json] [--url URL]
  headroom load NAME [--ctx N] [--kv f16|q8_0|q4_0] [--parallel N] [--json] [--url URL]
  headroom unload NAME [--force] [--json] [--url URL]
  headroom logs NAME [--bytes N] [-f|--follow] [--url URL]
  headroom top [--once] [--interval SECONDS] [--url URL]
  headroom engines [--json]
  headroom config validate [FILE] [--json]      (FILE defaults to $HEADROOM_HOME/config.yaml)
  headroom config schema                        (the config file's JSON schema)
  headroom engines build [--force] [--backend cpu|cuda|vulkan|metal] [--recipe prebuilt-libs|full-source] [--json]

The daemon listens on http://127.0.0.1:8642 by default; other commands reach it at --url or $HEADROOM_URL.
With an API key (--api-key, $HEADROOM_API_KEY or security.apiKey), clients send it as
"Authorization: Bearer KEY"; the CLI's commands read it from $HEADROOM_API_KEY.
`;

type Options = NonNullable<ParseArgsConfig['options']>;

const commands: Record<
  string,
  {
    options: Options;
    run: (values: Record<string, unknown>, positionals: string[]) => Promise<number>;
  }
> = {
  serve: {
    options: {
      config: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      models: { type: 'string', multiple: true },
      'api-key': { type: 'string' },
    },
    run: async (v) => (await import('./serve.js')).serve(v),
  },
  forge: {
    options: {
      out: { type: 'string' },
      params: { type: 'string' },
      layers: { type: 'string' },
      embd: { type: 'string' },
      heads: { type: 'string' },
      'kv-heads': { type: 'string' },
      ff: { type: 'string' },
      vocab: { type: 'string' },
      ctx: { type: 'string' },
      type: { type: 'string' },
      tied: { type: 'boolean' },
      'chat-template': { type: 'string' },
      seed: { type: 'string' },
      name: { type: 'string' },
      arch: { type: 'string' },
      'sliding-window': { type: 'string' },
      'ssm-state': { type: 'string' },
      'ssm-groups': { type: 'string' },
      json: { type: 'boolean' },
    },
    run: async (v) => (await import('./forge.js')).forge(v),
  },
  plan: {
    options: {
      ctx: { type: 'string' },
      kv: { type: 'string' },
      fa: { type: 'string' },
      parallel: { type: 'string' },
      budget: { type: 'string' },
      engine: { type: 'string' },
      json: { type: 'boolean' },
    },
    run: async (v, p) => (await import('./plan.js')).plan(v, p),
  },
  ps: {
    options: { json: { type: 'boolean' }, url: { type: 'string' } },
    run: async (v) => (await import('./models.js')).ps(v),
  },
  load: {
    options: {
      json: { type: 'boolean' },
      url: { type: 'string' },
      ctx: { type: 'string' },
      kv: { type: 'string' },
      parallel: { type: 'string' },
    },
    run: async (v, p) => (await import('./models.js')).load(v, p),
  },
  unload: {
    options: { json: { type: 'boolean' }, url: { type: 'string' }, force: { type: 'boolean' } },
    run: async (v, p) => (await import('./models.js')).unload(v, p),
  },
  logs: {
    options: {
      bytes: { type: 'string' },
      url: { type: 'string' },
      follow: { type: 'boolean', short: 'f' },
    },
    run: async (v, p) => (await import('./models.js')).logs(v, p),
  },
  top: {
    options: {
      once: { type: 'boolean' },
      interval: { type: 'string' },
      url: { type: 'string' },
    },
    run: async (v) => (await import('./top.js')).top(v),
  },
  config: {
    options: { json: { type: 'boolean' } },
    run: async (v, p) => (await import('./config.js')).config(v, p),
  },
  engines: {
    options: {
      json: { type: 'boolean' },
      force: { type: 'boolean' },
      backend: { type: 'string' },
      recipe: { type: 'string' },
    },
    run: async (v, p) => (await import('./engines.js')).engines(v, p),
  },
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name ? ExitCode.ok : ExitCode.usage;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write('0.1.0\n');
    return ExitCode.ok;
  }
  const command = commands[name];
  try {
    if (!command)
      throw new UsageError(
        `unknown command "${name}". Commands: ${Object.keys(commands).join(', ')}. See headroom --help.`,
      );
    let parsed;
    try {
      parsed = parseArgs({
        args: rest,
        options: command.options,
        allowPositionals: true,
        strict: true,
      });
    } catch (err) {
      throw new UsageError(`${(err as Error).message}. See headroom --help.`);
    }
    return await command.run(parsed.values as Record<string, unknown>, parsed.positionals);
  } catch (err) {
    process.stderr.write(renderCliError(err) + '\n');
    return exitCodeFor(err);
  }
}
