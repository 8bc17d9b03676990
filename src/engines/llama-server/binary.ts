import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile, realpath, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describeError } from '../../lib/errors.js';
import {
  BACKEND_PREFERENCE,
  estimateText,
  parseVersionOutput,
  runsOnCpu,
  type Backend,
  type BuildFailure,
  type BuildHow,
  type BuildManifest,
} from './build.js';
import { buildDir, buildInputs, buildLayout, cpuModel, nodeLlamaCppPackage } from './source.js';

/**
 * Which llama-server headroom runs. In order: the path configured explicitly, a `llama-server` on
 * PATH, then the one `headroom engines build` (or npm install) built into the engine cache for this
 * node-llama-cpp's llama.cpp tag. Resolving a built binary reads two small files and starts no
 * process; a configured or PATH binary is asked `--version` once per file (memoised by path, size
 * and mtime).
 */

/** How the binary was found. */
export type LlamaServerObtained = 'config' | 'path' | 'built';

export interface LlamaServerBinary {
  unavailable?: false;
  /** Absolute path of the executable. */
  path: string;
  /** The version line it prints, e.g. `version: 1 (de3ff81)`. */
  version: string;
  /** What it was built for: known for built binaries; `unknown` for others. */
  backend: Backend | 'unknown';
  obtained: LlamaServerObtained;
  /** For built binaries: how, and its build folder. */
  how?: BuildHow;
  buildDir?: string;
}

export interface LlamaServerUnavailable {
  unavailable: true;
  /** What is missing, in one sentence. */
  reason: string;
  /** What to do about it. */
  fix: string;
}

export type LlamaServerResolution = LlamaServerBinary | LlamaServerUnavailable;

export interface ResolveOptions {
  /** An explicit path (from the config): used as given, never skipped when it fails. */
  configuredPath?: string;
  /** PATH and HEADROOM_ENGINE_CACHE come from here. Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

/** Finds an executable named `name` on env.PATH. */
export async function findExecutable(
  name: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  if (name.includes('/')) return (await isExecutable(name)) ? path.resolve(name) : undefined;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    const s = await stat(file);
    if (!s.isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const versions = new Map<string, { size: number; mtimeMs: number; version: string }>();

/**
 * `<binary> --version`, memoised by path, size and mtime. llama-server prints it to stderr and
 * exits 0; rejects when it does not run or prints no version line.
 */
export async function binaryVersion(binary: string, signal?: AbortSignal): Promise<string> {
  const s = await stat(binary);
  const known = versions.get(binary);
  if (known && known.size === s.size && known.mtimeMs === s.mtimeMs) return known.version;
  const output = await new Promise<string>((resolve, reject) => {
    execFile(
      binary,
      ['--version'],
      { timeout: 30_000, signal, maxBuffer: 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${binary} --version failed: ${describeError(err)}`));
        else resolve(`${stdout}\n${stderr}`);
      },
    );
  });
  const version = parseVersionOutput(output);
  if (!version) throw new Error(`${binary} --version printed no version line`);
  versions.set(binary, { size: s.size, mtimeMs: s.mtimeMs, version });
  return version;
}

/** Whether two paths name the same file (symbolic links followed); false when either is gone. */
async function samePath(a: string, b: string): Promise<boolean> {
  const [ra, rb] = await Promise.all([realpath(a).catch(() => a), realpath(b).catch(() => b)]);
  return ra === rb;
}

/** The built binary for this node-llama-cpp, the best backend first; or the failure recorded. */
export async function findBuilt(
  env: NodeJS.ProcessEnv = process.env,
): Promise<
  | { built: LlamaServerBinary; manifest: BuildManifest }
  | { failure?: BuildFailure; tag: string; nodeLlamaCpp: string }
> {
  const pkg = nodeLlamaCppPackage();
  const inputs = buildInputs(pkg);
  let failure: BuildFailure | undefined;
  for (const backend of BACKEND_PREFERENCE) {
    const dir = buildDir(inputs, backend, env);
    const layout = buildLayout(dir);
    let manifest: BuildManifest | undefined;
    try {
      manifest = JSON.parse(await readFile(layout.manifest, 'utf8')) as BuildManifest;
    } catch {
      failure ??= await readFile(layout.failed, 'utf8').then(
        (t) => JSON.parse(t) as BuildFailure,
        () => undefined,
      );
      continue;
    }
    if (!(await isExecutable(layout.binary))) continue;
    if (!runsOnCpu(manifest, cpuModel())) {
      failure ??= {
        reason: `the build in ${dir} was compiled for another CPU (${manifest.cpu})`,
        fix: 'run `headroom engines build` to build it for this one',
        logTail: '',
        date: manifest.date,
        inputs,
      };
      continue;
    }
    return {
      built: {
        path: layout.binary,
        version: manifest.version,
        backend: manifest.backend,
        obtained: 'built',
        how: manifest.how,
        buildDir: dir,
      },
      manifest,
    };
  }
  return { failure, tag: pkg.tag, nodeLlamaCpp: pkg.version };
}

/** Resolves the llama-server to run. See the module comment for the order. */
export async function resolveLlamaServer(
  opts: ResolveOptions = {},
): Promise<LlamaServerResolution> {
  const env = opts.env ?? process.env;

  if (opts.configuredPath !== undefined && opts.configuredPath !== '') {
    const configured = path.resolve(opts.configuredPath);
    if (!(await isExecutable(configured)))
      return {
        unavailable: true,
        reason: `the configured llama-server ${configured} is not an executable file`,
        fix: 'point the configuration at a llama-server binary, or remove the setting to use the one on PATH or the built one',
      };
    // The configuration may name headroom's own build: then it carries the build's patches.
    const built = await findBuilt(env).catch(() => undefined);
    if (built && 'built' in built && (await samePath(built.built.path, configured)))
      return built.built;
    try {
      const version = await binaryVersion(configured, opts.signal);
      return { path: configured, version, backend: 'unknown', obtained: 'config' };
    } catch (err) {
      opts.signal?.throwIfAborted();
      return {
        unavailable: true,
        reason: `the configured llama-server does not run: ${describeError(err)}`,
        fix: 'point the configuration at a working llama-server, or remove the setting to use the one on PATH or the built one',
      };
    }
  }

  // A llama-server on PATH that does not run is passed over (the built one may), not fatal.
  const onPath = await findExecutable('llama-server', env);
  let pathProblem = '';
  if (onPath) {
    try {
      const version = await binaryVersion(onPath, opts.signal);
      return { path: onPath, version, backend: 'unknown', obtained: 'path' };
    } catch (err) {
      opts.signal?.throwIfAborted();
      pathProblem = ` (${onPath} on PATH does not run: ${describeError(err)})`;
    }
  }

  let found: Awaited<ReturnType<typeof findBuilt>>;
  try {
    found = await findBuilt(env);
  } catch (err) {
    return {
      unavailable: true,
      reason: `no llama-server on PATH${pathProblem}, and node-llama-cpp's llama.cpp source was not found: ${describeError(err)}`,
      fix: 'run `npm install` in headroom, or put a llama-server on PATH',
    };
  }
  if ('built' in found) return found.built;
  if (found.failure)
    return {
      unavailable: true,
      reason: `no llama-server on PATH${pathProblem}, and no usable build: ${found.failure.reason}`,
      fix: found.failure.fix,
    };
  return {
    unavailable: true,
    reason: `no llama-server on PATH${pathProblem}, and none built for llama.cpp ${found.tag} (node-llama-cpp ${found.nodeLlamaCpp})`,
    fix: `run \`headroom engines build\` (needs cmake and a C++ compiler; ${estimateText('prebuilt-libs', os.availableParallelism())} here), or put a llama-server on PATH`,
  };
}
