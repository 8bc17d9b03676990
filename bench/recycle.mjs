#!/usr/bin/env node
// bench/recycle: a 4-slot runner serving rounds of four concurrent completions grows (node-llama-cpp
// loses one sampler, n_vocab × 12 bytes, per overlapping generation: native-garbage.ts); with
// `scheduler.recycle` the daemon restarts it once it has grown past its plan. Runs the same rounds
// twice through a real daemon and the real embedded runner: recycling off, then on with a small
// allowance so that it shows within a minute. Prints the runner's resident set after each round and
// the recycles, writes bench/results/recycle.json.
//
//   npm run build && node bench/recycle.mjs [--rounds 30] [--growth 8MiB]
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel } from '../dist/gguf/forge.js';
import { startBenchDaemon } from './lib/daemon.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '30' },
    growth: { type: 'string', default: '8MiB' },
  },
});
const ROUNDS = Number(values.rounds);
const MiB = 2 ** 20;

// A 64k vocabulary on a tiny body: 0.73 MiB lost per overlapping generation, a quick load.
const dir = path.join(root, '.cache', 'bench-models');
await mkdir(dir, { recursive: true });
const model = path.join(dir, 'recycle-vocab64k.gguf');
if (!(await stat(model).catch(() => null))) {
  process.stderr.write(`forging ${model}…\n`);
  await forgeModel({
    out: model,
    layers: 2,
    embd: 128,
    heads: 4,
    kvHeads: 2,
    ff: 384,
    vocab: 64_000,
    type: 'f16',
    ctx: 4096,
    seed: 5,
  });
}
const modelsDir = path.dirname(model);

async function run(recycle) {
  const { daemon, url } = await startBenchDaemon(
    'headroom-bench-recycle-',
    [
      'port: 0',
      `modelDirs: [${JSON.stringify(modelsDir)}]`,
      'demoModel: false',
      'runner: { contextSize: 1024, parallel: 4 }',
      'scheduler:',
      '  measureInterval: 500ms',
      recycle
        ? `  recycle: { growth: ${values.growth}, fraction: 0, minRequests: 8 }`
        : '  recycle: { enabled: false }',
      '',
    ].join('\n'),
  );
  const name = path.basename(model, '.gguf');
  const complete = async (i) => {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: name,
        prompt: `once upon a time, number ${i}, there was`,
        max_tokens: 24,
        temperature: 0.8,
        ignore_eos: true,
      }),
    });
    if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`);
    await r.json();
  };
  const rows = [];
  let pid;
  let recycles = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const t0 = performance.now();
      await Promise.all([0, 1, 2, 3].map((k) => complete(round * 4 + k)));
      const ms = performance.now() - t0;
      await new Promise((r) => setTimeout(r, 700)); // a measurement (every 500 ms) sees the round
      const s = await (await fetch(`${url}/admin/models/${name}`)).json();
      const m = s.memory;
      if (s.pid !== undefined) {
        if (pid !== undefined && s.pid !== pid) recycles++;
        pid = s.pid;
      }
      rows.push({
        round,
        roundMs: ms,
        state: s.state,
        pid: s.pid ?? null,
        predicted: m.predicted.total,
        rss: m.measured.rss,
      });
    }
  } finally {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
  }
  return { recycle, rows, recycles };
}

const runs = [await run(false), await run(true)];
const f = (b) => (b == null ? '-' : (b / MiB).toFixed(1));
console.log('round | off: rss MiB | on: state   rss MiB   plan MiB | on: round ms');
for (let i = 0; i < ROUNDS; i++) {
  const a = runs[0].rows[i];
  const b = runs[1].rows[i];
  console.log(
    `${String(i).padStart(5)} | ${f(a.rss).padStart(12)} | ${b.state.padEnd(9)} ${f(b.rss).padStart(9)} ${f(b.predicted).padStart(10)} | ${b.roundMs.toFixed(0).padStart(12)}`,
  );
}
const growth = (rows) => {
  const r = rows.filter((x) => x.rss != null);
  return r.length > 1 ? r.at(-1).rss - r[0].rss : NaN;
};
const maxRss = (rows) => Math.max(...rows.map((x) => x.rss ?? 0));
console.log(
  `off: ${f(growth(runs[0].rows))} MiB growth over ${ROUNDS * 4} requests, max ${f(maxRss(runs[0].rows))} MiB; ` +
    `on (allowance ${values.growth}): ${runs[1].recycles} recycles, max ${f(maxRss(runs[1].rows))} MiB`,
);
await mkdir(path.join(root, 'bench', 'results'), { recursive: true });
await writeFile(
  path.join(root, 'bench', 'results', 'recycle.json'),
  JSON.stringify({ date: new Date().toISOString(), growth: values.growth, runs }, null, 2),
);
