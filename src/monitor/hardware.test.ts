import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  clearHardwareCache,
  gpusFromLlama,
  hardwareSnapshot,
  NVIDIA_SMI_ARGS,
  parseNvidiaSmiCsv,
  readNvidiaSmi,
  type LlamaVramState,
} from './hardware.js';
import { MonitorError } from './io.js';

const FIX = fileURLToPath(new URL('../../test/fixtures/monitor/', import.meta.url));
const fixture = (p: string): Promise<string> => readFile(`${FIX}${p}`, 'utf8');
const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const KiB = 1024;

let tmp: string;

/** Writes an executable stand-in for nvidia-smi: checks its arguments like the real one would, then behaves as told. */
async function fakeSmi(name: string, body: string): Promise<string> {
  const file = path.join(tmp, name);
  await writeFile(
    file,
    `#!/bin/sh\nif [ "$1" != "${NVIDIA_SMI_ARGS[0]}" ] || [ "$2" != "${NVIDIA_SMI_ARGS[1]}" ]; then echo "bad args: $*" >&2; exit 2; fi\n${body}\n`,
  );
  await chmod(file, 0o755);
  return file;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'headroom-hw-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});
beforeEach(() => clearHardwareCache());

describe('parseNvidiaSmiCsv', () => {
  it('reads two GPUs in bytes', async () => {
    expect(parseNvidiaSmiCsv(await fixture('nvidia-smi/two-gpus.csv'))).toEqual([
      { index: 0, name: 'NVIDIA GeForce RTX 4090', total: 24564 * MiB, free: 23318 * MiB },
      { index: 1, name: 'NVIDIA GeForce RTX 3090', total: 24576 * MiB, free: 1203 * MiB },
    ]);
    expect(parseNvidiaSmiCsv(await fixture('nvidia-smi/h100.csv'))).toEqual([
      { index: 0, name: 'NVIDIA H100 80GB HBM3', total: 81559 * MiB, free: 81004 * MiB },
    ]);
  });

  it('leaves out a board whose memory reads [N/A]', async () => {
    expect(parseNvidiaSmiCsv(await fixture('nvidia-smi/unified-na.csv'))).toEqual([]);
  });

  it('rejects what is not the CSV (the no-driver message, bad numbers)', async () => {
    const noDriver = await fixture('nvidia-smi/no-driver.txt');
    expect(() => parseNvidiaSmiCsv(noDriver)).toThrow(MonitorError);
    expect(() => parseNvidiaSmiCsv('0, GPU, lots, 5\n')).toThrow(MonitorError);
    expect(() => parseNvidiaSmiCsv('x, GPU, 5, 5\n')).toThrow(MonitorError);
    expect(parseNvidiaSmiCsv('')).toEqual([]);
  });
});

describe('readNvidiaSmi', () => {
  it('runs the command with the query arguments and parses its output', async () => {
    const smi = await fakeSmi('smi-ok', `cat '${FIX}nvidia-smi/two-gpus.csv'`);
    const gpus = await readNvidiaSmi({ command: smi });
    expect(gpus.map((g) => [g.index, g.name, g.source])).toEqual([
      [0, 'NVIDIA GeForce RTX 4090', 'nvidia-smi'],
      [1, 'NVIDIA GeForce RTX 3090', 'nvidia-smi'],
    ]);
    expect(gpus[1]!.free).toBe(1203 * MiB);
  });

  it('gives [] when the driver is missing, the command hangs, or it is not installed', async () => {
    const noDriver = await fakeSmi('smi-nodriver', `cat '${FIX}nvidia-smi/no-driver.txt'; exit 9`);
    expect(await readNvidiaSmi({ command: noDriver })).toEqual([]);
    const garbage = await fakeSmi('smi-garbage', 'echo "not csv at all"');
    expect(await readNvidiaSmi({ command: garbage })).toEqual([]);
    const hang = await fakeSmi('smi-hang', 'exec sleep 30');
    expect(await readNvidiaSmi({ command: hang, timeoutMs: 200 })).toEqual([]);
    expect(await readNvidiaSmi({ command: path.join(tmp, 'no-such-smi') })).toEqual([]);
  });

  it('rejects with the reason when its signal aborts', async () => {
    const hang = await fakeSmi('smi-hang2', 'exec sleep 30');
    const ac = new AbortController();
    const p = readNvidiaSmi({ command: hang, signal: ac.signal, timeoutMs: 20_000 });
    setTimeout(() => ac.abort(new Error('stop')), 50);
    await expect(p).rejects.toThrow('stop');
  });
});

describe('gpusFromLlama', () => {
  const cuda: LlamaVramState = {
    gpu: 'cuda',
    deviceNames: ['NVIDIA GeForce RTX 4090'],
    total: 24 * GiB,
    free: 20 * GiB,
    unifiedSize: 0,
  };

  it('maps one device', () => {
    expect(gpusFromLlama(cuda)).toEqual([
      {
        index: 0,
        name: 'NVIDIA GeForce RTX 4090',
        total: 24 * GiB,
        free: 20 * GiB,
        source: 'node-llama-cpp',
      },
    ]);
  });

  it('sums several devices into one entry, as node-llama-cpp reports them', () => {
    const [g] = gpusFromLlama({ ...cuda, deviceNames: ['A', 'B'], total: 48 * GiB });
    expect(g!.name).toBe('A + B');
    expect(g!.total).toBe(48 * GiB);
  });

  it('marks unified memory and reads a CPU-only build as no GPU', () => {
    expect(
      gpusFromLlama({
        gpu: 'metal',
        deviceNames: ['Apple M2'],
        total: 11 * GiB,
        free: 9 * GiB,
        unifiedSize: 11 * GiB,
      })[0]!.unified,
    ).toBe(true);
    expect(gpusFromLlama({ gpu: false, deviceNames: [], total: 0, free: 0 })).toEqual([]);
  });
});

describe('hardwareSnapshot', () => {
  it('reads a fixture tree: RAM, swap and the cgroup', async () => {
    const s = await hardwareSnapshot({
      root: `${FIX}linux-v2`,
      platform: 'linux',
      nvidiaSmi: false,
    });
    expect(s.platform).toBe('linux');
    expect(s.totalRam).toBe(32702356 * KiB);
    expect(s.available).toBe(9128476 * KiB);
    expect(s.swapTotal).toBe(8388604 * KiB);
    expect(s.swapFree).toBe(6120444 * KiB);
    expect(s.cores).toBe(os.availableParallelism());
    expect(s.cgroup).toMatchObject({
      version: 2,
      path: '/system.slice/headroom.service',
      limit: 8 * GiB,
    });
    expect(s.gpus).toEqual([]);
  });

  it('reads total RAM once and keeps it while available memory changes', async () => {
    const root = path.join(tmp, 'tree-cache');
    await mkdir(path.join(root, 'proc'), { recursive: true });
    const meminfo = path.join(root, 'proc/meminfo');
    await copyFile(`${FIX}linux-v1/proc/meminfo`, meminfo);
    const first = await hardwareSnapshot({ root, platform: 'linux', nvidiaSmi: false });
    await writeFile(meminfo, 'MemTotal: 1000 kB\nMemFree: 10 kB\nMemAvailable: 20 kB\n');
    const second = await hardwareSnapshot({ root, platform: 'linux', nvidiaSmi: false });
    expect(second.totalRam).toBe(first.totalRam);
    expect(second.totalRam).toBe(24684092 * KiB);
    expect(second.available).toBe(20 * KiB);
    expect(first.cgroup).toBeUndefined();
  });

  it('prefers the VRAM probe, and falls back to nvidia-smi when it throws or hangs', async () => {
    const smi = await fakeSmi('smi-snap', `cat '${FIX}nvidia-smi/h100.csv'`);
    const probe = (): Promise<LlamaVramState> =>
      Promise.resolve({
        gpu: 'cuda',
        deviceNames: ['NVIDIA H100 80GB HBM3'],
        total: 80 * GiB,
        free: 79 * GiB,
      });
    const viaProbe = await hardwareSnapshot({
      root: `${FIX}linux-v1`,
      platform: 'linux',
      llamaVram: probe,
      nvidiaSmi: smi,
    });
    expect(viaProbe.gpus).toEqual([
      {
        index: 0,
        name: 'NVIDIA H100 80GB HBM3',
        total: 80 * GiB,
        free: 79 * GiB,
        source: 'node-llama-cpp',
      },
    ]);

    const throwing = (): Promise<LlamaVramState> => Promise.reject(new Error('no bindings'));
    const viaSmi = await hardwareSnapshot({
      root: `${FIX}linux-v1`,
      platform: 'linux',
      llamaVram: throwing,
      nvidiaSmi: smi,
    });
    expect(viaSmi.gpus).toEqual([
      {
        index: 0,
        name: 'NVIDIA H100 80GB HBM3',
        total: 81559 * MiB,
        free: 81004 * MiB,
        source: 'nvidia-smi',
      },
    ]);

    // A probe that ignores its signal: the snapshot still completes, from nvidia-smi.
    const hanging = (): Promise<LlamaVramState> => new Promise(() => undefined);
    const afterHang = await hardwareSnapshot({
      root: `${FIX}linux-v1`,
      platform: 'linux',
      llamaVram: hanging,
      nvidiaSmi: smi,
      timeoutMs: 200,
    });
    expect(afterHang.gpus[0]!.source).toBe('nvidia-smi');
  });

  it('never fails for a broken GPU tool', async () => {
    const broken = await fakeSmi('smi-broken', 'echo "Segmentation fault" >&2; exit 139');
    const s = await hardwareSnapshot({
      root: `${FIX}linux-v1`,
      platform: 'linux',
      nvidiaSmi: broken,
    });
    expect(s.gpus).toEqual([]);
    expect(s.totalRam).toBe(24684092 * KiB);
  });

  it('falls back to what Node.js knows where the platform source is missing', async () => {
    const s = await hardwareSnapshot({
      root: path.join(tmp, 'empty-root'),
      platform: 'linux',
      gpus: false,
    });
    expect(s.totalRam).toBe(os.totalmem());
    expect(s.available).toBeGreaterThan(0);
    expect(s.cgroup).toBeUndefined();
  });

  it('on macOS reads vm_stat and sysctl; where they cannot run, falls back to what Node.js knows', async () => {
    // On Linux /usr/bin/vm_stat does not exist, so this exercises the fallback; on a Mac, the tools.
    const s = await hardwareSnapshot({ platform: 'darwin', gpus: false });
    expect(s.platform).toBe('darwin');
    expect(s.totalRam).toBe(os.totalmem());
    expect(s.available).toBeGreaterThan(0);
    expect(s.cgroup).toBeUndefined();
  });

  it('rejects with the reason of an aborted signal', async () => {
    await expect(
      hardwareSnapshot({ signal: AbortSignal.abort(new Error('cancelled')) }),
    ).rejects.toThrow('cancelled');
  });

  it('reads this machine', async () => {
    const s = await hardwareSnapshot();
    expect(s.platform).toBe(process.platform);
    // MemTotal and sysinfo(2), which os.totalmem() uses, are the same figure.
    expect(s.totalRam).toBe(os.totalmem());
    expect(s.available).toBeGreaterThan(0);
    expect(s.available).toBeLessThanOrEqual(s.totalRam);
    expect(s.cores).toBeGreaterThanOrEqual(1);
    if (process.platform === 'linux') expect(s.cgroup?.usage).toBeGreaterThan(0);
    for (const g of s.gpus) expect(g.total).toBeGreaterThan(0);
  });
});
