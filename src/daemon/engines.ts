import type { Config } from '../config/load.js';
import type { Engine, EngineKind } from '../engines/engine.js';
import { CommandEngine } from '../engines/command/engine.js';
import { embeddedEngine } from '../engines/embedded/index.js';
import {
  resolveLlamaServer,
  type LlamaServerResolution,
  type LlamaServerUnavailable,
} from '../engines/llama-server/binary.js';
import { LlamaServerEngine } from '../engines/llama-server/engine.js';
import type { Logger } from '../lib/logger.js';

/** Where the llama-server binary came from, or why there is none. */
export type LlamaServerBinary =
  { path: string; obtained: string; version?: string; backend?: string } | LlamaServerUnavailable;

/** The engines this daemon runs models on, and the one a model gets when it names none. */
export interface EngineSet {
  /** The engine of models that name none (a command needs a command: never the default). */
  readonly defaultKind: Exclude<EngineKind, 'command'>;
  get(kind: EngineKind | undefined): Engine;
  has(kind: EngineKind): boolean;
  /** What each engine is (for `headroom engines`, /admin/engines and the start log). */
  describe(): EngineDescription[];
}

export interface EngineDescription {
  kind: EngineKind;
  available: boolean;
  default: boolean;
  binary?: string;
  version?: string;
  backend?: string;
  obtained?: string;
  reason?: string;
  fix?: string;
}

/**
 * Picks the engines from the config and the binary found: llama-server when one is there (the
 * default under `auto`), the embedded runner always. A model configured for an engine that is
 * not available runs on the other with a warning, rather than failing every request.
 */
export function chooseEngines(
  config: Pick<Config, 'engines'>,
  binary: LlamaServerBinary,
  log: Logger,
): EngineSet {
  const engines = new Map<EngineKind, Engine>([
    ['embedded', embeddedEngine],
    ['command', new CommandEngine()],
  ]);
  const llama: EngineDescription = { kind: 'llama-server', available: false, default: false };
  if ('path' in binary) {
    engines.set(
      'llama-server',
      new LlamaServerEngine({
        binary: binary.path,
        extraArgs: config.engines.llamaServer.args,
        // Only the build npm install makes carries the cancel-prompt patch.
        patched: binary.obtained === 'built',
      }),
    );
    Object.assign(llama, {
      available: true,
      binary: binary.path,
      obtained: binary.obtained,
      ...(binary.version !== undefined ? { version: binary.version } : {}),
      ...(binary.backend !== undefined ? { backend: binary.backend } : {}),
    });
  } else {
    Object.assign(llama, { reason: binary.reason, fix: binary.fix });
  }
  const wanted = config.engines.default;
  let defaultKind: Exclude<EngineKind, 'command'> = engines.has('llama-server')
    ? 'llama-server'
    : 'embedded';
  if (wanted === 'embedded') defaultKind = 'embedded';
  if (!engines.has('llama-server') && wanted !== 'embedded') {
    const why = 'reason' in llama ? `${llama.reason}; ${llama.fix}` : '';
    log.warn(
      { engine: 'embedded', llamaServer: binary },
      `llama-server is not available, models run on the embedded node-llama-cpp runner (about half as fast): ${why}`,
    );
  }
  llama.default = defaultKind === 'llama-server';
  const embedded: EngineDescription = {
    kind: 'embedded',
    available: true,
    default: defaultKind === 'embedded',
    obtained: 'node-llama-cpp',
  };
  return {
    defaultKind,
    has: (kind) => engines.has(kind),
    get: (kind) => engines.get(kind ?? defaultKind) ?? engines.get(defaultKind)!,
    describe: () => [
      llama,
      embedded,
      { kind: 'command', available: true, default: false, obtained: 'models.NAME.command' },
    ],
  };
}

/** Finds the llama-server binary for this config: its path, else PATH, else the install's build. */
export function resolveLlamaServerBinary(
  config: Pick<Config, 'engines'>,
): Promise<LlamaServerResolution> {
  const configured = config.engines.llamaServer.path;
  return resolveLlamaServer(configured !== undefined ? { configuredPath: configured } : {});
}
