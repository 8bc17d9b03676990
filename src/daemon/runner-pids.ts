import { readFile, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../lib/atomic-write.js';
import { describeError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';

/**
 * The runners this daemon started, one small file each (`<pid>.json`) under the home's state
 * directory, so that runners a killed daemon left behind (SIGKILL, OOM kill, power cut of the
 * daemon alone) are found and killed when the next daemon starts on the same home. A runner is
 * its own process group (the supervisor spawns it detached), so the whole group is killed.
 *
 * A pid is only trusted with the start time /proc gave it when it was recorded: a pid the kernel
 * has since given to another process is never killed. Without /proc (macOS) nothing is reaped.
 */
export class RunnerPids {
  readonly #dir: string;
  readonly #log: Logger;

  constructor(dir: string, log: Logger) {
    this.#dir = dir;
    this.#log = log;
  }

  /** Records a runner just spawned. Best effort: a failure is logged, never thrown. */
  async record(pid: number, command: string): Promise<void> {
    const startTime = await processStartTime(pid);
    try {
      await writeFileAtomic(this.#file(pid), JSON.stringify({ pid, startTime, command }) + '\n');
    } catch (err) {
      this.#log.warn({ pid, err: describeError(err) }, 'recording a runner pid failed');
    }
  }

  async forget(pid: number): Promise<void> {
    await rm(this.#file(pid), { force: true }).catch(() => undefined);
  }

  /** Kills every recorded runner that still runs (same pid, same start time); clears the records. */
  async reap(): Promise<number[]> {
    let names: string[];
    try {
      names = await readdir(this.#dir);
    } catch {
      return [];
    }
    const reaped: number[] = [];
    for (const name of names) {
      if (!/^\d+\.json$/.test(name)) continue;
      const file = path.join(this.#dir, name);
      const rec = await readFile(file, 'utf8')
        .then((t) => JSON.parse(t) as { pid?: unknown; startTime?: unknown; command?: unknown })
        .catch(() => undefined);
      await rm(file, { force: true }).catch(() => undefined);
      if (!rec || typeof rec.pid !== 'number' || typeof rec.startTime !== 'number') continue;
      const now = await processStartTime(rec.pid);
      if (now === undefined || now !== rec.startTime) continue;
      try {
        process.kill(-rec.pid, 'SIGKILL');
      } catch {
        try {
          process.kill(rec.pid, 'SIGKILL');
        } catch {
          continue;
        }
      }
      reaped.push(rec.pid);
      this.#log.warn(
        { pid: rec.pid, command: rec.command },
        'killed a runner left behind by a daemon that did not stop cleanly',
      );
    }
    return reaped;
  }

  #file(pid: number): string {
    return path.join(this.#dir, `${pid}.json`);
  }
}

/** Field 22 of /proc/PID/stat (start time in clock ticks since boot), or undefined. */
export async function processStartTime(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(fields[19]);
    return Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
