import { raceAbort } from '../lib/abort.js';
import { HeadroomError } from '../lib/errors.js';
import { constants } from 'node:fs';
import { access, mkdir, readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { homeLayout, resolveHome, type HomeLayout } from '../config/home.js';
import { ConfigError, normaliseConfig, type Config } from '../config/load.js';
import { parseConfigText } from '../config/file.js';
import { writeFileAtomic } from '../lib/atomic-write.js';
import { stringify as stringifyYaml } from 'yaml';
import { parseByteSize, parseDuration } from '../config/units.js';
import type { ConfigInput } from '../config/schema.js';
import type { Engine } from '../engines/engine.js';
import type { RunnerConfig } from '../engines/types.js';
import { freePort } from '../lib/net.js';
import { forgeModel } from '../gguf/forge.js';
import { createLogger, type Logger } from '../lib/logger.js';
import { readModelSpec, type ModelSpec } from '../gguf/index.js';
import { describeError, isHeadroomError } from '../lib/errors.js';
import { hardwareSnapshot, readProcessMemory } from '../monitor/index.js';
import {
  MeasuredStore,
  fileIdentity,
  planLoad,
  type FileIdentity,
  type LoadPlan,
  type LoadRequest,
} from '../planner/index.js';
import {
  computeBudget,
  computeGpuBudget,
  type Needs,
  type PlanOutcome,
} from '../scheduler/core.js';
import { ModelManager, type MeasureInput, type MeasureResult } from '../scheduler/model-manager.js';
import type { ModelEntry, RunnerHandle, StartRunner } from '../scheduler/types.js';
import type { ConfigReload, ModelFile, ProcessMemory } from '../server/core.js';
import { RunnerProcess, readLogTail, type SpawnSpec } from '../supervisor/index.js';
import { scanModels } from './catalog.js';
import { discoverModels, discoverOptions } from './discover.js';
import { RunnerPids } from './runner-pids.js';
import {
  chooseEngines,
  resolveLlamaServerBinary,
  type EngineSet,
  type LlamaServerBinary,
} from './engines.js';
import { TRIM_TIMEOUT_MS, startPressureMonitor, type PressureMonitor } from './reactions.js';
import type { MonitorFeed } from '../monitor/feed.js';
import type { Lease } from '../scheduler/model-manager.js';
import { StateCache, stateKey } from '../state/cache.js';
import { StateKeeper } from './state-keeper.js';
import { configChanges, runnerDefaults, schedulerSettings, type ReloadResult } from './reload.js';
import {
  HeadroomEvents,
  memoryAllocations,
  modelMetrics,
  pressureConfig,
  resourceLimits,
  systemResources,
  type MemoryAllocation,
  type ModelResourceMetrics,
  type PressureConfig,
  type ResourceLimits,
  type SystemResources,
} from './library.js';

const CORES = Math.max(1, os.availableParallelism());

/** Requests after which a multi-slot runner's peaks are not recorded (see #measure). */
const CLEAN_REQUESTS = 4;

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
  /**
   * How to launch a runner for a config, instead of the config's engine: another program that
   * speaks the embedded runner's protocol (IPC `listening`/`ready`, /health, /stats), e.g. a test's
   * fake runner.
   */
  runnerSpawn?: (config: RunnerConfig, entry: ModelEntry) => SpawnSpec;
  /**
   * The config file the config came from, for reloads (SIGHUP, a change of the file, PUT
   * /admin/config, which also writes it): its path and the command line's overrides, applied
   * again on every read. Without it, `replaceConfig` applies a config without writing one.
   */
  configFile?: { path: string; override?: (raw: Record<string, unknown>) => void };
  /** The llama-server binary, instead of looking for one (config path, PATH, the install's build). */
  llamaServer?: LlamaServerBinary;
  /**
   * Overrides the machine's RAM, cgroup limit and GPUs (`[]`: none) when computing the budgets
   * (tests, benchmarks).
   */
  budgetInputs?: {
    totalRam?: number;
    cgroupLimit?: number | null;
    gpus?: Array<{ total: number; free?: number; unified?: boolean }>;
  };
}

/** What the daemon knows of a model file before it plans a load (read once per file version). */
interface Prepared {
  spec: ModelSpec;
  file: FileIdentity;
}

export function isConfig(c: Config | ConfigInput): c is Config {
  return typeof (c as Config).limits?.maxBodyBytes === 'number';
}

/** A model's name as one safe file name (names come from file stems, but stay careful). */
function safeFileName(model: string): string {
  return model.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
}

/**
 * The home's folders, made before anything else: a home that cannot hold them (read-only, full,
 * not a directory) stops the start with the path and the fix, not a bare errno.
 */
async function makeHomeDirs(layout: HomeLayout): Promise<void> {
  for (const dir of [layout.modelsDir, layout.logsDir, layout.stateDir]) {
    try {
      await mkdir(dir, { recursive: true });
    } catch (err) {
      // A recursive mkdir on a read-only file system reports ENOENT; the home itself tells why.
      const why = await access(layout.home, constants.W_OK).then(
        () => (err as NodeJS.ErrnoException).code ?? (err as Error).message,
        (e: NodeJS.ErrnoException) => e.code ?? e.message,
      );
      throw new HeadroomError(
        'CONFIG_HOME_UNWRITABLE',
        `cannot create ${dir} in headroom's home ${layout.home} (${why}): point $HEADROOM_HOME at a writable directory with free space.`,
        { cause: err },
      );
    }
  }
}

/** Health checks in a row a loaded runner may miss before it is taken for hung (limits.healthInterval). */
const LIVENESS_FAILURES = 3;

function logFileName(model: string): string {
  return `${safeFileName(model)}.log`;
}

/**
 * The headroom core without HTTP: catalog, model manager and runners. The daemon serves it;
 * applications embed it (`createHeadroom`).
 */
export class Headroom {
  #config: Config;
  /** The config in force (a reload replaces it whole). */
  get config(): Config {
    return this.#config;
  }
  readonly layout: HomeLayout;
  readonly log: Logger;
  readonly manager: ModelManager;
  /** Typed events: loads, unloads and why, crashes, pressure, alerts, samples. */
  readonly events: HeadroomEvents;
  readonly startedAt = Date.now();
  readonly version = VERSION;
  #catalog = new Map<string, ModelEntry>();
  #disposed: Promise<void> | undefined;
  readonly #baseDir: string;
  readonly #runnerSpawn: HeadroomOptions['runnerSpawn'];
  /** The engines models run on (llama-server, embedded) and the default one. */
  readonly engines: EngineSet;
  /** Pid files of the runners started, so the next daemon kills what a killed one left. */
  readonly #pids: RunnerPids;
  readonly #prepared = new Map<string, Prepared>();
  /** Model files whose states are not kept (logged once each). */
  readonly #stateNotKept = new Set<string>();
  /** Header reads under way, by file version: concurrent callers share one. */
  readonly #reading = new Map<string, Promise<Prepared>>();
  readonly #lastPlan = new Map<string, LoadPlan>();
  #store: MeasuredStore | undefined;
  /** Saved sequence state across unloads; undefined with `state.enabled: false`. */
  #keeper: StateKeeper | undefined;
  get stateKeeper(): StateKeeper | undefined {
    return this.#keeper;
  }
  #configFile: HeadroomOptions['configFile'];
  #budgetInputs: HeadroomOptions['budgetInputs'];
  /** Reloads run one at a time, in order. */
  #reloading: Promise<unknown> = Promise.resolve();
  /** The config file's text last applied (a write of the same text is not a change). */
  #configText: string | undefined;
  /**
   * The live sampler and its pressure reactions: created in create(), applied to new loads in
   * #startRunner, disposed first in dispose(). Undefined with `monitor.enabled: false`.
   */
  #pressure: PressureMonitor | undefined;
  /** The monitor's feed (samples, alerts, events); undefined when the monitor is off. */
  get monitor(): MonitorFeed | undefined {
    return this.#pressure?.feed;
  }

  private constructor(
    config: Config,
    layout: HomeLayout,
    baseDir: string,
    log: Logger,
    runnerSpawn: HeadroomOptions['runnerSpawn'],
    engines: EngineSet,
  ) {
    this.#config = config;
    this.layout = layout;
    this.log = log;
    this.#baseDir = baseDir;
    this.#runnerSpawn = runnerSpawn;
    this.engines = engines;
    this.#pids = new RunnerPids(path.join(layout.stateDir, 'runners'), log);
    const sc = config.scheduler;
    this.manager = new ModelManager({
      catalog: () => this.#catalog,
      startRunner: this.#startRunner,
      trimRunner: this.#trimRunner,
      beforeStop: (o) => this.#keeper?.beforeStop(o) ?? Promise.resolve(),
      defaults: runnerDefaults(config, engines.defaultKind, CORES),
      stopGraceMs: config.limits.stopGraceMs,
      settings: {
        // The real budget is set in create(), once the machine has been read.
        budgetBytes: Number.POSITIVE_INFINITY,
        ...schedulerSettings(config),
      },
      // Read from the config in force at each call, so a reload's pins and TTLs apply at once.
      policy: (name) => {
        const m = this.#config.models[name];
        const sc = this.#config.scheduler;
        return {
          pinned: m?.pin === true || sc.pin.includes(name),
          ttlMs: m?.ttl !== undefined ? parseDuration(m.ttl) : sc.ttlMs,
        };
      },
      prepare: (entry, signal) => this.#prepare(entry, signal),
      plan: (entry, needs, room, base, gpuRoom) => this.#plan(entry, needs, room, base, gpuRoom),
      measure: (input) => this.#measure(input),
      measureIntervalMs: sc.measureIntervalMs,
      buffers: (name) => {
        const p = this.#lastPlan.get(name)?.predicted;
        return p
          ? { model: p.weights, context: p.kvCache, working: p.compute + p.overhead }
          : undefined;
      },
    });
    this.events = new HeadroomEvents(this.manager);
    this.manager.on('event', (e) => {
      if (e.type === 'unload' || e.type === 'runner-exit') void this.#keeper?.runnerGone(e.model);
      if (e.type === 'load-failed') this.log.warn(e, 'model load failed');
      else if (e.type === 'runner-exit' && !e.expected)
        this.log.error(
          { model: e.model, exit: { code: e.exit.code, signal: e.exit.signal } },
          'runner exited unexpectedly',
        );
      else if (e.type === 'unload')
        this.log.info(
          { model: e.model, reason: e.reason, detail: e.detail, inFlight: e.inFlight },
          `model unloaded: ${e.reason}`,
        );
      else if (e.type === 'measured')
        this.log.info(
          {
            model: e.model,
            predicted: e.predicted,
            rss: e.rss,
            peak: e.peak,
            charge: e.charge,
            errorPct:
              e.predicted > 0 ? +((100 * (e.peak - e.predicted)) / e.predicted).toFixed(1) : null,
          },
          'predicted vs measured',
        );
      else if (e.type === 'load-start')
        this.log.info(
          { model: e.model, predicted: e.predicted, degraded: e.degraded, config: e.config },
          'load-start',
        );
      else this.log.info(e, e.type);
    });
  }

  /**
   * Reads the machine and sets the scheduler's budgets: min(RAM × fraction, cgroup, cap) − reserve,
   * and per GPU min(VRAM × fraction, free VRAM + what our runners hold, cap) − reserve (a GPU
   * sharing RAM is not limited apart: RAM's budget covers it). No GPU: no GPU budgets.
   */
  async refreshBudget(inputs: HeadroomOptions['budgetInputs'] = {}): Promise<number> {
    const b = this.config.scheduler.budget;
    const hw = await hardwareSnapshot({ gpus: inputs.gpus === undefined });
    const cgroupLimit =
      inputs.cgroupLimit === null ? undefined : (inputs.cgroupLimit ?? hw.cgroup?.limit);
    const budget = computeBudget({
      totalRam: inputs.totalRam ?? hw.totalRam,
      fraction: b.fraction,
      ...(cgroupLimit !== undefined ? { cgroupLimit } : {}),
      ...(b.capBytes !== undefined ? { cap: b.capBytes } : {}),
      reserve: b.reserveBytes,
    });
    this.manager.setBudget(budget);
    const held = this.manager.gpuLedger();
    const gpuBudgets = (inputs.gpus ?? hw.gpus).map((g, i) =>
      g.unified
        ? Number.POSITIVE_INFINITY
        : computeGpuBudget({
            total: g.total,
            ...(g.free !== undefined ? { free: g.free } : {}),
            held: (held[i]?.reserved ?? 0) + (held[i]?.measured ?? 0),
            fraction: b.gpu.fraction,
            ...(b.gpu.capBytes !== undefined ? { cap: b.gpu.capBytes } : {}),
            reserve: b.gpu.reserveBytes,
          }),
    );
    this.manager.setGpuBudgets(gpuBudgets);
    this.log.info(
      {
        budget,
        totalRam: inputs.totalRam ?? hw.totalRam,
        fraction: b.fraction,
        cgroupLimit: cgroupLimit ?? null,
        cap: b.capBytes ?? null,
        reserve: b.reserveBytes,
        ...(gpuBudgets.length > 0 ? { gpuBudgets } : {}),
      },
      'memory budget',
    );
    return budget;
  }

  async #prepare(entry: ModelEntry, signal: AbortSignal | undefined): Promise<void> {
    // A command's server loads what it loads: there is no GGUF header to read.
    if (entry.overrides.engine === 'command') return;
    await this.#read(entry.path, signal);
  }

  /** The file's header, read again only when the file changed (size or time). */
  async #read(file: string, signal: AbortSignal | undefined): Promise<Prepared> {
    const id = await fileIdentity(file, signal);
    const known = this.#prepared.get(file);
    if (known && known.file.size === id.size && known.file.mtimeMs === id.mtimeMs) return known;
    // Single-flight: a burst of requests for a model not read yet shares one read of its header
    // (a large vocabulary is tens of MB on the heap while it is parsed; 500 parallel reads of one
    // took the daemon past a 96 MiB heap). The shared read takes no caller's signal, so one
    // caller giving up does not fail the others; each caller stops waiting on its own signal.
    const key = `${id.path}\0${id.size}\0${id.mtimeMs}`;
    let reading = this.#reading.get(key);
    if (!reading) {
      reading = readModelSpec(file)
        .then((spec) => {
          const prepared = { spec, file: id };
          this.#prepared.set(file, prepared);
          return prepared;
        })
        .finally(() => this.#reading.delete(key));
      this.#reading.set(key, reading);
    }
    return raceAbort(reading, signal);
  }

  /** A model file's size, time and header facts (the Ollama routes' details). */
  async modelFile(file: string): Promise<ModelFile> {
    const { spec, file: id } = await this.#read(file, undefined);
    return { size: id.size, mtimeMs: id.mtimeMs, spec };
  }

  #plan(
    entry: ModelEntry,
    needs: Needs,
    room: number,
    base: RunnerConfig,
    gpuRoom: readonly number[],
  ): PlanOutcome {
    if (base.engine === 'command') return planCommand(entry, base, room);
    const prepared = this.#prepared.get(entry.path);
    if (!prepared)
      return { fits: false, message: `"${entry.name}" was not read before planning`, guidance: [] };
    const o = entry.overrides;
    // Only what the request or the config names explicitly is fixed; the rest is the fit's choice.
    const kv = needs.kv ?? o.kvCacheKeyType;
    const request: LoadRequest = {
      contextSize: needs.contextSize ?? base.contextSize,
      flashAttention: base.flashAttention,
      parallel: Math.max(needs.parallel ?? 0, base.parallel),
      gpuLayers: base.gpuLayers,
      mmap: base.mmap,
      ...(kv !== undefined ? { kv } : {}),
      ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    };
    const store = this.#store;
    // A model configured for an engine this machine lacks runs on the default one.
    const wanted = base.engine ?? 'embedded';
    const engine = this.engines.has(wanted) ? wanted : this.engines.defaultKind;
    const plan = planLoad({
      spec: prepared.spec,
      request,
      ...(engine !== undefined ? { engine } : {}),
      available: {
        bytes: Number.isFinite(room) ? room : Number.MAX_SAFE_INTEGER,
        // Room on each GPU with a budget (none without GPUs): the preflight names a short GPU.
        ...(gpuRoom.length > 0
          ? { gpus: gpuRoom.map((r) => (Number.isFinite(r) ? r : Number.MAX_SAFE_INTEGER)) }
          : {}),
      },
      level: this.config.scheduler.optimisation,
      modelName: entry.name,
      minContext: Math.min(2048, request.contextSize ?? 2048),
      ...(store
        ? {
            measured: (config) => {
              const m = store.lookup({
                file: prepared.file,
                config: { ...config, engine },
                ...this.#runtimeOf(engine),
              });
              return m
                ? {
                    peak: m.peak,
                    rssAnon: m.rssAnon,
                    ...(m.contextFill !== undefined ? { contextFill: m.contextFill } : {}),
                  }
                : undefined;
            },
          }
        : {}),
    });
    if (!plan.fit) return { fits: false, message: plan.message, guidance: plan.guidance };
    this.#lastPlan.set(entry.name, plan);
    const f = plan.fit;
    return {
      fits: true,
      bytes: plan.predicted.total,
      // What is offloaded to each GPU: the ledger charges it against that GPU's budget.
      gpuBytes: plan.predicted.byDevice.gpus,
      degraded: plan.causes.includes('reduced'),
      config: {
        ...base,
        engine,
        contextSize: f.contextSize,
        parallel: f.parallel,
        batchSize: f.batchSize,
        flashAttention: f.flashAttention,
        kvCacheKeyType: f.kvCacheKeyType,
        kvCacheValueType: f.kvCacheValueType,
        gpuLayers: f.gpuLayers,
        mmap: f.mmap,
      },
    };
  }

  /**
   * Measures a ready runner (/proc, and the runner's /stats for how full its context is),
   * records the measurement in the store after ready and whenever the peak rises, and returns
   * the ledger's figure: the measured peak when the context was (nearly) full, else the larger
   * of the peak and the prediction (a peak taken early is only a lower bound).
   */
  async #measure(input: MeasureInput): Promise<MeasureResult | undefined> {
    const pid = input.runner.pid;
    if (pid === undefined) return undefined;
    const m = await readProcessMemory(pid);
    if (!m) return undefined;
    const fill = await this.#contextFill(input.runner.url, input.config);
    const charge = fill !== undefined && fill >= 0.9 ? m.peak : Math.max(m.peak, input.predicted);
    const prepared = this.#prepared.get(input.entry.path);
    // A peak that rises while the context fills no further is runtime growth, not this config's
    // footprint; and a runner with several slots loses a sampler per overlapping generation
    // (scheduler RecycleSettings), so after its first requests its peaks carry that leak too
    // (bench/recycle, 64k vocabulary, 4 slots: the plan rose 147.5 → 155.9 MiB with every fuller
    // peak recorded, to 153.2 with the first 16 requests', 148.3 with the first 4'). Recording
    // either would make every later plan of the config too large.
    const last = this.#recordedPeak.get(pid);
    const fuller = last === undefined || (fill ?? 0) > last.fill + 0.01;
    const clean = input.config.parallel === 1 || input.served <= CLEAN_REQUESTS;
    const rose = fuller && clean && m.peak > (last?.peak ?? 0) * 1.01;
    const engine = input.config.engine;
    if (this.#store && prepared && engine !== 'command' && (input.first || rose)) {
      this.#recordedPeak.set(pid, { peak: m.peak, fill: fill ?? 0 });
      await this.#store
        .record(
          { file: prepared.file, config: { ...input.config, engine }, ...this.#runtimeOf(engine) },
          {
            rss: m.rss,
            rssAnon: m.rssAnon,
            peak: m.peak,
            loadMs: input.loadMs,
            ...(fill !== undefined ? { contextFill: fill } : {}),
          },
        )
        .catch((err: unknown) =>
          this.log.warn({ err: describeError(err) }, 'recording a measurement failed'),
        );
    }
    return { charge, rss: m.rss, peak: m.peak };
  }

  readonly #recordedPeak = new Map<number, { peak: number; fill: number }>();

  /**
   * The build an engine's runners are measured under, for the store's key: llama-server's version
   * (the embedded runner's keys name no build, so measurements stored before stay valid).
   */
  #runtimeOf(kind: RunnerConfig['engine']): { runtime?: string } {
    if (kind !== 'llama-server' || this.#runnerSpawn) return {};
    const version = this.engines.describe().find((e) => e.kind === kind)?.version;
    return version !== undefined ? { runtime: version } : {};
  }

  /** Share of a runner's context in use, or undefined when the runner does not say. */
  async #contextFill(url: string, config: RunnerConfig): Promise<number | undefined> {
    // A runner started by `runnerSpawn` speaks the embedded runner's protocol.
    const engine = this.#runnerSpawn
      ? this.engines.get('embedded')
      : this.engines.get(config.engine);
    try {
      const load = await engine.load(url, config, AbortSignal.timeout(1000));
      if (!load) return undefined;
      return Math.min(1, load.tokensInUse / Math.max(1, config.contextSize * config.parallel));
    } catch {
      return undefined;
    }
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
    await makeHomeDirs(layout);
    const engines = chooseEngines(
      config,
      opts.llamaServer ?? (await resolveLlamaServerBinary(config)),
      log,
    );
    log.info(
      { default: engines.defaultKind, engines: engines.describe().filter((e) => e.available) },
      `models run on ${engines.defaultKind} unless configured otherwise`,
    );
    const h = new Headroom(
      config,
      layout,
      opts.baseDir ?? process.cwd(),
      log,
      opts.runnerSpawn,
      engines,
    );
    h.#store = await MeasuredStore.create(path.join(layout.stateDir, 'footprints.json')).catch(
      (err: unknown) => {
        log.warn(
          { err: describeError(err) },
          'measured footprints unavailable: planning by formula',
        );
        return undefined;
      },
    );
    if (config.state.enabled) {
      const cache = await StateCache.create({
        root: path.join(layout.stateDir, 'slots'),
        maxBytes: parseByteSize(config.state.maxBytes),
        log,
      }).catch((err: unknown) => {
        log.warn({ err: describeError(err) }, 'saved state unavailable: unloads lose it');
        return undefined;
      });
      if (cache)
        h.#keeper = new StateKeeper({
          cache,
          settings: {
            minTokens: config.state.minTokens,
            saveBudgetMs: parseDuration(config.state.saveTimeout),
            restoreBudgetMs: 60_000,
          },
          log,
          engineOf: (c) => (h.#runnerSpawn ? undefined : h.engines.get(c.engine)),
          keyOf: (entry, c) => h.#stateKey(entry.path, c),
        });
    }
    h.#configFile = opts.configFile;
    h.#budgetInputs = opts.budgetInputs;
    await h.#pids.reap();
    await h.refreshBudget(opts.budgetInputs);
    await h.refreshCatalog();
    if (h.#catalog.size === 0 && config.demoModel) {
      await h.#forgeDemoModel();
      await h.refreshCatalog();
    }
    // The sampler and its reactions, unless `monitor.enabled: false`.
    if (config.monitor.enabled) h.#pressure = await startPressureMonitor(config, h.manager, log);
    if (h.#pressure) h.events.attach(h.#pressure.feed);
    for (const name of config.scheduler.preload) {
      // In the background: the daemon serves while preloads run; a failure is logged, not fatal.
      h.manager.load(name).then(
        () => log.info({ model: name }, 'preloaded'),
        (err: unknown) => log.warn({ model: name, err: describeError(err) }, 'preload failed'),
      );
    }
    return h;
  }

  /** Rescans the model directories; loaded models keep running. */
  async refreshCatalog(): Promise<void> {
    this.#catalog = await this.#scan(this.config);
  }

  async #scan(config: Config): Promise<Map<string, ModelEntry>> {
    const dirs = [...config.modelDirs, this.layout.modelsDir];
    const found = await discoverModels(discoverOptions(config.discover, this.#baseDir));
    for (const w of found.warnings) this.log.warn(w);
    const { entries, warnings } = await scanModels(dirs, config, this.#baseDir, found.models);
    for (const w of warnings) this.log.warn(w);
    return entries;
  }

  /** Config reloads for the admin routes (PUT /admin/config, POST /admin/config/reload). */
  get reload(): ConfigReload {
    return {
      file: this.#configFile?.path,
      current: () => this.config,
      replace: (raw) => this.replaceConfig(raw),
      fromFile: () => this.reloadFromFile(),
    };
  }

  /**
   * Reads the config file again and applies it (SIGHUP, a change of the file). A file whose text
   * is the one applied last is no change. Rejects with ConfigError, the old config kept, when the
   * file is not valid.
   */
  reloadFromFile(): Promise<ReloadResult> {
    const source = this.#configFile;
    if (!source)
      return Promise.reject(
        new ConfigError('this headroom was started without a config file: nothing to reload'),
      );
    return this.#serialise(async () => {
      const text = await readFile(source.path, 'utf8').catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
        throw new ConfigError(
          `cannot read the config file ${source.path}: ${(err as Error).message}`,
        );
      });
      if (text === this.#configText) return this.#unchanged();
      const next = parseConfigText(text, source.path, source.override);
      const result = await this.#reconfigure(next);
      this.#configText = text;
      return result;
    });
  }

  /**
   * Replaces the config with `raw` (the config file's keys as an object: PUT /admin/config):
   * validated, built, written to the config file atomically (when there is one), then swapped in.
   * Rejects with ConfigError, the old config kept, when it is not valid.
   */
  replaceConfig(raw: unknown): Promise<ReloadResult> {
    return this.#serialise(async () => {
      const source = this.#configFile;
      const name = source?.path ?? 'config';
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
        throw new ConfigError(`${name}: the config must be an object of keys (host, port, …)`);
      const copy = structuredClone(raw) as Record<string, unknown>;
      source?.override?.(copy);
      const next = normaliseConfig(copy, name);
      const text = stringifyYaml(raw);
      return this.#reconfigure(next, async () => {
        if (!source) return;
        await writeFileAtomic(source.path, text);
        this.#configText = text;
      });
    });
  }

  #serialise<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#reloading.then(fn, fn);
    this.#reloading = run.catch(() => undefined);
    return run;
  }

  #unchanged(): ReloadResult {
    return {
      applied: false,
      changed: [],
      restartNeeded: [],
      removedModels: [],
      models: this.manager.names(),
    };
  }

  /**
   * build-new → swap → dispose-old (see reload.ts). `commit` runs after the new parts are built
   * and before the swap (writing the file): when it fails, the new parts are disposed and the old
   * config stays.
   */
  async #reconfigure(next: Config, commit?: () => Promise<void>): Promise<ReloadResult> {
    const old = this.#config;
    const diff = configChanges(old, next);
    if (diff.changed.length === 0) {
      await commit?.();
      return this.#unchanged();
    }
    // Build the new parts while the old ones serve.
    const catalog = diff.catalogChanged ? await this.#scan(next) : this.#catalog;
    let pressure: PressureMonitor | undefined = this.#pressure;
    if (diff.monitorChanged)
      pressure = next.monitor.enabled
        ? await startPressureMonitor(next, this.manager, this.log)
        : undefined;
    try {
      await commit?.();
    } catch (err) {
      if (pressure !== this.#pressure) await pressure?.dispose();
      throw err;
    }
    // Swap, in one synchronous step.
    const oldPressure = this.#pressure;
    const oldCatalog = this.#catalog;
    this.#config = next;
    this.#catalog = catalog;
    this.#pressure = pressure;
    if (pressure && pressure !== oldPressure) this.events.attach(pressure.feed);
    this.manager.reconfigure({
      settings: schedulerSettings(next),
      defaults: runnerDefaults(next, this.engines.defaultKind, CORES),
      stopGraceMs: next.limits.stopGraceMs,
    });
    // Dispose the old: its monitor, and the runners of models the new catalog lacks (drained).
    if (oldPressure !== pressure) await oldPressure?.dispose();
    if (diff.budgetChanged) await this.refreshBudget(this.#budgetInputs);
    const removedModels = [...oldCatalog.keys()].filter((n) => {
      const now = catalog.get(n);
      return !now || now.path !== oldCatalog.get(n)!.path;
    });
    for (const name of removedModels) {
      // A removed model keeps its status while its runner lives; once gone, it is unknown.
      const running = (() => {
        try {
          const st = this.manager.status(name);
          return st.state !== 'unloaded' && st.state !== 'failed';
        } catch {
          return false;
        }
      })();
      if (!running) continue;
      this.manager.unload(name).catch((err: unknown) => {
        if (isHeadroomError(err) && err.code === 'model_not_found') return;
        this.log.warn({ model: name, err: describeError(err) }, 'unloading a removed model failed');
      });
    }
    if (diff.restartNeeded.length > 0)
      this.log.warn(
        { keys: diff.restartNeeded },
        `config reloaded; ${diff.restartNeeded.join(', ')} take effect after a restart`,
      );
    this.log.info({ changed: diff.changed, removedModels }, 'config reloaded');
    return {
      applied: true,
      changed: diff.changed,
      restartNeeded: diff.restartNeeded,
      removedModels,
      models: this.manager.names(),
    };
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

  /** The engine a runner with this config runs on (a `runnerSpawn` runner: the embedded one's protocol). */
  engineOf(config: RunnerConfig): Engine {
    return this.#runnerSpawn ? this.engines.get('embedded') : this.engines.get(config.engine);
  }

  /** The key a model's saved state is filed under with a config (state/cache.ts stateKey). */
  async #stateKey(file: string, config: RunnerConfig): Promise<string | undefined> {
    if (config.engine === 'command') return undefined;
    const { file: id, spec } = await this.#read(file, undefined);
    const layers = {
      slidingWindow: spec.slidingWindowLayers?.some(Boolean) ?? false,
      recurrent: spec.recurrentLayers?.some(Boolean) ?? false,
    };
    const engine = this.engineOf(config);
    if (engine.state && !engine.state.reusesRestored(layers)) {
      if (!this.#stateNotKept.has(file)) {
        this.#stateNotKept.add(file);
        this.log.info(
          { file, engine: engine.kind, ...layers },
          'state not kept for this model: its engine does not go on from a restored state of its layers (docs/STATE.md)',
        );
      }
      return undefined;
    }
    return stateKey({
      file: { path: file, size: id.size, mtimeMs: id.mtimeMs },
      engine: config.engine ?? 'embedded',
      ...this.#runtimeOf(config.engine),
      kvCacheKeyType: config.kvCacheKeyType,
      kvCacheValueType: config.kvCacheValueType,
      flashAttention: config.flashAttention || config.kvCacheValueType !== 'f16',
    });
  }

  /** ServerCore.savedState: a model's saved states on disk (zero when states are not kept). */
  savedState(model: string): { entries: number; bytes: number } {
    return this.#keeper?.cache.summary(model) ?? { entries: 0, bytes: 0 };
  }

  /** ServerCore.restoreState: a saved conversation restored into the lease's runner. */
  restoreState(lease: Lease, path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    return this.#keeper
      ? this.#keeper.prepareRequest(lease, path, body, signal)
      : Promise.resolve(body);
  }

  /**
   * Plans a load of a known model without starting it: the config that fits the budget left now,
   * its predicted footprint by kind (weights, KV cache, compute, runtime), the verdict and what to
   * do when it does not fit. Throws model_not_found for an unknown name, GGUF_* for a bad file.
   */
  async plan(name: string, request: LoadRequest = {}, signal?: AbortSignal): Promise<LoadPlan> {
    const path = this.manager.status(name).path;
    const { spec } = await this.#read(path, signal);
    const free = this.manager.resources().ledger.free;
    const o = this.#catalog.get(name)?.overrides ?? {};
    const wanted = o.engine ?? this.engines.defaultKind;
    const engine = wanted !== 'command' && this.engines.has(wanted) ? wanted : 'embedded';
    return planLoad({
      spec,
      request: {
        contextSize: o.contextSize ?? this.config.runner.contextSize,
        parallel: o.parallel ?? this.config.runner.parallel,
        flashAttention: o.flashAttention ?? this.config.runner.flashAttention,
        ...request,
      },
      engine,
      available: { bytes: Number.isFinite(free) ? Math.max(0, free) : Number.MAX_SAFE_INTEGER },
      level: this.config.scheduler.optimisation,
      modelName: name,
    });
  }

  /** Each loaded model's ledger charge, measured use and plan split by kind (weights, context, working). */
  memoryAllocations(): MemoryAllocation[] {
    return memoryAllocations(this.manager);
  }

  /** Every known model's state, memory, context, requests and timings. */
  modelMetrics(): ModelResourceMetrics[] {
    return modelMetrics(this.manager, (model) => this.savedState(model));
  }

  /** RAM, cores, the budget and what models hold of it, GPUs, and the pressure level now. */
  systemResources(): SystemResources {
    return systemResources(this.manager, this.monitor, this.events.peakAllocated);
  }

  /** The limits the scheduler enforces (models loaded, budget, idle timeout, queues). */
  limits(): ResourceLimits {
    return resourceLimits(this.config, this.manager);
  }

  /** The monitor's settings and the pressure level now. */
  pressureConfig(): PressureConfig {
    return pressureConfig(this.config, this.monitor);
  }

  /** Stops every runner. Idempotent. */
  dispose(): Promise<void> {
    // Stop reacting to pressure before the runners stop.
    this.#disposed ??= (this.#pressure?.dispose() ?? Promise.resolve())
      .then(() => this.manager.dispose())
      .then(() => this.events.dispose())
      .then(() => this.#store?.dispose())
      .then(() => this.#keeper?.cache.dispose());
    return this.#disposed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  /**
   * Starts a runner with exactly the config the scheduler planned: pressure shapes the plan
   * itself (scheduler/pressure.ts), so what runs is what the scheduler reports and measures.
   */
  readonly #startRunner: StartRunner = async (entry, config, signal): Promise<RunnerHandle> => {
    const engine = this.engines.get(config.engine);
    const stateDir = this.#runnerSpawn ? undefined : await this.#runnerStateDir(entry.name);
    const spawn: SpawnSpec = this.#runnerSpawn
      ? this.#runnerSpawn(config, entry)
      : engine.launch(config, {
          port: engine.needsPort ? await freePort() : 0,
          name: entry.name,
          ...(stateDir !== undefined ? { stateDir } : {}),
        });
    let pid: number | undefined;
    const runner = await RunnerProcess.start({
      name: entry.name,
      spawn,
      onSpawn: (p) => {
        pid = p;
        void this.#pids.record(p, spawn.command);
      },
      logFile: this.logFile(entry.name),
      logMaxBytes: this.config.logs.maxBytes,
      logKeep: this.config.logs.keep,
      startTimeoutMs: this.config.limits.loadTimeoutMs,
      stallTimeoutMs: this.config.limits.stallTimeoutMs,
      signal,
      ...(Number.isFinite(this.config.limits.healthIntervalMs) &&
      this.config.limits.healthIntervalMs > 0
        ? {
            liveness: {
              intervalMs: this.config.limits.healthIntervalMs,
              timeoutMs: Math.min(this.config.limits.healthTimeoutMs, 2_147_483_647),
              failures: LIVENESS_FAILURES,
            },
          }
        : {}),
    }).catch(async (err: unknown) => {
      if (pid !== undefined) await this.#pids.forget(pid);
      throw err;
    });
    runner.once('exit', () => void this.#pids.forget(runner.pid ?? -1));
    return {
      url: runner.url,
      pid: runner.pid,
      loadMs: runner.loadMs,
      // At the child's exit, not once its handles are closed: a request leased to the runner in
      // between would meet a closed port.
      onExit: (listener) => {
        const onExit = (status: { code: number | null; signal: NodeJS.Signals | null }): void =>
          listener({ code: status.code, signal: status.signal });
        runner.on('exited', onExit);
        return () => runner.off('exited', onExit);
      },
      stop: (opts) => runner.stop(opts),
    };
  };

  /**
   * A model's own directory under the home's state directory (created on first use); undefined
   * when it cannot be made (a read-only or full home): the runner then runs without saved state
   * rather than not at all.
   */
  async #runnerStateDir(model: string): Promise<string | undefined> {
    const dir = path.join(this.layout.stateDir, 'slots', safeFileName(model));
    try {
      await mkdir(dir, { recursive: true });
      return dir;
    } catch (err) {
      this.log.warn(
        { model, dir, err: (err as Error).message },
        'cannot create the runner state directory: sequence state is not saved for this runner',
      );
      return undefined;
    }
  }

  /** Trims one ready runner's prompt caches under memory pressure (the scheduler's trim effect). */
  readonly #trimRunner = (
    url: string,
    reason: string,
    config: RunnerConfig,
  ): Promise<{ freedBytes: number }> =>
    this.engineOf(config).trim(url, config, reason, AbortSignal.timeout(TRIM_TIMEOUT_MS));

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

/**
 * A command-engine model's plan: the memory its config states (`memory`), nothing to fit. Without
 * a statement it is planned at 0 bytes and charged what it is measured to hold once it runs.
 */
function planCommand(entry: ModelEntry, base: RunnerConfig, room: number): PlanOutcome {
  const bytes = base.command?.memoryBytes ?? 0;
  if (bytes > room)
    return {
      fits: false,
      message: `"${entry.name}" is stated to take ${mib(bytes)} MiB but ${mib(Math.max(0, room))} MiB are free for it`,
      guidance: [
        'unload another model, raise scheduler.budget, or lower the memory stated for this command',
      ],
    };
  return { fits: true, bytes, gpuBytes: [], degraded: false, config: base };
}

const mib = (b: number): string => (b / 1048576).toFixed(0);

/**
 * The embeddable core: `const hr = await createHeadroom(); const lease = await hr.manager.acquire('name')`.
 * Without `log` it logs warnings and errors to stderr (`HEADROOM_LOG_LEVEL` sets another level),
 * leaving the application's stdout to it.
 */
export function createHeadroom(opts: HeadroomOptions = {}): Promise<Headroom> {
  return Headroom.create({
    ...opts,
    log:
      opts.log ??
      createLogger({
        level: process.env.HEADROOM_LOG_LEVEL ?? 'warn',
        destination: process.stderr,
      }),
  });
}
