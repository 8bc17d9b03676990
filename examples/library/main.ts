/**
 * headroom as a library: forge a tiny model, plan it, load it, read the numbers, unload it.
 *
 *   node main.js WORKDIR [LLAMA_SERVER_PATH]
 *
 * With a llama-server binary it loads the model and prints what it measured; without one it only
 * plans (no runner starts). The last line of output is one JSON object (test/e2e/package.test.ts
 * reads it).
 */
import path from 'node:path';
import {
  createHeadroom,
  forgeModel,
  type LoadEvent,
  type MemoryAllocation,
  type UnloadEvent,
} from 'headroom';

const [workdir, llamaServer] = process.argv.slice(2);
if (!workdir) throw new Error('usage: node main.js WORKDIR [LLAMA_SERVER_PATH]');

const modelsDir = path.join(workdir, 'models');
await forgeModel({
  out: path.join(modelsDir, 'tiny.gguf'),
  params: 2_000_000,
  type: 'f16',
  ctx: 1024,
});

const hr = await createHeadroom({
  home: path.join(workdir, 'home'),
  config: {
    modelDirs: [modelsDir],
    demoModel: false,
    runner: { contextSize: 512 },
    monitor: { enabled: true, interval: 200 },
    ...(llamaServer
      ? { engines: { default: 'llama-server', llamaServer: { path: llamaServer } } }
      : {}),
  },
});

try {
  await run();
} finally {
  // Stops every runner; a library user disposes what it created.
  await hr.dispose();
}

async function run(): Promise<void> {
  const loads: LoadEvent[] = [];
  const unloads: UnloadEvent[] = [];
  let samples = 0;
  hr.events.on('load', (e) => loads.push(e));
  hr.events.on('unload', (e) => unloads.push(e));
  hr.events.on('sample', () => samples++);

  const plan = await hr.plan('tiny');
  console.log(
    `plan: ${plan.verdict}, ${plan.predicted.total} bytes predicted (weights ${plan.predicted.weights})`,
  );

  let allocations: MemoryAllocation[] = [];
  if (llamaServer) {
    const lease = await hr.manager.acquire('tiny');
    const res = await fetch(`${lease.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'Hello', max_tokens: 4 }),
    });
    console.log(`completion: HTTP ${res.status}`);
    await res.arrayBuffer();
    lease.release();
    allocations = hr.memoryAllocations();
    await hr.manager.unload('tiny');
  }

  const system = hr.systemResources();
  console.log(
    JSON.stringify({
      models: hr.modelMetrics().map((m) => m.model),
      plan: { verdict: plan.verdict, total: plan.predicted.total },
      allocations,
      loads: loads.map((l) => ({ model: l.model, loadMs: l.loadMs })),
      unloads: unloads.map((u) => ({ model: u.model, reason: u.reason })),
      system: { totalMemory: system.totalMemory, budget: system.budget, peak: system.peakMemory },
      limits: hr.limits(),
      pressure: hr.pressureConfig(),
      samples,
    }),
  );
}
