#!/usr/bin/env node
// bench/prefix: time to first token of a follow-up on a ~2k-token conversation, through the
// daemon, with prompt reuse (the slot still holds the conversation) and without (another
// conversation went through the slot in between). Prints a table, writes bench/results/prefix.json.
//
//   npm run build && node bench/prefix.mjs [--params 25M] [--rounds 3] [--threads 1]
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel, parseParamCount } from '../dist/gguf/forge.js';
import { loadModel, startBenchDaemon } from './lib/daemon.mjs';
import { machineInfo } from './lib/stats.mjs';
import { readChatStream } from './lib/sse.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    params: { type: 'string', default: '25M' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
    'conversation-tokens': { type: 'string', default: '2000' },
  },
});
const ROUNDS = Number(values.rounds);
const PARAMS = parseParamCount(values.params);
const modelsDir = path.join(root, '.cache', 'bench-models', 'prefix');
await mkdir(modelsDir, { recursive: true });
const MODEL = `prefix-${values.params.toLowerCase()}`;
const file = path.join(modelsDir, `${MODEL}.gguf`);
if (!(await stat(file).catch(() => null)))
  await forgeModel({
    out: file,
    params: PARAMS,
    type: 'f16',
    ctx: 4096,
    chatTemplate: 'chatml',
    seed: 5,
  });
const { daemon, url: daemonUrl } = await startBenchDaemon(
  'headroom-bench-prefix-',
  `port: 0\ndemoModel: false\nmodelDirs: [${JSON.stringify(modelsDir)}]\nrunner:\n  contextSize: 4096\n  threads: ${Number(values.threads)}\n  parallel: 1\n`,
);

/** Streams a chat request; resolves with TTFT (ms) and the usage. */
async function ttft(messages) {
  const t0 = performance.now();
  const res = await fetch(`${daemonUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      messages,
      max_tokens: 8,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
      ignore_eos: true,
    }),
  });
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  const { first, usage } = await readChatStream(res);
  return { ttftMs: first - t0, usage };
}

try {
  const loaded = await loadModel(daemonUrl, MODEL);
  const words = (n, tag) => Array.from({ length: n }, (_, i) => `${tag}${i} tide`).join(' ');
  // Calibrate: turns of ~1/6 of the target each.
  const tok = async (content) =>
    (
      await (
        await fetch(`${loaded.url}/tokenize`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ content }),
        })
      ).json()
    ).tokens.length;
  const perWord = (await tok(words(100, 'x'))) / 100;
  const turnWords = Math.round(Number(values['conversation-tokens']) / 6 / perWord);
  const conversation = (round) => [
    { role: 'system', content: `You are helpful. Session ${round}.` },
    { role: 'user', content: words(turnWords, `u${round}a`) },
    { role: 'assistant', content: words(turnWords, `a${round}a`) },
    { role: 'user', content: words(turnWords, `u${round}b`) },
    { role: 'assistant', content: words(turnWords, `a${round}b`) },
    { role: 'user', content: words(turnWords, `u${round}c`) },
    { role: 'assistant', content: words(turnWords, `a${round}c`) },
  ];
  const runs = [];
  for (let round = 0; round < ROUNDS; round++) {
    const conv = conversation(round);
    const first = await ttft([...conv, { role: 'user', content: 'Summarise.' }]);
    const followUp = [
      ...conv,
      { role: 'user', content: 'Summarise.' },
      { role: 'assistant', content: 'ok' },
      { role: 'user', content: 'More?' },
    ];
    const reused = await ttft(followUp);
    // Another conversation through the only slot, then the same follow-up: no prefix to reuse.
    await ttft(conversation(`other${round}`).slice(0, 2));
    const cold = await ttft(followUp);
    runs.push({
      promptTokens: reused.usage.prompt_tokens,
      firstTtftMs: first.ttftMs,
      reusedTtftMs: reused.ttftMs,
      reusedCached: reused.usage.prompt_tokens_details?.cached_tokens,
      coldTtftMs: cold.ttftMs,
      coldCached: cold.usage.prompt_tokens_details?.cached_tokens,
    });
    process.stderr.write(
      `round ${round + 1}: reuse ${reused.ttftMs.toFixed(0)} ms, no reuse ${cold.ttftMs.toFixed(0)} ms\n`,
    );
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const summary = {
    promptTokens: med(runs.map((r) => r.promptTokens)),
    reusedTtftMs: med(runs.map((r) => r.reusedTtftMs)),
    coldTtftMs: med(runs.map((r) => r.coldTtftMs)),
  };
  summary.speedup = summary.coldTtftMs / summary.reusedTtftMs;
  const rows = [
    ['follow-up', 'prompt tokens', 'cached tokens', 'TTFT median ms'],
    [
      'with reuse',
      String(summary.promptTokens),
      String(runs[0].reusedCached),
      summary.reusedTtftMs.toFixed(1),
    ],
    [
      'without reuse',
      String(summary.promptTokens),
      String(runs[0].coldCached),
      summary.coldTtftMs.toFixed(1),
    ],
  ];
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n'));
  console.log(`\nspeed-up (no reuse / reuse): ${summary.speedup.toFixed(1)}x`);
  const result = {
    bench: 'prefix',
    date: new Date().toISOString(),
    machine: machineInfo(),
    model: {
      params: values.params,
      type: 'f16',
      contextSize: 4096,
      threads: Number(values.threads),
    },
    summary,
    runs,
  };
  await mkdir(path.join(root, 'bench/results'), { recursive: true });
  await writeFile(path.join(root, 'bench/results/prefix.json'), JSON.stringify(result, null, 2));
  console.log('\nwrote bench/results/prefix.json');
} finally {
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
}
