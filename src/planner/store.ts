/**
 * The measured-footprint store: what runners really held, per (file identity, config), persisted
 * as one small JSON file so that later plans prefer measurement over the formula.
 *
 * Contracts:
 * - A file is identified by path + size + mtime (`fileIdentity`): replacing or rewriting the GGUF
 *   file makes its old measurements unreachable (they age out by the size bound).
 * - The config part of a key is the fields that change memory (engine, context, slots, batch,
 *   flash attention, KV types, GPU layers, mmap); a RunnerConfig can be passed as it is.
 * - `record` merges with what is stored: `peak` and `rssAnon` keep the maximum seen (a watermark:
 *   a runner measured right after loading must not lower the peak measured when it was full),
 *   `rss`, `loadMs` and `contextFill` take the latest report.
 * - Writes are atomic (lib/atomic-write: a temporary file beside it, fsync, rename) and serialised: readers see
 *   the old or the new file, never a partial one. A missing or unreadable file starts an empty store
 *   (it is a cache: losing it costs accuracy, not correctness); the problem is kept in `warnings`.
 * - At most `maxEntries` keys (default 512): the least recently recorded are dropped first.
 * - No global state: each instance owns its file. Two instances on one file do not merge their
 *   writes (the last rename wins); the daemon holds one.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { throwIfAborted } from '../lib/abort.js';
import { writeFileAtomic } from '../lib/atomic-write.js';
import { HeadroomError } from '../lib/errors.js';
import type { KvCacheType } from './footprint.js';

/** Identity of a GGUF file as stored: absolute path, size in bytes and modification time in ms. */
export interface FileIdentity {
  path: string;
  size: number;
  mtimeMs: number;
}

/** The fields of a config that change a runner's memory (PlanConfig and RunnerConfig both have them). */
export interface MeasuredConfig {
  contextSize: number;
  parallel: number;
  batchSize: number;
  flashAttention: boolean;
  kvCacheKeyType: KvCacheType;
  kvCacheValueType: KvCacheType;
  gpuLayers: number;
  mmap: boolean;
  /**
   * The program that ran the config: one engine's measurement never stands in for another's (a
   * llama-server runner holds tens of MiB less than the embedded one). Absent means the embedded
   * runner, as in RunnerConfig.
   */
  engine?: string;
}

export interface MeasurementKey {
  file: FileIdentity;
  config: MeasuredConfig;
  /**
   * The build of the engine's program (e.g. llama-server's version line): a new build may hold
   * memory differently, so its runners are measured afresh. Absent: not told apart by build.
   */
  runtime?: string;
}

/** What a runner reported (bytes, GET /stats) and how long it took to load. */
export interface Measurement {
  /** Resident set when measured. */
  rss: number;
  /** Anonymous part of the resident set (the highest reported). */
  rssAnon: number;
  /** Peak resident set (VmHWM) of the runner process. */
  peak: number;
  loadMs: number;
  /**
   * Share of the context's cells in use when measured (0–1; tokensInUse / (contextSize ×
   * parallel)). A peak taken with the context (nearly) full is the footprint's peak; one taken
   * earlier is only a lower bound. Unknown when missing.
   */
  contextFill?: number;
}

export interface StoredMeasurement extends Measurement {
  /** Times recorded. */
  samples: number;
  /** When last recorded (ms since the epoch). */
  updatedAt: number;
}

export interface StoreOptions {
  /** Keys kept at most; the least recently recorded go first. Defaults to 512. */
  maxEntries?: number;
  /** Clock for `updatedAt` (tests). Defaults to Date.now. */
  now?: () => number;
}

interface FileBody {
  version: 1;
  entries: Record<string, StoredMeasurement>;
}

const VERSION = 1;
/** A store file above this size is not read (it cannot be one of ours: 512 entries are ~150 KB). */
const MAX_FILE_BYTES = 16 * 1024 * 1024;

export class StoreError extends HeadroomError {
  override readonly name = 'StoreError';
  constructor(message: string, cause?: unknown) {
    super('PLAN_STORE_FAILED', message, { status: 500, cause });
  }
}

/** The identity of `file` (stat only; never reads it). Throws the fs error when it cannot be stat'ed. */
export async function fileIdentity(file: string, signal?: AbortSignal): Promise<FileIdentity> {
  throwIfAborted(signal);
  const abs = path.resolve(file);
  const st = await stat(abs);
  return { path: abs, size: st.size, mtimeMs: Math.floor(st.mtimeMs) };
}

/** The canonical string of a key: same file and same memory-relevant config → same string. */
export function measurementKey(key: MeasurementKey): string {
  const { file, config: c } = key;
  return [
    file.path,
    file.size,
    Math.floor(file.mtimeMs),
    `ctx=${c.contextSize}`,
    `par=${c.parallel}`,
    `batch=${c.batchSize}`,
    // A quantised V cache forces flash attention on in the runner: the same config either way.
    `fa=${c.flashAttention || c.kvCacheValueType !== 'f16' ? 1 : 0}`,
    `kv=${c.kvCacheKeyType}/${c.kvCacheValueType}`,
    `gpu=${c.gpuLayers}`,
    `mmap=${c.mmap ? 1 : 0}`,
    // An embedded runner's key has no engine part (absent means embedded, as in RunnerConfig), so
    // store files whose keys name no engine keep applying to it; any other engine is named.
    ...(c.engine !== undefined && c.engine !== 'embedded' ? [`engine=${c.engine}`] : []),
    ...(key.runtime !== undefined ? [`bin=${key.runtime}`] : []),
  ].join('|');
}

function isMeasurement(v: unknown): v is StoredMeasurement {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  const num = (k: string): boolean =>
    typeof o[k] === 'number' && Number.isFinite(o[k]) && (o[k] as number) >= 0;
  return (
    num('rss') &&
    num('rssAnon') &&
    num('peak') &&
    num('loadMs') &&
    num('samples') &&
    num('updatedAt') &&
    (o.contextFill === undefined || num('contextFill'))
  );
}

function checkMeasurement(m: Measurement): void {
  for (const k of ['rss', 'rssAnon', 'peak', 'loadMs'] as const) {
    const v = m[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
      throw new StoreError(`measurement.${k} must be a non-negative number, got ${String(v)}`);
  }
  if (
    m.contextFill !== undefined &&
    (!Number.isFinite(m.contextFill) || m.contextFill < 0 || m.contextFill > 1)
  )
    throw new StoreError(`measurement.contextFill must be within 0–1, got ${m.contextFill}`);
}

export class MeasuredStore {
  /** The JSON file this store persists to. */
  readonly file: string;
  /** Problems met reading the file (it was then started empty). */
  readonly warnings: string[];
  readonly #entries: Map<string, StoredMeasurement>;
  readonly #maxEntries: number;
  readonly #now: () => number;
  #writing: Promise<void> = Promise.resolve();
  #disposed = false;

  private constructor(
    file: string,
    entries: Map<string, StoredMeasurement>,
    warnings: string[],
    opts: StoreOptions,
  ) {
    this.file = file;
    this.#entries = entries;
    this.warnings = warnings;
    this.#maxEntries = opts.maxEntries ?? 512;
    this.#now = opts.now ?? Date.now;
  }

  /** Opens the store at `file` (created on the first record); reads what is there. */
  static async create(file: string, opts: StoreOptions = {}): Promise<MeasuredStore> {
    if (
      opts.maxEntries !== undefined &&
      (!Number.isSafeInteger(opts.maxEntries) || opts.maxEntries < 1)
    )
      throw new StoreError(`maxEntries must be a positive integer, got ${opts.maxEntries}`);
    const abs = path.resolve(file);
    const entries = new Map<string, StoredMeasurement>();
    const warnings: string[] = [];
    let text: string | undefined;
    try {
      const st = await stat(abs);
      if (st.size > MAX_FILE_BYTES)
        warnings.push(`${abs} is ${st.size} bytes, too large for a measurement store: ignored`);
      else text = await readFile(abs, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        warnings.push(`${abs} cannot be read (${(err as Error).message}): starting empty`);
    }
    if (text !== undefined) {
      try {
        const body = JSON.parse(text) as Partial<FileBody>;
        if (body.version !== VERSION || typeof body.entries !== 'object' || body.entries === null)
          throw new Error(`not a version ${VERSION} store`);
        // Oldest first, so that the Map's order is recording order (eviction drops the first).
        const list = Object.entries(body.entries)
          .filter(([, v]) => isMeasurement(v))
          .sort(([, a], [, b]) => a.updatedAt - b.updatedAt);
        for (const [k, v] of list) entries.set(k, v);
      } catch (err) {
        warnings.push(
          `${abs} is not a measurement store (${(err as Error).message}): starting empty`,
        );
      }
    }
    const store = new MeasuredStore(abs, entries, warnings, opts);
    store.#trim();
    return store;
  }

  /** Number of stored keys. */
  get size(): number {
    return this.#entries.size;
  }

  /** The measurement stored for `key`, if any (a copy). */
  lookup(key: MeasurementKey): StoredMeasurement | undefined {
    const m = this.#entries.get(measurementKey(key));
    return m ? { ...m } : undefined;
  }

  /**
   * Merges `m` into the entry of `key` (see the module comment) and persists the store. Resolves
   * once the file is written; rejects with StoreError when it cannot be (the entry stays in
   * memory). Throws StoreError synchronously-in-the-promise on a malformed measurement.
   */
  async record(key: MeasurementKey, m: Measurement): Promise<StoredMeasurement> {
    if (this.#disposed) throw new StoreError('the measurement store is disposed');
    checkMeasurement(m);
    const k = measurementKey(key);
    const prev = this.#entries.get(k);
    const next: StoredMeasurement = {
      rss: m.rss,
      rssAnon: Math.max(m.rssAnon, prev?.rssAnon ?? 0),
      peak: Math.max(m.peak, prev?.peak ?? 0),
      loadMs: m.loadMs,
      ...(m.contextFill !== undefined || prev?.contextFill !== undefined
        ? { contextFill: Math.max(m.contextFill ?? 0, prev?.contextFill ?? 0) }
        : {}),
      samples: (prev?.samples ?? 0) + 1,
      updatedAt: this.#now(),
    };
    // Re-insert so that the Map's order stays recording order.
    this.#entries.delete(k);
    this.#entries.set(k, next);
    this.#trim();
    await this.#persist();
    return { ...next };
  }

  /** Resolves when every write started so far has finished. */
  flush(): Promise<void> {
    return this.#writing.catch(() => undefined);
  }

  /** Waits for pending writes; later records are refused. Idempotent. */
  async dispose(): Promise<void> {
    this.#disposed = true;
    await this.flush();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  #trim(): void {
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  #persist(): Promise<void> {
    // Each write serialises the state at its turn, so the last write holds every record.
    const run = async (): Promise<void> => {
      const body: FileBody = { version: VERSION, entries: Object.fromEntries(this.#entries) };
      try {
        await writeFileAtomic(this.file, JSON.stringify(body) + '\n');
      } catch (err) {
        throw new StoreError(
          `cannot write the measurement store ${this.file}: ${(err as Error).message}`,
          err,
        );
      }
    };
    const p = this.#writing.catch(() => undefined).then(run);
    this.#writing = p;
    return p;
  }
}
