#!/usr/bin/env node
// bench/stream: concurrent streams through the daemon vs straight to the runners, on one and on
// two forged models: aggregate tokens/s (ratio daemon/direct), TTFT p50/p99, daemon RSS; then 50
// slow readers (they read nothing for --slow-seconds): daemon RSS growth (target <= 20 MB).
// Prints a table, writes bench/results/stream.json.
//
//   npm run build && node bench/stream.mjs [--params 15M] [--tokens 32] [--conc 1,8,32] [--threads 1]
/* global setInterval, clearInterval */
import { readFileSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel, parseParamCount } from '../dist/gguf/forge.js';
import { loadModel, startBenchDaemon } from './lib/daemon.mjs';
import { machineInfo } from './lib/stats.mjs';
import { sseSplitter } from './lib/sse.mjs';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({
  options: {
    params: { type: 'string', default: '15M' },
    tokens: { type: 'string', default: '32' },
    conc: { type: 'string', default: '1,8,32' },
    threads: { type: 'string', default: '1' },
    parallel: { type: 'string', default: '4' },
    slow: { type: 'string', default: '50' },
    'slow-seconds': { type: 'string', default: '10' },
  },
});
const TOKENS = Number(values.tokens);
const CONC = values.conc.split(',').map(Number);
const PARAMS = parseParamCount(values.params);
const modelsDir = path.join(root, '.cache', 'bench-models', 'stream');
await mkdir(modelsDir, { recursive: true });
const names = [1, 2].map((i) => `stream-${values.params.toLowerCase()}-${i}`);
for (const [i, name] of names.entries()) {
  const out = path.join(modelsDir, `${name}.gguf`);
  if (!(await stat(out).catch(() => null)))
    await forgeModel({
      out,
      params: PARAMS,
      type: 'f16',
      ctx: 4096,
      chatTemplate: 'chatml',
      seed: 11 + i,
    });
}

const { daemon, url: daemonUrl } = await startBenchDaemon(
  'headroom-bench-stream-',
  `port: 0\ndemoModel: false\nmodelDirs: [${JSON.stringify(modelsDir)}]\nrunner:\n  contextSize: 2048\n  threads: ${Number(values.threads)}\n  parallel: ${Number(values.parallel)}\nscheduler:\n  queue:\n    maxLength: 64\n`,
);
const rssOf = (pid) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

/** One stream; resolves with TTFT and token count, measured at the client. */
function stream(base, model) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first = 0;
    let tokens = 0;
    const req = http.request(
      new URL('/v1/chat/completions', base),
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.setEncoding('utf8');
        res.on(
          'data',
          sseSplitter((data) => {
            if (data.choices?.[0]?.delta?.content) {
              if (!first) first = performance.now();
              tokens++;
            }
          }),
        );
        res.on('end', () =>
          res.statusCode === 200
            ? resolve({ ttftMs: first - t0, tokens })
            : reject(new Error(`HTTP ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(
      JSON.stringify({
        model,
        messages: [{ role: 'user', content: 'Write a story about the sea.' }],
        max_tokens: TOKENS,
        temperature: 0,
        stream: true,
        ignore_eos: true,
      }),
    );
  });
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

try {
  const runnerUrls = {};
  for (const name of names) {
    runnerUrls[name] = (await loadModel(daemonUrl, name)).url;
  }
  for (const name of names) {
    await stream(runnerUrls[name], name);
    await stream(daemonUrl, name);
  }
  const rows = [];
  for (const nModels of [1, 2]) {
    for (const conc of CONC) {
      const row = { models: nModels, concurrent: conc };
      // Alternate which path goes first so drift hits both alike.
      const order = conc % 2 ? ['direct', 'daemon'] : ['daemon', 'direct'];
      for (const which of order) {
        let peak = rssOf(daemon.pid);
        const sampler = setInterval(() => (peak = Math.max(peak, rssOf(daemon.pid))), 50);
        const t0 = performance.now();
        const results = await Promise.all(
          Array.from({ length: conc }, (_, i) => {
            const model = names[i % nModels];
            return stream(which === 'direct' ? runnerUrls[model] : daemonUrl, model);
          }),
        );
        const wall = performance.now() - t0;
        clearInterval(sampler);
        const tokens = results.reduce((a, r) => a + r.tokens, 0);
        row[which] = {
          tokensPerS: (tokens * 1000) / wall,
          ttftP50Ms: pct(
            results.map((r) => r.ttftMs),
            50,
          ),
          ttftP99Ms: pct(
            results.map((r) => r.ttftMs),
            99,
          ),
          daemonPeakRssMiB: peak / 2 ** 20,
        };
      }
      row.ratio = row.daemon.tokensPerS / row.direct.tokensPerS;
      rows.push(row);
      process.stderr.write(`models ${nModels} x${conc}: ratio ${row.ratio.toFixed(3)}\n`);
    }
  }

  // 50 slow readers: each opens a stream through the daemon and reads nothing for a while.
  const SLOW = Number(values.slow);
  const rssBefore = rssOf(daemon.pid);
  const slowReqs = [];
  let peakSlow = rssBefore;
  for (let i = 0; i < SLOW; i++) {
    const req = http.request(new URL('/v1/chat/completions', daemonUrl), {
      method: 'POST',
      agent: false,
      headers: { 'content-type': 'application/json' },
    });
    req.on('response', (res) => res.pause());
    req.on('error', () => {});
    req.end(
      JSON.stringify({
        model: names[i % 2],
        messages: [{ role: 'user', content: 'Go on and on.' }],
        max_tokens: 1500,
        stream: true,
        ignore_eos: true,
      }),
    );
    slowReqs.push(req);
  }
  const until = Date.now() + Number(values['slow-seconds']) * 1000;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    peakSlow = Math.max(peakSlow, rssOf(daemon.pid));
  }
  const metrics = await (await fetch(`${daemonUrl}/metrics`)).text();
  const buffered = Number(/^headroom_stream_buffered_bytes (\S+)$/m.exec(metrics)?.[1] ?? NaN);
  const active = Number(/^headroom_streams_active (\S+)$/m.exec(metrics)?.[1] ?? NaN);
  for (const r of slowReqs) r.destroy();
  const slow = {
    clients: SLOW,
    seconds: Number(values['slow-seconds']),
    rssBeforeMiB: rssBefore / 2 ** 20,
    rssPeakMiB: peakSlow / 2 ** 20,
    growthMiB: (peakSlow - rssBefore) / 2 ** 20,
    streamsActive: active,
    bufferedBytes: buffered,
  };

  const f = (x, d = 1) => x.toFixed(d);
  const table = [
    [
      'models',
      'streams',
      'direct tok/s',
      'daemon tok/s',
      'ratio',
      'TTFT p50 ms (direct/daemon)',
      'TTFT p99 ms (direct/daemon)',
      'daemon RSS MiB',
    ],
    ...rows.map((r) => [
      String(r.models),
      String(r.concurrent),
      f(r.direct.tokensPerS),
      f(r.daemon.tokensPerS),
      f(r.ratio, 3),
      `${f(r.direct.ttftP50Ms)} / ${f(r.daemon.ttftP50Ms)}`,
      `${f(r.direct.ttftP99Ms)} / ${f(r.daemon.ttftP99Ms)}`,
      f(r.daemon.daemonPeakRssMiB),
    ]),
  ];
  const w = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  console.log(table.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ')).join('\n'));
  console.log(
    `\n${SLOW} slow readers for ${slow.seconds} s: daemon RSS ${f(slow.rssBeforeMiB)} -> peak ${f(slow.rssPeakMiB)} MiB (growth ${f(slow.growthMiB)} MiB, target <= 20); ${active} streams active, ${buffered} bytes buffered in the daemon`,
  );

  const result = {
    bench: 'stream',
    date: new Date().toISOString(),
    machine: machineInfo(),
    model: {
      params: values.params,
      type: 'f16',
      contextSize: 2048,
      threads: Number(values.threads),
      parallel: Number(values.parallel),
    },
    maxTokens: TOKENS,
    rows,
    slowReaders: slow,
  };
  await mkdir(path.join(root, 'bench/results'), { recursive: true });
  await writeFile(path.join(root, 'bench/results/stream.json'), JSON.stringify(result, null, 2));
  console.log('\nwrote bench/results/stream.json');
} finally {
  agent.destroy();
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
}
