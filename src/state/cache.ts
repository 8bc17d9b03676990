import { createHash, randomUUID } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { syncDirectory, writeFileAtomic } from '../lib/atomic-write.js';
import { describeError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import {
  StateFormatError,
  commonPrefix,
  readStateHeader,
  readStateLayout,
  readStreamCount,
  writeWithStreams,
} from './format.js';

/**
 * Saved sequence state on disk: one directory per model under `root` (the runner writes its slot
 * files there, llama-server's --slot-save-path), and one index (`index.json`) naming every file
 * that was written completely, with its key, size, token count and SHA-256.
 *
 * - A runner writes a save to a `partial-*` name; only `commit` (fsync, hash, rename, fsync the
 *   directory, then the index written atomically) makes it an entry. A save cut short by a kill
 *   leaves a partial file, which nothing ever loads and `create` and `sweepPartials` delete.
 * - An entry is used only under the key it was saved with (model file identity and the config
 *   that shapes the cells, `stateKey`) and only after its file hashes to what was recorded: a
 *   corrupt, truncated or foreign file is deleted with a log line, never handed to a runner.
 * - The files together stay under `maxBytes`: least recently used entries go first.
 *
 * The cells are never read into memory here (hashing streams the file); token lists are kept
 * (4 bytes a token) to find the entry whose tokens start a new prompt.
 */

export interface StateKeyParts {
  /** The model file: path, size and modification time. */
  file: { path: string; size: number; mtimeMs: number };
  engine: string;
  /** The runner's build (llama-server's version); absent for the embedded runner's package. */
  runtime?: string;
  kvCacheKeyType: string;
  kvCacheValueType: string;
  /** Flash attention stores V untransposed: a state saved one way does not load the other. */
  flashAttention: boolean;
}

/** The key a state is saved and found under: what decides whether its cells fit a runner. */
export function stateKey(p: StateKeyParts): string {
  const canonical = JSON.stringify([
    p.file.path,
    p.file.size,
    Math.round(p.file.mtimeMs),
    p.engine,
    p.runtime ?? '',
    p.kvCacheKeyType,
    p.kvCacheValueType,
    p.flashAttention,
  ]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 32);
}

const entrySchema = z.object({
  id: z.string().regex(/^[A-Za-z0-9-]+$/),
  model: z.string().min(1),
  dir: z.string().regex(/^[A-Za-z0-9._-]+$/),
  key: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  tokens: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  savedAt: z.number(),
  usedAt: z.number(),
});
const indexSchema = z.object({ version: z.literal(1), entries: z.array(entrySchema) });

export type StateEntry = z.output<typeof entrySchema>;

export interface StateCacheOptions {
  /** The directory of model directories and the index ($HEADROOM_HOME/state/slots). */
  root: string;
  /** Bytes all saved files together may take. */
  maxBytes: number;
  /** Longest token list accepted from a file header. Defaults to 1Mi tokens. */
  maxTokens?: number;
  log: Logger;
  now?: () => number;
}

/** Counters since the cache was created (the daemon's /metrics reads them). */
export interface StateCacheStats {
  saves: number;
  saveFailures: number;
  savedBytes: number;
  saveMs: number;
  restores: number;
  restoreFailures: number;
  restoredBytes: number;
  restoreMs: number;
  /** Time spent hashing entries before a restore. */
  verifyMs: number;
  /** Time spent finding the entry for a request (slots, the prompt's tokens, prefix compare). */
  lookupMs: number;
  /** Requests to a freshly loaded runner that found a saved state starting their prompt. */
  hits: number;
  /** Requests that looked for one (states of their model and key existed) and found none. */
  misses: number;
  /** Files discarded: corrupt, truncated, foreign, or dropped by the byte cap. */
  discarded: number;
  evicted: number;
  /** Entries and bytes on disk now. */
  entries: number;
  bytes: number;
}

export interface PendingSave {
  model: string;
  /** The model's directory under root (the runner's save path). */
  dir: string;
  /** The name the runner writes to (inside dir). */
  name: string;
}

/** A model name as one safe directory name. */
export function modelDirName(model: string): string {
  return model.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
}

const PARTIAL = /^partial-.*\.bin$/;

export class StateCache {
  readonly #root: string;
  readonly #maxBytes: number;
  readonly #maxTokens: number;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #entries = new Map<string, StateEntry>();
  /** Token lists of entries, read from their file headers once. */
  readonly #tokens = new Map<string, Int32Array>();
  /** Index writes in order, one at a time. */
  #writing: Promise<void> = Promise.resolve();
  readonly #stats: Omit<StateCacheStats, 'entries' | 'bytes'> = {
    saves: 0,
    saveFailures: 0,
    savedBytes: 0,
    saveMs: 0,
    restores: 0,
    restoreFailures: 0,
    restoredBytes: 0,
    restoreMs: 0,
    verifyMs: 0,
    lookupMs: 0,
    hits: 0,
    misses: 0,
    discarded: 0,
    evicted: 0,
  };

  private constructor(opts: StateCacheOptions) {
    this.#root = opts.root;
    this.#maxBytes = opts.maxBytes;
    this.#maxTokens = opts.maxTokens ?? 1 << 20;
    this.#log = opts.log;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Opens the cache: reads the index (an unreadable one is started afresh, with a log line),
   * drops entries whose file is gone or has another size, and deletes partial files and files no
   * entry names (what a save cut short, or a crash between rename and index, left).
   */
  static async create(opts: StateCacheOptions): Promise<StateCache> {
    const c = new StateCache(opts);
    await mkdir(opts.root, { recursive: true });
    const raw = await readFile(c.#indexPath, 'utf8').catch(() => undefined);
    if (raw !== undefined) {
      try {
        for (const e of indexSchema.parse(JSON.parse(raw)).entries) c.#entries.set(e.id, e);
      } catch (err) {
        c.#log.warn(
          { err: describeError(err), index: c.#indexPath },
          'saved-state index unreadable: starting with an empty one',
        );
      }
    }
    for (const e of [...c.#entries.values()]) {
      const s = await stat(c.#fileOf(e)).catch(() => undefined);
      if (!s || s.size !== e.bytes) {
        c.#entries.delete(e.id);
        c.#stats.discarded++;
        c.#log.warn(
          { model: e.model, file: c.#fileOf(e), expected: e.bytes, found: s?.size ?? null },
          'saved state discarded: its file is missing or has another size',
        );
      }
    }
    const known = new Set([...c.#entries.values()].map((e) => c.#fileOf(e)));
    for (const d of await readdir(opts.root, { withFileTypes: true })) {
      if (!d.isDirectory()) continue;
      const dir = path.join(opts.root, d.name);
      for (const f of await readdir(dir)) {
        const file = path.join(dir, f);
        if (f.endsWith('.bin') && !known.has(file)) {
          await rm(file, { force: true });
          if (!PARTIAL.test(f)) c.#log.warn({ file }, 'saved state discarded: not in the index');
        }
      }
    }
    await c.#writeIndex();
    return c;
  }

  get #indexPath(): string {
    return path.join(this.#root, 'index.json');
  }

  #fileOf(e: Pick<StateEntry, 'dir' | 'id'>): string {
    return path.join(this.#root, e.dir, `${e.id}.bin`);
  }

  /** Where a model's runner writes its saves (created on first use). */
  async modelDir(model: string): Promise<string> {
    const dir = path.join(this.#root, modelDirName(model));
    await mkdir(dir, { recursive: true });
    return dir;
  }

  /** A fresh name for a runner to write one save to; commit or abandon it afterwards. */
  async pending(model: string): Promise<PendingSave> {
    return {
      model,
      dir: await this.modelDir(model),
      name: `partial-${randomUUID()}.bin`,
    };
  }

  /**
   * Makes a finished save an entry: fsync, hash, rename to its final name, fsync the directory,
   * add it to the index (written atomically), drop older entries of the same key whose tokens it
   * extends, then entries least recently used while over the byte cap. A file whose header is not
   * a state of at most `maxTokens` tokens is discarded. Resolves with the entry, or undefined when
   * it was discarded (too large for the cap alone, or malformed).
   */
  async commit(p: PendingSave, key: string, ms: number): Promise<StateEntry | undefined> {
    const tmp = path.join(p.dir, p.name);
    try {
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      const header = await readStateHeader(tmp, this.#maxTokens);
      const { size } = await stat(tmp);
      const sha256 = await hashFile(tmp);
      const id = randomUUID();
      const entry: StateEntry = {
        id,
        model: p.model,
        dir: path.basename(p.dir),
        key,
        bytes: size,
        tokens: header.tokens.length,
        sha256,
        savedAt: this.#now(),
        usedAt: this.#now(),
      };
      await rename(tmp, this.#fileOf(entry));
      await syncDirectory(p.dir);
      this.#entries.set(id, entry);
      this.#tokens.set(id, header.tokens);
      this.#stats.saves++;
      this.#stats.savedBytes += size;
      this.#stats.saveMs += ms;
      // A conversation saved again holds every token of its earlier save and more.
      for (const e of this.#entries.values()) {
        if (e.id === id || e.key !== key || e.model !== p.model) continue;
        const t = await this.#tokensOf(e);
        if (t && t.length <= header.tokens.length && commonPrefix(t, header.tokens) === t.length)
          await this.#remove(e, 'superseded by a longer save of the same conversation', false);
      }
      await this.#enforceCap(id);
      await this.#writeIndex();
      return this.#entries.get(id);
    } catch (err) {
      this.#stats.saveFailures++;
      await rm(tmp, { force: true });
      this.#log.warn(
        { model: p.model, file: tmp, err: describeError(err) },
        err instanceof StateFormatError
          ? 'saved state discarded: not a sequence state headroom can use'
          : 'saving state failed',
      );
      return undefined;
    }
  }

  /** Deletes a save that did not finish (the runner failed, the time budget ran out). */
  async abandon(p: PendingSave): Promise<void> {
    await rm(path.join(p.dir, p.name), { force: true });
  }

  /** Deletes every partial file of a model's directory (after its runner exited). */
  async sweepPartials(model: string): Promise<void> {
    const dir = path.join(this.#root, modelDirName(model));
    const files = await readdir(dir).catch(() => [] as string[]);
    for (const f of files) if (PARTIAL.test(f)) await rm(path.join(dir, f), { force: true });
  }

  /** Entries saved for a model under a key, most recently used first. */
  entries(model: string, key: string): StateEntry[] {
    return [...this.#entries.values()]
      .filter((e) => e.model === model && e.key === key)
      .sort((a, b) => b.usedAt - a.usedAt);
  }

  /**
   * The entry among `candidates` sharing the longest prefix with `prompt`, when that prefix is
   * at least `minTokens` and the entry's tokens fit `maxTokens` (the slot's context). An entry
   * whose header cannot be read is discarded.
   */
  async best(
    candidates: readonly StateEntry[],
    prompt: ArrayLike<number>,
    minTokens: number,
    maxTokens: number,
  ): Promise<{ entry: StateEntry; prefix: number } | undefined> {
    let found: { entry: StateEntry; prefix: number } | undefined;
    for (const e of candidates) {
      if (e.tokens > maxTokens) continue;
      const t = await this.#tokensOf(e);
      if (!t) continue;
      const prefix = commonPrefix(t, prompt);
      if (prefix >= minTokens && prefix > (found?.prefix ?? 0)) found = { entry: e, prefix };
    }
    return found;
  }

  /**
   * Whether an entry's file is still what was saved (size and SHA-256, streamed); one that is
   * not is deleted with a log line and must not be loaded.
   */
  async verify(e: StateEntry): Promise<boolean> {
    const file = this.#fileOf(e);
    const t0 = performance.now();
    try {
      const s = await stat(file);
      if (s.size !== e.bytes) {
        await this.#remove(e, `truncated or grown: ${s.size} bytes, ${e.bytes} saved`, true);
        return false;
      }
      if ((await hashFile(file)) !== e.sha256) {
        await this.#remove(e, 'corrupt: its SHA-256 differs from the saved one', true);
        return false;
      }
      return true;
    } catch (err) {
      await this.#remove(e, `unreadable: ${describeError(err)}`, true);
      return false;
    } finally {
      this.#stats.verifyMs += performance.now() - t0;
    }
  }

  /** The absolute path of an entry's file. */
  fileOf(e: StateEntry): string {
    return this.#fileOf(e);
  }

  /**
   * A file name, in the entry's directory, holding the entry's state for a runner whose KV cache
   * has `streams` streams (one per slot): the entry's own file when the counts match, else a
   * rewritten copy under a partial name that `dispose` deletes (a crash leaves it to the sweeps).
   * Undefined when the counts differ and the state cannot be rewritten (not one plain KV cache):
   * the entry stays, for a runner of the slot count it was saved with.
   */
  async forStreams(
    e: StateEntry,
    streams: number,
  ): Promise<{ name: string; dispose: () => Promise<void> } | undefined> {
    const file = this.#fileOf(e);
    const own = { name: path.basename(file), dispose: async () => {} };
    const { headerBytes } = await readStateHeader(file, this.#maxTokens);
    const saved = await readStreamCount(file, headerBytes);
    if (saved === streams) return own;
    let layout;
    try {
      layout = await readStateLayout(file, headerBytes, this.#maxTokens);
    } catch (err) {
      this.#log.info(
        { model: e.model, file, saved, runner: streams, err: describeError(err) },
        'saved state left for a runner of its own slot count',
      );
      return undefined;
    }
    const name = `partial-${randomUUID()}.bin`;
    const copy = path.join(path.dirname(file), name);
    try {
      await writeWithStreams(file, layout, copy, streams);
    } catch (err) {
      await rm(copy, { force: true });
      throw err;
    }
    return { name, dispose: () => rm(copy, { force: true }) };
  }

  /**
   * Records a restore of an entry (LRU order, counters). The index is written in the background:
   * a request waits for no fsync, and a use time lost to a crash only ages the entry.
   */
  restored(e: StateEntry, ms: number): void {
    const live = this.#entries.get(e.id);
    if (live) live.usedAt = this.#now();
    this.#stats.restores++;
    this.#stats.restoredBytes += e.bytes;
    this.#stats.restoreMs += ms;
    void this.#writeIndex();
  }

  /** A restore the runner refused: the entry is discarded so it is never tried again. */
  async restoreFailed(e: StateEntry, why: string): Promise<void> {
    this.#stats.restoreFailures++;
    await this.#remove(e, `the runner refused it: ${why}`, true);
    await this.#writeIndex();
  }

  /** Time a request spent finding its entry (the keeper measures it). */
  lookedUp(ms: number): void {
    this.#stats.lookupMs += ms;
  }

  hit(): void {
    this.#stats.hits++;
  }

  miss(): void {
    this.#stats.misses++;
  }

  saveFailed(): void {
    this.#stats.saveFailures++;
  }

  /** A model's saved states (under any key): how many, and their bytes on disk. */
  summary(model: string): { entries: number; bytes: number } {
    let entries = 0;
    let bytes = 0;
    for (const e of this.#entries.values())
      if (e.model === model) {
        entries++;
        bytes += e.bytes;
      }
    return { entries, bytes };
  }

  stats(): StateCacheStats {
    let bytes = 0;
    for (const e of this.#entries.values()) bytes += e.bytes;
    return { ...this.#stats, entries: this.#entries.size, bytes };
  }

  /** Waits for index writes under way. */
  async dispose(): Promise<void> {
    await this.#writing;
  }

  async #tokensOf(e: StateEntry): Promise<Int32Array | undefined> {
    const known = this.#tokens.get(e.id);
    if (known) return known;
    try {
      const { tokens } = await readStateHeader(this.#fileOf(e), this.#maxTokens);
      if (tokens.length !== e.tokens)
        throw new StateFormatError('token count differs from the index');
      this.#tokens.set(e.id, tokens);
      return tokens;
    } catch (err) {
      await this.#remove(e, `header unreadable: ${describeError(err)}`, true);
      await this.#writeIndex();
      return undefined;
    }
  }

  async #enforceCap(keep: string): Promise<void> {
    let total = 0;
    for (const e of this.#entries.values()) total += e.bytes;
    const kept = this.#entries.get(keep);
    if (kept && kept.bytes > this.#maxBytes) {
      await this.#remove(kept, `larger than the cache (${this.#maxBytes} bytes)`, true);
      total -= kept.bytes;
    }
    const byAge = [...this.#entries.values()]
      .filter((e) => e.id !== keep)
      .sort((a, b) => a.usedAt - b.usedAt);
    for (const e of byAge) {
      if (total <= this.#maxBytes) break;
      total -= e.bytes;
      this.#stats.evicted++;
      await this.#remove(e, 'least recently used over the byte cap', false);
    }
  }

  async #remove(e: StateEntry, why: string, discarded: boolean): Promise<void> {
    this.#entries.delete(e.id);
    this.#tokens.delete(e.id);
    if (discarded) this.#stats.discarded++;
    await rm(this.#fileOf(e), { force: true });
    const line = { model: e.model, file: this.#fileOf(e), bytes: e.bytes, tokens: e.tokens };
    if (discarded) this.#log.warn(line, `saved state discarded: ${why}`);
    else this.#log.info(line, `saved state removed: ${why}`);
  }

  /** Writes the index atomically (temp file, fsync, rename, fsync the directory), in order. */
  #writeIndex(): Promise<void> {
    const next = this.#writing.then(() =>
      writeFileAtomic(
        this.#indexPath,
        JSON.stringify({ version: 1, entries: [...this.#entries.values()] }),
      ),
    );
    this.#writing = next.catch((err: unknown) =>
      this.#log.warn({ err: describeError(err) }, 'writing the saved-state index failed'),
    );
    return this.#writing;
  }
}

/**
 * SHA-256 of a file, read in 4 MiB pieces into one buffer: a stream's 64 KiB chunks took three
 * times as long on states of tens of MiB (docs/STATE.md), and a restore waits for this.
 */
async function hashFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}
