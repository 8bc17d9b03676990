// The dashboard page's memory over time: does the page stay flat once its ring buffer is full?
// Starts the daemon with samples every 50 ms (20× the default rate), opens the page in Debian's
// chromium (playwright-core) with a 600-point ring, and reads the page's JS heap (after a forced
// GC, through the DevTools protocol) and its DOM node count every 30 s. With 20 samples a second
// the ring is full after 30 s; everything after is hours of a default page (7200 points at 1/s)
// in fast-forward, for the chart's data. Prints a table, writes bench/results/dashboard-memory.json.
//
//   npm run build && node bench/dashboard-memory.mjs [--minutes 4] [--points 600]
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { startBenchDaemon } from './lib/daemon.mjs';
import { machineInfo } from './lib/stats.mjs';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '4' },
    points: { type: 'string', default: '600' },
  },
});
const minutes = Number(values.minutes);
const points = Number(values.points);
const CHROMIUM = process.env.HEADROOM_TEST_CHROMIUM ?? '/usr/bin/chromium';

const { daemon, url } = await startBenchDaemon(
  'headroom-bench-dashboard-',
  'port: 0\ndemoModel: false\nmodelDirs: []\nmonitor: { interval: 50, historySize: 600 }\n',
);
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const rows = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  await page.goto(`${url}/?points=${points}`);
  await page.waitForSelector('#conn[data-state="live"]');
  const t0 = Date.now();
  for (let i = 0; i <= minutes * 2; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 30_000));
    await cdp.send('HeapProfiler.collectGarbage');
    const { metrics } = await cdp.send('Performance.getMetrics');
    const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
    const samples = Number(await page.locator('#chart').getAttribute('data-samples'));
    const row = {
      seconds: Math.round((Date.now() - t0) / 1000),
      samplesSeen: Math.round(((Date.now() - t0) / 1000) * 20),
      chartPoints: samples,
      heapUsedMiB: +(m.JSHeapUsedSize / 2 ** 20).toFixed(2),
      domNodes: m.Nodes,
      listeners: m.JSEventListeners,
    };
    rows.push(row);
    console.log(
      `${String(row.seconds).padStart(5)} s  ~${String(row.samplesSeen).padStart(5)} samples  ` +
        `${String(row.chartPoints).padStart(5)} points  heap ${row.heapUsedMiB.toFixed(2).padStart(6)} MiB  ` +
        `${row.domNodes} DOM nodes  ${row.listeners} listeners`,
    );
  }
} finally {
  await browser.close();
  daemon.kill('SIGTERM');
}
const full = rows.filter((r) => r.chartPoints >= points);
const heaps = full.map((r) => r.heapUsedMiB);
const summary = {
  points,
  minutes,
  heapMiBOnceFull: { min: Math.min(...heaps), max: Math.max(...heaps) },
};
console.log(
  `\nonce the ring is full (${full.length} readings): heap ${summary.heapMiBOnceFull.min}–${summary.heapMiBOnceFull.max} MiB`,
);
const out = path.resolve(import.meta.dirname, 'results', 'dashboard-memory.json');
await mkdir(path.dirname(out), { recursive: true });
await writeFile(
  out,
  JSON.stringify(
    { date: new Date().toISOString(), machine: machineInfo(), summary, rows },
    null,
    2,
  ),
);
console.log(`wrote ${out}`);
