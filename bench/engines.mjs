#!/usr/bin/env node
// bench/engines: headroom on llama-server against the floor — the same llama-server binary started
// directly with the same argv — and the embedded runner against llama-server, in one run.
//
// Arms, alternating round by round so drift in machine load hits each alike:
// - daemon:   client → headroom (engine llama-server) → llama-server
// - direct:   client → llama-server started by this script with headroom's argv for the same config
// - embedded: client → headroom (engine embedded) → the node-llama-cpp runner (--embedded)
// Measures time to first token (short prompt), decode tokens/s of one stream, aggregate tokens/s of
// 8 and 32 concurrent streams, and cold start (request for an unloaded model → first token; for
// direct: spawn + load + first token). Prints a table with the targets, writes JSON to
// bench/results/engines.json.
//
//   npm run build && node bench/engines.mjs [--llama-server PATH] [--rounds 8] [--tokens 128]
//       [--params 150M] [--threads 2] [--parallel 4] [--ctx 2048] [--cold 5] [--pairs 60] [--embedded]
//
// Added latency is measured on its own: `--pairs` alternating one-token streamed requests to the
// daemon and to llama-server direct (the prompt cached after the first, so the runner's work is
// the same small step each time and the difference is what the path through headroom adds).
import { spawn } from 'node:child_process';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { llamaServerArgs } from '../dist/engines/llama-server/argv.js';
import { resolveLlamaServerBinary } from '../dist/daemon/engines.js';
import { forgeModel, parseParamCount } from '../dist/gguf/forge.js';
import { freePort } from '../dist/lib/net.js';
import { loadModel, startBenchDaemon } from './lib/daemon.mjs';
import { machineInfo, median } from './lib/stats.mjs';
import { sseSplitter } from './lib/sse.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    'llama-server': { type: 'string' },
    rounds: { type: 'string', default: '8' },
    tokens: { type: 'string', default: '128' },
    params: { type: 'string', default: '150M' },
    threads: { type: 'string', default: '2' },
    parallel: { type: 'string', default: '4' },
    ctx: { type: 'string', default: '2048' },
    cold: { type: 'string', default: '5' },
    pairs: { type: 'string', default: '60' },
    embedded: { type: 'boolean', default: false },
  },
});
const ROUNDS = Number(values.rounds);
const TOKENS = Number(values.tokens);
const THREADS = Number(values.threads);
const PARALLEL = Number(values.parallel);
const CTX = Number(values.ctx);
const COLD = Number(values.cold);
const PAIRS = Number(values.pairs);

const resolved = await resolveLlamaServerBinary({
  engines: {
    llamaServer: { args: [], ...(values['llama-server'] ? { path: values['llama-server'] } : {}) },
  },
});
if (!('path' in resolved)) throw new Error(`no llama-server: ${resolved.reason}; ${resolved.fix}`);
const binary = resolved.path;
/** headroom's build keeps a streamed answer's connection open (patches/keep-alive-stream.patch). */
const keepsAliveAfterStream = resolved.obtained === 'built';

const modelsDir = path.join(root, '.cache', 'bench-models');
await mkdir(modelsDir, { recursive: true });
const MODEL = `bench-${values.params.toLowerCase()}-f16`;
const modelFile = path.join(modelsDir, `${MODEL}.gguf`);
if (!(await stat(modelFile).catch(() => null))) {
  process.stderr.write(`forging the ~${values.params}-parameter F16 model…\n`);
  await forgeModel({
    out: modelFile,
    params: parseParamCount(values.params),
    type: 'f16',
    ctx: 4096,
    chatTemplate: 'chatml',
    seed: 1,
  });
}

const config = (engine) =>
  [
    'port: 0',
    'demoModel: false',
    `modelDirs: [${JSON.stringify(modelsDir)}]`,
    'scheduler: { ttl: never, queue: { maxLength: 64 } }',
    `engines: { default: ${engine}, llamaServer: { path: ${JSON.stringify(binary)} } }`,
    `runner: { contextSize: ${CTX}, parallel: ${PARALLEL}, threads: ${THREADS} }`,
    'monitor: { enabled: false }',
    '',
  ].join('\n');

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/**
 * Bases of llama-server itself when it is not headroom's build: that one closes a connection after
 * a streamed answer without saying so, so its clients ask for a new one per stream (as headroom
 * does). headroom's build keeps it open, and both arms reuse their connections.
 */
const closeAfterStream = new Set();

/** One streaming chat request; TTFT and decode rate as the client sees them. */
function once(base, tokens = TOKENS) {
  const body = JSON.stringify({
    model: MODEL,
    messages: [{ role: 'user', content: 'Write a long story about a lighthouse keeper.' }],
    max_tokens: tokens,
    temperature: 0,
    seed: 1,
    stream: true,
    ignore_eos: true,
  });
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(new URL('/v1/chat/completions', base), {
      method: 'POST',
      agent,
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        ...(closeAfterStream.has(base) ? { connection: 'close' } : {}),
      },
    });
    req.setNoDelay(true);
    req.on('error', reject);
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => reject(new Error(`${res.statusCode} ${text}`)));
        return;
      }
      let first = 0;
      let last = 0;
      let n = 0;
      res.setEncoding('utf8');
      res.on(
        'data',
        sseSplitter((data) => {
          if (data.choices?.[0]?.delta?.content) {
            const now = performance.now();
            if (!first) first = now;
            last = now;
            n++;
          }
        }),
      );
      res.on('end', () =>
        resolve({
          ttftMs: first - t0,
          tokensPerS: last > first ? ((n - 1) * 1000) / (last - first) : 0,
          tokens: n,
          totalMs: performance.now() - t0,
        }),
      );
    });
    req.end(body);
  });
}

/** Aggregate tokens/s of `n` concurrent streams. */
async function concurrent(base, n) {
  const t0 = performance.now();
  const rs = await Promise.all(Array.from({ length: n }, () => once(base)));
  const tokens = rs.reduce((a, r) => a + r.tokens, 0);
  return (tokens * 1000) / (performance.now() - t0);
}

async function waitHealthy(url, child) {
  for (;;) {
    if (child.exitCode !== null) throw new Error('llama-server exited while loading');
    const s = await fetch(`${url}/health`).then(
      (r) => r.status,
      () => 0,
    );
    if (s === 200) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Starts llama-server directly with headroom's argv for `cfg`. */
async function startDirect(cfg) {
  const port = await freePort();
  const child = spawn(binary, llamaServerArgs(cfg, { port, alias: MODEL }), {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const url = `http://127.0.0.1:${port}`;
  // Killed in the finally below if the bench fails before it stops this one.
  started.push(child);
  if (!keepsAliveAfterStream) closeAfterStream.add(url);
  await waitHealthy(url, child);
  return { child, url };
}

async function stopDirect(d) {
  d.child.kill('SIGTERM');
  if (d.child.exitCode === null) await new Promise((r) => d.child.once('exit', r));
}

/** Loads the bench's model through the daemon; resolves with the config it was loaded with. */
async function loadedConfig(url) {
  await loadModel(url, MODEL);
  const models = await (await fetch(`${url}/admin/models`)).json();
  return models.models.find((m) => m.name === MODEL).config;
}

const started = [];
try {
  const ls = await startBenchDaemon('headroom-bench-engines-', config('llama-server'));
  started.push(ls.daemon);
  const cfg = await loadedConfig(ls.url);
  if (cfg.engine !== 'llama-server') throw new Error(`the daemon runs ${cfg.engine}`);
  let direct = await startDirect(cfg);
  const arms = { daemon: ls.url, direct: direct.url };
  let emb;
  if (values.embedded) {
    emb = await startBenchDaemon('headroom-bench-engines-emb-', config('embedded'));
    started.push(emb.daemon);
    const ecfg = await loadedConfig(emb.url);
    if (ecfg.engine !== 'embedded') throw new Error(`the daemon runs ${ecfg.engine}`);
    arms.embedded = emb.url;
  }
  const names = Object.keys(arms);
  for (const n of names) await once(arms[n], 8); // warm every path
  const runs = Object.fromEntries(names.map((n) => [n, { single: [], c8: [], c32: [] }]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = names.map((_, i) => names[(i + r) % names.length]);
    for (const n of order) runs[n].single.push(await once(arms[n]));
    for (const n of order) runs[n].c8.push(await concurrent(arms[n], 8));
    if (r < Math.ceil(ROUNDS / 2))
      for (const n of order) runs[n].c32.push(await concurrent(arms[n], 32));
    process.stderr.write(`round ${r + 1}/${ROUNDS}\n`);
  }

  // Added latency: many short paired requests, alternating which arm goes first.
  const latency = { daemon: [], direct: [] };
  for (let i = 0; i < PAIRS; i++) {
    const order = i % 2 ? ['direct', 'daemon'] : ['daemon', 'direct'];
    for (const n of order) latency[n].push((await once(arms[n], 1)).ttftMs);
  }

  // Cold start: request for an unloaded model → first token, against spawn + load + first token.
  const cold = { daemon: [], direct: [] };
  await stopDirect(direct);
  for (let r = 0; r < COLD; r++) {
    await fetch(`${ls.url}/admin/models/${MODEL}/unload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    for (let i = 0; i < 200; i++) {
      const m = (await (await fetch(`${ls.url}/admin/models`)).json()).models.find(
        (x) => x.name === MODEL,
      );
      if (m.state === 'unloaded') break;
      await new Promise((res) => setTimeout(res, 20));
    }
    const viaDaemon = await once(ls.url, 1);
    cold.daemon.push(viaDaemon.ttftMs);
    const t0 = performance.now();
    direct = await startDirect(cfg);
    const first = await once(direct.url, 1);
    cold.direct.push(performance.now() - t0 - (first.totalMs - first.ttftMs));
    await stopDirect(direct);
  }

  const pair = (a, b, f) => median(a.map((x, i) => f(x, b[i])));
  const d = runs.daemon;
  const x = runs.direct;
  const result = {
    bench: 'engines',
    date: new Date().toISOString(),
    machine: machineInfo(),
    binary,
    model: { params: values.params, type: 'f16' },
    config: cfg,
    rounds: ROUNDS,
    maxTokens: TOKENS,
    summary: Object.fromEntries(
      names.map((n) => [
        n,
        {
          ttftMedianMs: median(runs[n].single.map((s) => s.ttftMs)),
          decodeTokensPerS: median(runs[n].single.map((s) => s.tokensPerS)),
          streams8TokensPerS: median(runs[n].c8),
          streams32TokensPerS: median(runs[n].c32),
        },
      ]),
    ),
    vsFloor: {
      addedTtftMs: pair(latency.daemon, latency.direct, (a, b) => a - b),
      oneTokenTtftDaemonMs: median(latency.daemon),
      oneTokenTtftDirectMs: median(latency.direct),
      addedTtftLongAnswerMs: pair(d.single, x.single, (a, b) => a.ttftMs - b.ttftMs),
      decodeRatio: pair(d.single, x.single, (a, b) => a.tokensPerS / b.tokensPerS),
      streams8Ratio: pair(d.c8, x.c8, (a, b) => a / b),
      streams32Ratio: pair(d.c32, x.c32, (a, b) => a / b),
      coldStartDaemonMs: median(cold.daemon),
      coldStartDirectMs: median(cold.direct),
      coldStartRatio: median(cold.daemon) / median(cold.direct),
    },
    runs,
    latency,
    cold,
  };
  if (runs.embedded) {
    const e = runs.embedded;
    result.embeddedVsLlamaServer = {
      ttftRatio: pair(e.single, d.single, (a, b) => a.ttftMs / b.ttftMs),
      decodeRatio: pair(e.single, d.single, (a, b) => a.tokensPerS / b.tokensPerS),
      streams8Ratio: pair(e.c8, d.c8, (a, b) => a / b),
    };
  }

  const rows = [['arm', 'TTFT ms', 'decode tok/s', '8 streams tok/s', '32 streams tok/s']];
  for (const n of names) {
    const s = result.summary[n];
    rows.push([
      n,
      s.ttftMedianMs.toFixed(1),
      s.decodeTokensPerS.toFixed(1),
      s.streams8TokensPerS.toFixed(1),
      s.streams32TokensPerS.toFixed(1),
    ]);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  console.log(rows.map((r) => r.map((c, i) => String(c).padEnd(w[i])).join('  ')).join('\n'));
  const v = result.vsFloor;
  console.log(`\nheadroom (llama-server) against llama-server direct, paired medians:`);
  console.log(
    `  added TTFT        ${v.addedTtftMs.toFixed(2)} ms   (target <= 2 ms; ${PAIRS} one-token pairs, ${v.oneTokenTtftDaemonMs.toFixed(1)} vs ${v.oneTokenTtftDirectMs.toFixed(1)} ms)`,
  );
  console.log(`  decode ratio      ${v.decodeRatio.toFixed(3)}      (target >= 0.98)`);
  console.log(`  8 streams ratio   ${v.streams8Ratio.toFixed(3)}      (target >= 0.95)`);
  console.log(`  32 streams ratio  ${v.streams32Ratio.toFixed(3)}      (target >= 0.95)`);
  console.log(
    `  cold start        ${v.coldStartDaemonMs.toFixed(0)} ms vs ${v.coldStartDirectMs.toFixed(0)} ms = ${v.coldStartRatio.toFixed(2)}×  (target <= 1.2×)`,
  );
  if (result.embeddedVsLlamaServer) {
    const e = result.embeddedVsLlamaServer;
    console.log(`\nembedded against llama-server, both through headroom, paired medians:`);
    console.log(
      `  TTFT ×${e.ttftRatio.toFixed(2)}, decode ×${e.decodeRatio.toFixed(2)}, 8 streams ×${e.streams8Ratio.toFixed(2)}`,
    );
  }
  await mkdir(path.join(root, 'bench/results'), { recursive: true });
  await writeFile(path.join(root, 'bench/results/engines.json'), JSON.stringify(result, null, 2));
  console.log('\nwrote bench/results/engines.json');
} finally {
  for (const c of started) {
    c.kill('SIGTERM');
    if (c.exitCode === null) await new Promise((r) => c.once('exit', r));
  }
}
