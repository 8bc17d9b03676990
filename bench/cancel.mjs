#!/usr/bin/env node
// bench/cancel: a client disconnect → runner idle latency (the runner's /stats shows no busy slot),
// during decoding and during a 4k-token prompt evaluation, through the daemon, on a forged
// ~150M-parameter F16 model. Target <= 100 ms. Prints a table, writes bench/results/cancel.json.
//
//   npm run build && node bench/cancel.mjs [--params 150M] [--rounds 3] [--threads 1]
import { mkdir, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel, parseParamCount } from '../dist/gguf/forge.js';
import { startBenchDaemon } from './lib/daemon.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    params: { type: 'string', default: '150M' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    'prompt-tokens': { type: 'string', default: '4000' },
  },
});
const ROUNDS = Number(values.rounds);
const PARAMS = parseParamCount(values.params);
const modelsDir = path.join(root, '.cache', 'bench-models', 'cancel');
await mkdir(modelsDir, { recursive: true });
const MODEL = `cancel-${values.params.toLowerCase()}-8k`;
const file = path.join(modelsDir, `${MODEL}.gguf`);
if (!(await stat(file).catch(() => null))) {
  process.stderr.write(`forging the ~${values.params}-parameter model…\n`);
  await forgeModel({
    out: file,
    params: PARAMS,
    type: 'f16',
    ctx: 8192,
    chatTemplate: 'chatml',
    seed: 3,
  });
}
const { daemon, url: daemonUrl } = await startBenchDaemon(
  'headroom-bench-cancel-',
  `port: 0\ndemoModel: false\nmodelDirs: [${JSON.stringify(modelsDir)}]\nrunner:\n  contextSize: 8192\n  threads: ${Number(values.threads)}\n  parallel: 1\n`,
);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const statsAgent = new http.Agent({ keepAlive: true });
const getStats = (url) =>
  new Promise((resolve, reject) => {
    http
      .get(new URL('/stats', url), { agent: statsAgent }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(JSON.parse(b)));
      })
      .on('error', reject);
  });

function open(content, maxTokens) {
  let chunks = 0;
  const req = http.request(new URL('/v1/chat/completions', daemonUrl), {
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/json' },
  });
  req.on('response', (res) => res.on('data', () => chunks++));
  req.on('error', () => {});
  req.end(
    JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content }],
      max_tokens: maxTokens,
      stream: true,
      ignore_eos: true,
    }),
  );
  return { req, chunks: () => chunks };
}

/** Destroys the client socket, then polls the runner until no slot is busy; ms from disconnect. */
async function disconnectToIdle(runnerUrl, req) {
  const t0 = performance.now();
  req.destroy();
  for (;;) {
    const s = await getStats(runnerUrl);
    if (s.busy === 0) return { ms: performance.now() - t0, stats: s };
  }
}

try {
  const r = await fetch(`${daemonUrl}/admin/models/${MODEL}/load`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  });
  const loaded = await r.json();
  if (!r.ok) throw new Error(JSON.stringify(loaded));
  const runnerUrl = loaded.url;
  // A prompt of about --prompt-tokens tokens: the runner's tokenizer counts.
  let content = '';
  for (let n = 200; ; n = Math.ceil(n * 1.3)) {
    content = Array.from({ length: n }, (_, i) => `w${i} sea`).join(' ');
    const t = await (
      await fetch(`${runnerUrl}/tokenize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ content }),
      })
    ).json();
    if (t.tokens.length >= Number(values['prompt-tokens'])) {
      content = content.slice(
        0,
        Math.floor((content.length * Number(values['prompt-tokens'])) / t.tokens.length),
      );
      break;
    }
  }
  const decoding = [];
  const prompt = [];
  for (let round = 0; round < ROUNDS; round++) {
    const d = open(`Go on ${round}`, 4000);
    while (d.chunks() < 5) await sleep(2);
    decoding.push((await disconnectToIdle(runnerUrl, d.req)).ms);
    const before = await getStats(runnerUrl);
    const p = open(`${round} ${content}`, 4);
    // Abort once prompt evaluation is well under way (tokens entering the cache, none generated).
    for (;;) {
      const s = await getStats(runnerUrl);
      if (s.busy === 1 && s.tokensInUse > 512) break;
      await sleep(5);
    }
    const { ms, stats } = await disconnectToIdle(runnerUrl, p.req);
    if (stats.generated !== before.generated)
      process.stderr.write('warning: the prompt finished before the abort\n');
    prompt.push(ms);
    process.stderr.write(
      `round ${round + 1}: decoding ${decoding.at(-1).toFixed(1)} ms, prompt ${ms.toFixed(1)} ms\n`,
    );
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const rows = [
    ['stage', 'median ms', 'max ms', 'target'],
    ['decoding', med(decoding).toFixed(1), Math.max(...decoding).toFixed(1), '<= 100'],
    [
      `prompt evaluation (${values['prompt-tokens']} tokens)`,
      med(prompt).toFixed(1),
      Math.max(...prompt).toFixed(1),
      '<= 100',
    ],
  ];
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n'));
  const result = {
    bench: 'cancel',
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model,
      totalMemBytes: os.totalmem(),
      node: process.version,
      loadavg: os.loadavg(),
    },
    model: {
      params: values.params,
      type: 'f16',
      contextSize: 8192,
      threads: Number(values.threads),
    },
    promptTokens: Number(values['prompt-tokens']),
    decodingMs: decoding,
    promptEvalMs: prompt,
    medianDecodingMs: med(decoding),
    medianPromptEvalMs: med(prompt),
  };
  await mkdir(path.join(root, 'bench/results'), { recursive: true });
  await writeFile(path.join(root, 'bench/results/cancel.json'), JSON.stringify(result, null, 2));
  console.log('\nwrote bench/results/cancel.json');
} finally {
  statsAgent.destroy();
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
}
