#!/usr/bin/env node
/**
 * `npm run fuzz`: runs mutations of real forged GGUF files through the header reader
 * (readGgufBytes, the same parser as readGguf, without the disk) and checks its contract: every
 * input gives a GgufFile or a GgufError, nothing else, quickly and without a large allocation.
 * Prints a summary table and writes bench/results/fuzz-gguf.json. Not part of `npm test`.
 *
 *   node test/fuzz/gguf.mjs [--count 1000000] [--seed 1] [--out DIR]
 *
 * Run `npm run build` first (it imports dist/). Any input that breaks the contract is written to
 * the output folder as crash-N.gguf, and the exit code is 1.
 */
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forgeModel, GgufError, readGgufBytes } from '../../dist/gguf/index.js';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
const COUNT = Number(values.count);
let seed = Number(values.seed) >>> 0 || 1;
const OUT = values.out ?? path.resolve(import.meta.dirname, '../../bench/results');

/** xorshift32: a fixed sequence for a seed, so a failure can be replayed. */
function rnd() {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 0x100000000;
}
const int = (n) => Math.floor(rnd() * n);

// Real forged files: small shapes of each tensor type, tied and not, with a ChatML template.
const dir = await mkdtemp(path.join(os.tmpdir(), 'headroom-fuzz-'));
const shapes = [
  { layers: 1, embd: 32, heads: 2, kvHeads: 1, ff: 64, vocab: 300, type: 'f32' },
  { layers: 2, embd: 64, heads: 4, kvHeads: 2, ff: 128, vocab: 320, type: 'f16', tied: true },
  {
    layers: 1,
    embd: 64,
    heads: 2,
    kvHeads: 2,
    ff: 96,
    vocab: 280,
    type: 'q8_0',
    chatTemplate: 'chatml',
  },
];
const seeds = [];
for (const [i, s] of shapes.entries()) {
  const file = path.join(dir, `seed-${i}.gguf`);
  await forgeModel({ ...s, ctx: 256, out: file, seed: i + 1 });
  seeds.push(new Uint8Array(await readFile(file)));
}

/** Hostile values for 32- and 64-bit fields: zero, one, small, type bounds, sign bits, huge. */
const HOSTILE64 = [
  0n,
  1n,
  2n,
  7n,
  255n,
  65535n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n,
  2n ** 62n,
  2n ** 63n,
  2n ** 64n - 1n,
];
const HOSTILE32 = [0, 1, 2, 5, 8, 9, 12, 13, 30, 31, 255, 0x7fffffff, 0xffffffff];

/** One mutation of a copy of `src`; returns the bytes and the kind of mutation. */
function mutate(src) {
  const kind = int(9);
  let b = new Uint8Array(src);
  // Most fields that matter lie in the header: aim there more often than at tensor data.
  const headerEnd = Math.min(b.length, 4096);
  const at = () => (rnd() < 0.85 ? int(headerEnd) : int(b.length));
  const view = () => new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (kind) {
    case 0: // flip bits
      for (let i = 1 + int(4); i > 0; i--) b[at()] ^= 1 << int(8);
      return { b, kind: 'bit-flip' };
    case 1: // random bytes
      for (let i = 1 + int(8); i > 0; i--) b[at()] = int(256);
      return { b, kind: 'byte-set' };
    case 2: // truncate
      return { b: b.subarray(0, int(b.length)), kind: 'truncate' };
    case 3: {
      // hostile u64 (counts, lengths, dims, offsets)
      const p = at();
      if (p + 8 <= b.length) view().setBigUint64(p, HOSTILE64[int(HOSTILE64.length)], true);
      return { b, kind: 'u64-hostile' };
    }
    case 4: {
      // hostile u32 (types, n_dims, version)
      const p = at();
      if (p + 4 <= b.length) view().setUint32(p, HOSTILE32[int(HOSTILE32.length)], true);
      return { b, kind: 'u32-hostile' };
    }
    case 5: {
      // delete a span (shifts every later field)
      const p = at();
      const q = Math.min(b.length, p + 1 + int(16));
      const out = new Uint8Array(b.length - (q - p));
      out.set(b.subarray(0, p));
      out.set(b.subarray(q), p);
      return { b: out, kind: 'delete' };
    }
    case 6: {
      // duplicate a span in place (repeated keys and tensor infos)
      const p = at();
      const n = 4 + int(64);
      const q = at();
      const out = new Uint8Array(b.length + Math.min(n, b.length - p));
      const span = b.subarray(p, Math.min(b.length, p + n));
      out.set(b.subarray(0, q));
      out.set(span, q);
      out.set(b.subarray(q), q + span.length);
      return { b: out, kind: 'duplicate' };
    }
    case 7: {
      // splice two forged files
      const other = seeds[int(seeds.length)];
      const p = at();
      const out = new Uint8Array(b.length);
      out.set(b.subarray(0, p));
      out.set(other.subarray(p, Math.min(other.length, b.length)), p);
      return { b: out, kind: 'splice' };
    }
    default: {
      // several of the above
      let r = { b, kind: '' };
      for (let i = 0; i < 3; i++) {
        const k = mutate(r.b);
        r = k;
      }
      return { b: r.b, kind: 'stacked' };
    }
  }
}

await mkdir(OUT, { recursive: true });
const byCode = new Map();
const byKind = new Map();
let ok = 0;
let crashes = 0;
let maxMs = 0;
let maxAt = '';
let maxRss = 0;
const slow = [];
const started = process.hrtime.bigint();
let lastReport = Date.now();
for (let i = 0; i < COUNT; i++) {
  const src = seeds[i % seeds.length];
  const { b, kind } = mutate(src);
  byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
  const t0 = process.hrtime.bigint();
  try {
    await readGgufBytes(b, `mutation-${i}`);
    ok++;
  } catch (err) {
    if (err instanceof GgufError) {
      byCode.set(err.code, (byCode.get(err.code) ?? 0) + 1);
    } else {
      crashes++;
      const file = path.join(OUT, `crash-${i}.gguf`);
      await writeFile(file, b);
      console.error(
        `mutation ${i} (${kind}) broke the contract: ${err?.stack ?? err}\n  input: ${file}`,
      );
    }
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (ms > maxMs) {
    maxMs = ms;
    maxAt = `${i} (${kind})`;
  }
  if (ms > 50) {
    slow.push(i);
    // Kept for a look: a slow read is a GC pause or a header that makes the parser work hard.
    if (slow.length <= 5) await writeFile(path.join(OUT, `slow-${i}.gguf`), b);
  }
  if ((i & 0x3fff) === 0) {
    maxRss = Math.max(maxRss, process.memoryUsage().rss);
    if (Date.now() - lastReport > 10_000) {
      lastReport = Date.now();
      process.stderr.write(`  ${i.toLocaleString('en')} / ${COUNT.toLocaleString('en')}\n`);
    }
  }
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
maxRss = Math.max(maxRss, process.memoryUsage().rss);

const rows = [
  ['mutations', COUNT.toLocaleString('en')],
  ['read whole (still a valid header)', ok.toLocaleString('en')],
  ...[...byCode.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => [`  ${c}`, n.toLocaleString('en')]),
  ['contract broken (not GgufFile or GgufError)', String(crashes)],
  ['slowest read', `${maxMs.toFixed(2)} ms (mutation ${maxAt})`],
  ['reads over 50 ms', String(slow.length)],
  ['max RSS', `${(maxRss / 2 ** 20).toFixed(0)} MiB`],
  ['time', `${seconds.toFixed(1)} s (${Math.round(COUNT / seconds).toLocaleString('en')} reads/s)`],
];
const w = Math.max(...rows.map((r) => r[0].length));
console.log(
  `GGUF reader fuzz, seed ${values.seed}, ${seeds.length} forged files (${seeds.map((s) => s.length).join(', ')} bytes)`,
);
for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
console.log(`mutation kinds: ${[...byKind.entries()].map(([k, n]) => `${k} ${n}`).join(', ')}`);
const json = {
  date: new Date().toISOString(),
  seed: Number(values.seed),
  count: COUNT,
  ok,
  errors: Object.fromEntries(byCode),
  kinds: Object.fromEntries(byKind),
  crashes,
  maxMs,
  over50ms: slow.length,
  maxRssBytes: maxRss,
  seconds,
};
await writeFile(path.join(OUT, 'fuzz-gguf.json'), JSON.stringify(json, null, 2) + '\n');
process.exitCode = crashes > 0 ? 1 : 0;
