import { spawn, type ChildProcess } from 'node:child_process';
import { sleep } from '../../src/lib/abort.js';
import { freePort } from '../../src/lib/net.js';

export interface StartedLlamaServer {
  proc: ChildProcess;
  url: string;
  /** Everything it printed so far. */
  output: () => string;
}

/**
 * Starts a llama-server binary on a free loopback port with `args(port)` and resolves once GET
 * /health answers 200; rejects with its output when it exits first or is not healthy in time.
 */
export async function startLlamaServer(
  binary: string,
  args: (port: number) => string[],
  timeoutMs = 60_000,
): Promise<StartedLlamaServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let out = '';
  const proc = spawn(binary, args(port), { stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`llama-server exited early:\n${out}`);
    const status = await fetch(`${url}/health`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`/health not 200 in ${timeoutMs / 1000} s:\n${out}`);
    }
    await sleep(100);
  }
  return { proc, url, output: () => out };
}
