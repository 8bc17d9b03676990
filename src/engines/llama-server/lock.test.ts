import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../../lib/abort.js';
import { withLock } from './lock.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'headroom-lock-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A pid that existed and has exited: a child run to completion. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  return r.pid!;
}

describe('withLock', () => {
  it('runs holders one at a time; the second sees that it waited', async () => {
    const lock = path.join(root, 'a.lock');
    const events: string[] = [];
    // The first holder sleeps while holding, so the second always finds the lock taken.
    const first = withLock(lock, async (waited) => {
      events.push(`first in (waited=${waited})`);
      await sleep(150);
      events.push('first out');
    });
    await sleep(20);
    let onWaitCalls = 0;
    const second = withLock(
      lock,
      async (waited) => {
        events.push(`second in (waited=${waited})`);
      },
      { pollMs: 20, onWait: () => onWaitCalls++ },
    );
    await Promise.all([first, second]);
    expect(events).toEqual(['first in (waited=false)', 'first out', 'second in (waited=true)']);
    expect(onWaitCalls).toBe(1);
    expect(existsSync(lock)).toBe(false);
  });

  it('takes over a lock whose owner on this host has died', async () => {
    const lock = path.join(root, 'stale.lock');
    await mkdir(lock);
    await writeFile(
      path.join(lock, 'owner.json'),
      JSON.stringify({ pid: deadPid(), host: os.hostname(), since: new Date().toISOString() }),
    );
    const waited = await withLock(lock, async (w) => w, { pollMs: 20 });
    expect(waited).toBe(false);
  });

  it('waits for a live owner and stops waiting on abort', async () => {
    const lock = path.join(root, 'live.lock');
    await mkdir(lock);
    await writeFile(
      path.join(lock, 'owner.json'),
      JSON.stringify({ pid: process.ppid, host: os.hostname(), since: new Date().toISOString() }),
    );
    const reason = new Error('gave up');
    const p = withLock(lock, async () => 'ran', { pollMs: 20 });
    // Released by its owner: the waiter then gets it.
    await sleep(80);
    await rm(lock, { recursive: true });
    expect(await p).toBe('ran');

    await mkdir(lock);
    await writeFile(
      path.join(lock, 'owner.json'),
      JSON.stringify({ pid: process.ppid, host: os.hostname(), since: new Date().toISOString() }),
    );
    const ac = new AbortController();
    const aborted = withLock(lock, async () => 'ran', { pollMs: 20, signal: ac.signal });
    await sleep(50);
    ac.abort(reason);
    await expect(aborted).rejects.toBe(reason);
    await rm(lock, { recursive: true });
  });

  it('treats a lock folder with no owner file as abandoned only after orphanMs', async () => {
    const lock = path.join(root, 'orphan.lock');
    await mkdir(lock);
    const started = Date.now();
    await withLock(lock, async () => {}, { pollMs: 20, orphanMs: 150 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
  });
});
