import { spawn, type ChildProcess } from 'node:child_process';
import { embeddedSpawnSpec } from '../../src/engines/embedded/index.js';
import type { RunnerConfig, RunnerMessage, RunnerStats } from '../../src/engines/types.js';

export interface StartedRunner {
  proc: ChildProcess;
  url: string;
  messages: RunnerMessage[];
  output: () => string;
}

/** Starts the real embedded runner as the supervisor would (embeddedSpawnSpec) and waits for ready. */
export async function startRunner(config: RunnerConfig): Promise<StartedRunner> {
  const spec = embeddedSpawnSpec(config);
  const proc = spawn(spec.command, spec.args, {
    env: spec.env,
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const messages: RunnerMessage[] = [];
  let port = 0;
  await new Promise<void>((resolve, reject) => {
    proc.on('message', (m: RunnerMessage) => {
      messages.push(m);
      if (m.type === 'listening') port = m.port;
      if (m.type === 'ready') resolve();
      if (m.type === 'error') reject(new Error(m.message));
    });
    proc.once('exit', (code) => reject(new Error(`runner exited with ${code}: ${out}`)));
  });
  return { proc, url: `http://127.0.0.1:${port}`, messages, output: () => out };
}

/** A runner config with the test defaults, over what `over` sets. */
export function runnerConfig(modelPath: string, over: Partial<RunnerConfig> = {}): RunnerConfig {
  return {
    modelPath,
    contextSize: 2048,
    parallel: 1,
    threads: 2,
    batchSize: 512,
    flashAttention: true,
    kvCacheKeyType: 'f16',
    kvCacheValueType: 'f16',
    mmap: true,
    gpuLayers: 0,
    ...over,
  };
}

/** POSTs `body` as JSON to a runner (or any URL) at `path`. */
export const post = (
  url: string,
  path: string,
  body: unknown,
  signal?: AbortSignal,
): Promise<Response> =>
  fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: signal ?? null,
  });

/** A runner's GET /stats. */
export async function stats(url: string): Promise<RunnerStats> {
  return (await (await fetch(`${url}/stats`)).json()) as RunnerStats;
}
