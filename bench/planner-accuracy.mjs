#!/usr/bin/env node
// bench/planner-accuracy: how close the planner's predicted peak is to what a real runner holds.
// Forges a matrix of llama models (sizes ~20M / ~150M / ~1B, GQA 1/4/8, F16 and Q8_0), and for each
// case loads the model in a forked child exactly as the embedded runner does (the runner's modules
// and an HTTP server loaded, getLlama build "never", gpu off, 2 threads, loadModel, createContext
// with sequences/batch/flash attention/KV types), fills every sequence of the context with random
// tokens, concurrently, in chunks of `promptChunk` tokens (64, the runner's prompt chunk, unless a
// case says otherwise; `promptChunk: batch` evaluates whole batches), and reads the child's
// peak RSS (VmHWM) and peak anonymous memory (RssAnon) from /proc/self/status. Prints predicted vs
// measured and the median and maximum absolute error; writes bench/results/planner-accuracy.json.
//
//   npm run build && node bench/planner-accuracy.mjs [--matrix quick|default|full] [--only TEXT]
//
// The default matrix samples the long and slow cases (see MATRIX below); `full` runs the whole
// cross product of issue 3 (hours on two cores).
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

const root = path.resolve(import.meta.dirname, '..');

// ---------------------------------------------------------------------------------------------
// Child: one measured load.
if (process.argv[2] === '--child') {
  const o = JSON.parse(process.argv[3]);
  const status = () => {
    const t = readFileSync('/proc/self/status', 'utf8');
    const g = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN) * 1024;
    return { hwm: g('VmHWM'), anon: g('RssAnon'), file: g('RssFile') };
  };
  let maxAnon = 0;
  const sample = () => {
    const s = status();
    maxAnon = Math.max(maxAnon, s.anon);
    return s;
  };
  // What the embedded runner has loaded before its model: its modules and a listening server.
  if (!process.env.BENCH_PLAIN) {
    await import('../dist/engines/embedded/engine.js');
    await import('../dist/engines/openai.js');
    await import('../dist/monitor/index.js');
    await import('zod');
  }
  const http = await import('node:http');
  const server = http.createServer((_req, res) => res.end());
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { getLlama } = await import('node-llama-cpp');
  const KV = { f16: 'F16', q8_0: 'Q8_0', q4_0: 'Q4_0' };
  const llama = await getLlama({ build: 'never', gpu: false, maxThreads: 2, logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: o.model, useMmap: o.mmap, gpuLayers: 0 });
  sample();
  const ctx = await model.createContext({
    contextSize: o.contextSize,
    sequences: o.parallel,
    threads: 2,
    batchSize: o.batchSize,
    flashAttention: o.flashAttention,
    experimentalKvCacheKeyType: KV[o.kvCacheKeyType],
    experimentalKvCacheValueType: KV[o.kvCacheValueType],
  });
  sample();
  const t0 = performance.now();
  let seed = 12345;
  // Random ordinary tokens (past the specials and the 256 byte tokens).
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % (o.vocab - 300)) + 300;
  const chunk = o.promptChunk ?? o.batchSize;
  let filled = 0;
  await Promise.all(
    Array.from({ length: o.parallel }, async () => {
      const seq = ctx.getSequence();
      const target = ctx.contextSize - 1;
      for (let done = 0; done < target;) {
        const n = Math.min(chunk, target - done);
        await seq.evaluateWithoutGeneratingNewTokens(Array.from({ length: n }, rnd));
        done += n;
        filled += n;
        sample();
      }
    }),
  );
  const s = sample();
  process.send({
    peakRss: s.hwm,
    peakAnon: maxAnon,
    file: s.file,
    filled,
    fillMs: performance.now() - t0,
  });
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
  server.close();
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Parent.
const { values } = parseArgs({
  options: { matrix: { type: 'string', default: 'default' }, only: { type: 'string' } },
});
const { forgeModel } = await import('../dist/gguf/forge.js');
const { readModelSpec } = await import('../dist/gguf/spec.js');
const { predictFootprint } = await import('../dist/planner/footprint.js');

/** Shapes: ~20M (vocab 8192), ~150M (vocab 16384), ~1B (vocab 32000); heads chosen so GQA 1/4/8 divide. */
const SIZES = {
  '20M': {
    layers: 8,
    embd: 384,
    heads: 12,
    ff: 1024,
    vocab: 8192,
    gqa: { 1: [12, 12], 4: [12, 3], 8: [8, 1] },
  },
  '150M': {
    layers: 11,
    embd: 1024,
    heads: 16,
    ff: 2752,
    vocab: 16384,
    gqa: { 1: [16, 16], 4: [16, 4], 8: [16, 2] },
  },
  '1B': {
    layers: 20,
    embd: 2048,
    heads: 16,
    ff: 5440,
    vocab: 32000,
    gqa: { 1: [16, 16], 4: [16, 4], 8: [16, 2] },
  },
};

function c(size, gqa, type, ctx, fa, kv = 'f16', extra = {}) {
  return {
    size,
    gqa,
    type,
    contextSize: ctx,
    flashAttention: fa,
    kvCacheKeyType: kv,
    kvCacheValueType: fa ? kv : 'f16',
    parallel: 1,
    batchSize: 512,
    mmap: true,
    promptChunk: RUNNER_CHUNK,
    ...extra,
  };
}

/** The embedded runner's prompt chunk (engines/embedded PROMPT_CHUNK_TOKENS). */
const RUNNER_CHUNK = 64;

/**
 * The sampled default matrix (runner-like 64-token chunks unless marked `whole batches`):
 * - 20M: GQA 1/4/8 × F16/Q8_0 × flash attention on/off at 2048; 8192 for GQA 4 F16 and GQA 8 Q8_0;
 *   KV q8_0 at 8192 and q4_0 at 2048; two slots; no mmap; batch 128; 16384 with flash attention off
 *   and 32768 (the trained context) with it on.
 * - 150M: GQA 1/4/8 F16 at 2048 (on); GQA 4 F16 and Q8_0 on/off at 2048; GQA 4 F16 on/off at 8192.
 * - 1B: GQA 4 F16 on, Q8_0 on/off, at 2048.
 * - whole batches of 512 (the planner's default upper bound): 20M GQA 4 F16 off at 2048 and 8192,
 *   150M GQA 4 F16 off at 2048.
 * Left out (slow on two cores, sampled instead): 32768 with flash attention off, 8192+ for 1B,
 * quantised KV caches beyond the cases above.
 */
function matrix(kind) {
  const out = [];
  if (kind === 'quick') {
    out.push(
      c('20M', 4, 'f16', 2048, true),
      c('20M', 4, 'f16', 2048, false),
      c('20M', 4, 'f16', 2048, false, 'f16', { promptChunk: 512 }),
      c('150M', 4, 'f16', 2048, true),
    );
    return out;
  }
  if (kind === 'full') {
    for (const size of Object.keys(SIZES))
      for (const gqa of [1, 4, 8])
        for (const type of ['f16', 'q8_0'])
          for (const ctx of [2048, 8192, 32768]) {
            for (const kv of ['f16', 'q8_0', 'q4_0']) out.push(c(size, gqa, type, ctx, true, kv));
            out.push(c(size, gqa, type, ctx, false));
          }
    return out;
  }
  for (const gqa of [1, 4, 8])
    for (const type of ['f16', 'q8_0'])
      out.push(c('20M', gqa, type, 2048, true), c('20M', gqa, type, 2048, false));
  out.push(
    c('20M', 4, 'f16', 8192, true),
    c('20M', 4, 'f16', 8192, false),
    c('20M', 8, 'q8_0', 8192, true),
    c('20M', 8, 'q8_0', 8192, false),
  );
  out.push(c('20M', 4, 'f16', 8192, true, 'q8_0'), c('20M', 4, 'f16', 2048, true, 'q4_0'));
  out.push(
    c('20M', 4, 'f16', 2048, true, 'f16', { parallel: 2 }),
    c('20M', 4, 'f16', 2048, false, 'f16', { parallel: 2 }),
  );
  out.push(
    c('20M', 4, 'f16', 2048, true, 'f16', { mmap: false }),
    c('20M', 4, 'f16', 4096, false, 'f16', { batchSize: 128 }),
  );
  out.push(
    c('20M', 4, 'f16', 2048, false, 'f16', { promptChunk: 512 }),
    c('20M', 4, 'f16', 8192, false, 'f16', { promptChunk: 512 }),
  );
  for (const gqa of [1, 4, 8]) out.push(c('150M', gqa, 'f16', 2048, true));
  out.push(
    c('150M', 4, 'f16', 2048, false),
    c('150M', 4, 'q8_0', 2048, true),
    c('150M', 4, 'q8_0', 2048, false),
  );
  out.push(c('150M', 4, 'f16', 2048, false, 'f16', { promptChunk: 512 }));
  out.push(
    c('1B', 4, 'f16', 2048, true),
    c('1B', 4, 'q8_0', 2048, true),
    c('1B', 4, 'q8_0', 2048, false),
  );
  out.push(c('150M', 4, 'f16', 8192, true), c('150M', 4, 'f16', 8192, false));
  out.push(c('20M', 4, 'f16', 16384, false), c('20M', 4, 'f16', 32768, true));
  return out;
}

const modelsDir = path.join(root, '.cache', 'models');
await mkdir(modelsDir, { recursive: true });
const specs = new Map();
async function modelFor(size, gqa, type) {
  const s = SIZES[size];
  const [heads, kvHeads] = s.gqa[gqa];
  const file = path.join(modelsDir, `planner-bench-${size}-gqa${gqa}-${type}.gguf`);
  if (!(await stat(file).catch(() => null))) {
    process.stderr.write(`forging ${path.basename(file)}…\n`);
    await forgeModel({
      out: file,
      layers: s.layers,
      embd: s.embd,
      heads,
      kvHeads,
      ff: s.ff,
      vocab: s.vocab,
      type,
      ctx: 32768,
      seed: 7,
    });
  }
  if (!specs.has(file)) specs.set(file, await readModelSpec(file));
  return { file, spec: specs.get(file), vocab: s.vocab };
}

function measure(o) {
  return new Promise((resolve, reject) => {
    const child = fork(import.meta.filename, ['--child', JSON.stringify(o)], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let err = '';
    let result;
    child.stderr.on('data', (d) => (err += d));
    child.on('message', (m) => (result = m));
    child.on('exit', (code) =>
      result ? resolve(result) : reject(new Error(`child exited ${code}: ${err.slice(-400)}`)),
    );
  });
}

const MiB = 2 ** 20;
const cases = matrix(values.matrix).filter(
  (x) => !values.only || JSON.stringify(x).includes(values.only),
);
const rows = [];
function summarize() {
  const ok = rows.filter((r) => r.errRss !== undefined);
  const median = (a) => {
    const s = [...a].sort((p, q) => p - q);
    return s.length === 0
      ? NaN
      : s.length % 2
        ? s[(s.length - 1) / 2]
        : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  return {
    cases: ok.length,
    failed: rows.length - ok.length,
    rss: {
      medianAbsErrPct: median(ok.map((r) => Math.abs(r.errRss))),
      maxAbsErrPct: Math.max(...ok.map((r) => Math.abs(r.errRss))),
    },
    anon: {
      medianAbsErrPct: median(ok.map((r) => Math.abs(r.errAnon))),
      maxAbsErrPct: Math.max(...ok.map((r) => Math.abs(r.errAnon))),
    },
  };
}
const resultsFile = path.join(root, 'bench', 'results', 'planner-accuracy.json');
await mkdir(path.dirname(resultsFile), { recursive: true });
/** Written after every case, so an interrupted run keeps what it measured. */
async function save(done) {
  const body = {
    date: new Date().toISOString(),
    matrix: values.matrix,
    complete: done,
    node: process.version,
    summary: summarize(),
    rows,
  };
  await writeFile(resultsFile, JSON.stringify(body, null, 2) + '\n');
}
const fmt = (b) => (b / MiB).toFixed(1).padStart(7);
const pct = (p) => `${p >= 0 ? '+' : ''}${p.toFixed(1)}%`.padStart(7);
console.log(
  `${cases.length} cases (matrix ${values.matrix}); MiB; error = (predicted − measured) / measured`,
);
console.log(
  'model                  ctx  par  batch chunk  fa  kv         mmap |  peak RSS    pred    err | peak anon   pred    err | fill s',
);
for (const x of cases) {
  const m = await modelFor(x.size, x.gqa, x.type);
  const config = {
    contextSize: x.contextSize,
    parallel: x.parallel,
    batchSize: x.batchSize,
    flashAttention: x.flashAttention,
    kvCacheKeyType: x.kvCacheKeyType,
    kvCacheValueType: x.kvCacheValueType,
    gpuLayers: 0,
    mmap: x.mmap,
    promptChunk: x.promptChunk,
  };
  const fp = predictFootprint(m.spec, config);
  let r;
  try {
    r = await measure({ ...config, model: m.file, vocab: m.vocab });
  } catch (e) {
    console.log(`${x.size}-gqa${x.gqa}-${x.type} ${x.contextSize}: FAILED ${e.message}`);
    rows.push({ case: x, error: e.message });
    continue;
  }
  const errRss = ((fp.total - r.peakRss) / r.peakRss) * 100;
  const errAnon = ((fp.byKind.anonymous - r.peakAnon) / r.peakAnon) * 100;
  rows.push({
    case: x,
    predicted: {
      total: fp.total,
      anonymous: fp.byKind.anonymous,
      fileBacked: fp.byKind.fileBacked,
      terms: fp.terms,
      weights: fp.weights,
      kvCache: fp.kvCache,
      compute: fp.compute,
      overhead: fp.overhead,
    },
    measured: r,
    errRss,
    errAnon,
  });
  await save(false);
  const name = `${x.size}-gqa${x.gqa}-${x.type}`.padEnd(18);
  console.log(
    `${name} ${String(x.contextSize).padStart(6)} ${String(x.parallel).padStart(4)} ${String(x.batchSize).padStart(6)} ${String(x.promptChunk).padStart(5)}  ${x.flashAttention ? 'on ' : 'off'} ${`${x.kvCacheKeyType}/${x.kvCacheValueType}`.padEnd(10)} ${x.mmap ? 'on  ' : 'off '} |${fmt(r.peakRss)} ${fmt(fp.total)} ${pct(errRss)} |${fmt(r.peakAnon)} ${fmt(fp.byKind.anonymous)} ${pct(errAnon)} | ${(r.fillMs / 1000).toFixed(1)}`,
  );
}
const summary = summarize();
console.log(
  `\npeak RSS: median |error| ${summary.rss.medianAbsErrPct.toFixed(2)}%, max ${summary.rss.maxAbsErrPct.toFixed(2)}% (targets 3% / 8%)` +
    `\nanonymous: median |error| ${summary.anon.medianAbsErrPct.toFixed(2)}%, max ${summary.anon.maxAbsErrPct.toFixed(2)}%` +
    (summary.failed ? `\n${summary.failed} case(s) failed` : ''),
);
await save(true);
