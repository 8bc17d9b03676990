import { Counter, Gauge, type Registry } from 'prom-client';
import type { Engine } from '../engines/engine.js';
import type { RunnerConfig } from '../engines/types.js';
import { isAbortError } from '../lib/abort.js';
import { describeError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { PressureLevel } from '../monitor/pressure.js';
import type { StopReason } from '../scheduler/core-types.js';
import type { BeforeStop, Lease } from '../scheduler/model-manager.js';
import type { ModelEntry } from '../scheduler/types.js';
import type { StateCache, StateEntry } from '../state/cache.js';
import { commonPrefix } from '../state/format.js';

/**
 * State across unloads: before a runner is stopped for a reason that is not forced, its idle
 * slots holding at least `minTokens` tokens are saved (the runner streams each to a file, within
 * one time budget per unload); on a later request to a runner of the same model and key, the
 * saved state sharing the longest prefix with the request's prompt is restored into an empty
 * slot (else the idle one holding least, saved first when it holds a conversation) and the
 * request is pinned to that slot, so only the rest of the prompt is evaluated.
 * The cache (src/state/cache.ts) owns the files; this module decides when and drives the engine.
 */

export interface StateKeeperSettings {
  minTokens: number;
  /** The saves before one unload together; the runner is stopped when it runs out. */
  saveBudgetMs: number;
  /** Longest a restore may delay a request before it is forwarded without one. */
  restoreBudgetMs: number;
}

export interface StateKeeperOptions {
  cache: StateCache;
  settings: StateKeeperSettings;
  log: Logger;
  /** The engine of a runner with this config (undefined: none that saves state). */
  engineOf: (config: RunnerConfig) => Engine | undefined;
  /** The key a model's state is saved under with this config; undefined: not saved. */
  keyOf: (
    entry: Pick<ModelEntry, 'name' | 'path'>,
    config: RunnerConfig,
  ) => Promise<string | undefined>;
}

/**
 * Whether an unload saves state first: not when forced or past a drain deadline (requests are
 * still running), at shutdown (one deadline for everything), for a load that never served, or at
 * critical pressure (the save itself would hold memory longer).
 */
export function savesOnStop(reason: StopReason, level?: PressureLevel): boolean {
  switch (reason) {
    case 'ttl':
    case 'evicted':
    case 'max-models':
    case 'over-budget':
    case 'unload':
    case 'reload':
    case 'recycle':
      return true;
    case 'pressure':
      return level !== 'critical';
    case 'forced':
    case 'drain-deadline':
    case 'shutdown':
    case 'load-cancelled':
      return false;
  }
}

/** Longest a stopping runner may take to list its slots before its save is given up. */
const SLOTS_ANSWER_MS = 2000;

interface RunnerMemo {
  url: string;
  key: string | undefined;
  /** A runner of several slots: entries restored into it already (never twice). */
  tried: Set<string>;
  /**
   * A one-slot runner: the prompt of the last request, which its slot holds (with the answer),
   * known while every request since was seen here. Undefined when unknown.
   */
  held?: ArrayLike<number>;
  /** Restores into one runner run one at a time. */
  queue: Promise<unknown>;
}

export class StateKeeper {
  readonly #o: StateKeeperOptions;
  readonly #runners = new Map<string, RunnerMemo>();

  constructor(o: StateKeeperOptions) {
    this.#o = o;
  }

  get cache(): StateCache {
    return this.#o.cache;
  }

  /** The manager's beforeStop: saves a stopping runner's idle slots within the budget. */
  readonly beforeStop = async (o: BeforeStop): Promise<void> => {
    if (!savesOnStop(o.reason, o.level)) return;
    const engine = this.#o.engineOf(o.config);
    if (!engine?.state) return;
    const key = await this.#o.keyOf(o.entry, o.config).catch(() => undefined);
    if (key === undefined) return;
    const { settings, log } = this.#o;
    const signal = AbortSignal.timeout(settings.saveBudgetMs);
    const started = performance.now();
    let saved = 0;
    let bytes = 0;
    try {
      // An idle runner answers at once; one that does not (hung, frozen) is not waited for the
      // whole budget: its unload would be held up for nothing.
      const listed = AbortSignal.any([signal, AbortSignal.timeout(SLOTS_ANSWER_MS)]);
      const slots = (await engine.state.slots(o.url, listed))
        .filter((s) => !s.busy && s.tokens >= settings.minTokens)
        .sort((a, b) => b.tokens - a.tokens);
      for (const slot of slots) {
        const entry = await this.#saveSlot(engine, o.url, o.entry.name, key, slot.id, signal);
        if (entry) {
          saved++;
          bytes += entry.bytes;
        }
      }
    } catch (err) {
      log.warn(
        {
          model: o.entry.name,
          reason: o.reason,
          err: signal.aborted
            ? `time budget of ${settings.saveBudgetMs} ms spent`
            : describeError(err),
        },
        'saving state before unload stopped',
      );
    }
    if (saved > 0)
      log.info(
        {
          model: o.entry.name,
          reason: o.reason,
          slots: saved,
          bytes,
          ms: Math.round(performance.now() - started),
        },
        'state saved before unload',
      );
  };

  /**
   * Saves one slot of a runner as an entry: the runner streams it to a partial file, which the
   * cache commits (or deletes when the save fails; a file the runner may still be writing is
   * swept once it exited). Undefined: the file was discarded at commit.
   */
  async #saveSlot(
    engine: Engine,
    url: string,
    model: string,
    key: string,
    slot: number,
    signal: AbortSignal,
  ): Promise<StateEntry | undefined> {
    const { cache } = this.#o;
    const pending = await cache.pending(model);
    const t0 = performance.now();
    try {
      await engine.state!.save(url, slot, pending.name, signal);
    } catch (err) {
      cache.saveFailed();
      await cache.abandon(pending);
      throw err;
    }
    return cache.commit(pending, key, performance.now() - t0);
  }

  /** A model's runner is gone: forget what was restored into it, delete partial saves. */
  async runnerGone(model: string): Promise<void> {
    this.#runners.delete(model);
    await this.#o.cache.sweepPartials(model).catch(() => undefined);
  }

  /**
   * Restores the saved state that best starts this request's prompt into an empty slot of the
   * lease's runner and returns the body pinned to that slot; else the body unchanged. Never fails
   * a request for a state that cannot be restored (logged, forwarded as it is); rejects only with
   * the signal's reason when the client leaves.
   */
  async prepareRequest(
    lease: Lease,
    path: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<unknown> {
    const engine = this.#o.engineOf(lease.config);
    if (!engine?.state) return body;
    let memo = this.#runners.get(lease.model);
    // A token is at least one character: a shorter prompt cannot start with a saved state, and
    // is spared the lookup's round trips to the runner. It may take the slot all the same.
    if (
      typeof body !== 'object' ||
      body === null ||
      promptChars(body) < this.#o.settings.minTokens
    ) {
      if (memo?.url === lease.url) memo.held = undefined;
      return body;
    }
    if (memo?.url !== lease.url) {
      const key = await this.#o
        .keyOf({ name: lease.model, path: lease.config.modelPath }, lease.config)
        .catch(() => undefined);
      memo = { url: lease.url, key, tried: new Set(), queue: Promise.resolve() };
      this.#runners.set(lease.model, memo);
    }
    const m = memo;
    if (m.key === undefined) return body;
    const pending = this.#o.cache.entries(lease.model, m.key).filter((e) => !m.tried.has(e.id));
    if (pending.length === 0) {
      m.held = undefined;
      return body;
    }
    const run = m.queue.then(() =>
      this.#restore(engine, lease, m, path, body as Record<string, unknown>, signal),
    );
    m.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Saves the conversation an idle slot holds before a restore replaces it, within the save
   * budget. Undefined when it was not saved (logged; the restore goes on, as the runner would
   * have replaced the cells anyway). Rejects only when the client left.
   */
  async #swapOut(
    engine: Engine,
    lease: Lease,
    m: RunnerMemo,
    slot: number,
    clientSignal: AbortSignal,
  ): Promise<StateEntry | undefined> {
    const { settings, log } = this.#o;
    const signal = AbortSignal.any([clientSignal, AbortSignal.timeout(settings.saveBudgetMs)]);
    const t0 = performance.now();
    try {
      const entry = await this.#saveSlot(engine, lease.url, lease.model, m.key!, slot, signal);
      if (entry)
        log.info(
          {
            model: lease.model,
            slot,
            tokens: entry.tokens,
            bytes: entry.bytes,
            ms: Math.round(performance.now() - t0),
          },
          'state saved before its slot is reused',
        );
      return entry;
    } catch (err) {
      if (clientSignal.aborted) throw clientSignal.reason;
      log.warn(
        {
          model: lease.model,
          slot,
          err: signal.aborted
            ? `time budget of ${settings.saveBudgetMs} ms spent`
            : describeError(err),
        },
        'saving a slot before its reuse failed',
      );
      return undefined;
    }
  }

  async #restore(
    engine: Engine,
    lease: Lease,
    m: RunnerMemo,
    reqPath: string,
    body: Record<string, unknown>,
    clientSignal: AbortSignal,
  ): Promise<unknown> {
    const state = engine.state!;
    const { cache, settings, log } = this.#o;
    const candidates = cache.entries(lease.model, m.key!).filter((e) => !m.tried.has(e.id));
    if (candidates.length === 0) return body;
    const signal = AbortSignal.any([clientSignal, AbortSignal.timeout(settings.restoreBudgetMs)]);
    const t0 = performance.now();
    // Whatever happens below, this request goes to the runner next.
    const before = m.held;
    m.held = undefined;
    try {
      const slots = await state.slots(lease.url, signal);
      // An empty slot, else the idle one holding least: the runner would give this request a
      // slot and replace its cells anyway, and the saved state starts its prompt.
      const free = slots.filter((s) => !s.busy).sort((a, b) => a.tokens - b.tokens)[0];
      if (!free) return body;
      const prompt = await state.promptTokens(lease.url, reqPath, body, signal);
      if (!prompt) return body;
      // One slot: every request runs in it, so what it holds is known from the prompts seen.
      const single = slots.length === 1;
      if (single) m.held = prompt;
      const best = await cache.best(
        candidates,
        prompt,
        settings.minTokens,
        free.contextSize || Infinity,
      );
      cache.lookedUp(performance.now() - t0);
      if (!best) {
        cache.miss();
        return body;
      }
      // The slot already holds this conversation (its last request started this prompt at least
      // as far, and its cells were not erased since, by a trim): nothing to save or restore.
      if (
        single &&
        before !== undefined &&
        free.tokens >= best.prefix &&
        commonPrefix(before, prompt) >= best.prefix
      )
        return state.pinToSlot(body, free.id);
      // Several slots: which one a request went to is the runner's choice, so a state is
      // restored into a runner once. One slot keeps every state a candidate: one restored for a
      // shared prefix (a system prompt) comes back whole for its own conversation later.
      if (!single) m.tried.add(best.entry.id);
      // The slot holds a conversation worth keeping: it is saved before anything replaces it, so
      // restoring one conversation never loses another (each switch on a one-slot runner is a
      // save and a restore). When it starts this prompt at least as far, it is used as it is.
      if (free.tokens >= settings.minTokens) {
        const held = await this.#swapOut(engine, lease, m, free.id, clientSignal);
        const own = held && (await cache.best([held], prompt, best.prefix, Infinity));
        if (own) {
          if (!single) m.tried.add(own.entry.id);
          cache.hit();
          log.info(
            { model: lease.model, slot: free.id, prefix: own.prefix, prompt: prompt.length },
            'state kept in its slot',
          );
          return state.pinToSlot(body, free.id);
        }
      }
      if (!(await cache.verify(best.entry))) {
        cache.miss();
        return body;
      }
      const t1 = performance.now();
      // Saved with another slot count: restored from a copy with this runner's stream count.
      const file = await cache.forStreams(best.entry, state.streams(lease.config));
      if (!file) {
        cache.miss();
        return body;
      }
      try {
        await state.restore(lease.url, free.id, file.name, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        await cache.restoreFailed(best.entry, describeError(err));
        cache.miss();
        return body;
      } finally {
        await file.dispose();
      }
      const ms = performance.now() - t1;
      cache.hit();
      cache.restored(best.entry, ms);
      log.info(
        {
          model: lease.model,
          slot: free.id,
          tokens: best.entry.tokens,
          prefix: best.prefix,
          prompt: prompt.length,
          bytes: best.entry.bytes,
          ms: Math.round(ms),
        },
        'state restored',
      );
      return state.pinToSlot(body, free.id);
    } catch (err) {
      if (clientSignal.aborted) throw clientSignal.reason;
      log.warn(
        {
          model: lease.model,
          err:
            isAbortError(err) || signal.aborted
              ? `time budget of ${settings.restoreBudgetMs} ms spent`
              : describeError(err),
        },
        'restoring state skipped',
      );
      return body;
    }
  }

  /** The cache's counters and sizes for Prometheus (read at scrape time). */
  register(registry: Registry): void {
    const cache = this.#o.cache;
    type Stats = ReturnType<StateCache['stats']>;
    const gauge = (name: string, help: string, read: (s: Stats) => number): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(read(cache.stats()));
        },
      });
    };
    // The cache's totals only grow: exposed as counters, so rate() and increase() apply.
    const counter = (name: string, help: string, read: (s: Stats) => number): void => {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(read(cache.stats()));
        },
      });
    };
    counter(
      'headroom_state_saves_total',
      'Slot states saved (before an unload, or before a restore reuses their slot).',
      (s) => s.saves,
    );
    counter(
      'headroom_state_save_failures_total',
      'Saves that failed or ran out of time.',
      (s) => s.saveFailures,
    );
    counter('headroom_state_saved_bytes_total', 'Bytes of state saved.', (s) => s.savedBytes);
    counter(
      'headroom_state_save_seconds_total',
      'Time spent saving state.',
      (s) => s.saveMs / 1000,
    );
    counter(
      'headroom_state_restores_total',
      'Saved states restored into a runner.',
      (s) => s.restores,
    );
    counter(
      'headroom_state_restored_bytes_total',
      'Bytes of state restored.',
      (s) => s.restoredBytes,
    );
    counter(
      'headroom_state_restore_seconds_total',
      'Time spent restoring state.',
      (s) => s.restoreMs / 1000,
    );
    counter(
      'headroom_state_verify_seconds_total',
      'Time spent hashing saved states before restoring them.',
      (s) => s.verifyMs / 1000,
    );
    counter(
      'headroom_state_lookup_seconds_total',
      "Time spent finding a request's saved state (its prompt's tokens, prefix compare).",
      (s) => s.lookupMs / 1000,
    );
    counter(
      'headroom_state_hits_total',
      'Requests that found a saved state starting their prompt.',
      (s) => s.hits,
    );
    counter(
      'headroom_state_misses_total',
      'Requests that looked for a saved state and found none usable.',
      (s) => s.misses,
    );
    counter(
      'headroom_state_discarded_total',
      'Saved states discarded (corrupt, truncated, foreign, too large).',
      (s) => s.discarded,
    );
    counter(
      'headroom_state_evicted_total',
      'Saved states removed by the byte cap (least recently used).',
      (s) => s.evicted,
    );
    gauge('headroom_state_entries', 'Saved states on disk.', (s) => s.entries);
    gauge('headroom_state_bytes', 'Bytes of saved state on disk.', (s) => s.bytes);
  }
}

/**
 * A lower bound of a request's prompt tokens: the characters of its chat messages' text parts or
 * of a completion's prompt (a token id counts one).
 */
export function promptChars(body: object): number {
  const b = body as { messages?: unknown; prompt?: unknown; input?: unknown };
  const text = (v: unknown): number => {
    if (typeof v === 'string') return v.length;
    // A prompt given as token ids: one each.
    if (typeof v === 'number') return 1;
    if (Array.isArray(v)) return v.reduce((n: number, x: unknown) => n + text(x), 0);
    if (typeof v === 'object' && v !== null) {
      const o = v as { content?: unknown; text?: unknown };
      return text(o.content) + text(o.text);
    }
    return 0;
  };
  return text(b.messages) + text(b.prompt) + text(b.input);
}
