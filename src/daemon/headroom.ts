import { mkdir, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { homeLayout, resolveHome, type HomeLayout } from '../config/home.js';
import { normaliseConfig, type Config } from '../config/load.js';
import type { ConfigInput } from '../config/schema.js';
import { embeddedSpawnSpec } from '../engines/embedded/index.js';
import type { RunnerConfig } from '../engines/types.js';
import { forgeModel } from '../gguf/forge.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { readProcessMemory } from '../monitor/index.js';
import { ModelManager } from '../scheduler/model-manager.js';
import type { ModelEntry, RunnerHandle, StartRunner } from '../scheduler/types.js';
import type { ProcessMemory } from '../server/core.js';
import { RunnerProcess, readLogTail } from '../supervisor/index.js';
import { scanModels } from './catalog.js';
import { startPressureMonitor, type PressureMonitor } from './reactions.js';
import type { MonitorFeed } from '../monitor/sampler.js';

export const VERSION = '0.1.0';
export const DEMO_MODEL_NAME = 'headroom-demo';

export interface HeadroomOptions {
  /** Config as a normalised Config, or as the YAML's shape (validated here). Defaults to all defaults. */
  config?: Config | ConfigInput;
  /** Directory for models, logs and state. Defaults to $HEADROOM_HOME or the platform's data directory. */
  home?: string;
  /** Directory that relative paths in the config are resolved against. Defaults to the current directory. */
  baseDir?: string;
  log?: Logger;
}

function isConfig(c: Config | ConfigInput): c is Config {
  return typeof (c as Config).limits?.maxBodyBytes === 'number';
}

/** A safe file name for a model's log (names come from file stems, but stay careful). */
function logFileName(model: string): string {
  return `${model.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_')}.log`;
}

/**
 * The headroom core without HTTP: catalog, model manager and runners. The daemon serves it;
 * applications embed it (`createHeadroom`).
 */
export class Headroom {
  readonly config: Config;
  readonly layout: HomeLayout;
  readonly log: Logger;
  readonly manager: ModelManager;
  readonly startedAt = Date.now();
  readonly version = VERSION;
  #catalog = new Map<string, ModelEntry>();
  #disposed: Promise<void> | undefined;
  readonly #baseDir: string;
  // --- monitor (issue #5, monitor engineer): live sampler + pressure reactions. Created in
  // create(), applied to new loads in #startRunner, disposed first in dispose().
  #pressure: PressureMonitor | undefined;
  get monitor(): MonitorFeed | undefined {
    return this.#pressure?.sampler;
  }
  // --- end monitor

  private constructor(config: Config, layout: HomeLayout, baseDir: string, log: Logger) {
    this.config = config;
    this.layout = layout;
    this.log = log;
    this.#baseDir = baseDir;
    const cores = Math.max(1, os.availableParallelism());
    const defaults: Omit<RunnerConfig, 'modelPath'> = {
      contextSize: config.runner.contextSize,
      parallel: config.runner.parallel,
      threads: Math.min(config.runner.threads ?? cores, cores),
      batchSize: config.runner.batchSize,
      flashAttention: config.runner.flashAttention,
      kvCacheKeyType: config.runner.kvCacheType,
      kvCacheValueType: config.runner.kvCacheType,
      mmap: config.runner.mmap,
      gpuLayers: config.runner.gpuLayers,
    };
    this.manager = new ModelManager({
      catalog: () => this.#catalog,
      startRunner: this.#startRunner,
      defaults,
      stopGraceMs: config.limits.stopGraceMs,
    });
    this.manager.on('event', (e) => {
      if (e.type === 'load-failed') this.log.warn(e, 'model load failed');
      else if (e.type === 'runner-exit' && !e.expected)
        this.log.error(
          { model: e.model, exit: { code: e.exit.code, signal: e.exit.signal } },
          'runner exited unexpectedly',
        );
      else this.log.info(e, e.type);
    });
  }

  static async create(opts: HeadroomOptions = {}): Promise<Headroom> {
    const config =
      opts.config === undefined
        ? normaliseConfig({})
        : isConfig(opts.config)
          ? opts.config
          : normaliseConfig(opts.config);
    const layout = homeLayout(opts.home ?? resolveHome());
    const log = opts.log ?? createLogger();
    await mkdir(layout.modelsDir, { recursive: true });
    await mkdir(layout.logsDir, { recursive: true });
    const h = new Headroom(config, layout, opts.baseDir ?? process.cwd(), log);
    await h.refreshCatalog();
    if (h.#catalog.size === 0 && config.demoModel) {
      await h.#forgeDemoModel();
      await h.refreshCatalog();
    }
    // monitor (issue #5): sampler + reactions, unless `monitor.enabled: false`.
    if (config.monitor.enabled) h.#pressure = await startPressureMonitor(config, h.manager, log);
    return h;
  }

  /** Rescans the model directories; loaded models keep running. */
  async refreshCatalog(): Promise<void> {
    const dirs = [...this.config.modelDirs, this.layout.modelsDir];
    const { entries, warnings } = await scanModels(dirs, this.config, this.#baseDir);
    for (const w of warnings) this.log.warn(w);
    this.#catalog = entries;
  }

  logFile(model: string): string {
    return path.join(this.layout.logsDir, logFileName(model));
  }

  async processMemory(pid: number): Promise<ProcessMemory | undefined> {
    const m = await readProcessMemory(pid);
    return m ? { rss: m.rss, rssAnon: m.rssAnon, peak: m.peak } : undefined;
  }

  async logTail(model: string, bytes: number): Promise<string> {
    try {
      return await readLogTail(this.logFile(model), bytes);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
  }

  /** Stops every runner. Idempotent. */
  dispose(): Promise<void> {
    // monitor (issue #5): stop reacting before the runners stop.
    this.#disposed ??= (this.#pressure?.dispose() ?? Promise.resolve()).then(() =>
      this.manager.dispose(),
    );
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  readonly #startRunner: StartRunner = async (entry, config, signal): Promise<RunnerHandle> => {
    // monitor (issue #5): refuse (critical) or shrink (medium+, throttling) new loads under pressure.
    if (this.#pressure) config = this.#pressure.adjust(entry.name, config);
    const runner = await RunnerProcess.start({
      name: entry.name,
      spawn: embeddedSpawnSpec(config),
      logFile: this.logFile(entry.name),
      logMaxBytes: this.config.logs.maxBytes,
      logKeep: this.config.logs.keep,
      startTimeoutMs: this.config.limits.loadTimeoutMs,
      stallTimeoutMs: this.config.limits.stallTimeoutMs,
      signal,
    });
    return {
      url: runner.url,
      pid: runner.pid,
      loadMs: runner.loadMs,
      onExit: (listener) => {
        const onExit = (): void => {
          const exit = runner.exit;
          listener({ code: exit?.code ?? null, signal: exit?.signal ?? null });
        };
        runner.on('exit', onExit);
        return () => runner.off('exit', onExit);
      },
      stop: (opts) => runner.stop(opts),
    };
  };

  async #forgeDemoModel(): Promise<void> {
    const out = path.join(this.layout.modelsDir, `${DEMO_MODEL_NAME}.gguf`);
    const exists = await stat(out).then(
      (s) => s.isFile(),
      () => false,
    );
    if (exists) return;
    this.log.info(
      { path: out },
      'no models configured: forging a small demo model (random weights, gibberish text)',
    );
    await forgeModel({
      out,
      params: 25_000_000,
      type: 'f16',
      ctx: 8192,
      chatTemplate: 'chatml',
      seed: 42,
      name: DEMO_MODEL_NAME,
    });
  }
}

/** The embeddable core: `const hr = await createHeadroom(); const lease = await hr.manager.acquire('name')`. */
export function createHeadroom(opts: HeadroomOptions = {}): Promise<Headroom> {
  return Headroom.create(opts);
}
