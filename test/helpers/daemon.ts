import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { tinyChatModel } from './models.js';

const BIN = path.resolve(import.meta.dirname, '../../bin/headroom.js');

export interface DaemonProcess {
  url: string;
  proc: ChildProcess;
  home: string;
  output: () => string;
  /** SIGTERM and wait for the exit; returns the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
}

/**
 * Starts the real daemon (`headroom serve`) as a child process on a free port with its own
 * HEADROOM_HOME, and resolves once it prints its URL.
 */
export async function startDaemon(
  config: Record<string, unknown>,
  opts: {
    env?: NodeJS.ProcessEnv;
    timeoutMs?: number;
    /** A cgroup's `cgroup.procs` (v1 or v2): the daemon joins it before it starts, runners inherit it. */
    cgroupProcs?: string;
    /** An existing HEADROOM_HOME (a daemon started again on what another left). Defaults to a new one. */
    home?: string;
  } = {},
): Promise<DaemonProcess> {
  const home = opts.home ?? (await mkdtemp(path.join(os.tmpdir(), 'headroom-e2e-')));
  const configFile = path.join(home, 'config.yaml');
  await writeFile(configFile, stringify({ port: 0, ...config }));
  const argv = [process.execPath, BIN, 'serve', '--config', configFile];
  // Through a shell only to join the cgroup first (`$$` is the pid exec keeps); no user input.
  const [command, ...args] = opts.cgroupProcs
    ? ['/bin/sh', '-c', 'echo $$ > "$0" && exec "$@"', opts.cgroupProcs, ...argv]
    : argv;
  const proc = spawn(command!, args, {
    env: {
      ...process.env,
      HEADROOM_HOME: home,
      HEADROOM_LOG_LEVEL: process.env.HEADROOM_LOG_LEVEL ?? 'info',
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => resolve(code)),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`daemon did not start in time:\n${out}`)),
      opts.timeoutMs ?? 60_000,
    );
    const check = (): void => {
      const m = /headroom listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        proc.stdout!.off('data', check);
        resolve(m[1]!);
      }
    };
    proc.stdout!.on('data', check);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code}:\n${out}`));
    });
  });
  return {
    url,
    proc,
    home,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Child pids of a process, from /proc (Linux). */
export async function childPids(pid: number): Promise<number[]> {
  const { readdir, readFile } = await import('node:fs/promises');
  const out: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = await readFile(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

/** True while the process exists and is not a zombie (an exited child nobody reaped yet). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * The daemon the e2e client tests share: the cached tiny chat model (`tiny-chat`), context 1024.
 * `config` adds to (and replaces keys of) that config, e.g. `engines` to pick the engine.
 */
export async function startTinyChatDaemon(
  config: Record<string, unknown> = {},
): Promise<DaemonProcess> {
  const file = await tinyChatModel();
  return startDaemon({
    modelDirs: [path.dirname(file)],
    demoModel: false,
    runner: { contextSize: 1024, threads: 2 },
    ...config,
  });
}
