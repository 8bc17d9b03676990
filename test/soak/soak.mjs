#!/usr/bin/env node
/**
 * `npm run soak`: a real daemon with real llama-server runners on forged models under a mixed,
 * hostile load for a while (default 60 minutes), then a summary. Not part of `npm test`.
 *
 *   node test/soak/soak.mjs [--minutes 60] [--clients 8] [--hog-mb 256] [--kill-every 20] [--heap-mb 128]
 *
 * - clients: loops of random requests (OpenAI chat, streamed chat, completions, Ollama chat)
 *   over three models with a budget that holds two; some are cancelled mid-way;
 * - a memory hog: a process that takes --hog-mb of resident memory for 10 s, every ~30 s;
 * - runner kills: a loaded runner SIGKILLed every ~--kill-every seconds;
 * - the daemon's heap capped at --heap-mb (0: V8's default): a leak then ends the daemon (an
 *   exit other than 0 in the summary) instead of hiding in a lazily grown heap.
 * It stops by itself, stops the daemon, and prints: requests, outcomes by kind, the daemon's
 * max RSS, OOM kills on the machine meanwhile (/proc/vmstat), and runner processes left over.
 * Writes bench/results/soak.json. Run `npm run build` first.
 */
/* global setInterval, clearInterval, AbortSignal */
import { spawn, spawnSync } from 'node:child_process';
import { link, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel } from '../../dist/gguf/index.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    clients: { type: 'string', default: '8' },
    'hog-mb': { type: 'string', default: '256' },
    'kill-every': { type: 'string', default: '20' },
    'heap-mb': { type: 'string', default: '128' },
  },
});
const MINUTES = Number(values.minutes);
const CLIENTS = Number(values.clients);
const HOG_MB = Number(values['hog-mb']);
const KILL_EVERY_S = Number(values['kill-every']);
const HEAP_MB = Number(values['heap-mb']);
const ROOT = path.resolve(import.meta.dirname, '../..');
const MODELS = ['soak-a', 'soak-b', 'soak-c'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pick = (a) => a[Math.floor(Math.random() * a.length)];

// Models: three names for one forged file (hard links), beside the test cache.
const cache = path.join(ROOT, '.cache', 'models');
const base = path.join(cache, 'tiny-chat.gguf');
await mkdir(cache, { recursive: true });
if (!(await stat(base).catch(() => undefined))) {
  await forgeModel({
    out: base,
    params: 15_000_000,
    type: 'f16',
    ctx: 4096,
    chatTemplate: 'chatml',
    seed: 7,
  });
}
const modelDir = path.join(ROOT, '.cache', 'soak-models');
await rm(modelDir, { recursive: true, force: true });
await mkdir(modelDir, { recursive: true });
for (const m of MODELS) await link(base, path.join(modelDir, `${m}.gguf`));

const home = await mkdtemp(path.join(os.tmpdir(), 'headroom-soak-'));
const configFile = path.join(home, 'config.yaml');
await writeFile(
  configFile,
  [
    'port: 0',
    `modelDirs: [${JSON.stringify(modelDir)}]`,
    'demoModel: false',
    'runner: { contextSize: 1024, threads: 1 }',
    // One tiny-chat runner at context 1024 plans at ~70 MB: the cap holds two of the three.
    'scheduler: { budget: { cap: 160MiB, reserve: 0 }, queue: { maxLength: 16, maxWait: 60s } }',
    "limits: { healthInterval: '2s', healthTimeout: '5s', stopGrace: '2s' }",
  ].join('\n') + '\n',
);

const vmstatOom = async () =>
  Number(/oom_kill (\d+)/.exec(await readFile('/proc/vmstat', 'utf8').catch(() => ''))?.[1] ?? 0);
const oomBefore = await vmstatOom();

const heapFlags = HEAP_MB > 0 ? [`--max-old-space-size=${HEAP_MB}`] : [];
const daemon = spawn(
  process.execPath,
  [...heapFlags, path.join(ROOT, 'bin/headroom.js'), 'serve', '--config', configFile],
  {
    env: { ...process.env, HEADROOM_HOME: home, HEADROOM_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  },
);
let daemonOut = '';
daemon.stdout.on('data', (d) => (daemonOut += d));
daemon.stderr.on('data', (d) => (daemonOut = (daemonOut + d).slice(-20_000)));
const url = await new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error(`daemon did not start:\n${daemonOut}`)), 60_000);
  daemon.stdout.on('data', () => {
    const m = /headroom listening on (http:\/\/\S+)/.exec(daemonOut);
    if (m) {
      clearTimeout(t);
      resolve(m[1]);
    }
  });
  daemon.once('exit', (c) => reject(new Error(`daemon exited with ${c}:\n${daemonOut}`)));
});
console.log(
  `soak: daemon ${url} (pid ${daemon.pid}, heap cap ${HEAP_MB || 'none'} MiB), ${MINUTES} min, ${CLIENTS} clients, hog ${HOG_MB} MB, a runner kill every ~${KILL_EVERY_S} s`,
);

const endAt = Date.now() + MINUTES * 60_000;
const running = () => Date.now() < endAt;
const outcomes = new Map();
const count = (k) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
let requests = 0;
let kills = 0;
let hogs = 0;
let maxRss = 0;
const runnerPids = new Set();

/** One random request; returns its outcome kind. */
async function oneRequest() {
  const model = pick(MODELS);
  const kind = pick(['chat', 'stream', 'completion', 'ollama']);
  const maxTokens = 1 + Math.floor(Math.random() * 32);
  const ac = new AbortController();
  const cancel = Math.random() < 0.15;
  const timer = setTimeout(() => ac.abort(), cancel ? Math.random() * 300 : 120_000);
  const body =
    kind === 'completion'
      ? { model, prompt: 'Once upon a time', max_tokens: maxTokens }
      : kind === 'ollama'
        ? {
            model,
            messages: [{ role: 'user', content: 'hi' }],
            stream: Math.random() < 0.5,
            options: { num_predict: maxTokens },
          }
        : {
            model,
            messages: [{ role: 'user', content: 'hi' }],
            max_tokens: maxTokens,
            stream: kind === 'stream',
          };
  const route =
    kind === 'completion'
      ? '/v1/completions'
      : kind === 'ollama'
        ? '/api/chat'
        : '/v1/chat/completions';
  try {
    const res = await fetch(url + route, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: ac.signal,
    });
    const text = await res.text();
    if (res.status !== 200) {
      let code = '';
      try {
        const e = JSON.parse(text).error;
        // Ollama's shape carries no code: say which route it was.
        code = typeof e === 'string' ? `(Ollama) ${e.slice(0, 40)}` : (e?.code ?? '');
      } catch {
        /* not JSON */
      }
      return `${res.status}${code ? ` ${code}` : ''}`;
    }
    // A stream that ended with an error event (its runner was killed mid-answer).
    if (/"error"\s*:/.test(text.slice(-600))) return '200 stream ended by an error event';
    return '200';
  } catch (err) {
    if (ac.signal.aborted && cancel) return 'cancelled by the client';
    return `client error: ${err?.cause?.code ?? err?.name ?? err}`;
  } finally {
    clearTimeout(timer);
  }
}

async function client() {
  while (running()) {
    requests++;
    count(await oneRequest());
    await sleep(Math.random() * 200);
  }
}

async function models() {
  const res = await fetch(`${url}/admin/models`, { signal: AbortSignal.timeout(10_000) });
  return (await res.json()).models;
}

async function killer() {
  while (running()) {
    await sleep(KILL_EVERY_S * 1000 * (0.5 + Math.random()));
    if (!running()) return;
    const ready = (await models().catch(() => [])).filter((m) => m.state === 'ready' && m.pid);
    if (ready.length === 0) continue;
    const victim = pick(ready);
    try {
      process.kill(victim.pid, 'SIGKILL');
      kills++;
    } catch {
      /* gone already */
    }
  }
}

async function hog() {
  while (running()) {
    await sleep(20_000 + Math.random() * 20_000);
    if (!running() || HOG_MB <= 0) return;
    hogs++;
    const p = spawn(process.execPath, [
      '-e',
      `const b = Buffer.alloc(${HOG_MB} * 1024 * 1024, 1); setTimeout(() => b.length, 10000);`,
    ]);
    await new Promise((r) => p.once('exit', r));
  }
}

async function sampler() {
  while (running()) {
    const s = await readFile(`/proc/${daemon.pid}/status`, 'utf8').catch(() => '');
    maxRss = Math.max(maxRss, Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? 0) * 1024);
    for (const m of await models().catch(() => [])) if (m.pid) runnerPids.add(m.pid);
    await sleep(1000);
  }
}

let lastReport = Date.now();
const reporter = setInterval(() => {
  if (Date.now() - lastReport < 60_000) return;
  lastReport = Date.now();
  const left = Math.max(0, Math.round((endAt - Date.now()) / 60_000));
  console.log(
    `  ${requests} requests, ${kills} runner kills, max RSS ${(maxRss / 2 ** 20).toFixed(0)} MiB, ${left} min left`,
  );
}, 5000);

await Promise.all([...Array.from({ length: CLIENTS }, client), killer(), hog(), sampler()]);
clearInterval(reporter);

// Stop the daemon, then look for anything it left running.
// The connections to the daemon as it is told to stop (shown when the stop is slow).
const port = new URL(url).port;
const connections = spawnSync(
  'ss',
  ['-tnpH', 'state', 'established', `( sport = :${port} or dport = :${port} )`],
  {
    encoding: 'utf8',
  },
).stdout;
const stopped = Date.now();
daemon.kill('SIGTERM');
const exit = await new Promise((r) => daemon.once('exit', (code, signal) => r({ code, signal })));
const stopMs = Date.now() - stopped;
if (stopMs > 5000)
  console.log(`connections to the daemon when it was told to stop:\n${connections}`);
if (stopMs > 5000)
  console.log(`the daemon took ${stopMs} ms to stop; its last output:\n${daemonOut.slice(-3000)}`);
await sleep(500);
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const orphans = [...runnerPids].filter(alive);
// Also any process whose command line names this soak's home (llama-server's slot path does).
for (const d of await readdir('/proc')) {
  if (!/^\d+$/.test(d)) continue;
  const cmd = await readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '');
  if (cmd.includes(home) && !orphans.includes(Number(d))) orphans.push(Number(d));
}
const oomKills = (await vmstatOom()) - oomBefore;
const errors = [...outcomes.entries()].sort((a, b) => b[1] - a[1]);
const rows = [
  ['duration', `${MINUTES} min`],
  ['requests', String(requests)],
  ...errors.map(([k, n]) => [`  ${k}`, String(n)]),
  ['runner kills (SIGKILL by the soak)', String(kills)],
  ['memory hogs', `${hogs} × ${HOG_MB} MB for 10 s`],
  ['runners seen', String(runnerPids.size)],
  ['daemon max RSS', `${(maxRss / 2 ** 20).toFixed(1)} MiB (heap cap ${HEAP_MB || 'none'} MiB)`],
  ['OOM kills on the machine', String(oomKills)],
  ['daemon exit', `code ${exit.code ?? '-'}, signal ${exit.signal ?? '-'}, in ${stopMs} ms`],
  ['orphans after the daemon stopped', String(orphans.length)],
];
const w = Math.max(...rows.map((r) => r[0].length));
console.log('\nsoak summary');
for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
const out = path.join(ROOT, 'bench', 'results');
await mkdir(out, { recursive: true });
await writeFile(
  path.join(out, 'soak.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, totalMem: os.totalmem(), platform: os.platform() },
      minutes: MINUTES,
      clients: CLIENTS,
      requests,
      outcomes: Object.fromEntries(outcomes),
      kills,
      hogs,
      hogMb: HOG_MB,
      heapMb: HEAP_MB,
      runnersSeen: runnerPids.size,
      maxRssBytes: maxRss,
      oomKills,
      exit,
      stopMs,
      orphans,
    },
    null,
    2,
  ) + '\n',
);
await rm(home, { recursive: true, force: true });
await rm(modelDir, { recursive: true, force: true });
process.exitCode = orphans.length > 0 || exit.code !== 0 ? 1 : 0;
