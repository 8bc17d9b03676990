import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rename,
  rm,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { describeError } from '../../lib/errors.js';
import {
  LLAMA_SERVER_PATCHES,
  chooseBackend,
  estimateText,
  fullSourceCmakeDefs,
  logTail,
  parseProgress,
  parseVersionOutput,
  pickPrebuiltLibs,
  prebuiltCmakeDefs,
  recordedCmakeOptions,
  runsOnCpu,
  runtimeLibs,
  type Backend,
  type BuildFailure,
  type BuildHow,
  type BuildInputs,
  type BuildManifest,
  type Progress,
} from './build.js';
import { findExecutable } from './binary.js';
import { SERVER_PROJECT_CMAKELISTS } from './server-project.js';
import { withLock, type LockOwner } from './lock.js';
import {
  buildDir,
  buildInputs,
  buildLayout,
  cpuModel,
  llamaServerCacheDir,
  nodeLlamaCppPackage,
  patchesDir,
  prebuiltBins,
  type NodeLlamaCppPackage,
} from './source.js';

/**
 * Builds llama-server from the llama.cpp source node-llama-cpp ships, into the engine cache.
 *
 * Two recipes, tried in order: `prebuilt-libs` (the server against node-llama-cpp's prebuilt
 * libraries; skipped when its platform package is missing) and `full-source` (everything from
 * source, one static binary), both from one clone of the bundled source with headroom's patches
 * applied. Each stages its product in a temporary folder beside the final one,
 * checks that the binary runs from there, then renames it into place, so a reader never sees half
 * a build. A lock per build key makes a concurrent build wait for the first and reuse its result.
 * When every recipe fails it writes failed.json (reason, log tail, fix) and resolves; it never
 * throws for a build failure, only for an abort.
 */

export type BuildPhase = 'clone' | 'patch' | 'configure' | 'compile' | 'check';

export type BuildEvent =
  | { type: 'cached'; dir: string }
  | { type: 'waiting'; owner: LockOwner | undefined }
  | { type: 'start'; key: string; backend: Backend; tag: string; how: BuildHow; estimate: string }
  | { type: 'phase'; phase: BuildPhase; how: BuildHow }
  | { type: 'progress'; progress: Progress }
  | { type: 'fallback'; from: BuildHow; to: BuildHow; reason: string };

export interface BuildOptions {
  /** Defaults to the best backend node-llama-cpp finds usable here. */
  backend?: Backend;
  /** Rebuild even when a build for the key exists. */
  force?: boolean;
  /** Only this recipe (for measuring each); defaults to both in order. */
  only?: BuildHow;
  /** Parallel compile jobs. Defaults to the available cores. */
  jobs?: number;
  /** Where LLAMA_SERVER_PATCHES are read from. Defaults to the package's patches folder. */
  patchesDir?: string;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  onEvent?: (event: BuildEvent) => void;
}

export type BuildResult =
  | { ok: true; dir: string; binary: string; manifest: BuildManifest; reused: boolean }
  | { ok: false; dir: string; failure: BuildFailure };

/** The backend to build for on this machine (node-llama-cpp's GPU detection). */
export async function detectBackend(): Promise<Backend> {
  try {
    const { getLlamaGpuTypes } = await import('node-llama-cpp');
    const types = await getLlamaGpuTypes('supported');
    return chooseBackend(types.filter((t): t is Exclude<typeof t, false> => t !== false));
  } catch {
    return 'cpu';
  }
}

/** Reads a build's manifest when its binary is present too and runs on this CPU. */
export async function readBuild(dir: string): Promise<BuildManifest | undefined> {
  const layout = buildLayout(dir);
  if (!existsSync(layout.binary)) return undefined;
  try {
    const manifest = JSON.parse(await readFile(layout.manifest, 'utf8')) as BuildManifest;
    return runsOnCpu(manifest, cpuModel()) ? manifest : undefined;
  } catch {
    return undefined;
  }
}

/** Reads a build folder's failure record. */
export async function readFailure(dir: string): Promise<BuildFailure | undefined> {
  try {
    return JSON.parse(await readFile(buildLayout(dir).failed, 'utf8')) as BuildFailure;
  } catch {
    return undefined;
  }
}

class StepError extends Error {
  constructor(
    message: string,
    readonly tail: string,
  ) {
    super(message);
  }
}

interface Tools {
  git: string;
  cmake: string;
  ninja: string | undefined;
}

/** The tools a build needs, or the one line that says which is missing and how to get it. */
async function findTools(env: NodeJS.ProcessEnv): Promise<Tools | { missing: string }> {
  const [git, cmake, ninja, cxx] = await Promise.all([
    findExecutable('git', env),
    findExecutable('cmake', env),
    findExecutable('ninja', env),
    env.CXX ? Promise.resolve(env.CXX) : firstExecutable(['c++', 'g++', 'clang++'], env),
  ]);
  const missing = [!cmake && 'cmake', !cxx && 'a C++ compiler', !git && 'git'].filter(Boolean);
  if (missing.length > 0) return { missing: missing.join(', ') };
  return { git: git!, cmake: cmake!, ninja };
}

async function firstExecutable(
  names: string[],
  env: NodeJS.ProcessEnv,
): Promise<string | undefined> {
  for (const n of names) {
    const p = await findExecutable(n, env);
    if (p) return p;
  }
  return undefined;
}

/**
 * Runs a command, appending its output to `log`; lines that show progress go to `onLine`.
 * Rejects with a StepError carrying the output's tail when it exits non-zero; kills it on abort.
 */
async function run(
  cmd: string,
  args: string[],
  opts: {
    cwd: string;
    env: NodeJS.ProcessEnv;
    log: NodeJS.WritableStream;
    signal: AbortSignal | undefined;
    /** Names the step in a failure: "configure", "compile", … */
    step: string;
    onLine?: (line: string) => void;
  },
): Promise<string> {
  opts.log.write(`$ ${cmd} ${args.join(' ')}\n`);
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let recent = '';
  let partial = '';
  const onData = (chunk: Buffer): void => {
    const text = chunk.toString('utf8');
    opts.log.write(text);
    recent = (recent + text).slice(-64 * 1024);
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) opts.onLine?.(line);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const onAbort = (): void => {
    child.kill('SIGTERM');
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const [code, sig] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
    opts.signal?.throwIfAborted();
    if (code !== 0)
      throw new StepError(
        `${opts.step} (${path.basename(cmd)}) exited with ${sig ? `signal ${sig}` : `code ${code}`}`,
        logTail(recent),
      );
    return recent;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new StepError(`${opts.step}: ${cmd} not found`, '');
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** `llama-server --version` from its staged folder: proves it finds its libraries there. */
async function checkBinary(
  binary: string,
  log: NodeJS.WritableStream,
  signal: AbortSignal | undefined,
): Promise<string> {
  const timeout = AbortSignal.timeout(60_000);
  const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const out = await run(binary, ['--version'], {
    cwd: path.dirname(binary),
    env: { ...process.env, LD_LIBRARY_PATH: '' },
    log,
    signal: both,
    step: 'check (llama-server --version)',
  });
  const version = parseVersionOutput(out);
  if (!version) throw new StepError('llama-server --version printed no version', logTail(out));
  return version;
}

interface RecipeContext {
  pkg: NodeLlamaCppPackage;
  inputs: BuildInputs;
  backend: Backend;
  tools: Tools;
  src: string;
  work: string;
  stage: string;
  jobs: number;
  env: NodeJS.ProcessEnv;
  log: NodeJS.WritableStream;
  signal: AbortSignal | undefined;
  emit: (e: BuildEvent) => void;
}

/** Configures and compiles `target` in `buildPath`; returns the configure definitions. */
async function cmakeBuild(
  ctx: RecipeContext,
  how: BuildHow,
  sourceDir: string,
  buildPath: string,
  defs: string[],
): Promise<void> {
  const generator = ctx.tools.ninja
    ? ['-G', 'Ninja', `-DCMAKE_MAKE_PROGRAM=${ctx.tools.ninja}`]
    : [];
  ctx.emit({ type: 'phase', phase: 'configure', how });
  await run(ctx.tools.cmake, ['-S', sourceDir, '-B', buildPath, ...generator, ...defs], {
    cwd: ctx.work,
    env: ctx.env,
    log: ctx.log,
    signal: ctx.signal,
    step: 'configure',
  });
  ctx.emit({ type: 'phase', phase: 'compile', how });
  await run(
    ctx.tools.cmake,
    ['--build', buildPath, '--target', 'llama-server', '-j', String(ctx.jobs)],
    {
      cwd: ctx.work,
      env: ctx.env,
      log: ctx.log,
      signal: ctx.signal,
      step: 'compile',
      onLine: (line) => {
        const p = parseProgress(line);
        if (p) ctx.emit({ type: 'progress', progress: p });
      },
    },
  );
}

/** The server against node-llama-cpp's prebuilt libraries, which are copied beside it. */
async function prebuiltRecipe(ctx: RecipeContext): Promise<string[]> {
  const bins = prebuiltBins(ctx.pkg, ctx.backend);
  if (!bins)
    throw new StepError(`node-llama-cpp's ${ctx.backend} platform package is not installed`, '');
  const libs = pickPrebuiltLibs(bins.files);
  if (!libs) throw new StepError(`no ggml/llama/llama-common libraries in ${bins.dir}`, '');
  const project = path.join(ctx.work, 'server-project');
  await mkdir(project, { recursive: true });
  await writeFile(path.join(project, 'CMakeLists.txt'), SERVER_PROJECT_CMAKELISTS);
  const defs = prebuiltCmakeDefs(ctx.src, bins.dir, libs);
  const out = path.join(ctx.work, 'build-prebuilt');
  await cmakeBuild(ctx, 'prebuilt-libs', project, out, defs);
  const bin = path.join(ctx.stage, 'bin');
  await mkdir(bin, { recursive: true });
  await copyFile(path.join(out, 'bin', 'llama-server'), path.join(bin, 'llama-server'));
  for (const f of runtimeLibs(bins.files))
    await copyFile(path.join(bins.dir, f), path.join(bin, f));
  return defs;
}

/** Everything from source: one static binary. */
async function fullSourceRecipe(ctx: RecipeContext): Promise<string[]> {
  const defs = fullSourceCmakeDefs(ctx.backend);
  const out = path.join(ctx.work, 'build-full');
  await cmakeBuild(ctx, 'full-source', ctx.src, out, defs);
  const bin = path.join(ctx.stage, 'bin');
  await mkdir(bin, { recursive: true });
  await copyFile(path.join(out, 'bin', 'llama-server'), path.join(bin, 'llama-server'));
  return defs;
}

const RECIPES: Record<BuildHow, (ctx: RecipeContext) => Promise<string[]>> = {
  'prebuilt-libs': prebuiltRecipe,
  'full-source': fullSourceRecipe,
};

/** What to tell a person whose build failed. */
function fixFor(reason: string, dir: string, backend: Backend): string {
  if (/^patch /.test(reason))
    return `headroom's patches do not fit this node-llama-cpp's llama.cpp: install the node-llama-cpp version headroom's package.json pins, or a headroom release made for this one (log: ${path.join(dir, 'build.log')})`;
  if (/missing build tools/.test(reason))
    return 'install cmake, git and a C++ compiler (Debian: apt-get install cmake g++ git ninja-build), then run `headroom engines build`';
  const cpu = backend === 'cpu' ? '' : ' (`--backend cpu` builds one without the GPU)';
  return `fix the cause shown in the log tail (whole log: ${path.join(dir, 'build.log')}), then run \`headroom engines build\`${cpu}; or put a llama-server on PATH`;
}

/** Replaces `dir` by `stage` (rename: atomic for readers of the new folder). */
async function moveIntoPlace(stage: string, dir: string): Promise<void> {
  const old = `${dir}.old-${process.pid}`;
  if (existsSync(dir)) await rename(dir, old);
  try {
    await rename(stage, dir);
  } catch (err) {
    if (existsSync(old)) await rename(old, dir);
    throw err;
  }
  await rm(old, { recursive: true, force: true });
}

/** Builds (or reuses) the llama-server for this machine. See the module comment. */
export async function buildLlamaServer(opts: BuildOptions = {}): Promise<BuildResult> {
  const env = opts.env ?? process.env;
  const emit = opts.onEvent ?? (() => {});
  const pkg = nodeLlamaCppPackage();
  const inputs = buildInputs(pkg);
  const backend = opts.backend ?? (await detectBackend());
  const dir = buildDir(inputs, backend, env);
  const key = path.basename(dir);
  const layout = buildLayout(dir);

  const existing = opts.force ? undefined : await readBuild(dir);
  if (existing) {
    emit({ type: 'cached', dir });
    return { ok: true, dir, binary: layout.binary, manifest: existing, reused: true };
  }

  const fail = async (reason: string, tail: string, log?: string): Promise<BuildResult> => {
    const failure: BuildFailure = {
      reason,
      logTail: tail,
      fix: fixFor(reason, dir, backend),
      date: new Date().toISOString(),
      inputs,
    };
    // A working build stays as it was when a forced rebuild fails: the failure is only reported.
    if (!(await readBuild(dir))) {
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      await writeFile(layout.failed, JSON.stringify(failure, null, 2) + '\n');
      if (log) await copyFile(log, path.join(dir, 'build.log')).catch(() => {});
    }
    return { ok: false, dir, failure };
  };

  const tools = await findTools(env);
  if ('missing' in tools)
    return fail(`missing build tools: ${tools.missing} (not found on PATH)`, '');

  const order: BuildHow[] = opts.only ? [opts.only] : ['prebuilt-libs', 'full-source'];
  if (!opts.only && !prebuiltBins(pkg, backend)) order.shift();
  const jobs = opts.jobs ?? os.availableParallelism();

  return withLock(
    path.join(llamaServerCacheDir(env), `${key}.lock`),
    async (waited) => {
      // Another process built it while this one waited: use its result.
      if (waited) {
        const theirs = await readBuild(dir);
        if (theirs) {
          emit({ type: 'cached', dir });
          return { ok: true, dir, binary: layout.binary, manifest: theirs, reused: true };
        }
      }
      // Only the lock's holder stages this key: anything staged before is a crashed build's.
      const cache = llamaServerCacheDir(env);
      for (const name of await readdir(cache))
        if (name.startsWith(`.stage-${key}-`) || name.startsWith(`${key}.old-`))
          await rm(path.join(cache, name), { recursive: true, force: true });
      const work = await mkdtemp(path.join(os.tmpdir(), 'headroom-llama-build-'));
      const logPath = path.join(work, 'build.log');
      const log = createWriteStream(logPath);
      let logClosed: Promise<unknown> | undefined;
      // Flushes the log (before a failure copies it, and at the end); idempotent.
      const closeLog = (): Promise<unknown> => {
        if (!logClosed) {
          logClosed = once(log, 'close').catch(() => {});
          log.end();
        }
        return logClosed;
      };
      const started = Date.now();
      try {
        emit({
          type: 'start',
          key,
          backend,
          tag: inputs.tag,
          how: order[0]!,
          estimate: estimateText(order[0]!, jobs),
        });
        const base: Omit<RecipeContext, 'stage'> = {
          pkg,
          inputs,
          backend,
          tools,
          src: path.join(work, 'llama.cpp'),
          work,
          jobs,
          env,
          log,
          signal: opts.signal,
          emit,
        };
        emit({ type: 'phase', phase: 'clone', how: order[0]! });
        try {
          await run(
            tools.git,
            ['-c', 'advice.detachedHead=false', 'clone', '--quiet', pkg.bundle, base.src],
            { cwd: work, env, log, signal: opts.signal, step: 'clone' },
          );
        } catch (err) {
          opts.signal?.throwIfAborted();
          await closeLog();
          return await fail(
            `cloning ${pkg.bundle} failed: ${describeError(err)}`,
            (err as StepError).tail ?? '',
            logPath,
          );
        }
        emit({ type: 'phase', phase: 'patch', how: order[0]! });
        const patches = opts.patchesDir ?? patchesDir();
        for (const name of LLAMA_SERVER_PATCHES) {
          try {
            await run(tools.git, ['apply', '--whitespace=nowarn', path.join(patches, name)], {
              cwd: base.src,
              env,
              log,
              signal: opts.signal,
              step: `patch ${name}`,
            });
          } catch (err) {
            opts.signal?.throwIfAborted();
            await closeLog();
            return await fail(
              `patch ${name} does not apply to llama.cpp ${inputs.tag}: ${describeError(err)}`,
              (err as StepError).tail ?? '',
              logPath,
            );
          }
        }
        let lastError: StepError | undefined;
        for (const [i, how] of order.entries()) {
          const stage = path.join(llamaServerCacheDir(env), `.stage-${key}-${process.pid}-${how}`);
          await rm(stage, { recursive: true, force: true });
          try {
            const recipeStart = Date.now();
            const defs = await RECIPES[how]({ ...base, stage });
            emit({ type: 'phase', phase: 'check', how });
            const binary = buildLayout(stage).binary;
            await chmod(binary, 0o755);
            const version = await checkBinary(binary, log, opts.signal);
            const manifest: BuildManifest = {
              tag: inputs.tag,
              backend,
              how,
              version,
              inputs,
              cpu: cpuModel(),
              native: how === 'full-source',
              cmakeOptions: recordedCmakeOptions(defs),
              patches: [...LLAMA_SERVER_PATCHES],
              buildSeconds: Math.round((Date.now() - recipeStart) / 1000),
              date: new Date().toISOString(),
              nodeLlamaCppPackage: pkg.dir,
            };
            await writeFile(buildLayout(stage).manifest, JSON.stringify(manifest, null, 2) + '\n');
            await moveIntoPlace(stage, dir);
            return { ok: true, dir, binary: layout.binary, manifest, reused: false };
          } catch (err) {
            await rm(stage, { recursive: true, force: true });
            opts.signal?.throwIfAborted();
            lastError = err instanceof StepError ? err : new StepError(describeError(err), '');
            const next = order[i + 1];
            if (next) emit({ type: 'fallback', from: how, to: next, reason: lastError.message });
          }
        }
        await closeLog();
        return await fail(
          `${order.join(' and ')} failed: ${lastError?.message ?? 'no recipe'} (after ${Math.round((Date.now() - started) / 1000)} s)`,
          lastError?.tail ?? '',
          logPath,
        );
      } finally {
        await closeLog();
        await rm(work, { recursive: true, force: true });
      }
    },
    { signal: opts.signal, onWait: (owner) => emit({ type: 'waiting', owner }) },
  );
}
