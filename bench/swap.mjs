#!/usr/bin/env node
// bench/swap: request → first token through the daemon for a model that is (a) loaded, (b) not
// loaded but its file in the page cache, (c) not loaded while the budget is full, so another must
// be evicted first; beside the raw cost measured in the same run: the runner's load time (spawn →
// ready) plus the loaded first-token time (prefill). Three forged F16 models, a budget that fits two.
// Prints a table, writes JSON to bench/results/swap.json.
//
//   npm run build && node bench/swap.mjs [--rounds 5] [--params 50M]
import { mkdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Daemon } from '../dist/daemon/daemon.js';
import { forgeModel, parseParamCount } from '../dist/gguf/forge.js';
import { readModelSpec } from '../dist/gguf/index.js';
import { silentLogger } from '../dist/lib/logger.js';
import { planLoad } from '../dist/planner/index.js';
import { median } from './lib/stats.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    params: { type: 'string', default: '50M' },
  },
});
const ROUNDS = Number(values.rounds);
const PARAMS = parseParamCount(values.params);
const CONTEXT = 1024;

const dir = path.join(root, '.cache', 'bench-models');
await mkdir(dir, { recursive: true });
const files = [];
for (const i of [1, 2, 3]) {
  const out = path.join(dir, `swap-${values.params.toLowerCase()}-${i}.gguf`);
  if (!(await stat(out).catch(() => null))) {
    process.stderr.write(`forging ${out}…\n`);
    await forgeModel({
      out,
      params: PARAMS,
      type: 'f16',
      ctx: 2048,
      chatTemplate: 'chatml',
      seed: i,
    });
  }
  files.push(out);
}
const predicted = planLoad({
  spec: await readModelSpec(files[0]),
  request: { contextSize: CONTEXT, parallel: 1 },
  available: { bytes: Number.MAX_SAFE_INTEGER },
}).predicted.total;

const home = path.join(os.tmpdir(), `headroom-bench-swap-${process.pid}`);
const daemon = await Daemon.start({
  home,
  log: silentLogger(),
  config: {
    port: 0,
    demoModel: false,
    monitor: { enabled: false },
    models: Object.fromEntries(files.map((f, i) => [`m${i + 1}`, { path: f }])),
    runner: { contextSize: CONTEXT },
    scheduler: { budget: { cap: Math.round(2.5 * predicted), reserve: 0 }, ttl: 'never' },
  },
});
const m = daemon.core.manager;

/** Request → first streamed content chunk, in ms. */
async function firstToken(model) {
  const t0 = performance.now();
  const res = await fetch(new URL('/v1/chat/completions', daemon.url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      stream: true,
      max_tokens: 8,
      messages: [{ role: 'user', content: 'Say something short.' }],
    }),
  });
  if (!res.ok) throw new Error(`${model}: HTTP ${res.status} ${await res.text()}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let t;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    if (t === undefined && /"content":"[^"]/.test(buf)) t = performance.now() - t0;
  }
  return t ?? performance.now() - t0;
}

const rows = { loaded: [], pageCache: [], evictFirst: [], rawLoad: [], rawLoadPlusPrefill: [] };
await firstToken('m1'); // warm the page cache and the JIT
for (let r = 0; r < ROUNDS; r++) {
  // (a) loaded
  await m.load('m1');
  const a = await firstToken('m1');
  // (b) not loaded, file in page cache, room in the budget
  await m.unload('m1');
  const b = await firstToken('m1');
  const loadMs = m.status('m1').loadMs ?? NaN;
  // (c) not loaded, budget full: m2 and m3 loaded and idle, one must go first
  await m.unload('m1');
  await m.load('m2');
  await m.load('m3');
  const c = await firstToken('m1');
  await m.unload('m2');
  await m.unload('m3');
  rows.loaded.push(a);
  rows.pageCache.push(b);
  rows.evictFirst.push(c);
  rows.rawLoad.push(loadMs);
  rows.rawLoadPlusPrefill.push(loadMs + a);
  process.stderr.write(
    `round ${r + 1}: loaded ${a.toFixed(0)} ms, page cache ${b.toFixed(0)} ms, evict first ${c.toFixed(0)} ms, raw load ${loadMs.toFixed(0)} ms\n`,
  );
}
await daemon.close();

const summary = Object.fromEntries(
  Object.entries(rows).map(([k, v]) => [
    k,
    {
      medianMs: +median(v).toFixed(1),
      minMs: +Math.min(...v).toFixed(1),
      maxMs: +Math.max(...v).toFixed(1),
    },
  ]),
);
const result = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${process.platform}, node ${process.version}`,
  model: { params: PARAMS, type: 'f16', contextSize: CONTEXT, predictedBytes: predicted },
  rounds: ROUNDS,
  summary,
  ratios: {
    pageCacheOverRaw: +(summary.pageCache.medianMs / summary.rawLoadPlusPrefill.medianMs).toFixed(
      3,
    ),
    evictFirstOverPageCache: +(summary.evictFirst.medianMs / summary.pageCache.medianMs).toFixed(3),
  },
  samples: rows,
};
console.log('| case | median ms | min | max |\n|---|---|---|---|');
for (const [k, v] of Object.entries(summary))
  console.log(`| ${k} | ${v.medianMs} | ${v.minMs} | ${v.maxMs} |`);
console.log(JSON.stringify(result.ratios));
await mkdir(path.join(root, 'bench', 'results'), { recursive: true });
await writeFile(
  path.join(root, 'bench', 'results', 'swap.json'),
  JSON.stringify(result, null, 2) + '\n',
);
