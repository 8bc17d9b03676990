/**
 * The published package from a fresh TypeScript project, as a user gets it: `npm pack` the
 * repository (dist/ must be built: `npm run build`), `npm install` the tarball into an empty
 * project, compile examples/library/main.ts there with `tsc --strict` against the installed
 * declarations, and run it. The example forges a tiny model, plans it and, with a llama-server
 * binary, loads it, runs a completion and unloads it; its last line is JSON this test checks.
 *
 * Offline: npm installs the tarball's dependencies from its cache (`--prefer-offline`, no retries),
 * which the repository's own install filled. Optional dependencies (node-llama-cpp's prebuilt
 * binaries, hundreds of MB) are left out: the example runs its model on llama-server.
 */
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testLlamaServerBinary } from '../helpers/engines.js';
import { runProcess, type Run } from '../helpers/run.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

function run(command: string, args: string[], cwd: string, timeoutMs: number): Promise<Run> {
  return runProcess(command, args, {
    cwd,
    env: { ...process.env, npm_config_update_notifier: 'false' },
    timeoutMs,
  });
}

function ok(r: Run, what: string): Run {
  if (r.code !== 0)
    throw new Error(`${what} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}

let tmp: string;
let project: string;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'headroom-package-'));
  project = path.join(tmp, 'app');
  await mkdir(project);
}, 30_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the npm package in a fresh TypeScript project', () => {
  it('packs, installs, compiles with tsc --strict against its declarations, and runs', async () => {
    // Pack what `files` publishes; the build already ran (pretest), so no prepare scripts.
    ok(
      await run(
        'npm',
        ['pack', '--ignore-scripts', '--pack-destination', tmp, '--silent'],
        ROOT,
        60_000,
      ),
      'npm pack',
    );
    const tarball = (await readdir(tmp)).find((f) => f.endsWith('.tgz'));
    expect(tarball, 'npm pack wrote a tarball').toBeDefined();

    const typesNode = JSON.parse(
      await readFile(path.join(ROOT, 'node_modules', '@types', 'node', 'package.json'), 'utf8'),
    ) as { version: string };
    await writeFile(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'headroom-consumer', private: true, type: 'module' }),
    );
    ok(
      await run(
        'npm',
        [
          'install',
          '--prefer-offline',
          '--ignore-scripts',
          '--omit=optional',
          '--no-audit',
          '--no-fund',
          '--fetch-retries=0',
          '--fetch-timeout=10000',
          path.join(tmp, tarball!),
          `@types/node@${typesNode.version}`,
        ],
        project,
        240_000,
      ),
      'npm install',
    );
    const installed = path.join(project, 'node_modules', 'headroom');
    const manifest = JSON.parse(await readFile(path.join(installed, 'package.json'), 'utf8')) as {
      exports: Record<string, { types: string }>;
      scripts: Record<string, string>;
    };
    expect(manifest.exports['.']!.types).toBe('./dist/index.d.ts');
    // Installed as a package, its postinstall builds llama-server (skipped here: the build is
    // the repository's install's to test, and takes minutes).
    expect(manifest.scripts.postinstall).toBe('node bin/install-engine.js');
    const hook = ok(
      await runProcess(process.execPath, [path.join(installed, 'bin', 'install-engine.js')], {
        cwd: installed,
        env: { ...process.env, HEADROOM_SKIP_ENGINE_BUILD: '1' },
        timeoutMs: 30_000,
      }),
      'the postinstall hook',
    );
    expect(hook.stderr).toMatch(/llama-server: build skipped/);
    await readFile(path.join(installed, manifest.exports['.']!.types), 'utf8');
    // Source maps carry their sources: the package has no src/ for them to point at.
    const map = JSON.parse(
      await readFile(path.join(installed, 'dist', 'daemon', 'daemon.js.map'), 'utf8'),
    ) as { sources: string[]; sourcesContent?: string[] };
    expect(map.sourcesContent?.length).toBe(map.sources.length);

    await copyFile(
      path.join(ROOT, 'examples', 'library', 'main.ts'),
      path.join(project, 'main.ts'),
    );
    await writeFile(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          types: ['node'],
          // headroom's declarations (and those they pull in) are checked too, not skipped.
          skipLibCheck: false,
          outDir: 'out',
        },
        files: ['main.ts'],
      }),
    );
    ok(await run(process.execPath, [TSC, '-p', project, '--strict'], project, 120_000), 'tsc');

    const binary = testLlamaServerBinary();
    if ('missing' in binary)
      console.log(`package test: no llama-server (${binary.missing}): the example only plans`);
    const work = path.join(tmp, 'work');
    const r = ok(
      await run(
        process.execPath,
        [path.join(project, 'out', 'main.js'), work, ...('path' in binary ? [binary.path] : [])],
        project,
        120_000,
      ),
      'the example',
    );
    const last = r.stdout.trim().split('\n').at(-1)!;
    const out = JSON.parse(last) as {
      models: string[];
      plan: { verdict: string; total: number };
      allocations: Array<{
        model: string;
        allocated: number;
        buffers: { model: number; context: number; working: number } | null;
      }>;
      loads: Array<{ model: string; loadMs: number }>;
      unloads: Array<{ model: string; reason: string }>;
      system: { totalMemory: number; budget: number | null; peak: number };
      limits: { maxLoadedModels: number | null; inactivityTimeoutMs: number | null };
      pressure: { enabled: boolean; intervalMs: number };
    };
    expect(out.models).toEqual(['tiny']);
    expect(out.plan.verdict).not.toBe('refuse');
    expect(out.plan.total).toBeGreaterThan(0);
    expect(out.system.totalMemory).toBe(os.totalmem());
    expect(out.system.budget).toBeGreaterThan(0);
    expect(out.limits).toMatchObject({ maxLoadedModels: null, inactivityTimeoutMs: 300_000 });
    expect(out.pressure).toMatchObject({ enabled: true, intervalMs: 200 });
    if ('path' in binary) {
      expect(r.stdout).toContain('completion: HTTP 200');
      expect(out.loads.map((l) => l.model)).toEqual(['tiny']);
      expect(out.unloads).toEqual([{ model: 'tiny', reason: 'unload' }]);
      const a = out.allocations.find((x) => x.model === 'tiny');
      expect(a?.allocated).toBeGreaterThan(0);
      expect(a?.buffers?.model).toBeGreaterThan(0);
      expect(a?.buffers?.context).toBeGreaterThan(0);
      expect(out.system.peak).toBeGreaterThanOrEqual(a!.allocated);
    }
  }, 420_000);
});
