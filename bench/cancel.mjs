#!/usr/bin/env node
// bench/cancel: a client disconnect → runner idle latency (no busy slot in the runner's own view:
// the embedded runner's /stats, llama-server's /slots), during decoding and during a 4k-token
// prompt evaluation, through the daemon, on a forged ~150M-parameter F16 model. Target <= 100 ms.
// Prints a table, writes bench/results/cancel[-llama-server].json.
//
//   npm run build && node bench/cancel.mjs [--engine embedded|llama-server] [--llama-server PATH]
//                                          [--params 150M] [--rounds 3] [--threads 1]
import { mkdir, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel, parseParamCount } from '../dist/gguf/forge.js';
import { loadModel, startBenchDaemon } from './lib/daemon.mjs';
import { machineInfo } from './lib/stats.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    params: { type: 'string', default: '150M' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    'prompt-tokens': { type: 'string', default: '4000' },
    engine: { type: 'string', default: 'embedded' },
    // Defaults to the one the daemon finds (PATH, then headroom's build).
    'llama-server': { type: 'string' },
  },
});
const ENGINE = values.engine;
if (ENGINE !== 'embedded' && ENGINE !== 'llama-server')
  throw new Error(`--engine: embedded or llama-server, not ${ENGINE}`);
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
const engines =
  ENGINE === 'embedded'
    ? '{ default: embedded }'
    : `{ default: llama-server${values['llama-server'] ? `, llamaServer: { path: ${JSON.stringify(values['llama-server'])} }` : ''} }`;
const { daemon, url: daemonUrl } = await startBenchDaemon(
  'headroom-bench-cancel-',
  `port: 0\ndemoModel: false\nmodelDirs: [${JSON.stringify(modelsDir)}]\nengines: ${engines}\nrunner:\n  contextSize: 8192\n  threads: ${Number(values.threads)}\n  parallel: 1\n`,
);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const statsAgent = new http.Agent({ keepAlive: true });
const get = (url, path) =>
  new Promise((resolve, reject) => {
    http
      .get(new URL(path, url), { agent: statsAgent }, (res) => {
        let b = '';
        res.on('data', (d) => (b += d));
        res.on('end', () => resolve(b));
      })
      .on('error', reject);
  });
/**
 * The runner's busy slots, tokens in its cells and tokens generated. llama-server: GET /slots, and
 * GET /metrics only when asked (`generated`), since the loop that waits for idle polls as fast as
 * it can; its `tokens_predicted_total` grows when a slot is released, so slots under way add their
 * `n_decoded`.
 */
async function getStats(url, { generated = false } = {}) {
  if (ENGINE === 'embedded') return JSON.parse(await get(url, '/stats'));
  const slots = JSON.parse(await get(url, '/slots'));
  const busy = slots.filter((s) => s.is_processing);
  const stats = {
    busy: busy.length,
    tokensInUse: slots.reduce((n, s) => n + (s.n_prompt_tokens ?? 0), 0),
  };
  if (generated) {
    const m = /^llamacpp:tokens_predicted_total (\S+)$/m.exec(await get(url, '/metrics'));
    stats.generated =
      Number(m?.[1] ?? NaN) + busy.reduce((n, s) => n + (s.next_token?.[0]?.n_decoded ?? 0), 0);
  }
  return stats;
}

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
    if (s.busy === 0)
      return { ms: performance.now() - t0, stats: await getStats(runnerUrl, { generated: true }) };
  }
}

try {
  const runnerUrl = (await loadModel(daemonUrl, MODEL)).url;
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
    const before = await getStats(runnerUrl, { generated: true });
    const p = open(`${round} ${content}`, 4);
    // Abort once prompt evaluation is well under way (tokens entering the cache, none generated).
    // llama-server puts a batch (512 tokens) in the slot's tokens before decoding it: past 1024,
    // its first batch is decoded and the second is being decoded.
    const underWay = ENGINE === 'embedded' ? 512 : 1024;
    for (;;) {
      const s = await getStats(runnerUrl);
      if (s.busy === 1 && s.tokensInUse > underWay) break;
      await sleep(5);
    }
    const { ms, stats } = await disconnectToIdle(runnerUrl, p.req);
    if (stats.generated !== before.generated)
      process.stderr.write('warning: a token was generated: the prompt was evaluated to its end\n');
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
    machine: machineInfo(),
    engine: ENGINE,
    llamaServer: ENGINE === 'llama-server' ? (values['llama-server'] ?? 'resolved') : undefined,
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
  const out = `bench/results/cancel${ENGINE === 'embedded' ? '' : `-${ENGINE}`}.json`;
  await writeFile(path.join(root, out), JSON.stringify(result, null, 2));
  console.log(`\nwrote ${out}`);
} finally {
  statsAgent.destroy();
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
}
