/**
 * No orphans: a runner whose daemon was killed outright (SIGKILL: no shutdown ran) does not
 * survive the next daemon's start on the same home. The runner here is the fake runner told to
 * ignore SIGTERM and its IPC channel closing — the worst case, like a llama-server that knows
 * nothing of its parent.
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { Headroom } from '../../src/daemon/headroom.js';
import { silentLogger } from '../../src/lib/logger.js';
import { cachedModel } from '../helpers/models.js';

const FIXTURE = path.resolve(import.meta.dirname, '../fixtures/headroom-with-fake-runner.mjs');

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe.runIf(process.platform === 'linux')('runners left by a killed daemon', () => {
  it('are killed when the next daemon starts on the same home', async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'headroom-orphans-'));
    const dir = path.join(home, 'gguf');
    await mkdir(dir, { recursive: true });
    await copyFile(
      await cachedModel('sched-a', { params: 5_000_000, type: 'f16', ctx: 2048, seed: 11 }),
      path.join(dir, 'a.gguf'),
    );
    const daemon = spawn(process.execPath, [FIXTURE, home, dir, '--', '--ignore-sigterm'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, HEADROOM_LOG_LEVEL: 'silent' },
    });
    let out = '';
    daemon.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const pid = await vi.waitFor(
      () => {
        const m = /runner (\d+)/.exec(out);
        if (!m) throw new Error(`no runner yet: ${out}`);
        return Number(m[1]);
      },
      { timeout: 30_000, interval: 50 },
    );
    daemon.kill('SIGKILL');
    await new Promise((r) => daemon.once('exit', r));
    // The daemon is gone and nothing stopped its runner.
    expect(alive(pid)).toBe(true);

    const next = await Headroom.create({
      home,
      log: silentLogger(),
      config: { modelDirs: [dir], demoModel: false, monitor: { enabled: false } },
    });
    try {
      await vi.waitFor(() => expect(alive(pid)).toBe(false), { timeout: 5000, interval: 20 });
    } finally {
      await next.dispose();
      if (alive(pid)) process.kill(-pid, 'SIGKILL');
    }
  }, 60_000);
});
