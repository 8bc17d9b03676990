import { createHash } from 'node:crypto';

/**
 * Pure helpers of the llama-server build: the cache key, the cmake argv of both recipes, the
 * prebuilt libraries' names, progress parsing and its display. No file system, no processes:
 * builder.ts runs them.
 */

/** Which ggml backend the binary drives. */
export type Backend = 'cpu' | 'cuda' | 'vulkan' | 'metal';
export const BACKENDS: readonly Backend[] = ['cpu', 'cuda', 'vulkan', 'metal'];

/**
 * How the binary was made: `prebuilt-libs` compiles only the server (and mtmd, cpp-httplib) against
 * the ggml/llama/common libraries node-llama-cpp's platform package ships; `full-source` compiles
 * everything from the bundled llama.cpp source into one static binary.
 */
export type BuildHow = 'prebuilt-libs' | 'full-source';

/**
 * Bump when a recipe changes in a way that changes the product (flags, copied files, a patch in
 * LLAMA_SERVER_PATCHES): the cache key changes with it, so an old build is never mistaken for a
 * new one.
 */
export const RECIPE_VERSION = 4;

/**
 * headroom's patches to llama.cpp, files in src/engines/llama-server/patches/, applied in this
 * order with `git apply` to the cloned source before either recipe compiles it. One that does not
 * apply fails the build (failed.json names it): a server without it would lack what the engine's
 * capabilities promise.
 * - cancel-prompt.patch: a client that disconnects stops its prompt's evaluation within ~100 ms
 *   (capabilities.cancelsPromptEvaluation).
 * - keep-alive-stream.patch: a streamed answer leaves its connection open for the next request
 *   (capabilities.keepAliveAfterStream).
 * - slot-checkpoints.patch: a saved slot of a model with sliding-window or recurrent layers is
 *   gone on from after its restore (state.reusesRestored).
 */
export const LLAMA_SERVER_PATCHES: readonly string[] = [
  'cancel-prompt.patch',
  'keep-alive-stream.patch',
  'slot-checkpoints.patch',
];

/** What the product depends on; hashed into the cache key. */
export interface BuildInputs {
  /** node-llama-cpp's version: its bundle and its platform packages come with it. */
  nodeLlamaCpp: string;
  /** The llama.cpp release tag of the bundle (llama.cpp.info.json). */
  tag: string;
  platform: string;
  arch: string;
  recipe: number;
}

/** Written beside the binary: what it is and how it was made. */
export interface BuildManifest {
  tag: string;
  backend: Backend;
  how: BuildHow;
  /** `llama-server --version`, first line, as the binary printed it after the build. */
  version: string;
  inputs: BuildInputs;
  /** The CPU model it was built on. */
  cpu: string;
  /**
   * Compiled for that CPU only (full-source, GGML_NATIVE). The prebuilt libraries carry a variant
   * per CPU family and pick one at run time, so they run anywhere the platform does.
   */
  native: boolean;
  /** cmake's configure arguments (without the machine's paths). */
  cmakeOptions: string[];
  /** LLAMA_SERVER_PATCHES as applied to the source. */
  patches?: string[];
  buildSeconds: number;
  /** ISO 8601. */
  date: string;
  nodeLlamaCppPackage?: string;
}

/** Written instead of a binary when no recipe worked; `headroom engines` shows it. */
export interface BuildFailure {
  reason: string;
  /** The end of the failing step's output. */
  logTail: string;
  fix: string;
  date: string;
  inputs: BuildInputs;
}

/**
 * Whether a build runs on a machine with this CPU model. The CPU is not in the cache key, so a
 * portable build survives a move to another CPU (a VM migrated, a shared home folder); a native one
 * is rebuilt there instead.
 */
export function runsOnCpu(manifest: Pick<BuildManifest, 'native' | 'cpu'>, cpu: string): boolean {
  return !manifest.native || manifest.cpu === cpu;
}

/** A short stable hash of the inputs (key order does not matter). */
export function inputsHash(inputs: BuildInputs): string {
  const sorted = Object.fromEntries(
    Object.entries(inputs).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 10);
}

/** The cache folder name of a build: `<tag>-<backend>-<hash>`, e.g. `v0.5.0-cpu-1a2b3c4d5e`. */
export function cacheKey(inputs: BuildInputs, backend: Backend): string {
  const tag = inputs.tag.replace(/[^A-Za-z0-9._-]/g, '_');
  return `${tag}-${backend}-${inputsHash(inputs)}`;
}

/** Parses a folder name made by cacheKey. */
export function parseCacheKey(
  name: string,
): { tag: string; backend: Backend; hash: string } | undefined {
  const m = /^(.+)-(cpu|cuda|vulkan|metal)-([0-9a-f]{10})$/.exec(name);
  if (!m) return undefined;
  return { tag: m[1]!, backend: m[2] as Backend, hash: m[3]! };
}

/**
 * Backends in the order a resolver prefers them when several are built: a GPU build also runs on
 * the CPU (ggml loads the backends it can and skips the rest), so it is never worse.
 */
export const BACKEND_PREFERENCE: readonly Backend[] = ['metal', 'cuda', 'vulkan', 'cpu'];

/**
 * The backend to build for: the first GPU type node-llama-cpp finds usable on this machine (its
 * `getLlamaGpuTypes('supported')`), else the CPU.
 */
export function chooseBackend(supportedGpuTypes: readonly string[]): Backend {
  for (const b of BACKEND_PREFERENCE) if (b !== 'cpu' && supportedGpuTypes.includes(b)) return b;
  return 'cpu';
}

/**
 * node-llama-cpp's platform package for a platform, arch and backend, as it names them:
 * `@node-llama-cpp/linux-x64`, `…/linux-x64-cuda`, `…/mac-arm64-metal`. The binaries are under
 * `bins/<the same suffix>/`. Undefined where it ships none.
 */
export function platformPackage(
  platform: string,
  arch: string,
  backend: Backend,
): string | undefined {
  if (platform === 'darwin') {
    if (arch === 'arm64') return backend === 'metal' ? 'mac-arm64-metal' : undefined;
    if (arch === 'x64') return backend === 'cpu' ? 'mac-x64' : undefined;
    return undefined;
  }
  if (platform === 'linux') {
    if (backend === 'metal') return undefined;
    const base = arch === 'arm' ? 'linux-armv7l' : `linux-${arch}`;
    return backend === 'cpu' ? base : `${base}-${backend}`;
  }
  return undefined;
}

/** The four libraries the server links, by file name, in a platform package's bins folder. */
export interface PrebuiltLibs {
  ggmlBase: string;
  ggml: string;
  llama: string;
  llamaCommon: string;
}

/**
 * Picks the libraries the server links from a bins folder's file names. Their names carry the
 * variant and version (`libllama.cuda.v0.5.0.so`, `libggml.v0.5.0.dylib`); the ggml backends
 * (`libggml-cpu-haswell.so`, `libggml-cuda.so`) are loaded at run time and not linked.
 */
export function pickPrebuiltLibs(files: readonly string[]): PrebuiltLibs | undefined {
  const ext = String.raw`\.(?:so|dylib)$`;
  const find = (re: RegExp): string | undefined => files.filter((f) => re.test(f)).sort()[0];
  const ggmlBase = find(new RegExp(`^libggml-base${ext}`));
  const ggml = find(new RegExp(`^libggml(?:\\.[A-Za-z0-9_.]+)?${ext}`));
  const llama = find(new RegExp(`^libllama(?:\\.[A-Za-z0-9_.]+)?${ext}`));
  const llamaCommon = find(new RegExp(`^libllama-common${ext}`));
  if (!ggmlBase || !ggml || !llama || !llamaCommon) return undefined;
  return { ggmlBase, ggml, llama, llamaCommon };
}

/** The libraries to copy beside the binary: every shared library of the bins folder. */
export function runtimeLibs(files: readonly string[]): string[] {
  return files.filter((f) => /\.(?:so|dylib)$/.test(f)).sort();
}

/** cmake definitions shared by both recipes: what headroom needs of the server, offline. */
const COMMON_DEFS = [
  '-DCMAKE_BUILD_TYPE=Release',
  // The web UI comes from a download (no network here) or an npm build; headroom serves its own.
  '-DLLAMA_BUILD_UI=OFF',
  '-DLLAMA_USE_PREBUILT_UI=OFF',
  // HTTPS is for downloading models from Hugging Face; headroom gives local paths. The prebuilt
  // llama-common has cpp-httplib without OpenSSL too, so both sides agree on its classes.
  '-DLLAMA_OPENSSL=OFF',
];

/** Configure arguments for the full-source recipe (the llama.cpp tree's own CMakeLists). */
export function fullSourceCmakeDefs(backend: Backend): string[] {
  const defs = [
    ...COMMON_DEFS,
    // One static executable: nothing to find at run time, so it can be moved.
    '-DBUILD_SHARED_LIBS=OFF',
    '-DLLAMA_BUILD_TESTS=OFF',
    '-DLLAMA_BUILD_EXAMPLES=OFF',
    '-DLLAMA_BUILD_APP=OFF',
    '-DGGML_NATIVE=ON',
    '-DGGML_CCACHE=OFF',
  ];
  if (backend === 'cuda') defs.push('-DGGML_CUDA=ON');
  if (backend === 'vulkan') defs.push('-DGGML_VULKAN=ON');
  if (backend === 'metal') defs.push('-DGGML_METAL=ON');
  return defs;
}

/** Configure arguments for the prebuilt-libs recipe (server-project.ts's CMakeLists). */
export function prebuiltCmakeDefs(
  llamaSrc: string,
  prebuiltDir: string,
  libs: PrebuiltLibs,
): string[] {
  return [
    ...COMMON_DEFS,
    `-DLLAMA_SRC=${llamaSrc}`,
    `-DLLAMA_PREBUILT_DIR=${prebuiltDir}`,
    `-DGGML_BASE_LIB=${libs.ggmlBase}`,
    `-DGGML_LIB=${libs.ggml}`,
    `-DLLAMA_LIB=${libs.llama}`,
    `-DLLAMA_COMMON_LIB=${libs.llamaCommon}`,
  ];
}

/** The options recorded in build.json: the definitions without this machine's paths. */
export function recordedCmakeOptions(defs: readonly string[]): string[] {
  return defs.filter((d) => !/^-D(LLAMA_SRC|LLAMA_PREBUILT_DIR)=/.test(d));
}

/** Build progress: compile steps done of all (ninja) or a percentage (make). */
export type Progress = { done: number; total: number } | { percent: number };

/** Reads one line of build output: ninja's `[12/204] …` or make's `[ 45%] …`. */
export function parseProgress(line: string): Progress | undefined {
  const ninja = /^\[(\d+)\/(\d+)\]/.exec(line);
  if (ninja) {
    const total = Number(ninja[2]);
    if (total > 0) return { done: Number(ninja[1]), total };
  }
  const make = /^\[\s*(\d+)%\]/.exec(line);
  if (make) return { percent: Math.min(100, Number(make[1])) };
  return undefined;
}

/** 0..100 of a progress reading. */
export function progressPercent(p: Progress): number {
  if ('percent' in p) return p.percent;
  return Math.min(100, Math.floor((100 * p.done) / p.total));
}

/** A one-line bar for a terminal: `[########------------]  40% (82/204)`. */
export function progressBar(p: Progress, width = 24): string {
  const pct = progressPercent(p);
  const filled = Math.round((pct / 100) * width);
  const counts = 'done' in p ? ` (${p.done}/${p.total})` : '';
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(pct).padStart(3)}%${counts}`;
}

/**
 * Wall seconds each recipe took on the 2-core reference machine (docs/BENCHMARKS.md, "llama-server
 * build"), used to say at the start how long a build usually takes.
 */
export const REFERENCE_SECONDS_2_CORES: Record<BuildHow, number> = {
  'prebuilt-libs': 200,
  'full-source': 370,
};

/**
 * Usual wall time of a recipe with `jobs` parallel compiles, e.g. "about 3 min". More cores help
 * until the few large server sources, compiled one per core, set the pace (a third of the 2-core
 * time, by the build's shape).
 */
export function estimateText(how: BuildHow, jobs: number): string {
  const ref = REFERENCE_SECONDS_2_CORES[how];
  const seconds = Math.max(ref / 3, (ref * 2) / Math.max(1, jobs));
  if (seconds < 90) return 'about 1 min';
  return `about ${Math.round(seconds / 60)} min`;
}

/** The last `maxLines` lines of a log, each cut to `maxChars`. */
export function logTail(text: string, maxLines = 20, maxChars = 300): string {
  const lines = text.replace(/\s+$/, '').split('\n');
  return lines
    .slice(-maxLines)
    .map((l) => (l.length > maxChars ? `${l.slice(0, maxChars)}…` : l))
    .join('\n');
}

/** First line of `llama-server --version` that says the version (it prints to stderr). */
export function parseVersionOutput(text: string): string | undefined {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return lines.find((l) => /^version:/i.test(l)) ?? undefined;
}
