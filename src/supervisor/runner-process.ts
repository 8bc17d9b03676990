import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import { abortReason, sleep, throwIfAborted } from '../lib/abort.js';
import { HeadroomError, describeError } from '../lib/errors.js';
import { NOTE_PREFIX, RunnerLog } from './log-file.js';
import { isTerminal, nextState, type RunnerState } from './state.js';

/**
 * One runner process under supervision: spawn in its own process group, the start handshake,
 * logs to a size-capped file, crash detection, and SIGTERM-then-SIGKILL stop. DESIGN.md in this
 * folder has the state machine and the invariants; this file implements them.
 */

/** How to launch a runner: a program and its arguments, never through a shell. */
export interface SpawnSpec {
  command: string;
  args: string[];
  /** The child's whole environment. Defaults to the daemon's. */
  env?: NodeJS.ProcessEnv;
  /** Working directory. Defaults to the daemon's. */
  cwd?: string;
  /**
   * How the supervisor knows the runner is ready. `ipc` (the default): a Node runner reports
   * `listening` (its port) and `ready` over the IPC channel, then GET /health must answer 200.
   * `http`: a program that knows nothing of headroom (llama-server) is told its port in argv;
   * GET /health on that port is polled from the spawn on (503 while it loads) until it answers
   * 200, and the load time is spawn to healthy.
   */
  readiness?: { kind: 'ipc' } | { kind: 'http'; port: number; path?: string };
}

export interface RunnerStartOptions {
  /** The model's name: used in messages and log notes. */
  name: string;
  spawn: SpawnSpec;
  /** The runner's log file (its directory must exist). Appended to across runs. */
  logFile: string;
  /** Size at which the log is rotated. Defaults to 10 MiB. */
  logMaxBytes?: number;
  /** Rotated logs kept (`.1 … .N`). Defaults to 1. */
  logKeep?: number;
  /** Longest the whole start may take, spawn to healthy. */
  startTimeoutMs: number;
  /** Longest a start may go without output, IPC messages or health answers. */
  stallTimeoutMs: number;
  /** Aborting gives up the start: the process is killed and start rejects with the reason. */
  signal?: AbortSignal;
  /**
   * Pause between GET /health polls after the runner reports ready. Defaults to 100 ms, 10 ms
   * with HTTP readiness (polled from the spawn on).
   */
  healthIntervalMs?: number;
  /** Written to /proc/<pid>/oom_score_adj, best effort; null leaves it alone. Defaults to 500. */
  oomScoreAdj?: number | null;
  /**
   * Called once the process exists (before it is ready), with its pid, which is also its process
   * group's id: lets the daemon record it, so that a runner outliving a killed daemon is found.
   */
  onSpawn?: (pid: number) => void;
  /**
   * Liveness once ready: GET /health every `intervalMs`, each given `timeoutMs`; after `failures`
   * checks in a row without a 200 (no answer, an error, another status) the runner is taken for
   * hung and its process group SIGKILLed, so it ends `failed` like a crash and the next request
   * loads it again. Undefined: no checks after ready.
   */
  liveness?: { intervalMs: number; timeoutMs: number; failures: number };
}

export interface RunnerExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last ~2 KiB the process wrote to stdout/stderr. */
  logTail: string;
}

export interface RunnerEvents {
  state: [from: RunnerState, to: RunnerState];
  /**
   * The process is gone (its exit status, in the turn the child's exit is seen): nothing can be
   * sent to it any more. `exit` follows once every handle is closed and the log tail is read.
   */
  exited: [status: { code: number | null; signal: NodeJS.Signals | null }];
  exit: [exit: RunnerExitInfo];
}

export const DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024;
export const DEFAULT_STOP_GRACE_MS = 5000;
export const DEFAULT_OOM_SCORE_ADJ = 500;
const DEFAULT_HEALTH_INTERVAL_MS = 100;
/**
 * With HTTP readiness the polls are the only way to see the load end, and every poll waited for
 * adds to the cold start: llama-server on a 150M model is healthy ~230 ms after its spawn, so a
 * 100 ms pause cost a cold start ~50 ms on average. A poll is one loopback request.
 */
const HTTP_READINESS_INTERVAL_MS = 10;
/** Bytes of output an error message quotes. */
const LOG_TAIL_BYTES = 2048;
/**
 * How often the log's size is read: growth is a start's sign of life, and past the cap the log
 * is rotated. One fstat per runner per tick.
 */
const LOG_WATCH_MS = 250;
/** A runner that reported a load error exits by itself; this long before it is killed. */
const LOAD_ERROR_GRACE_MS = 1000;
/** After the process exits, how long its IPC channel may stay open (held by an escaped grandchild). */
const PIPE_CLOSE_CAP_MS = 1000;
const HEALTH_REQUEST_TIMEOUT_MS = 2000;

/** Why a start failed, before the exit status and the log tail are known. */
interface StartFailure {
  code: 'RUNNER_START_FAILED' | 'RUNNER_START_TIMEOUT' | 'RUNNER_EXITED';
  message: string;
  details?: Record<string, unknown>;
}

type StartOutcome =
  | { kind: 'ready' }
  | { kind: 'failed'; failure: StartFailure }
  | { kind: 'aborted'; reason: unknown };

/** The start handshake's inputs, routed from the child's events while a start is under way. */
interface StartWatch {
  progress(): void;
  listening(): void;
  ready(): void;
  fail(failure: StartFailure, graceMs: number, how?: 'signal' | 'wait'): void;
}

export class RunnerProcess extends EventEmitter<RunnerEvents> {
  readonly name: string;
  #state: RunnerState = 'starting';
  #pid: number | undefined;
  #port: number | undefined;
  #loadMs: number | undefined;
  #exit: RunnerExitInfo | undefined;
  readonly #log: RunnerLog;
  readonly #spec: SpawnSpec;
  readonly #spawnedAt = performance.now();
  #child: ChildProcess | undefined;
  #logWatch: NodeJS.Timeout | undefined;
  #start: StartWatch | undefined;
  /** The exit status, from the child's 'exit' event (its pipes may still be open). */
  #exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Set when we ask the process to end (stop, abort, failed start). */
  #stopRequested = false;
  /** Set when the process is ended because its start failed: the final state is `failed`. */
  #startFailed = false;
  #killTimer: NodeJS.Timeout | undefined;
  #pipeCapTimer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  /** Aborted when the process exits or is asked to stop: ends the liveness checks. */
  readonly #alive = new AbortController();
  readonly #closed: Promise<void>;
  #markClosed!: () => void;

  private constructor(name: string, spec: SpawnSpec, log: RunnerLog) {
    super();
    this.name = name;
    this.#spec = spec;
    this.#log = log;
    this.#closed = new Promise((resolve) => (this.#markClosed = resolve));
  }

  /**
   * Spawns the runner and waits until it is ready: IPC `ready` and GET /health answering 200.
   * Rejects with a HeadroomError (RUNNER_START_FAILED, RUNNER_START_TIMEOUT, RUNNER_EXITED) that
   * carries the exit status and the log tail, or with the signal's reason when aborted; in every
   * rejection the process group has been killed, the process reaped and every handle closed.
   */
  static async start(opts: RunnerStartOptions): Promise<RunnerProcess> {
    validateOptions(opts);
    throwIfAborted(opts.signal);
    const log = await RunnerLog.open({
      path: opts.logFile,
      maxBytes: opts.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES,
      keep: opts.logKeep ?? 1,
    });
    if (opts.signal?.aborted) {
      await log.close();
      throw abortReason(opts.signal);
    }
    const runner = new RunnerProcess(opts.name, opts.spawn, log);
    const watching = runner.#watchStart(opts);
    runner.#spawn();
    if (runner.#pid !== undefined) opts.onSpawn?.(runner.#pid);
    const readiness = opts.spawn.readiness;
    if (readiness?.kind === 'http' && runner.#pid !== undefined) {
      // The port was chosen before the spawn: poll its health from now on.
      runner.#port = readiness.port;
      runner.#start?.listening();
      runner.#start?.ready();
    }
    await runner.#adjustOomScore(
      opts.oomScoreAdj === undefined ? DEFAULT_OOM_SCORE_ADJ : opts.oomScoreAdj,
    );
    let outcome = await watching;
    // `watching` settled to ready while the process was alive, but the oom write may have let
    // its exit be seen since: then it exited before it was ready.
    if (outcome.kind === 'ready' && runner.#exitStatus) {
      outcome = {
        kind: 'failed',
        failure: { code: 'RUNNER_EXITED', message: 'exited before it was ready' },
      };
    }
    if (outcome.kind === 'ready') {
      runner.#transition('ready');
      runner.#note(`ready in ${Math.round(runner.#loadMs ?? 0)} ms (url ${runner.url})`);
      if (opts.liveness) void runner.#watchLiveness(opts.liveness);
      return runner;
    }
    await runner.#closed;
    if (outcome.kind === 'aborted') throw outcome.reason;
    throw startError(runner.name, runner.#pid, outcome.failure, runner.#exit);
  }

  get state(): RunnerState {
    return this.#state;
  }

  /** The process id; undefined only when the spawn itself failed. */
  get pid(): number | undefined {
    return this.#pid;
  }

  /** `http://127.0.0.1:PORT` once the runner reported its port (always, once start resolved). */
  get url(): string {
    return `http://127.0.0.1:${this.#port ?? 0}`;
  }

  /** Load time the runner reported with `ready`. */
  get loadMs(): number | undefined {
    return this.#loadMs;
  }

  /** Set once the process has exited and every handle is closed (state stopped or failed). */
  get exit(): RunnerExitInfo | undefined {
    return this.#exit;
  }

  /**
   * Marks the runner as draining (the scheduler sends it no new work; the process keeps
   * running). Returns whether it is draining now: false when it is not ready (stopping, exited).
   */
  drain(): boolean {
    if (this.#state === 'ready') this.#transition('draining');
    return this.#state === 'draining';
  }

  /**
   * SIGTERM to the process group, SIGKILL after `graceMs` (default 5000; 0 kills at once).
   * Memoised: every call shares one promise, whatever its graceMs. Resolves (never rejects) when
   * the process has exited, the group is gone, and the pipes, IPC channel and log are closed.
   * Stopping a runner that already exited on its own just waits for that cleanup (state failed).
   */
  stop(opts: { graceMs?: number } = {}): Promise<void> {
    const graceMs = opts.graceMs ?? DEFAULT_STOP_GRACE_MS;
    if (!(Number.isFinite(graceMs) && graceMs >= 0 && graceMs <= 2_147_483_647)) {
      return Promise.reject(
        new RangeError(`graceMs must be a number of milliseconds in [0, 2^31-1], got ${graceMs}`),
      );
    }
    this.#stopping ??= (async () => {
      this.#terminate(graceMs);
      await this.#closed;
    })();
    return this.#stopping;
  }

  dispose(): Promise<void> {
    return this.stop();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #transition(to: RunnerState): void {
    const from = this.#state;
    this.#state = nextState(from, to);
    this.emit('state', from, to);
  }

  #spawn(): void {
    const spec = this.#spec;
    this.#note(`starting "${this.name}": ${[spec.command, ...spec.args].join(' ')}`);
    // detached: its own process group, so one signal reaches everything it spawned, and a
    // Ctrl-C at the daemon's terminal does not hit runners behind the daemon's back.
    // Its output goes straight to the log file: the daemon reads none of it while it runs.
    const ipc = spec.readiness?.kind !== 'http';
    const out = this.#log.fd;
    const child = spawn(spec.command, spec.args, {
      stdio: ipc ? ['ignore', out, out, 'ipc'] : ['ignore', out, out],
      detached: true,
      shell: false,
      env: spec.env ?? process.env,
      cwd: spec.cwd,
      windowsHide: true,
    });
    this.#child = child;
    this.#pid = child.pid;
    child.on('error', (err) => this.#onChildError(err));
    child.on('message', (msg) => this.#onMessage(msg));
    child.once('exit', (code, signal) => this.#onExit(code, signal));
    child.once('close', () => void this.#finalise());
    if (this.#pid !== undefined) this.#note(`pid ${this.#pid}`);
    this.#watchLog();
  }

  /** Sets up the start handshake; the returned promise never rejects. */
  #watchStart(opts: RunnerStartOptions): Promise<StartOutcome> {
    return new Promise<StartOutcome>((resolve) => {
      const signal = opts.signal;
      const health = new AbortController();
      let listening = false;
      let polling = false;
      let settled = false;
      const settle = (
        outcome: StartOutcome,
        graceMs: number,
        how: 'signal' | 'wait' = 'signal',
      ): void => {
        if (settled) return;
        settled = true;
        clearTimeout(startTimer);
        clearTimeout(stallTimer);
        signal?.removeEventListener('abort', onAbort);
        health.abort();
        this.#start = undefined;
        if (outcome.kind !== 'ready') {
          if (outcome.kind === 'failed') {
            this.#startFailed = true;
            this.#note(`start failed: ${outcome.failure.message}`);
          } else this.#note('start aborted');
          this.#terminate(graceMs, how);
        }
        resolve(outcome);
      };
      const fail = (
        failure: StartFailure,
        graceMs: number,
        how: 'signal' | 'wait' = 'signal',
      ): void => settle({ kind: 'failed', failure }, graceMs, how);
      const onAbort = (): void => settle({ kind: 'aborted', reason: abortReason(signal!) }, 0);
      const startTimer = setTimeout(
        () =>
          fail(
            {
              code: 'RUNNER_START_TIMEOUT',
              message: `was not ready within ${opts.startTimeoutMs} ms`,
            },
            0,
          ),
        opts.startTimeoutMs,
      );
      const stallTimer = setTimeout(
        () =>
          fail(
            {
              code: 'RUNNER_START_TIMEOUT',
              message: `stalled while starting: no output or progress for ${opts.stallTimeoutMs} ms`,
            },
            0,
          ),
        opts.stallTimeoutMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      const readiness = opts.spawn.readiness;
      const healthPath = readiness?.kind === 'http' ? (readiness.path ?? '/health') : '/health';
      const pollHealth = async (): Promise<void> => {
        const interval =
          opts.healthIntervalMs ??
          (opts.spawn.readiness?.kind === 'http'
            ? HTTP_READINESS_INTERVAL_MS
            : DEFAULT_HEALTH_INTERVAL_MS);
        for (;;) {
          const status = await healthStatus(this.#port ?? 0, health.signal, healthPath).catch(
            () => undefined,
          );
          if (health.signal.aborted) return;
          if (status !== undefined) stallTimer.refresh();
          if (status === 200) {
            this.#loadMs ??= performance.now() - this.#spawnedAt;
            // The process may have exited after answering: that is an exit during start.
            if (this.#exitStatus)
              fail({ code: 'RUNNER_EXITED', message: 'exited before it was ready' }, 0);
            else settle({ kind: 'ready' }, 0);
            return;
          }
          await sleep(interval, health.signal).catch(() => undefined);
          if (health.signal.aborted) return;
        }
      };
      this.#start = {
        progress: () => stallTimer.refresh(),
        listening: () => (listening = true),
        ready: () => {
          if (!listening)
            fail(
              {
                code: 'RUNNER_START_FAILED',
                message: 'reported ready before reporting its port (protocol error)',
              },
              0,
            );
          else if (!polling) {
            polling = true;
            void pollHealth();
          }
        },
        fail,
      };
    });
  }

  #onMessage(msg: unknown): void {
    this.#start?.progress();
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as Record<string, unknown>;
    if (m.type === 'listening' && isPort(m.port)) {
      if (this.#port === undefined) this.#port = m.port;
      this.#start?.listening();
    } else if (m.type === 'ready') {
      this.#loadMs =
        typeof m.loadMs === 'number' && Number.isFinite(m.loadMs) && m.loadMs >= 0
          ? m.loadMs
          : performance.now() - this.#spawnedAt;
      this.#start?.ready();
    } else if (m.type === 'error') {
      const code = typeof m.code === 'string' ? m.code : 'unknown';
      const message = typeof m.message === 'string' ? m.message.slice(0, 4096) : 'no message';
      this.#note(`runner reported error ${code}: ${message}`);
      this.#start?.fail(
        {
          code: 'RUNNER_START_FAILED',
          message: `failed to load: ${message} (${code})`,
          details: { runnerCode: code, runnerMessage: message },
        },
        // It exits by itself (the protocol says so): wait for that, so that its own exit
        // status is reported, and kill it only if it does not.
        LOAD_ERROR_GRACE_MS,
        'wait',
      );
    }
  }

  #onChildError(err: Error): void {
    // Spawn failures come here (no pid; 'close' follows). Failed kill/send calls also do: the
    // exit path covers those, so they are only noted.
    if (this.#pid === undefined) {
      this.#start?.fail(
        {
          code: 'RUNNER_START_FAILED',
          message: `could not be started (${this.#spec.command}: ${err.message})`,
        },
        0,
      );
    } else this.#note(`child process error: ${err.message}`);
  }

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    this.#exitStatus = { code, signal };
    this.emit('exited', { code, signal });
    this.#alive.abort();
    clearTimeout(this.#killTimer);
    this.#killTimer = undefined;
    // Whatever the leader left behind in its group goes with it. The group id cannot be reused
    // while members remain, and this runs in the same turn as the reap.
    this.#signalGroup('SIGKILL');
    this.#start?.fail({ code: 'RUNNER_EXITED', message: 'exited before it was ready' }, 0);
    // An IPC channel held open by a process that escaped the group must not keep us waiting.
    this.#pipeCapTimer = setTimeout(() => {
      if (this.#child?.connected) this.#child.disconnect();
    }, PIPE_CLOSE_CAP_MS);
  }

  /**
   * Runs once, on the child's 'close' (exited, or never spawned, and all stdio closed). Never
   * rejects, and always settles `#closed` (stop() must not hang on a bug or a throwing listener).
   */
  async #finalise(): Promise<void> {
    try {
      await this.#finish();
    } catch (err) {
      process.emitWarning(
        `headroom supervisor: finishing runner "${this.name}" failed: ${describeError(err)}`,
      );
    } finally {
      this.#markClosed();
    }
  }

  async #finish(): Promise<void> {
    clearTimeout(this.#pipeCapTimer);
    clearTimeout(this.#killTimer);
    this.#pipeCapTimer = this.#killTimer = undefined;
    clearInterval(this.#logWatch);
    this.#logWatch = undefined;
    this.#child?.removeAllListeners();
    const logTail = await this.#log.tail(LOG_TAIL_BYTES).catch(() => '');
    const status = this.#exitStatus ?? { code: null, signal: null };
    const expected = this.#stopRequested && !this.#startFailed;
    this.#note(
      `exited (code ${status.code ?? '-'}, signal ${status.signal ?? '-'})${this.#stopRequested ? '' : ' unexpectedly'}`,
    );
    await this.#log.close().catch(() => undefined);
    this.#child = undefined;
    this.#exit = { ...status, logTail };
    this.#transition(expected ? 'stopped' : 'failed');
    this.emit('exit', this.#exit);
  }

  /**
   * Ends the process (group): SIGTERM, then SIGKILL after graceMs (0: SIGKILL now). With
   * `how: 'wait'` no SIGTERM is sent: the process is expected to exit by itself within graceMs.
   * A later call can only make it harsher (graceMs 0).
   */
  #terminate(graceMs: number, how: 'signal' | 'wait' = 'signal'): void {
    this.#alive.abort();
    if (this.#exitStatus || isTerminal(this.#state)) return;
    if (!this.#stopRequested) {
      this.#stopRequested = true;
      if (this.#state !== 'stopping') this.#transition('stopping');
      if (graceMs > 0) {
        if (how === 'signal') {
          this.#note(`stopping: SIGTERM, SIGKILL after ${graceMs} ms`);
          this.#signalGroup('SIGTERM');
        } else this.#note(`waiting ${graceMs} ms for it to exit, then SIGKILL`);
        this.#killTimer = setTimeout(() => {
          this.#note(`still running after ${graceMs} ms: SIGKILL`);
          this.#signalGroup('SIGKILL');
        }, graceMs);
        return;
      }
    } else if (graceMs > 0) return;
    this.#note('stopping: SIGKILL');
    clearTimeout(this.#killTimer);
    this.#signalGroup('SIGKILL');
  }

  /**
   * The liveness loop (see RunnerStartOptions.liveness). Never rejects; ends when the process
   * exits or is stopped. A hung runner is killed, not stopped: a process that answers nothing
   * would only sit out the SIGTERM grace while requests wait on it.
   */
  async #watchLiveness(l: {
    intervalMs: number;
    timeoutMs: number;
    failures: number;
  }): Promise<void> {
    const signal = this.#alive.signal;
    const path =
      this.#spec.readiness?.kind === 'http' ? (this.#spec.readiness.path ?? '/health') : '/health';
    let missed = 0;
    while (!signal.aborted) {
      await sleep(l.intervalMs, signal).catch(() => undefined);
      if (signal.aborted) return;
      const status = await healthStatus(this.#port ?? 0, signal, path, l.timeoutMs).catch(() => 0);
      if (signal.aborted) return;
      missed = status === 200 ? 0 : missed + 1;
      if (missed >= l.failures) {
        this.#note(
          `no healthy answer to ${l.failures} checks in a row (${status === 0 ? `none within ${l.timeoutMs} ms` : `last status ${status}`}): taken for hung, SIGKILL`,
        );
        this.#alive.abort();
        this.#signalGroup('SIGKILL');
        return;
      }
    }
  }

  #signalGroup(signal: NodeJS.Signals): void {
    if (this.#pid === undefined) return;
    try {
      process.kill(-this.#pid, signal);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ESRCH' && code !== 'EPERM')
        this.#note(`could not send ${signal}: ${describeError(err)}`);
    }
  }

  async #adjustOomScore(value: number | null): Promise<void> {
    if (value === null || this.#pid === undefined) return;
    try {
      await writeFile(`/proc/${this.#pid}/oom_score_adj`, String(value));
    } catch (err) {
      // Best effort: no /proc (macOS), already gone, or not allowed to lower it.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EACCES' && code !== 'EPERM' && code !== 'ESRCH') {
        this.#note(`could not set oom_score_adj: ${describeError(err)}`);
      }
    }
  }

  /**
   * Reads the log's size every LOG_WATCH_MS while the process lives: output during a start counts
   * as progress (the stall timer), and a log past its cap is rotated.
   */
  #watchLog(): void {
    let last = -1;
    let busy = false;
    this.#logWatch = setInterval(() => {
      if (busy) return;
      busy = true;
      void (async () => {
        try {
          const size = await this.#log.size();
          if (size !== last) {
            if (last >= 0) this.#start?.progress();
            last = size;
          }
          if (size > this.#log.maxBytes && (await this.#log.check())) last = -1;
        } catch {
          // A log that cannot be read or rotated must not stop the runner.
        } finally {
          busy = false;
        }
      })();
    }, LOG_WATCH_MS);
    this.#logWatch.unref();
  }

  /** A line from the supervisor itself in the runner's log. Never throws. */
  #note(text: string): void {
    this.#log.note(`${NOTE_PREFIX}${new Date().toISOString()}] ${text}`).catch(() => undefined);
  }
}

function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 65536;
}

/** GET /health on loopback with no keep-alive (no socket outlives the call). */
function healthStatus(
  port: number,
  signal: AbortSignal,
  path = '/health',
  timeoutMs = HEALTH_REQUEST_TIMEOUT_MS,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host: '127.0.0.1',
        port,
        path,
        agent: false,
        signal,
        timeout: timeoutMs,
        headers: { connection: 'close' },
      },
      (res) => {
        res.on('error', reject);
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.resume();
      },
    );
    req.on('timeout', () => req.destroy(new Error('health check timed out')));
    req.on('error', reject);
  });
}

function startError(
  name: string,
  pid: number | undefined,
  failure: StartFailure,
  exit: RunnerExitInfo | undefined,
): HeadroomError {
  const code = exit?.code ?? null;
  const signal = exit?.signal ?? null;
  const status = signal
    ? `signal ${signal}`
    : code === null
      ? 'no exit status'
      : `exit code ${code}`;
  const tail = exit?.logTail.trim() ?? '';
  const message = `runner "${name}" ${failure.message} (${status}).${tail ? `\nLast log output:\n${tail}` : ' It wrote no output.'}`;
  return new HeadroomError(failure.code, message, {
    status: failure.code === 'RUNNER_START_TIMEOUT' ? 504 : 500,
    details: {
      runner: name,
      pid,
      exitCode: code,
      signal,
      logTail: exit?.logTail ?? '',
      ...failure.details,
    },
  });
}

function invalid(message: string): HeadroomError {
  return new HeadroomError('RUNNER_INVALID_OPTIONS', `invalid runner options: ${message}`);
}

function validateOptions(o: RunnerStartOptions): void {
  if (typeof o.name !== 'string' || o.name.length === 0)
    throw invalid('name must be a non-empty string');
  if (typeof o.spawn?.command !== 'string' || o.spawn.command.length === 0)
    throw invalid('spawn.command must be a non-empty string');
  if (!Array.isArray(o.spawn.args) || !o.spawn.args.every((a) => typeof a === 'string'))
    throw invalid('spawn.args must be an array of strings');
  const r = o.spawn.readiness;
  if (r !== undefined && r.kind === 'http' && !(isPort(r.port) && r.port > 0))
    throw invalid('spawn.readiness.port must be a TCP port (1–65535)');
  if (r?.kind === 'http' && r.path !== undefined && !/^\/[\x21-\x7e]*$/.test(r.path))
    throw invalid('spawn.readiness.path must be an absolute URL path');
  if (typeof o.logFile !== 'string' || o.logFile.length === 0)
    throw invalid('logFile must be a non-empty string');
  const positive = (v: number | undefined, what: string, required: boolean): void => {
    if (v === undefined && !required) return;
    // setTimeout fires at once for delays above 2^31-1 ms: refuse them rather than misbehave.
    if (!(typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= 2_147_483_647))
      throw invalid(`${what} must be a number of milliseconds in (0, 2^31-1], got ${v}`);
  };
  positive(o.startTimeoutMs, 'startTimeoutMs', true);
  positive(o.stallTimeoutMs, 'stallTimeoutMs', true);
  positive(o.healthIntervalMs, 'healthIntervalMs', false);
  if (o.logMaxBytes !== undefined && !(Number.isSafeInteger(o.logMaxBytes) && o.logMaxBytes > 0))
    throw invalid(`logMaxBytes must be a positive integer, got ${o.logMaxBytes}`);
  if (
    o.logKeep !== undefined &&
    !(Number.isInteger(o.logKeep) && o.logKeep >= 0 && o.logKeep <= 1000)
  )
    throw invalid(`logKeep must be an integer in [0, 1000], got ${o.logKeep}`);
  const adj = o.oomScoreAdj;
  if (adj !== undefined && adj !== null && !(Number.isInteger(adj) && adj >= -1000 && adj <= 1000))
    throw invalid(`oomScoreAdj must be an integer in [-1000, 1000], got ${adj}`);
}
