import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sleep, throwIfAborted } from '../../lib/abort.js';

/**
 * A lock between processes on one machine: a folder made with `mkdir` (atomic), holding the
 * owner's pid and host. A lock whose owner died (same host, pid gone) is taken over, so an
 * interrupted `npm install` does not block the next one. Used so two concurrent installs build a
 * given llama-server once: the second waits, then finds the first's build.
 */

export interface LockOwner {
  pid: number;
  host: string;
  since: string;
}

export interface LockOptions {
  signal?: AbortSignal;
  /** How often a waiter looks again. Defaults to 1000 ms. */
  pollMs?: number;
  /** A lock folder with no owner file older than this is abandoned. Defaults to 60 s. */
  orphanMs?: number;
  /** Called once when the lock is held by another live process. */
  onWait?: (owner: LockOwner | undefined) => void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readOwner(dir: string): Promise<LockOwner | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, 'owner.json'), 'utf8')) as LockOwner;
  } catch {
    return undefined;
  }
}

/** Whether the holder of a lock folder is gone, so the lock may be taken over. */
async function abandoned(dir: string, orphanMs: number): Promise<boolean> {
  const owner = await readOwner(dir);
  if (owner) return owner.host === os.hostname() && !alive(owner.pid);
  // Made but not yet written (the owner is between mkdir and writeFile), or written by a crash.
  const s = await stat(dir).catch(() => undefined);
  return s !== undefined && Date.now() - s.mtimeMs > orphanMs;
}

/**
 * Runs `fn` holding the lock folder `dir`; waits while another live process holds it. Returns
 * whether it had to wait, so the caller can look for that process's result first.
 */
export async function withLock<T>(
  dir: string,
  fn: (waited: boolean) => Promise<T>,
  opts: LockOptions = {},
): Promise<T> {
  const pollMs = opts.pollMs ?? 1000;
  const orphanMs = opts.orphanMs ?? 60_000;
  await mkdir(path.dirname(dir), { recursive: true });
  let waited = false;
  for (;;) {
    throwIfAborted(opts.signal);
    try {
      await mkdir(dir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await abandoned(dir, orphanMs)) {
      // Taking over is best effort: two waiters that both judge it abandoned could race here; the
      // re-read narrows that to the crash-then-two-installs case, where a double build is harmless
      // (each renames a complete folder into place).
      if (await abandoned(dir, orphanMs)) await rm(dir, { recursive: true, force: true });
      continue;
    }
    if (!waited) opts.onWait?.(await readOwner(dir));
    waited = true;
    await sleep(pollMs, opts.signal);
  }
  try {
    const owner: LockOwner = {
      pid: process.pid,
      host: os.hostname(),
      since: new Date().toISOString(),
    };
    await writeFile(path.join(dir, 'owner.json'), JSON.stringify(owner));
    return await fn(waited);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
