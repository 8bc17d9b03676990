import { existsSync } from 'node:fs';
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readModelSpec } from '../../src/gguf/index.js';
import { planLoad } from '../../src/planner/index.js';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { testLlamaServerBinary } from '../helpers/engines.js';
import { cachedModel } from '../helpers/models.js';

/**
 * Real memory: the daemon and its real runners (node-llama-cpp on forged models) inside a cgroup
 * v1 memory cgroup whose limit fits two of three models. A client rotates across the three: every
 * request must be served, nobody OOM-killed, and each eviction logged with its reason. Needs root
 * and a cgroup v1 memory hierarchy; otherwise it skips and says why.
 */

const ROOT = '/sys/fs/cgroup/memory';
const MiB = 1024 * 1024;
const CONTEXT = 1024;
const REQUESTS = 33;

async function makeCgroup(): Promise<{ dir?: string; why?: string }> {
  if (!existsSync(path.join(ROOT, 'memory.limit_in_bytes')))
    return { why: `no cgroup v1 memory hierarchy at ${ROOT}` };
  const dir = path.join(ROOT, `headroom-rotation-${process.pid}`);
  try {
    await mkdir(dir);
    return { dir };
  } catch (err) {
    return { why: `cannot create ${dir}: ${(err as Error).message}` };
  }
}

let daemon: DaemonProcess | undefined;
let cgroupDir: string | undefined;
afterAll(async () => {
  await daemon?.stop();
  if (cgroupDir) await rmdir(cgroupDir).catch(() => undefined);
});

describe('cgroup rotation (real memory)', () => {
  it('serves a rotation across three models in a cgroup that fits two, with no OOM kill', async (ctx) => {
    const cg = await makeCgroup();
    if (!cg.dir) {
      console.log(`skipped: ${cg.why}`);
      ctx.skip();
      return;
    }
    cgroupDir = cg.dir;
    const files = await Promise.all(
      ['r1', 'r2', 'r3'].map((n, i) =>
        cachedModel(`rotation-${n}`, {
          params: 15_000_000,
          type: 'f16',
          ctx: 2048,
          chatTemplate: 'chatml',
          seed: 100 + i,
        }),
      ),
    );
    // The planner's prediction for one of them, as the daemon will plan it: on llama-server
    // where there is one (the daemon's default), else on the embedded runner.
    const engine = 'path' in testLlamaServerBinary() ? 'llama-server' : 'embedded';
    const spec = await readModelSpec(files[0]!);
    const predicted = planLoad({
      spec,
      engine,
      request: { contextSize: CONTEXT, parallel: 1 },
      available: { bytes: Number.MAX_SAFE_INTEGER },
    }).predicted.total;
    const reserve = 256 * MiB; // the daemon itself and slack
    const limit = reserve + Math.round(2.5 * predicted);
    await writeFile(path.join(cg.dir, 'memory.limit_in_bytes'), String(limit));
    const dir = path.dirname(files[0]!);
    daemon = await startDaemon(
      {
        demoModel: false,
        monitor: { enabled: false },
        models: Object.fromEntries(
          files.map((f, i) => [`m${i + 1}`, { path: f, contextSize: CONTEXT }]),
        ),
        modelDirs: [],
        runner: { contextSize: CONTEXT, threads: 1 },
        engines: { default: engine },
        scheduler: { budget: { reserve }, ttl: 'never' },
      },
      { cgroupProcs: path.join(cg.dir, 'cgroup.procs'), timeoutMs: 60_000 },
    );
    void dir;
    const statuses: number[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const model = `m${(i % 3) + 1}`;
      const res = await fetch(new URL('/v1/chat/completions', daemon.url), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model,
          messages: [{ role: 'user', content: `hello ${i}` }],
          max_tokens: 4,
        }),
      });
      await res.text();
      statuses.push(res.status);
    }
    const oomControl = await readFile(path.join(cg.dir, 'memory.oom_control'), 'utf8');
    const failcnt = Number(await readFile(path.join(cg.dir, 'memory.failcnt'), 'utf8'));
    const maxUsage = Number(await readFile(path.join(cg.dir, 'memory.max_usage_in_bytes'), 'utf8'));
    const out = daemon.output();
    const lines = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const evictions = lines.filter((l) => l.msg === 'model unloaded: evicted for room');
    const crashes = lines.filter((l) => l.msg === 'runner exited unexpectedly');
    console.log(
      JSON.stringify({
        limit,
        predictedPerModel: predicted,
        maxUsage,
        failcnt,
        evictions: evictions.length,
        oomControl: oomControl.trim().split('\n'),
      }),
    );
    expect(statuses).toEqual(Array<number>(REQUESTS).fill(200));
    expect(/oom_kill (\d+)/.exec(oomControl)?.[1] ?? '0').toBe('0');
    expect(/under_oom (\d+)/.exec(oomControl)?.[1]).toBe('0');
    expect(crashes).toEqual([]);
    // Two fit, three do not: rotating evicts on (nearly) every switch, each with its reason.
    expect(evictions.length).toBeGreaterThanOrEqual(REQUESTS - 3);
    for (const e of evictions) expect(String(e.detail)).toMatch(/to make room for "m\d"/);
    expect(maxUsage).toBeLessThanOrEqual(limit);
  }, 600_000);
});
