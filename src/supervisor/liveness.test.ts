import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunnerProcess, type RunnerStartOptions } from './runner-process.js';

/**
 * Liveness after ready, with a real process: the fake runner is frozen with SIGSTOP (it keeps its
 * socket, the kernel still accepts connections, nothing answers: a real hang), and the supervisor
 * must take it for hung and kill it.
 */

const FAKE = path.resolve(import.meta.dirname, '../../test/fixtures/fake-runner.mjs');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-liveness-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function options(extra: Partial<RunnerStartOptions> = {}): RunnerStartOptions {
  return {
    name: 'fake',
    spawn: { command: process.execPath, args: [FAKE] },
    logFile: path.join(dir, 'fake.log'),
    startTimeoutMs: 20_000,
    stallTimeoutMs: 10_000,
    healthIntervalMs: 20,
    ...extra,
  };
}

describe('RunnerProcess liveness', () => {
  it('kills a runner that stops answering /health, which then ends failed', async () => {
    const r = await RunnerProcess.start(
      options({ liveness: { intervalMs: 50, timeoutMs: 1000, failures: 3 } }),
    );
    try {
      const exited = once(r, 'exit');
      // Healthy checks pass and reset the count: the runner stays up.
      await new Promise((res) => setTimeout(res, 400));
      expect(r.state).toBe('ready');
      process.kill(r.pid!, 'SIGSTOP');
      await exited;
      expect(r.state).toBe('failed');
      expect(r.exit).toMatchObject({ code: null, signal: 'SIGKILL' });
      const log = await readFile(path.join(dir, 'fake.log'), 'utf8');
      expect(log).toMatch(/no healthy answer to 3 checks in a row \(none within 1000 ms\)/);
    } finally {
      await r.stop({ graceMs: 0 });
    }
  });

  it('stops checking once the runner is stopped (no kill of a stopping runner)', async () => {
    const r = await RunnerProcess.start(
      options({ liveness: { intervalMs: 20, timeoutMs: 100, failures: 1 } }),
    );
    await r.stop();
    expect(r.state).toBe('stopped');
    expect(r.exit?.signal).not.toBe('SIGKILL');
  });
});
