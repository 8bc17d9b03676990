import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { getEventListeners, once } from 'node:events';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HeadroomError } from '../lib/errors.js';
import { freePort } from '../lib/net.js';
import { readLogTail } from './log-file.js';
import { RunnerProcess, type RunnerStartOptions } from './runner-process.js';
import type { RunnerState } from './state.js';

// Every test drives a real process: test/fixtures/fake-runner.mjs, which speaks the runner
// protocol and misbehaves on request. Waits are on events, never on wall-clock assertions.

const FAKE = fileURLToPath(new URL('../../test/fixtures/fake-runner.mjs', import.meta.url));

let dir: string;
let started: RunnerProcess[] = [];
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-sup-'));
  started = [];
});
afterEach(async () => {
  await Promise.all(started.map((r) => r.stop({ graceMs: 0 })));
  await rm(dir, { recursive: true, force: true });
});

function options(args: string[], extra: Partial<RunnerStartOptions> = {}): RunnerStartOptions {
  return {
    name: 'fake',
    spawn: { command: process.execPath, args: [FAKE, ...args] },
    logFile: path.join(dir, 'fake.log'),
    startTimeoutMs: 20_000,
    stallTimeoutMs: 10_000,
    healthIntervalMs: 20,
    ...extra,
  };
}

async function start(
  args: string[],
  extra: Partial<RunnerStartOptions> = {},
): Promise<RunnerProcess> {
  const r = await RunnerProcess.start(options(args, extra));
  started.push(r);
  return r;
}

async function startError(
  args: string[],
  extra: Partial<RunnerStartOptions> = {},
): Promise<HeadroomError> {
  const err = await RunnerProcess.start(options(args, extra)).then(
    () => {
      throw new Error('start should have failed');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HeadroomError);
  return err as HeadroomError;
}

/** Gone: no such process, or a zombie waiting for its (other) parent to reap it. */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw err;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Process group of a live process, from /proc/<pid>/stat (field 5). */
function pgidOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

const WATCHED = [
  'Timeout',
  'PipeWrap',
  'ProcessWrap',
  'TCPWrap',
  'TCPSocketWrap',
  'FSReqCallback',
  'FileHandle',
  'FSReqPromise',
];
function resources(): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(WATCHED.map((k) => [k, 0]));
  for (const r of process.getActiveResourcesInfo())
    if (r in counts) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

/**
 * Nothing was left behind: no more handles of any watched kind than before the start (the test
 * worker's own RPC may hold a timer or a pending fs call at either moment, hence ≤), and no
 * child process or client socket at all (this file holds none between its tests).
 */
function expectNoLeaks(before: Record<string, number>): void {
  const after = resources();
  for (const k of WATCHED) expect(after[k], k).toBeLessThanOrEqual(before[k] ?? 0);
  expect(after.ProcessWrap).toBe(0);
  expect(after.TCPSocketWrap).toBe(0);
  expect(after.TCPWrap).toBe(0);
}

/** Makes the fake runner crash now, by exit code or by signal. */
function crash(url: string, query: string): Promise<void> {
  return new Promise((resolve) => {
    http
      .get(`${url}/crash?${query}`, { agent: false }, (res) => {
        res.resume();
        res.on('close', resolve);
      })
      .on('error', () => resolve()); // the process may die before the answer arrives
  });
}

function getHealth(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(`${url}/health`, { agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

function recordStates(r: RunnerProcess): string[] {
  const seen: string[] = [];
  r.on('state', (from: RunnerState, to: RunnerState) => seen.push(`${from}→${to}`));
  return seen;
}

describe('RunnerProcess: start and stop', () => {
  it('starts a runner, reports it ready and healthy, stops it cleanly leaving no handles', async () => {
    const before = resources();
    const r = await RunnerProcess.start(options(['--load-ms=50']));
    const states = recordStates(r);
    expect(r.state).toBe('ready');
    expect(r.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(r.loadMs).toBeGreaterThanOrEqual(50);
    expect(r.exit).toBeUndefined();
    const pid = r.pid!;
    expect(isGone(pid)).toBe(false);
    expect(pgidOf(pid)).toBe(pid); // its own process group
    expect(readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim()).toBe('500');
    expect(await getHealth(r.url)).toBe(200);

    let exits = 0;
    r.on('exit', () => exits++);
    await r.stop();
    expect(r.state).toBe('stopped');
    expect(states).toEqual(['ready→stopping', 'stopping→stopped']);
    expect(exits).toBe(1);
    expect(r.exit).toMatchObject({ code: 0, signal: null });
    expect(r.exit?.logTail).toContain('fake runner: stopping (SIGTERM)');
    expect(isGone(pid)).toBe(true);
    const log = await readFile(path.join(dir, 'fake.log'), 'utf8');
    expect(log).toContain('fake runner: ready');
    expect(log).toMatch(/\[headroom [^\]]+\] exited \(code 0, signal -\)\n$/);
    expectNoLeaks(before);
  });

  it('memoises stop: concurrent and repeated calls share one promise and one exit', async () => {
    const r = await start(['--stop-ms=50']);
    let exits = 0;
    r.on('exit', () => exits++);
    const a = r.stop();
    const b = r.stop({ graceMs: 1 });
    expect(b).toBe(a);
    await Promise.all([a, b]);
    expect(r.stop()).toBe(a);
    await r.stop();
    expect(exits).toBe(1);
    expect(r.state).toBe('stopped');
    // graceMs 1 was ignored: the first call's 5 s grace let the runner finish its own cleanup.
    expect(r.exit).toMatchObject({ code: 0, signal: null });
  });

  it('sends SIGKILL after the grace period when SIGTERM is ignored', async () => {
    const before = resources();
    const r = await RunnerProcess.start(options(['--ignore-sigterm']));
    const pid = r.pid!;
    await r.stop({ graceMs: 200 });
    expect(r.state).toBe('stopped');
    expect(r.exit).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(isGone(pid)).toBe(true);
    const log = await readFile(path.join(dir, 'fake.log'), 'utf8');
    expect(log).toContain('fake runner: ignoring SIGTERM');
    expect(log).toContain('SIGKILL');
    expectNoLeaks(before);
  });

  it('stops with graceMs 0 by SIGKILL at once', async () => {
    const r = await start([]);
    await r.stop({ graceMs: 0 });
    expect(r.exit?.signal).toBe('SIGKILL');
    expect(r.state).toBe('stopped');
  });

  it('rejects a bad graceMs without stopping', async () => {
    const r = await start([]);
    await expect(r.stop({ graceMs: -1 })).rejects.toThrow(RangeError);
    expect(r.state).toBe('ready');
  });

  it('kills what the runner spawned (the whole process group)', async () => {
    const r = await start(['--grandchild']);
    const log = await readLogTail(path.join(dir, 'fake.log'), 10_000);
    const gc = Number(/grandchild pid (\d+)/.exec(log)?.[1]);
    expect(gc).toBeGreaterThan(0);
    expect(isGone(gc)).toBe(false);
    await r.stop();
    // The group's SIGKILL was sent before stop resolved; on a loaded machine the kernel may take a
    // moment to end a process it has signalled.
    for (let i = 0; i < 100 && !isGone(gc); i++) await new Promise((res) => setTimeout(res, 20));
    expect(isGone(gc)).toBe(true);
  });

  it('drains: ready → draining, then stops; drain is false once stopping', async () => {
    const r = await start([]);
    const states = recordStates(r);
    expect(r.drain()).toBe(true);
    expect(r.drain()).toBe(true);
    expect(r.state).toBe('draining');
    expect(await getHealth(r.url)).toBe(200); // the process keeps running
    await r.stop();
    expect(r.drain()).toBe(false);
    expect(states).toEqual(['ready→draining', 'draining→stopping', 'stopping→stopped']);
  });

  it('supports await using', async () => {
    let pid: number | undefined;
    {
      await using r = await RunnerProcess.start(options([]));
      pid = r.pid;
    }
    expect(isGone(pid!)).toBe(true);
  });
});

describe('RunnerProcess: HTTP readiness (a runner told its port, no IPC)', () => {
  async function httpOptions(args: string[]): Promise<RunnerStartOptions> {
    const port = await freePort();
    const o = options([...args, `--port=${port}`]);
    return { ...o, spawn: { ...o.spawn, readiness: { kind: 'http', port } } };
  }

  it('is ready once /health on the given port answers 200, with spawn-to-healthy as load time', async () => {
    const opts = await httpOptions(['--load-ms=300']);
    const r = await RunnerProcess.start(opts);
    started.push(r);
    expect(r.state).toBe('ready');
    const port = (opts.spawn.readiness as { port: number }).port;
    expect(r.url).toBe(`http://127.0.0.1:${port}`);
    // The fake answers 503 for its 300 ms of loading: ready cannot come before that.
    expect(r.loadMs).toBeGreaterThanOrEqual(300);
    const res = await fetch(`${r.url}/health`);
    expect(res.status).toBe(200);
    await r.stop();
    expect(r.state).toBe('stopped');
  });

  it('fails with RUNNER_EXITED and the log tail when the program exits before it is healthy', async () => {
    const err = await RunnerProcess.start(await httpOptions(['--exit-before-listen=4'])).then(
      () => undefined,
      (e: unknown) => e as HeadroomError,
    );
    expect(err?.code).toBe('RUNNER_EXITED');
    expect(err?.message).toContain('exiting before listening');
  });

  it('times out a program whose /health never answers 200', async () => {
    const o = await httpOptions(['--health-status=503']);
    const err = await RunnerProcess.start({ ...o, startTimeoutMs: 500 }).then(
      () => undefined,
      (e: unknown) => e as HeadroomError,
    );
    expect(err?.code).toBe('RUNNER_START_TIMEOUT');
  });

  it('refuses an http readiness without a valid port', async () => {
    const o = options([]);
    const err = await RunnerProcess.start({
      ...o,
      spawn: { ...o.spawn, readiness: { kind: 'http', port: 0 } },
    }).then(
      () => undefined,
      (e: unknown) => e as HeadroomError,
    );
    expect(err?.code).toBe('RUNNER_INVALID_OPTIONS');
  });
});

describe('RunnerProcess: crashes', () => {
  it('goes to failed at once with the exit code and the log tail when it crashes while ready', async () => {
    const before = resources();
    const r = await RunnerProcess.start(options([]));
    const states = recordStates(r);
    const exited = once(r, 'exit');
    await crash(r.url, 'code=7');
    const [exit] = await exited;
    expect(r.state).toBe('failed');
    expect(states).toEqual(['ready→failed']);
    expect(exit).toBe(r.exit);
    expect(r.exit).toMatchObject({ code: 7, signal: null });
    expect(r.exit?.logTail).toContain('fake runner: crashing now');
    // stop() after a crash just resolves; the state stays failed.
    await r.stop();
    expect(r.state).toBe('failed');
    expectNoLeaks(before);
  });

  it('reports the signal of a runner killed from outside (an OOM kill)', async () => {
    const r = await start([]);
    const exited = once(r, 'exit');
    await crash(r.url, 'signal=SIGKILL');
    await exited;
    expect(r.state).toBe('failed');
    expect(r.exit).toMatchObject({ code: null, signal: 'SIGKILL' });
  });

  it('fails while draining too', async () => {
    const r = await start([]);
    r.drain();
    const exited = once(r, 'exit');
    await crash(r.url, 'code=3');
    await exited;
    expect(r.state).toBe('failed');
    expect(r.exit?.code).toBe(3);
  });
});

describe('RunnerProcess: failed starts leave nothing running', () => {
  it('rejects with the load error, exit code and log tail', async () => {
    const before = resources();
    const err = await startError(['--load-ms=20', '--fail-load=bad tensor blk.0.attn_q']);
    expect(err.code).toBe('RUNNER_START_FAILED');
    expect(err.message).toContain('failed to load: bad tensor blk.0.attn_q (load_failed)');
    expect(err.message).toContain('exit code 1');
    expect(err.message).toContain('Last log output:');
    expect(err.message).toContain('fake runner: load failed');
    expect(err.details).toMatchObject({ runner: 'fake', exitCode: 1, runnerCode: 'load_failed' });
    expect(isGone(err.details.pid as number)).toBe(true);
    expectNoLeaks(before);
  });

  it('rejects with RUNNER_EXITED when it exits before listening', async () => {
    const err = await startError(['--exit-before-listen=9']);
    expect(err.code).toBe('RUNNER_EXITED');
    expect(err.message).toMatch(/exited before it was ready \(exit code 9\)/);
    expect(err.message).toContain('exiting before listening');
  });

  it('rejects with RUNNER_START_FAILED when the command cannot be spawned', async () => {
    const before = resources();
    const err = await startError([], {
      spawn: { command: path.join(dir, 'no-such-runner'), args: [] },
    });
    expect(err.code).toBe('RUNNER_START_FAILED');
    expect(err.message).toMatch(/could not be started .*ENOENT/);
    expectNoLeaks(before);
  });

  it('rejects a runner that reports ready without a port (protocol error)', async () => {
    const err = await startError(['--ready-without-listening']);
    expect(err.code).toBe('RUNNER_START_FAILED');
    expect(err.message).toContain('protocol error');
    expect(isGone(err.details.pid as number)).toBe(true);
  });

  it('times out a runner that keeps printing but never becomes ready', async () => {
    const before = resources();
    // 1 s: enough for a loaded machine to start node and print a few lines before the timeout.
    const err = await startError(['--chatty-load=20'], { startTimeoutMs: 1000 });
    expect(err.code).toBe('RUNNER_START_TIMEOUT');
    expect(err.message).toContain('was not ready within 1000 ms');
    expect(err.message).toContain('signal SIGKILL');
    expect(err.message).toContain('still loading');
    expect(isGone(err.details.pid as number)).toBe(true);
    expectNoLeaks(before);
  });

  it('times out a runner whose /health never answers 200', async () => {
    const err = await startError(['--health-status=503'], { startTimeoutMs: 300 });
    expect(err.code).toBe('RUNNER_START_TIMEOUT');
    expect(isGone(err.details.pid as number)).toBe(true);
  });

  it('detects a stall: listening, then no output or progress', async () => {
    const err = await startError(['--silent-load'], { stallTimeoutMs: 200 });
    expect(err.code).toBe('RUNNER_START_TIMEOUT');
    expect(err.message).toContain('stalled while starting: no output or progress for 200 ms');
    expect(err.message).toContain('It wrote no output.');
    expect(isGone(err.details.pid as number)).toBe(true);
  });

  it('detects a stall of a runner that never reports anything', async () => {
    const err = await startError(['--hang'], { stallTimeoutMs: 200 });
    expect(err.code).toBe('RUNNER_START_TIMEOUT');
    expect(err.message).toContain('stalled');
  });

  it('aborts a start: rejects with the reason, kills the process, removes its listener', async () => {
    const before = resources();
    const controller = new AbortController();
    const reason = new Error('client went away');
    const pending = RunnerProcess.start(options(['--silent-load'], { signal: controller.signal }));
    // Abort once the runner has logged its spawn, i.e. while it is loading.
    for (;;) {
      const log = await readLogTail(path.join(dir, 'fake.log'), 4096).catch(() => '');
      if (/\bpid \d+/.test(log)) break;
      await new Promise((r) => setImmediate(r));
    }
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    controller.abort(reason);
    await expect(pending).rejects.toBe(reason);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    const log = await readFile(path.join(dir, 'fake.log'), 'utf8');
    const pid = Number(/\bpid (\d+)/.exec(log)?.[1]);
    expect(isGone(pid)).toBe(true);
    expect(log).toContain('start aborted');
    expectNoLeaks(before);
  });

  it('does not spawn when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort(new Error('already'));
    await expect(RunnerProcess.start(options([], { signal: controller.signal }))).rejects.toThrow(
      'already',
    );
    await expect(stat(path.join(dir, 'fake.log'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('removes its abort listener after a successful start', async () => {
    const controller = new AbortController();
    await start([], { signal: controller.signal });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('refuses invalid options with RUNNER_INVALID_OPTIONS', async () => {
    for (const bad of [
      { name: '' },
      { startTimeoutMs: 0 },
      { stallTimeoutMs: Number.NaN },
      { logMaxBytes: 1.5 },
      { oomScoreAdj: 2000 },
      { spawn: { command: '', args: [] } },
    ]) {
      await expect(RunnerProcess.start(options([], bad))).rejects.toMatchObject({
        code: 'RUNNER_INVALID_OPTIONS',
      });
    }
  });
});

describe('RunnerProcess: logs', () => {
  it('writes stdout and stderr to the log, rotated once it grows past the cap', async () => {
    const r = await start(['--lines=300', '--line-bytes=100'], { logMaxBytes: 4096, logKeep: 2 });
    // The runner writes its 30 KB at once; the supervisor sees the size and rotates it.
    for (let i = 0; i < 200 && !(await readdir(dir)).includes('fake.log.1'); i++)
      await new Promise((res) => setTimeout(res, 25));
    await r.stop();
    expect((await readdir(dir)).sort()).toEqual(['fake.log', 'fake.log.1']);
    const rotated = await readFile(path.join(dir, 'fake.log.1'), 'utf8');
    const lines = rotated.trimEnd().split('\n');
    for (const l of lines)
      expect(l).toMatch(/^(line \d+ x+|fake runner[: ].*|\[headroom [^\]]+\] .*)$/);
    expect(lines.filter((l) => l.startsWith('line ')).length).toBe(300);
    expect((await stat(path.join(dir, 'fake.log'))).size).toBeLessThan(4096);
    expect(await readLogTail(path.join(dir, 'fake.log'), 200)).toMatch(
      /exited \(code 0, signal -\)\n$/,
    );
  });

  it('appends a new run to the same log', async () => {
    await (await start([])).stop();
    await (await start([])).stop();
    const log = await readFile(path.join(dir, 'fake.log'), 'utf8');
    expect(log.match(/starting "fake"/g)).toHaveLength(2);
  });

  it('leaves oom_score_adj alone when asked to', async () => {
    const r = await start([], { oomScoreAdj: null });
    expect(readFileSync(`/proc/${r.pid}/oom_score_adj`, 'utf8').trim()).toBe(
      readFileSync('/proc/self/oom_score_adj', 'utf8').trim(),
    );
  });
});
