#!/usr/bin/env node
// bench/state (P4): time to first token of a conversation's follow-up after its model was
// unloaded, with the saved state restored and without (the whole prompt evaluated again), at
// several conversation lengths. The reload is excluded from both (the model is loaded through the
// management API first) and shown on its own. Also shown: the same follow-up on a runner never
// unloaded (the floor: no restore can be faster than the cells never leaving memory), and at
// `--switch-tokens` two conversations taking turns on the one slot (each turn saves the other).
//
// The model: by default a slice of a 7B/8B-class transformer (Llama 3 8B / Mistral 7B widths:
// 4096 wide, 32 heads of 128, 8 KV heads, feed-forward 14336; Q8_0) with 2 of its 32 layers.
// Both what a follow-up costs and what the prompt costs grow in proportion to the layer count (each
// layer does the same work per token), so their ratio is the full model's, at 1/16 of the time;
// the state per token is 1/16 of the full model's (save and restore times scale with it: shown).
// `--params N` uses the forge's own shape for N parameters instead (F16): the small ones are
// 8 layers of 448 wide, heads of 32, where attention outweighs the weights at long contexts.
//
// `--arch gemma3` makes the slice Gemma 3's block, whose layers attend within a `--sliding-window`
// (default 1024, Gemma 3's) in 5 of every 6: on llama-server such a slot is restored through
// headroom's slot-checkpoints patch (docs/STATE.md). Give it `--layers 6` (one whole layer).
//
//   npm run build && node bench/state.mjs [--layers 2] [--params 25M] [--tokens 2000,8000,16000]
//     [--arch llama|gemma3] [--sliding-window 1024]
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel, parseParamCount } from '../dist/gguf/forge.js';
import { startBenchDaemon } from './lib/daemon.mjs';
import { machineInfo } from './lib/stats.mjs';
import { readChatStream } from './lib/sse.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    params: { type: 'string' },
    layers: { type: 'string', default: '2' },
    tokens: { type: 'string', default: '2000,8000,16000' },
    // Lengths at which two conversations also take turns on the one slot after an unload.
    'switch-tokens': { type: 'string', default: '2000,8000' },
    threads: { type: 'string', default: '2' },
    engine: { type: 'string', default: 'llama-server' },
    arch: { type: 'string', default: 'llama' },
    'sliding-window': { type: 'string', default: '1024' },
  },
});
const SIZES = values.tokens.split(',').map(Number);
const SWITCH = values['switch-tokens'].split(',').filter(Boolean).map(Number);
const CTX = Math.max(...SIZES) + 1024;
const modelsDir = path.join(root, '.cache', 'bench-models', 'state');
await mkdir(modelsDir, { recursive: true });
const SLICE = {
  layers: Number(values.layers),
  embd: 4096,
  heads: 32,
  kvHeads: 8,
  ff: 14336,
  vocab: 8192,
  type: 'q8_0',
  ...(values.arch === 'gemma3'
    ? { architecture: 'gemma3', slidingWindow: Number(values['sliding-window']) }
    : {}),
};
const shape =
  values.params !== undefined ? { params: parseParamCount(values.params), type: 'f16' } : SLICE;
const MODEL =
  values.params !== undefined
    ? `state-${values.params.toLowerCase()}`
    : `state-slice-8b-l${SLICE.layers}${values.arch === 'gemma3' ? `-gemma3-w${values['sliding-window']}` : ''}`;
const file = path.join(modelsDir, `${MODEL}.gguf`);
if (!(await stat(file).catch(() => null)))
  await forgeModel({ out: file, ...shape, ctx: 32768, chatTemplate: 'chatml', seed: 11 });
const { daemon, url } = await startBenchDaemon(
  'headroom-bench-state-',
  [
    'port: 0',
    'demoModel: false',
    `modelDirs: [${JSON.stringify(modelsDir)}]`,
    `engines: { default: ${values.engine} }`,
    `runner: { contextSize: ${CTX}, threads: ${Number(values.threads)}, parallel: 1 }`,
    'state: { minTokens: 256, maxBytes: 16GiB, saveTimeout: 120s }',
    '',
  ].join('\n'),
);

const post = async (p, body) => {
  const r = await fetch(`${url}${p}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await r.json();
  if (!r.ok) throw new Error(`${p}: ${r.status} ${JSON.stringify(json)}`);
  return json;
};

/** Streams a chat request; resolves with TTFT (ms) and the usage. */
async function ttft(messages) {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: MODEL,
      messages,
      max_tokens: 4,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  const { first, usage, timings } = await readChatStream(res);
  return { ttftMs: (first || performance.now()) - t0, usage, timings };
}

async function metrics() {
  const text = await (await fetch(`${url}/metrics`)).text();
  const read = (n) => Number(new RegExp(`^${n} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    saves: read('headroom_state_saves_total'),
    savedBytes: read('headroom_state_saved_bytes_total'),
    saveS: read('headroom_state_save_seconds_total'),
    restores: read('headroom_state_restores_total'),
    restoreS: read('headroom_state_restore_seconds_total'),
    verifyS: read('headroom_state_verify_seconds_total'),
    lookupS: read('headroom_state_lookup_seconds_total'),
  };
}

async function loadMs() {
  const r = await post(`/admin/models/${MODEL}/load`, {});
  return r.loadMs ?? NaN;
}

const unload = (force) => post(`/admin/models/${MODEL}/unload`, { force });
async function waitUnloaded() {
  for (;;) {
    const list = await (await fetch(`${url}/admin/models`)).json();
    if (list.models.find((m) => m.name === MODEL)?.state === 'unloaded') return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

try {
  await loadMs();
  // The runner's own /tokenize, wherever it runs now (every unload moves it).
  const runnerUrl = async () =>
    (await (await fetch(`${url}/admin/models`)).json()).models.find((m) => m.name === MODEL).url;
  const tok = async (content) =>
    (
      await (
        await fetch(`${await runnerUrl()}/tokenize`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ content }),
        })
      ).json()
    ).tokens.length;
  const words = (n, tag) => Array.from({ length: n }, (_, i) => `${tag}${i} tide`).join(' ');
  // Calibrated per conversation: the tag is part of every word, and so of its token count.
  const conversation = async (n, tag) => {
    const perWord = (await tok(words(400, `${tag}u`))) / 400;
    return [
      { role: 'system', content: `You are helpful. Session ${tag}.` },
      { role: 'user', content: words(Math.round(n / perWord), `${tag}u`) },
    ];
  };
  const followUp = (conv, answer) => [
    ...conv,
    { role: 'assistant', content: answer },
    { role: 'user', content: 'And then?' },
  ];
  const runs = [];
  for (const n of SIZES) {
    // Without state: the model was unloaded by force (nothing saved; the conversation's first
    // turn would have left nothing either), the follow-up evaluates everything.
    const a = await conversation(n, `p${n}`);
    await unload(true);
    await waitUnloaded();
    const loadPrefill = await loadMs();
    const prefill = await ttft(followUp(a, 'ok'));
    // With state: an unload that drains saves the slot; the follow-up restores it.
    const b = await conversation(n, `r${n}`);
    await ttft(b);
    const m0 = await metrics();
    await unload(false);
    await waitUnloaded();
    const m1 = await metrics();
    const loadRestore = await loadMs();
    const restored = await ttft(followUp(b, 'ok'));
    const m2 = await metrics();
    // The floor: a third conversation's follow-up with no unload in between (its first turn
    // still in the slot): the same new tokens evaluated against cells that were never saved.
    const c = await conversation(n, `w${n}`);
    await ttft(c);
    const warm = await ttft(followUp(c, 'ok'));
    const run = {
      tokens: n,
      promptTokens: restored.usage?.prompt_tokens,
      prefillTtftMs: prefill.ttftMs,
      prefillCached:
        prefill.timings?.cache_n ?? prefill.usage?.prompt_tokens_details?.cached_tokens,
      restoreTtftMs: restored.ttftMs,
      restoreCached:
        restored.timings?.cache_n ?? restored.usage?.prompt_tokens_details?.cached_tokens,
      ratio: restored.ttftMs / prefill.ttftMs,
      warmTtftMs: warm.ttftMs,
      floorRatio: warm.ttftMs / prefill.ttftMs,
      loadMsPrefill: loadPrefill,
      loadMsRestore: loadRestore,
      saveMs: (m1.saveS - m0.saveS) * 1000,
      savedBytes: m1.savedBytes - m0.savedBytes,
      restoreMs: (m2.restoreS - m1.restoreS) * 1000,
      verifyMs: (m2.verifyS - m1.verifyS) * 1000,
      lookupMs: (m2.lookupS - m1.lookupS) * 1000,
      restores: m2.restores - m1.restores,
    };
    if (SWITCH.includes(n)) {
      // Two conversations take turns on the one slot: x saved by an unload, y evaluated after
      // the reload; x's follow-up then restores x (y saved first), y's restores y (x saved).
      const x = await conversation(n, `x${n}`);
      await ttft(x);
      await unload(false);
      await waitUnloaded();
      await loadMs();
      const y = await conversation(n, `y${n}`);
      await ttft(y);
      const s0 = await metrics();
      const toX = await ttft(followUp(x, 'ok'));
      const toY = await ttft(followUp(y, 'ok'));
      const s1 = await metrics();
      run.switchTtftMs = [toX.ttftMs, toY.ttftMs];
      run.switchCached = [toX, toY].map(
        (r) => r.timings?.cache_n ?? r.usage?.prompt_tokens_details?.cached_tokens,
      );
      run.switchRatio = Math.max(toX.ttftMs, toY.ttftMs) / prefill.ttftMs;
      run.switchSaves = s1.saves - s0.saves;
      run.switchRestores = s1.restores - s0.restores;
    }
    runs.push(run);
    process.stderr.write(
      `${n} tokens: re-prefill ${prefill.ttftMs.toFixed(0)} ms, restore ${restored.ttftMs.toFixed(0)} ms\n`,
    );
    await unload(true);
    await waitUnloaded();
    await loadMs();
  }
  const rows = [
    [
      'tokens',
      'prompt',
      're-prefill TTFT ms',
      'restore TTFT ms',
      'ratio',
      'never-unloaded TTFT ms',
      'floor ratio',
      'cached (restore)',
      'load ms',
      'save ms',
      'saved MiB',
      'lookup ms',
      'verify ms',
      'restore ms',
      'switch TTFT ms (x, y)',
      'switch ratio',
    ],
    ...runs.map((r) => [
      String(r.tokens),
      String(r.promptTokens),
      r.prefillTtftMs.toFixed(0),
      r.restoreTtftMs.toFixed(0),
      r.ratio.toFixed(3),
      r.warmTtftMs.toFixed(0),
      r.floorRatio.toFixed(3),
      String(r.restoreCached),
      r.loadMsRestore.toFixed(0),
      r.saveMs.toFixed(0),
      (r.savedBytes / 1048576).toFixed(1),
      r.lookupMs.toFixed(0),
      r.verifyMs.toFixed(0),
      r.restoreMs.toFixed(0),
      r.switchTtftMs ? r.switchTtftMs.map((v) => v.toFixed(0)).join(', ') : '-',
      r.switchRatio !== undefined ? r.switchRatio.toFixed(3) : '-',
    ]),
  ];
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n'));
  const result = {
    bench: 'state',
    date: new Date().toISOString(),
    machine: machineInfo(),
    model: {
      name: MODEL,
      shape,
      contextSize: CTX,
      threads: Number(values.threads),
    },
    engine: values.engine,
    runs,
  };
  await mkdir(path.join(root, 'bench/results'), { recursive: true });
  await writeFile(path.join(root, 'bench/results/state.json'), JSON.stringify(result, null, 2));
  console.log('\nwrote bench/results/state.json');
} finally {
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
}
