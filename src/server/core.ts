import type { Engine } from '../engines/engine.js';
import type { RunnerConfig } from '../engines/types.js';
import type { MonitorFeed } from '../monitor/feed.js';
import type { Lease, ModelManager } from '../scheduler/model-manager.js';

/** What the Ollama routes tell of a model file (/api/tags, /api/ps, /api/show). */
export interface ModelFile {
  size: number;
  mtimeMs: number;
  /** Facts of its GGUF header (the gguf reader's ModelSpec has them). */
  spec: {
    architecture: string;
    parameterCount: number;
    fileType?: string;
    contextLength: number;
    embeddingSize: number;
    layers: number;
    headCount: number;
    headCountKv: number;
  };
}

/** Memory of one process, in bytes. */
export interface ProcessMemory {
  rss: number;
  rssAnon?: number;
  peak?: number;
}

/**
 * What the HTTP layer needs from the core. The daemon passes the real parts; tests of the app
 * may pass the same parts built on a fake runner.
 */
export interface ServerCore {
  readonly version: string;
  readonly startedAt: number;
  readonly manager: Pick<
    ModelManager,
    'acquire' | 'list' | 'status' | 'load' | 'unload' | 'names' | 'resources' | 'pin'
  >;
  /** Measured memory of a runner process, or undefined when it cannot be read. */
  processMemory(pid: number): Promise<ProcessMemory | undefined>;
  /** A model file's size, time and header facts, read once per file version. */
  modelFile(path: string): Promise<ModelFile>;
  /** The last `bytes` of a model's runner log ('' when there is none). */
  logTail(model: string, bytes: number): Promise<string>;
  /** The path of a model's runner log, for following it; absent: logs cannot be followed. */
  logFile?(model: string): string;
  /**
   * The engine running `config`: what its runner can do, and its error answers in headroom's
   * codes. Absent: runners speak headroom's protocol (errors pass through, connections reused).
   */
  engineOf?(config: RunnerConfig): Pick<Engine, 'capabilities' | 'translateError'>;
  /**
   * Readies the lease's runner for a request before it is forwarded (a saved conversation state
   * restored into a slot) and returns the body to send, pinned to that slot where one was;
   * rejects only with the signal's reason. Absent: bodies are forwarded as prepared.
   */
  restoreState?(lease: Lease, path: string, body: unknown, signal: AbortSignal): Promise<unknown>;
  /** A model's saved conversation states on disk; absent: states are not kept. */
  savedState?(model: string): { entries: number; bytes: number };
  /** Live memory samples, pressure, alerts and the event stream; absent when the monitor is off. */
  readonly monitor?: MonitorFeed;
  /** Config reloads (PUT /admin/config); absent: the config cannot change while running. */
  readonly reload?: ConfigReload;
}

/** What a config reload did. */
export interface ConfigReloadResult {
  applied: boolean;
  changed: string[];
  restartNeeded: string[];
  removedModels: string[];
  models: string[];
}

/** The config in force and its replacement, as the admin routes use them. */
export interface ConfigReload {
  /** The config file reloads read and replacements write; undefined when there is none. */
  readonly file: string | undefined;
  /** The config in force (normalised). */
  current(): unknown;
  /** Validates, writes and applies a whole new config; rejects (400) with the old one kept. */
  replace(raw: unknown): Promise<ConfigReloadResult>;
  /** Reads the config file again and applies it. */
  fromFile(): Promise<ConfigReloadResult>;
}
