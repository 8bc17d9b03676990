import { open, rename, unlink, type FileHandle } from 'node:fs/promises';

/**
 * Runner logs: an append-only file capped at `maxBytes`, rotated to `.1 … .keep` when the next
 * write would exceed the cap, and a reader for the last N bytes of a file.
 *
 * Writes are serialised through one promise chain, so rotation never interleaves with a write.
 * A chunk that does not fit is cut after its last newline that fits (the rest starts the new
 * file), so a line is split across files only when it is longer than the cap itself. No file
 * ever exceeds `maxBytes`.
 */

export interface LogFileOptions {
  /** The log file. Its directory must exist. An existing file is appended to. */
  path: string;
  /** Size at which the file is rotated. At least 1. */
  maxBytes: number;
  /** Rotated files kept (`path.1` newest … `path.keep` oldest); 0 keeps none. */
  keep: number;
}

const NEWLINE = 0x0a;

export class LogFile {
  readonly path: string;
  readonly maxBytes: number;
  readonly keep: number;
  #fh: FileHandle | undefined;
  #size: number;
  #chain: Promise<void> = Promise.resolve();
  #closed: Promise<void> | undefined;

  private constructor(opts: LogFileOptions, fh: FileHandle, size: number) {
    this.path = opts.path;
    this.maxBytes = opts.maxBytes;
    this.keep = opts.keep;
    this.#fh = fh;
    this.#size = size;
  }

  static async open(opts: LogFileOptions): Promise<LogFile> {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 1) {
      throw new RangeError(`log maxBytes must be a positive integer, got ${opts.maxBytes}`);
    }
    if (!Number.isSafeInteger(opts.keep) || opts.keep < 0) {
      throw new RangeError(`log keep must be a non-negative integer, got ${opts.keep}`);
    }
    const fh = await open(opts.path, 'a');
    try {
      const { size } = await fh.stat();
      return new LogFile(opts, fh, size);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** Bytes in the current file. */
  get size(): number {
    return this.#size;
  }

  /**
   * Appends data, rotating first where it would exceed the cap. Resolves when written (the
   * caller awaiting it gets backpressure). Rejects on an I/O error, or when the file is closed.
   */
  write(data: Buffer | string): Promise<void> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.#closed) return Promise.reject(new Error(`log file ${this.path} is closed`));
    const next = this.#chain.then(() => this.#write(buf));
    // The chain must survive a failed write; the caller sees the failure through `next`.
    this.#chain = next.catch(() => undefined);
    return next;
  }

  /** Waits for pending writes and closes the file. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#chain.then(async () => {
      const fh = this.#fh;
      this.#fh = undefined;
      await fh?.close();
    });
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #write(buf: Buffer): Promise<void> {
    let rest = buf;
    while (rest.length > 0) {
      const room = this.maxBytes - this.#size;
      if (rest.length <= room) {
        await this.#append(rest);
        return;
      }
      // Whole lines that fit; a line longer than the whole cap is cut (into an empty file only).
      const cut = lastNewlineWithin(rest, room);
      const piece =
        cut >= 0
          ? rest.subarray(0, cut + 1)
          : this.#size === 0
            ? rest.subarray(0, room)
            : rest.subarray(0, 0);
      if (piece.length > 0) {
        await this.#append(piece);
        rest = rest.subarray(piece.length);
      }
      await this.#rotate();
    }
  }

  async #append(buf: Buffer): Promise<void> {
    const fh = this.#handle();
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off);
      off += bytesWritten;
      this.#size += bytesWritten;
    }
  }

  async #rotate(): Promise<void> {
    const fh = this.#handle();
    this.#fh = undefined;
    await fh.close();
    for (let i = this.keep - 1; i >= 1; i--)
      await renameIfExists(`${this.path}.${i}`, `${this.path}.${i + 1}`);
    if (this.keep >= 1) await renameIfExists(this.path, `${this.path}.1`);
    else await unlink(this.path).catch(ignoreEnoent);
    this.#fh = await open(this.path, 'a');
    this.#size = 0;
  }

  #handle(): FileHandle {
    if (!this.#fh)
      throw new Error(`log file ${this.path} is not open (a previous rotation failed)`);
    return this.#fh;
  }
}

/** Index of the last newline among the first `limit` bytes of buf, or -1. */
function lastNewlineWithin(buf: Buffer, limit: number): number {
  if (limit <= 0) return -1;
  return buf.lastIndexOf(NEWLINE, limit - 1);
}

function ignoreEnoent(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}

async function renameIfExists(from: string, to: string): Promise<void> {
  await rename(from, to).catch(ignoreEnoent);
}

/**
 * The last `bytes` bytes of a file as UTF-8, read at an offset (never the whole file). A leading
 * partial UTF-8 character is dropped. ENOENT (and any other I/O error) propagates.
 */
export async function readLogTail(file: string, bytes: number): Promise<string> {
  if (!Number.isFinite(bytes) || bytes <= 0) {
    // Still surface ENOENT for a missing file, as for any other size.
    await (await open(file, 'r')).close();
    return '';
  }
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const length = Math.min(Math.floor(bytes), size);
    const buf = Buffer.alloc(length);
    let read = 0;
    while (read < length) {
      const { bytesRead } = await fh.read(buf, read, length - read, size - length + read);
      if (bytesRead === 0) break; // truncated under us (rotation): return what was read
      read += bytesRead;
    }
    return decodeTail(buf.subarray(0, read));
  } finally {
    await fh.close();
  }
}

/** Decodes bytes cut from the end of a UTF-8 stream: skips continuation bytes at the start. */
export function decodeTail(buf: Buffer): string {
  let start = 0;
  while (start < buf.length && start < 3 && ((buf[start] ?? 0) & 0xc0) === 0x80) start++;
  return buf.subarray(start).toString('utf8');
}

/**
 * Keeps the last `capacity` bytes pushed through it, in memory (for error messages: the log
 * file may have rotated or be shared with an earlier run).
 */
export class TailBuffer {
  readonly capacity: number;
  #chunks: Buffer[] = [];
  #bytes = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  push(buf: Buffer): void {
    if (buf.length === 0) return;
    this.#chunks.push(buf.length > this.capacity ? buf.subarray(buf.length - this.capacity) : buf);
    this.#bytes += Math.min(buf.length, this.capacity);
    while (this.#bytes - (this.#chunks[0]?.length ?? 0) >= this.capacity) {
      this.#bytes -= this.#chunks.shift()?.length ?? 0;
    }
  }

  toString(): string {
    const all = Buffer.concat(this.#chunks);
    return decodeTail(all.subarray(Math.max(0, all.length - this.capacity)));
  }
}

/**
 * Splits a stream's chunks at line boundaries, so that lines from stdout and stderr are not
 * interleaved mid-line in one log. A partial line is held until its newline arrives, the held
 * text exceeds `maxHold` bytes, or `flush()` (the stream ended). Pure.
 */
export class LineAssembler {
  readonly maxHold: number;
  #held: Buffer = Buffer.alloc(0);

  constructor(maxHold = 4096) {
    this.maxHold = maxHold;
  }

  /** Returns what can be written now (complete lines), possibly empty. */
  push(chunk: Buffer): Buffer {
    const buf = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);
    const partial = buf.length - (buf.lastIndexOf(NEWLINE) + 1);
    if (partial === 0 || partial > this.maxHold) {
      this.#held = Buffer.alloc(0);
      return buf;
    }
    this.#held = Buffer.from(buf.subarray(buf.length - partial));
    return buf.subarray(0, buf.length - partial);
  }

  /** What is held back (a last line without a newline). */
  flush(): Buffer {
    const rest = this.#held;
    this.#held = Buffer.alloc(0);
    return rest;
  }
}
