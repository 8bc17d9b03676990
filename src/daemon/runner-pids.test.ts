import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../lib/logger.js';
import { RunnerPids, processStartTime } from './runner-pids.js';

const linux = process.platform === 'linux';
let dir: string;
const spawned: number[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-pids-'));
});
afterEach(async () => {
  for (const pid of spawned.splice(0)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await rm(dir, { recursive: true, force: true });
});

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** A process in its own group with a child of its own, as a runner is spawned. */
function detachedSleeper(): { pid: number; exited: Promise<void> } {
  const child = spawn('/bin/sh', ['-c', 'sleep 600 & wait'], { detached: true, stdio: 'ignore' });
  child.unref();
  spawned.push(child.pid!);
  return { pid: child.pid!, exited: new Promise((r) => child.once('exit', () => r())) };
}

describe.runIf(linux)('RunnerPids', () => {
  const log = createLogger({ level: 'silent' });

  it('kills a recorded runner (and its process group) left running, and clears the record', async () => {
    const pids = new RunnerPids(dir, log);
    const runner = detachedSleeper();
    await pids.record(runner.pid, '/bin/sh');
    expect(await readdir(dir)).toEqual([`${runner.pid}.json`]);
    // A new daemon on the same home: what the old one recorded is found and killed.
    const reaped = await new RunnerPids(dir, log).reap();
    expect(reaped).toEqual([runner.pid]);
    await runner.exited;
    await vi.waitFor(() => expect(alive(runner.pid)).toBe(false));
    expect(await readdir(dir)).toEqual([]);
  });

  it('never kills a process whose start time differs from the record (a reused pid)', async () => {
    const other = detachedSleeper();
    const startTime = await processStartTime(other.pid);
    expect(startTime).toBeTypeOf('number');
    await writeFile(
      path.join(dir, `${other.pid}.json`),
      JSON.stringify({ pid: other.pid, startTime: startTime! - 1, command: 'x' }),
    );
    expect(await new RunnerPids(dir, log).reap()).toEqual([]);
    expect(alive(other.pid)).toBe(true);
    expect(await readdir(dir)).toEqual([]);
  });

  it('forgets a runner that stopped, and ignores records it cannot read', async () => {
    const pids = new RunnerPids(dir, log);
    await pids.record(process.pid, 'self');
    await pids.forget(process.pid);
    await writeFile(path.join(dir, '123.json'), '{not json');
    expect(await pids.reap()).toEqual([]);
    expect(await readdir(dir)).toEqual([]);
  });
});
