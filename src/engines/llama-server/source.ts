import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import envPaths from 'env-paths';
import {
  RECIPE_VERSION,
  cacheKey,
  platformPackage,
  type Backend,
  type BuildInputs,
} from './build.js';

/**
 * Where the inputs of a llama-server build are: node-llama-cpp's package (its version, the bundled
 * llama.cpp source and release tag) and its platform packages (prebuilt libraries), and where the
 * products go. Small synchronous reads: called once per build or resolution.
 */

/** node-llama-cpp as installed beside headroom. */
export interface NodeLlamaCppPackage {
  dir: string;
  version: string;
  /** llama.cpp's release tag, from llama/llama.cpp.info.json. */
  tag: string;
  /** The git bundle of llama.cpp's source. */
  bundle: string;
}

const require = createRequire(import.meta.url);

/** Finds the installed node-llama-cpp, or throws with what is missing. */
export function nodeLlamaCppPackage(): NodeLlamaCppPackage {
  // The package's exports hide package.json: resolve its entry and walk up to the package root.
  let dir = path.dirname(require.resolve('node-llama-cpp'));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('node-llama-cpp: package.json not found');
    dir = up;
  }
  const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
    version: string;
  };
  const info = JSON.parse(readFileSync(path.join(dir, 'llama', 'llama.cpp.info.json'), 'utf8')) as {
    tag: string;
  };
  return {
    dir,
    version: pkg.version,
    tag: info.tag,
    bundle: path.join(dir, 'llama', 'gitRelease.bundle'),
  };
}

/**
 * The folder of headroom's llama.cpp patches (LLAMA_SERVER_PATCHES), found from the package root
 * so that it is the same from dist/ and from source under the test runner.
 */
export function patchesDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the headroom package root');
    dir = up;
  }
  return path.join(dir, 'src', 'engines', 'llama-server', 'patches');
}

/** The build inputs of this machine and this node-llama-cpp. */
export function buildInputs(pkg: NodeLlamaCppPackage): BuildInputs {
  return {
    nodeLlamaCpp: pkg.version,
    tag: pkg.tag,
    platform: process.platform,
    arch: process.arch,
    recipe: RECIPE_VERSION,
  };
}

/** This machine's CPU model, as build.json records it. */
export function cpuModel(): string {
  return os.cpus()[0]?.model.trim() ?? 'unknown';
}

/**
 * The folder that holds built engines: `$HEADROOM_ENGINE_CACHE`, else the platform's cache folder
 * (`~/.cache/headroom/engines` on Linux). Outside `$HEADROOM_HOME` (tests use temporary homes) and
 * outside the clone (fresh clones on one machine share one build).
 */
export function engineCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.HEADROOM_ENGINE_CACHE;
  if (fromEnv && fromEnv.trim() !== '') return path.resolve(fromEnv);
  return path.join(envPaths('headroom', { suffix: '' }).cache, 'engines');
}

/** `<engine cache>/llama-server`: one folder per build key. */
export function llamaServerCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(engineCacheDir(env), 'llama-server');
}

/** The folder of one build: `<engine cache>/llama-server/<tag>-<backend>-<hash>`. */
export function buildDir(
  inputs: BuildInputs,
  backend: Backend,
  env: NodeJS.ProcessEnv = process.env,
): string {
  return path.join(llamaServerCacheDir(env), cacheKey(inputs, backend));
}

/** The layout of a build folder. */
export function buildLayout(dir: string): {
  binary: string;
  manifest: string;
  failed: string;
} {
  return {
    binary: path.join(
      dir,
      'bin',
      process.platform === 'win32' ? 'llama-server.exe' : 'llama-server',
    ),
    manifest: path.join(dir, 'build.json'),
    failed: path.join(dir, 'failed.json'),
  };
}

/**
 * The bins folder of node-llama-cpp's platform package for a backend, with its file names, or
 * undefined when that package is not installed (optional dependencies are per platform).
 */
export function prebuiltBins(
  pkg: NodeLlamaCppPackage,
  backend: Backend,
): { dir: string; files: string[] } | undefined {
  const name = platformPackage(process.platform, process.arch, backend);
  if (!name) return undefined;
  let entry: string;
  try {
    // Resolved from node-llama-cpp's folder, where npm puts its optional dependencies. The
    // package exports only its entry (dist/index.js); the bins folder is beside dist/.
    entry = createRequire(path.join(pkg.dir, 'package.json')).resolve(`@node-llama-cpp/${name}`);
  } catch {
    return undefined;
  }
  const dir = path.join(path.dirname(entry), '..', 'bins', name);
  try {
    return { dir, files: readdirSync(dir) };
  } catch {
    return undefined;
  }
}
