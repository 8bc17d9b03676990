import type { RunnerConfig } from '../engines/types.js';

/** A model the daemon knows: a name clients use and the GGUF file behind it. */
export interface ModelEntry {
  name: string;
  path: string;
  /** Settings for this model from the config (`models.<name>`), over the runner defaults. */
  overrides: Partial<Omit<RunnerConfig, 'modelPath'>>;
  /** Where the daemon found it. Absent: a models directory or the config. */
  source?: ModelSource;
}

/** Where a model was found: headroom's own (directories, config) or another tool's store. */
export type ModelSourceKind = 'headroom' | 'ollama' | 'lmstudio' | 'huggingface';

export interface ModelSource {
  kind: ModelSourceKind;
  /** The store's root directory (other tools' stores). */
  store?: string;
}

/** Where a loaded model stands. */
export type ModelState = 'unloaded' | 'loading' | 'ready' | 'draining' | 'stopping' | 'failed';

export interface RunnerExit {
  code: number | null;
  signal: string | null;
  /** The last bytes of the runner's log, for error messages. */
  logTail?: string;
}

/**
 * What the scheduler needs of a running runner. The supervisor's RunnerProcess implements it
 * (through a small adapter in main.ts); tests may pass a recording double of the same shape.
 */
export interface RunnerHandle {
  readonly url: string;
  readonly pid: number | undefined;
  readonly loadMs: number | undefined;
  /** Called once when the process exits for any reason; returns an unsubscribe function. */
  onExit(listener: (exit: RunnerExit) => void): () => void;
  /** SIGTERM, then SIGKILL after graceMs. Idempotent. */
  stop(opts?: { graceMs?: number }): Promise<void>;
}

/** Starts a runner for a model with a config; rejects (and leaves nothing running) when it cannot. */
export type StartRunner = (
  entry: ModelEntry,
  config: RunnerConfig,
  signal: AbortSignal,
) => Promise<RunnerHandle>;
