#!/usr/bin/env node
// bench/monitor-overhead: what the live memory monitor costs.
//   1. CPU time per sample (user + system), the sampler watching the daemon and three runner
//      processes, over --samples back-to-back samples.
//   2. The idle daemon (`headroom serve`, three forged models loaded, sampler at 1 s): CPU share
//      and RSS over --seconds, with the monitor on and, for comparison, off.
// Prints a table, writes JSON to bench/results/monitor-overhead.json.
//
//   npm run build && node bench/monitor-overhead.mjs [--samples 2000] [--seconds 30]
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel } from '../dist/gguf/forge.js';
import { Sampler } from '../dist/monitor/sampler.js';

// The daemon runs with the V8 flags on bin/headroom.js's shebang line (what `npm start` passes).
const NODE_FLAGS = (
  await import('node:fs').then((fs) =>
    fs.readFileSync(new URL('../bin/headroom.js', import.meta.url), 'utf8'),
  )
)
  .split('\n')[0]
  .split(/\s+/)
  .filter((a) => a.startsWith('--'));
const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '30' },
  },
});
const SAMPLES = Number(values.samples);
const SECONDS = Number(values.seconds);

const modelsDir = path.join(root, '.cache', 'bench-models', 'monitor');
await mkdir(modelsDir, { recursive: true });
for (const [i, name] of ['m1', 'm2', 'm3'].entries()) {
  const out = path.join(modelsDir, `${name}.gguf`);
  if (!(await stat(out).catch(() => null)))
    await forgeModel({
      out,
      params: 15_000_000,
      type: 'f16',
      ctx: 2048,
      chatTemplate: 'chatml',
      seed: 20 + i,
      name,
    });
}

/** cpu ms (utime + stime) of a process from /proc/<pid>/stat (USER_HZ 100). */
async function cpuMs(pid) {
  const s = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
async function rssMiB(pid) {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+)/m.exec(s)[1]) / 1024;
}

async function startDaemon(monitorEnabled) {
  const home = await mkdtemp(path.join(os.tmpdir(), 'headroom-bench-monitor-'));
  const config = path.join(home, 'config.yaml');
  await writeFile(
    config,
    [
      'port: 0',
      'demoModel: false',
      `modelDirs: [${JSON.stringify(modelsDir)}]`,
      'runner: { contextSize: 512, threads: 1 }',
      `monitor: { enabled: ${monitorEnabled}, interval: 1000 }`,
    ].join('\n'),
  );
  const proc = spawn(
    process.execPath,
    [...NODE_FLAGS, path.join(root, 'bin/headroom.js'), 'serve', '--config', config],
    {
      env: { ...process.env, HEADROOM_HOME: home, HEADROOM_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start:\n${out}`)), 60_000);
    proc.stdout.on('data', () => {
      const m = /headroom listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.once('exit', (c) => reject(new Error(`daemon exited ${c}:\n${out}`)));
  });
  for (const m of ['m1', 'm2', 'm3']) {
    const r = await fetch(`${url}/admin/models/${m}/load`, { method: 'POST' });
    if (!r.ok) throw new Error(`load ${m}: ${r.status} ${await r.text()}`);
  }
  const list = (await (await fetch(`${url}/admin/models`)).json()).models;
  return { proc, url, runnerPids: list.map((m) => m.pid).filter(Boolean) };
}

async function idle(monitorEnabled) {
  const d = await startDaemon(monitorEnabled);
  try {
    await new Promise((r) => setTimeout(r, 5000)); // settle after loads
    const pid = d.proc.pid;
    const c0 = await cpuMs(pid);
    const t0 = performance.now();
    let rssMax = 0;
    for (let i = 0; i < SECONDS; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      rssMax = Math.max(rssMax, await rssMiB(pid));
    }
    const wall = performance.now() - t0;
    const cpu = (await cpuMs(pid)) - c0;
    return {
      monitor: monitorEnabled,
      seconds: Math.round(wall / 1000),
      cpuMs: cpu,
      cpuSharePercent: Number(((cpu / wall) * 100).toFixed(3)),
      rssMiB: Number((await rssMiB(pid)).toFixed(1)),
      rssMaxMiB: Number(rssMax.toFixed(1)),
      runners: d.runnerPids.length,
      runners_pids: d.runnerPids,
    };
  } finally {
    d.proc.kill('SIGTERM');
    await new Promise((r) => d.proc.once('exit', r));
  }
}

// 1. CPU per sample, in this process, watching three real runners of a daemon with the monitor off.
const d = await startDaemon(false);
let perSample;
try {
  const watched = d.runnerPids.map((pid, i) => ({ pid, name: `m${i + 1}`, idle: true }));
  const s = await Sampler.create({ start: false, processes: () => watched, historySize: 600 });
  for (let i = 0; i < 100; i++) await s.sampleNow(); // warm up
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < SAMPLES; i++) await s.sampleNow();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const last = s.latest();
  await s.dispose();
  perSample = {
    samples: SAMPLES,
    cpuMicrosPerSample: Number(((c.user + c.system) / SAMPLES).toFixed(1)),
    wallMicrosPerSample: Number(((wall * 1000) / SAMPLES).toFixed(1)),
    processesPerSample: last.processes.length,
    cgroup: last.cgroup ? `v${last.cgroup.version}` : 'none',
    psi: last.psi ? last.psi.source : 'none',
    thermalZones: s.facts.thermalZones,
  };
} finally {
  d.proc.kill('SIGTERM');
  await new Promise((r) => d.proc.once('exit', r));
}

const on = await idle(true);
const off = await idle(false);

const result = {
  bench: 'monitor-overhead',
  date: new Date().toISOString(),
  machine: {
    cpus: os.availableParallelism(),
    memGiB: Math.round(os.totalmem() / 1024 ** 3),
    node: process.version,
    kernel: os.release(),
  },
  perSample,
  idleDaemon: { monitorOn: on, monitorOff: off },
  targets: { cpuMicrosPerSample: 1000, idleDaemonRssMiB: 80 },
};
console.table([
  { measure: 'CPU per sample (µs)', value: perSample.cpuMicrosPerSample, target: '≤ 1000' },
  { measure: 'wall per sample (µs)', value: perSample.wallMicrosPerSample, target: '' },
  { measure: 'idle daemon CPU share, monitor on (%)', value: on.cpuSharePercent, target: '' },
  { measure: 'idle daemon CPU share, monitor off (%)', value: off.cpuSharePercent, target: '' },
  { measure: 'idle daemon RSS, monitor on (MiB)', value: on.rssMiB, target: '≤ 76.3 (80 MB)' },
  { measure: 'idle daemon RSS, monitor off (MiB)', value: off.rssMiB, target: '' },
]);
await mkdir(path.join(root, 'bench', 'results'), { recursive: true });
await writeFile(
  path.join(root, 'bench', 'results', 'monitor-overhead.json'),
  `${JSON.stringify(result, null, 2)}\n`,
);
console.log('wrote bench/results/monitor-overhead.json');
