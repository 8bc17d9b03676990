import { copyFile, open, rename, type FileHandle } from 'node:fs/promises';

/**
 * A runner's log: one file that the runner process writes itself (its stdout and stderr are this
 * file's descriptor, opened for appending), with the supervisor's own notes appended between.
 *
 * The daemon reads nothing of a running runner's output: a chatty runner (llama-server logs four
 * lines before each first token) costs it no wake-up, no copy and no write on the path of a
 * request. The price is the cap: the runner writes without asking, so the size is checked on a
 * timer (`check()`, every second by the supervisor) and the file rotated by copy-and-truncate
 * (`path` → `path.1` … `path.keep`, then the file emptied; the runner's appends go on at its new
 * end). A file can exceed `maxBytes` by what the runner writes between two checks, and a line
 * written between the copy and the truncation is lost (logrotate's `copytruncate` trade).
 */

export interface LogFileOptions {
  /** The log file. Its directory must exist. An existing file is appended to. */
  path: string;
  /** Size beyond which the file is rotated at the next check. At least 1. */
  maxBytes: number;
  /** Rotated files kept (`path.1` newest … `path.keep` oldest); 0 keeps none. */
  keep: number;
}

export class RunnerLog {
  readonly path: string;
  readonly maxBytes: number;
  readonly keep: number;
  readonly #fh: FileHandle;
  /** Where this run's output begins in the current file (0 once it rotated). */
  #runStart: number;
  #chain: Promise<void> = Promise.resolve();
  #closed: Promise<void> | undefined;

  private constructor(opts: LogFileOptions, fh: FileHandle, size: number) {
    this.path = opts.path;
    this.maxBytes = opts.maxBytes;
    this.keep = opts.keep;
    this.#fh = fh;
    this.#runStart = size;
  }

  static async open(opts: LogFileOptions): Promise<RunnerLog> {
    if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 1) {
      throw new RangeError(`log maxBytes must be a positive integer, got ${opts.maxBytes}`);
    }
    if (!Number.isSafeInteger(opts.keep) || opts.keep < 0) {
      throw new RangeError(`log keep must be a non-negative integer, got ${opts.keep}`);
    }
    const fh = await open(opts.path, 'a+');
    try {
      const { size } = await fh.stat();
      return new RunnerLog(opts, fh, size);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  /** The descriptor to give the runner as its stdout and stderr. */
  get fd(): number {
    return this.#fh.fd;
  }

  /** Bytes in the current file now. */
  async size(): Promise<number> {
    return (await this.#fh.stat()).size;
  }

  /** Appends a line of the supervisor's own. Resolves when written; rejects on an I/O error. */
  note(text: string): Promise<void> {
    return this.#serial(async () => {
      await this.#fh.write(text.endsWith('\n') ? text : `${text}\n`);
    });
  }

  /** Rotates when the file has grown past the cap; resolves whether it did. */
  check(): Promise<boolean> {
    return this.#serial(async () => {
      if ((await this.size()) <= this.maxBytes) return false;
      for (let i = this.keep - 1; i >= 1; i--)
        await renameIfExists(`${this.path}.${i}`, `${this.path}.${i + 1}`);
      if (this.keep >= 1) await copyFile(this.path, `${this.path}.1`);
      await this.#fh.truncate(0);
      this.#runStart = 0;
      return true;
    });
  }

  /**
   * The last `bytes` bytes this run wrote (the runner's output, the supervisor's notes left out),
   * as UTF-8: what an error message quotes. Never reads before this run began.
   */
  async tail(bytes: number): Promise<string> {
    const size = await this.size();
    const from = this.#runStart <= size ? this.#runStart : 0;
    // Read more than asked for, as the notes are dropped from it.
    const length = Math.min(size - from, bytes + TAIL_SLACK_BYTES);
    if (length <= 0) return '';
    const buf = Buffer.alloc(length);
    const { bytesRead } = await this.#fh.read(buf, 0, length, size - length);
    const lines = decodeTail(buf.subarray(0, bytesRead)).split('\n');
    // A read that begins inside a line cannot tell a note from output: that line goes.
    if (size - length > from) lines.shift();
    const own = lines.filter((l) => !l.startsWith(NOTE_PREFIX)).join('\n');
    const out = Buffer.from(own);
    return decodeTail(out.subarray(Math.max(0, out.length - bytes)));
  }

  /** Waits for pending notes and closes the file. Idempotent. */
  close(): Promise<void> {
    this.#closed ??= this.#chain.then(() => this.#fh.close());
    return this.#closed;
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new Error(`log file ${this.path} is closed`));
    const next = this.#chain.then(task);
    // The chain must survive a failed step; the caller sees the failure through `next`.
    this.#chain = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }
}

/** Bytes read beyond a tail's size, to make up for the notes left out of it. */
const TAIL_SLACK_BYTES = 16 * 1024;

/** How the supervisor's own lines begin (left out of the tail an error message quotes). */
export const NOTE_PREFIX = '[headroom ';

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
