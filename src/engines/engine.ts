import type { ErrorCode } from '../lib/error-codes.js';
import type { EngineKind, RunnerConfig } from './types.js';

export type { EngineKind } from './types.js';

/**
 * One interface for the programs that run a model: how a runner starts (argv and environment
 * from a config, the port chosen by the daemon), how its readiness is known, what it can do, and
 * how the daemon asks it how full it is or to give memory back. The daemon holds one Engine per
 * kind and never branches on the kind beyond what `capabilities` says.
 */

export const ENGINE_KINDS: readonly EngineKind[] = ['llama-server', 'embedded', 'command'];

export interface EngineCapabilities {
  /** /v1/embeddings. llama-server serves them only from a runner started for embeddings. */
  embeddings: 'always' | 'dedicated-runner';
  /** POST /tokenize `{ content }` → `{ tokens }` (context_overflow "truncate_middle"). */
  tokenize: boolean;
  /** Idle slots' prompt caches can be dropped on request (medium memory pressure). */
  trim: boolean;
  /** A client disconnect stops prompt evaluation too, not only decoding. */
  cancelsPromptEvaluation: boolean;
  /** A reader that stops reading slows decoding (the runner awaits its socket). */
  backpressure: boolean;
  /**
   * A connection stays usable after a streamed answer. llama-server closes it without saying so
   * (no `Connection: close`), so a client that reuses it gets a reset: ask for a new one.
   */
  keepAliveAfterStream: boolean;
}

/** How the supervisor starts a runner (SpawnSpec's shape; engines may not import the supervisor). */
export interface LaunchSpec {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  readiness: { kind: 'ipc' } | { kind: 'http'; port: number; path?: string };
}

export interface LaunchContext {
  /** A free loopback port for engines that are told theirs (`needsPort`). */
  port: number;
  /** The model's name, which the runner reports as `model` in its answers. */
  name?: string;
  /** A directory of its own the runner may write to (llama-server's slot files). */
  stateDir?: string;
}

/** What a ready runner says of its context and work (undefined fields: it does not say). */
export interface RunnerLoad {
  /** Cells of the context holding tokens, over all slots. */
  tokensInUse: number;
  /** Requests decoding or evaluating a prompt now. */
  busy: number;
}

/** What a trim released, as the runner measured it. */
export interface TrimOutcome {
  /** Bytes the runner's resident set dropped by (0 when the engine cannot tell). */
  freedBytes: number;
  released: string[];
  /** Slots serving a request when the trim began, left alone. */
  busySlots: number;
}

/** One slot (sequence) of a ready runner. */
export interface SlotView {
  id: number;
  /** Tokens its cells hold (0: empty). */
  tokens: number;
  /** Serving a request now. */
  busy: boolean;
  /** Cells the slot holds at most. */
  contextSize: number;
}

/**
 * Saving and restoring a runner's sequence state (KV cells and their tokens) as files in the
 * runner's state directory (LaunchContext.stateDir), in llama.cpp's sequence state format.
 */
export interface EngineState {
  /** The runner's slots now. */
  slots(url: string, signal: AbortSignal): Promise<SlotView[]>;
  /**
   * Writes an idle slot's state to `fileName` in the state directory (streamed by the runner,
   * never held in the daemon); rejects when the runner refuses or cannot be reached.
   */
  save(
    url: string,
    slot: number,
    fileName: string,
    signal: AbortSignal,
  ): Promise<{ tokens: number; bytes: number }>;
  /** Loads `fileName` from the state directory into an idle slot; rejects when refused. */
  restore(
    url: string,
    slot: number,
    fileName: string,
    signal: AbortSignal,
  ): Promise<{ tokens: number }>;
  /**
   * The tokens a request to `path` with `body` would evaluate (chat: its template applied), or
   * undefined for a request it cannot tell (embeddings, a body it does not know).
   */
  promptTokens(
    url: string,
    path: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<number[] | undefined>;
  /**
   * What to add to a request's body so that it runs in `slot` and reuses its cells.
   */
  pinToSlot(body: Record<string, unknown>, slot: number): Record<string, unknown>;
  /**
   * The KV cache streams of a runner with `config`: a state file loads only into a runner of
   * its own stream count (the cache rewrites one for another count, src/state/format.ts).
   */
  streams(config: RunnerConfig): number;
  /**
   * Whether the runner goes on from a restored state of a model with these layers when the next
   * prompt leaves the state's last tokens (the usual follow-up: an answer's tail tokenizes
   * otherwise in it). False: states of such a model are not kept, as they would be saved for
   * nothing (docs/STATE.md).
   */
  reusesRestored(layers: { slidingWindow: boolean; recurrent: boolean }): boolean;
}

/** An error answer of a runner, rewritten into headroom's envelope. */
export interface TranslatedError {
  status: number;
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export interface Engine {
  readonly kind: EngineKind;
  readonly capabilities: EngineCapabilities;
  /** Whether the daemon must choose a port and pass it in LaunchContext. */
  readonly needsPort: boolean;
  launch(config: RunnerConfig, ctx: LaunchContext): LaunchSpec;
  /** The runner's context fill and work; undefined when it cannot be read now. */
  load(url: string, config: RunnerConfig, signal: AbortSignal): Promise<RunnerLoad | undefined>;
  /**
   * Drops idle slots' prompt caches (a trim never disturbs a request in flight); rejects when the
   * runner refuses, answers something else or cannot be reached. `reason` goes to its log.
   */
  trim(
    url: string,
    config: RunnerConfig,
    reason: string,
    signal: AbortSignal,
  ): Promise<TrimOutcome>;
  /**
   * Rewrites a runner's JSON error answer (status >= 400) into headroom's error codes, so that
   * clients see the same error whatever the engine; undefined passes it through unchanged.
   */
  translateError(status: number, body: unknown): TranslatedError | undefined;
  /** Sequence state save and restore (state across unloads); absent where the engine has none. */
  readonly state?: EngineState;
}
