/**
 * Following a runner's log file (`tail -F`): the last `fromBytes` bytes, then whatever is
 * appended, across rotations (the file renamed away and a new one started: its inode changes; or
 * copied away and truncated in place: it shrinks) and across the file not existing yet (a model
 * never loaded). After a truncation, what was written in between and copied away before this
 * follower looked is not sent (as with `tail -F` on `copytruncate` logs).
 *
 * Contract: polls the file every `intervalMs` (fs.watch misses renames on some file systems);
 * yields chunks of at most `chunkBytes`, and reads the next only when the consumer asks for it, so
 * a slow reader holds at most one chunk here. Ends when `signal` aborts; never throws for a
 * missing file.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { sleep } from '../../lib/abort.js';

export interface FollowOptions {
  fromBytes: number;
  signal: AbortSignal;
  intervalMs?: number;
  chunkBytes?: number;
}

async function fileId(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).ino;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function* followLog(file: string, opts: FollowOptions): AsyncGenerator<Buffer> {
  const interval = opts.intervalMs ?? 250;
  const chunk = opts.chunkBytes ?? 64 * 1024;
  // The open file: a handle follows its inode after a rename, so what was written to it before
  // a rotation is still read to its end before moving to the new file.
  let fh: FileHandle | undefined;
  let ino: number | undefined;
  let pos = 0;
  let first = true;
  try {
    while (!opts.signal.aborted) {
      if (fh) {
        for (;;) {
          const { bytesRead, buffer } = await fh.read(Buffer.alloc(chunk), 0, chunk, pos);
          if (bytesRead === 0) break;
          pos += bytesRead;
          yield buffer.subarray(0, bytesRead);
          if (opts.signal.aborted) return;
        }
        const { size } = await fh.stat();
        if (size < pos) pos = 0; // truncated in place: from its start
      }
      const now = await fileId(file);
      if (now !== ino) {
        // Rotated, created or removed: the old file was read to its end above.
        await fh?.close();
        fh = undefined;
        ino = undefined;
        if (now !== undefined) {
          fh = await open(file, 'r').catch(() => undefined);
          if (fh) {
            const st = await fh.stat();
            ino = st.ino;
            // The first look shows the tail; a file that appears later is read whole.
            pos = first ? Math.max(0, st.size - opts.fromBytes) : 0;
            first = false;
            continue;
          }
        }
      }
      first = false;
      // An abort ends the wait; the loop's condition ends the follow.
      await sleep(interval, opts.signal).catch(() => undefined);
    }
  } finally {
    await fh?.close();
  }
}
