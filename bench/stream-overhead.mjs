#!/usr/bin/env node
// bench/stream-overhead: tokens/s and time to first token streaming through the daemon vs
// straight to the runner, on one forged ~150M-parameter F16 model, alternating in one run.
// A third path goes through the smallest Node proxy (bench/lib/bare-proxy.mjs, its own process):
// the floor an extra process hop costs on this machine, so the daemon's own share can be read off.
// Prints a table and the ratios, writes JSON to bench/results/stream-overhead.json.
//
//   npm run build && node bench/stream-overhead.mjs [--rounds 40] [--tokens 128]
import { spawn } from 'node:child_process';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel, parseParamCount, shapeForParams } from '../dist/gguf/forge.js';
import { listeningUrl, loadModel, startBenchDaemon } from './lib/daemon.mjs';
import { machineInfo, median } from './lib/stats.mjs';
import { readChatStream } from './lib/sse.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '40' },
    tokens: { type: 'string', default: '128' },
    // Runner threads; defaults to the runner's default (all cores). On a 2-core machine a runner
    // using both cores competes with the daemon for CPU, which shows up as added TTFT.
    threads: { type: 'string' },
    // Model size in parameters (default 150M, the issue's model); a tiny model isolates the proxy's cost.
    params: { type: 'string', default: '150M' },
  },
});
const ROUNDS = Number(values.rounds);
const TOKENS = Number(values.tokens);

const modelsDir = path.join(root, '.cache', 'bench-models');
await mkdir(modelsDir, { recursive: true });
const PARAMS = parseParamCount(values.params);
const MODEL = `bench-${values.params.toLowerCase()}-f16`;
const modelFile = path.join(modelsDir, `${MODEL}.gguf`);
if (!(await stat(modelFile).catch(() => null))) {
  process.stderr.write(`forging the ~${values.params}-parameter F16 model…\n`);
  await forgeModel({
    out: modelFile,
    params: PARAMS,
    type: 'f16',
    ctx: 4096,
    chatTemplate: 'chatml',
    seed: 1,
  });
}
const shape = shapeForParams(PARAMS);

const { daemon, url: daemonUrl } = await startBenchDaemon(
  'headroom-bench-',
  `port: 0\ndemoModel: false\nmodelDirs: [${JSON.stringify(modelsDir)}]\nrunner:\n  contextSize: 2048\n${values.threads ? `  threads: ${Number(values.threads)}\n` : ''}`,
);

/** @type {import('node:child_process').ChildProcess | undefined} */
let bareProxy;
try {
  const runnerUrl = (await loadModel(daemonUrl, MODEL)).url;
  const bare = spawn(process.execPath, [path.join(root, 'bench/lib/bare-proxy.mjs'), runnerUrl], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  bareProxy = bare;
  const bareUrl = await listeningUrl(bare, 'bare proxy');
  const urls = { direct: runnerUrl, bare: bareUrl, daemon: daemonUrl };

  /** One streaming request; returns TTFT and decode rate measured at the client. */
  async function once(base) {
    const body = JSON.stringify({
      model: MODEL,
      messages: [
        { role: 'user', content: 'Write a long story about a lighthouse keeper and the sea.' },
      ],
      max_tokens: TOKENS,
      temperature: 0,
      seed: 1,
      stream: true,
      stream_options: { include_usage: true },
      // Keep every run the same length: do not stop at an end-of-text token.
      ignore_eos: true,
    });
    const t0 = performance.now();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    const { first, last, tokens, usage } = await readChatStream(res);
    const completion = usage?.completion_tokens ?? tokens;
    return {
      ttftMs: first - t0,
      tokensPerS: last > first ? ((completion - 1) * 1000) / (last - first) : 0,
      completion,
    };
  }

  // Warm up every path once.
  for (const u of Object.values(urls)) await once(u);
  const runs = { direct: [], bare: [], daemon: [] };
  const arms = Object.keys(runs);
  for (let r = 0; r < ROUNDS; r++) {
    // Rotate the order each round so drift in machine load hits every path alike.
    const order = arms.map((_, i) => arms[(i + r) % arms.length]);
    for (const which of order) runs[which].push(await once(urls[which]));
  }

  const summary = (rs) => ({
    ttftMedianMs: median(rs.map((x) => x.ttftMs)),
    tokensPerSMedian: median(rs.map((x) => x.tokensPerS)),
    tokensPerSMean: rs.reduce((a, x) => a + x.tokensPerS, 0) / rs.length,
  });
  const direct = summary(runs.direct);
  const viaDaemon = summary(runs.daemon);
  // Paired per-round differences cancel slow drift in machine load.
  const addedTtft = median(runs.daemon.map((x, i) => x.ttftMs - runs.direct[i].ttftMs));
  const bareAddedTtft = median(runs.bare.map((x, i) => x.ttftMs - runs.direct[i].ttftMs));
  const bareSummary = summary(runs.bare);
  const throughputRatio = median(
    runs.daemon.map((x, i) => x.tokensPerS / runs.direct[i].tokensPerS),
  );

  const rows = [
    ['path', 'TTFT median ms', 'tokens/s median'],
    ['direct to runner', direct.ttftMedianMs.toFixed(2), direct.tokensPerSMedian.toFixed(1)],
    ['through daemon', viaDaemon.ttftMedianMs.toFixed(2), viaDaemon.tokensPerSMedian.toFixed(1)],
    [
      'through a bare proxy (floor)',
      bareSummary.ttftMedianMs.toFixed(2),
      bareSummary.tokensPerSMedian.toFixed(1),
    ],
  ];
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n'));
  console.log(
    `\nthroughput ratio (daemon / direct, median of paired rounds): ${throughputRatio.toFixed(4)}  (target >= 0.98)`,
  );
  console.log(
    `added TTFT (daemon - direct, median of paired rounds): ${addedTtft.toFixed(2)} ms  (target <= 2 ms)`,
  );
  console.log(
    `added TTFT of a bare Node proxy (the extra hop alone): ${bareAddedTtft.toFixed(2)} ms; the daemon's own share: ${(addedTtft - bareAddedTtft).toFixed(2)} ms`,
  );

  const result = {
    bench: 'stream-overhead',
    date: new Date().toISOString(),
    machine: machineInfo(),
    model: { params: values.params, type: 'f16', shape, contextSize: 2048 },
    runnerThreads: values.threads ? Number(values.threads) : os.availableParallelism(),
    rounds: ROUNDS,
    maxTokens: TOKENS,
    direct,
    daemon: viaDaemon,
    throughputRatio,
    addedTtftMs: addedTtft,
    bare: bareSummary,
    bareAddedTtftMs: bareAddedTtft,
    runs,
  };
  await mkdir(path.join(root, 'bench/results'), { recursive: true });
  await writeFile(
    path.join(root, 'bench/results/stream-overhead.json'),
    JSON.stringify(result, null, 2),
  );
  console.log('\nwrote bench/results/stream-overhead.json');
} finally {
  bareProxy?.kill();
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
}
