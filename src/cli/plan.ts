import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { homeLayout, resolveHome } from '../config/home.js';
import { loadConfig, normaliseConfig, type Config } from '../config/load.js';
import { parseByteSize } from '../config/units.js';
import { readModelSpec } from '../gguf/spec.js';
import type { ModelSpec } from '../gguf/types.js';
import { HeadroomError } from '../lib/errors.js';
import { hardwareSnapshot } from '../monitor/index.js';
import {
  FOOTPRINT_ENGINES,
  defaultBudget,
  formatGB,
  hardwareFromSnapshot,
  planLoad,
  presetFor,
  type FootprintEngine,
  type KvCacheType,
  type LoadPlan,
  type PlanConfig,
  type Variant,
} from '../planner/index.js';
import { ExitCode, UsageError } from './exit.js';
import { intFlag } from './flags.js';
import { table } from './table.js';

/**
 * `headroom plan <model name | path>`: the planner without a daemon. Reads the model's header (never
 * its tensors), the machine's memory, and prints what a load would take on an engine (`--engine`,
 * llama-server unless told otherwise: the daemon's default when its binary is there), the verdict
 * and the configs that fit. Exits 0 for `ok` and `warn`, 6 (refused) for `refuse`; a bad file
 * exits 5 with one line naming the file and the cause.
 */

/** The engine `headroom plan` prices when `--engine` is not given (the daemon's default engine). */
export const DEFAULT_PLAN_ENGINE: FootprintEngine = 'llama-server';

const KV = new Set(['f16', 'q8_0', 'q4_0']);

/** Suffixes that name a quantisation variant: `name-Q8_0.gguf`, `name.F16.gguf`, … */
const VARIANT_RE = /^(.*?)[-_.]((?:B?F(?:16|32))|(?:I?Q\d(?:_[A-Z0-9]+)*))$/i;

class ModelNotFoundError extends HeadroomError {
  constructor(name: string, dirs: string[]) {
    super(
      'model_not_found',
      `no model named "${name}" in ${dirs.join(', ') || 'any model directory'}: give the path of a .gguf file, or put it in one of those directories`,
      { status: 404 },
    );
  }
}

/** The bundled llama.cpp's architectures (node-llama-cpp's list), loaded on first use. */
async function knownArchitectures(): Promise<Set<string>> {
  // A const enum in its typings, an object at run time.
  const mod = (await import('node-llama-cpp')) as unknown as {
    GgufArchitectureType: Record<string, string>;
  };
  return new Set(Object.values(mod.GgufArchitectureType));
}

async function readConfig(home: string): Promise<{ config: Config; baseDir: string }> {
  const file = homeLayout(home).configFile;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return { config: normaliseConfig({}, file), baseDir: home };
    throw new UsageError(`cannot read the config file ${file}: ${(err as Error).message}`);
  }
  return { config: loadConfig(text, file), baseDir: path.dirname(file) };
}

/** A path when it looks like one (a separator or a .gguf ending); else a name in the model directories. */
async function resolveModel(arg: string): Promise<string> {
  if (arg.includes('/') || arg.includes(path.sep) || /\.gguf$/i.test(arg)) return path.resolve(arg);
  const home = resolveHome();
  const { config, baseDir } = await readConfig(home);
  const dirs = [
    ...config.modelDirs.map((d) => path.resolve(baseDir, d)),
    homeLayout(home).modelsDir,
  ];
  const configured = config.models[arg]?.path;
  if (configured) return path.resolve(baseDir, configured);
  for (const dir of dirs) {
    const found = await findModelFile(dir, arg, 0);
    if (found) return found;
  }
  throw new ModelNotFoundError(arg, dirs);
}

/**
 * `<name>.gguf` (or the first part of a split model, `<name>-00001-of-0000N.gguf`) under `dir`, at
 * most 4 levels deep, directories in name order: the daemon's catalog rule (daemon/catalog.ts
 * scanModels, which the CLI may not import). The name is compared, never joined into a path.
 */
async function findModelFile(
  dir: string,
  name: string,
  depth: number,
): Promise<string | undefined> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch {
    return undefined;
  }
  const split = new RegExp(`^(.*)-00001-of-\\d{5}\\.gguf$`, 'i');
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const lower = n.toLowerCase();
    const stem = lower.endsWith('.gguf') ? n.slice(0, -5) : undefined;
    if (stem === name || split.exec(n)?.[1] === name) {
      const file = path.join(dir, n);
      if ((await stat(file).catch(() => undefined))?.isFile()) return file;
    }
  }
  if (depth >= 4) return undefined;
  for (const n of names) {
    if (n.startsWith('.')) continue;
    const sub = path.join(dir, n);
    if (!(await stat(sub).catch(() => undefined))?.isDirectory()) continue;
    const found = await findModelFile(sub, name, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** Other quantisations beside `file` (same stem before the quantisation suffix), read best-effort. */
async function siblingVariants(file: string, signal: AbortSignal): Promise<Variant[]> {
  const dir = path.dirname(file);
  const stem = path.basename(file).replace(/\.gguf$/i, '');
  const m = VARIANT_RE.exec(stem);
  if (!m) return [];
  const base = m[1]!.toLowerCase();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const out: Variant[] = [];
  for (const n of names.sort()) {
    if (!/\.gguf$/i.test(n)) continue;
    const s = n.replace(/\.gguf$/i, '');
    const v = VARIANT_RE.exec(s);
    if (!v || v[1]!.toLowerCase() !== base || s === stem) continue;
    try {
      out.push({ name: v[2]!.toUpperCase(), spec: await readModelSpec(path.join(dir, n), signal) });
    } catch {
      // A broken sibling is not this command's subject.
    }
  }
  return out;
}

function parseFlags(values: Record<string, unknown>): {
  contextSize?: number;
  kv?: KvCacheType;
  flashAttention?: boolean;
  parallel?: number;
  budget?: number;
  engine: FootprintEngine;
} {
  const engine = (values.engine as string | undefined) ?? DEFAULT_PLAN_ENGINE;
  if (!(FOOTPRINT_ENGINES as readonly string[]).includes(engine))
    throw new UsageError(`--engine must be ${FOOTPRINT_ENGINES.join(' or ')}, got "${engine}"`);
  const out: ReturnType<typeof parseFlags> = { engine: engine as FootprintEngine };
  const ctx = intFlag(values, 'ctx');
  if (ctx !== undefined) {
    if (ctx < 16) throw new UsageError(`--ctx must be at least 16, got ${ctx}`);
    out.contextSize = ctx;
  }
  const parallel = intFlag(values, 'parallel');
  if (parallel !== undefined) {
    if (parallel < 1 || parallel > 256)
      throw new UsageError(`--parallel must be between 1 and 256, got ${parallel}`);
    out.parallel = parallel;
  }
  const kv = values.kv as string | undefined;
  if (kv !== undefined) {
    if (!KV.has(kv)) throw new UsageError(`--kv must be f16, q8_0 or q4_0, got "${kv}"`);
    out.kv = kv as KvCacheType;
  }
  const fa = values.fa as string | undefined;
  if (fa !== undefined) {
    if (fa !== 'on' && fa !== 'off') throw new UsageError(`--fa must be on or off, got "${fa}"`);
    out.flashAttention = fa === 'on';
  }
  if (out.kv !== undefined && out.kv !== 'f16' && out.flashAttention === false)
    throw new UsageError(`--kv ${out.kv} needs flash attention: use --fa on, or --kv f16`);
  const budget = values.budget as string | undefined;
  if (budget !== undefined) {
    try {
      out.budget = parseByteSize(budget);
    } catch {
      throw new UsageError(`--budget must be a size such as 8GB or 512MiB, got "${budget}"`);
    }
    if (out.budget <= 0) throw new UsageError(`--budget must be above zero, got "${budget}"`);
  }
  return out;
}

export async function plan(
  values: Record<string, unknown>,
  positionals: string[],
): Promise<number> {
  const [arg, ...extra] = positionals;
  if (!arg) throw new UsageError('headroom plan needs a model name or the path of a .gguf file');
  if (extra.length > 0)
    throw new UsageError(`headroom plan takes one model, got ${positionals.length}`);
  const flags = parseFlags(values);
  const file = await resolveModel(arg);
  const signal = AbortSignal.timeout(60_000);

  const spec = await readModelSpec(file, signal);
  const known = await knownArchitectures();
  if (!known.has(spec.architecture))
    throw new HeadroomError(
      'GGUF_UNKNOWN_ARCHITECTURE',
      `${file}: unknown architecture "${spec.architecture}": the bundled llama.cpp cannot run it, so headroom cannot plan it`,
      { status: 400 },
    );
  const variants = await siblingVariants(file, signal);

  const snapshot = await hardwareSnapshot({ signal });
  const hardware = hardwareFromSnapshot(snapshot);
  const preset = presetFor(snapshot.totalRam);
  const budget = flags.budget ?? defaultBudget(snapshot.totalRam, preset);
  const cgroupRoom =
    hardware.cgroupLimit !== undefined
      ? Math.max(0, hardware.cgroupLimit - (hardware.cgroupUsage ?? 0))
      : Number.POSITIVE_INFINITY;
  const room = Math.min(budget, hardware.available, cgroupRoom);

  const result = planLoad({
    spec,
    request: {
      contextSize: flags.contextSize,
      kv: flags.kv,
      flashAttention: flags.flashAttention,
      parallel: flags.parallel,
    },
    engine: flags.engine,
    available: { bytes: room, gpus: hardware.gpus.map((g) => g.free) },
    hardware,
    level: preset.level,
    variants,
    modelName: path.basename(file),
  });

  if (values.json === true) {
    process.stdout.write(
      JSON.stringify({
        file,
        model: {
          name: spec.name,
          architecture: spec.architecture,
          parameterCount: spec.parameterCount,
          tensorBytes: spec.tensorBytes,
          fileType: spec.fileType,
          contextLength: spec.contextLength,
        },
        machine: {
          totalRam: snapshot.totalRam,
          available: snapshot.available,
          cgroupLimit: snapshot.cgroup?.limit,
          cores: snapshot.cores,
          gpus: snapshot.gpus,
        },
        engine: flags.engine,
        memoryClass: preset.memoryClass,
        level: preset.level,
        budget,
        room,
        verdict: result.verdict,
        reasons: result.reasons,
        guidance: result.guidance,
        causes: result.causes,
        fit: result.fit ?? null,
        config: result.config,
        predicted: result.predicted,
        source: result.source,
        requested: result.requested,
        alternatives: result.alternatives,
        message: result.message,
      }) + '\n',
    );
  } else {
    process.stdout.write(
      render(file, spec, result, {
        budget,
        room,
        preset: preset.memoryClass,
        snapshot,
        engine: flags.engine,
      }),
    );
  }
  return result.verdict === 'refuse' ? ExitCode.refused : ExitCode.ok;
}

function configText(c: PlanConfig): string {
  const fa = c.flashAttention || c.kvCacheValueType !== 'f16' ? 'on' : 'off';
  return `context ${c.contextSize} × ${c.parallel} slot${c.parallel > 1 ? 's' : ''}, batch ${c.batchSize}, flash attention ${fa}, KV ${c.kvCacheKeyType}, mmap ${c.mmap ? 'on' : 'off'}, GPU layers ${c.gpuLayers}`;
}

function render(
  file: string,
  spec: ModelSpec,
  r: LoadPlan,
  m: {
    budget: number;
    room: number;
    preset: string;
    snapshot: { totalRam: number; available: number; cores: number };
    engine: FootprintEngine;
  },
): string {
  const f = r.predicted;
  const t = f.terms;
  const params = `${(spec.parameterCount / 1e6).toFixed(spec.parameterCount < 1e7 ? 1 : 0)}M parameters`;
  const lines: string[] = [];
  lines.push(
    `model    ${file}`,
    `         ${spec.architecture}, ${params}, ${spec.fileType ?? 'unknown type'}, ${formatGB(spec.tensorBytes)} of weights, trained context ${spec.contextLength || 'unknown'}`,
    `machine  ${formatGB(m.snapshot.totalRam)} RAM (${m.preset} class), ${formatGB(m.snapshot.available)} available, ${m.snapshot.cores} cores`,
    `budget   ${formatGB(m.budget)}; room for this load ${formatGB(m.room)}`,
    `verdict  ${r.verdict.toUpperCase()}: ${r.message}`,
    `config   ${r.fit ? configText(r.fit) : `none fits; requested ${configText(r.config)}`}`,
    `engine   ${m.engine}`,
    '',
  );
  const kind = (anon: number, fileB: number): string =>
    anon > 0 && fileB > 0 ? 'anonymous + file-backed' : fileB > 0 ? 'file-backed' : 'anonymous';
  const rows: string[][] = [
    [
      'weights',
      formatGB(f.weights),
      kind(t.weightsAnon, t.weightsFile) +
        (t.weightsGpu > 0 ? `, ${formatGB(t.weightsGpu)} on GPU` : ''),
    ],
    [
      'KV cache',
      formatGB(f.kvCache),
      `${t.contextCells} cells${t.windowCells < t.contextCells ? ` (${t.windowCells} in sliding-window layers)` : ''}${t.recurrentState > 0 ? `, recurrent state ${formatGB(t.recurrentState)}` : ''}, anonymous`,
    ],
    [
      'compute',
      formatGB(f.compute),
      `graph ${formatGB(t.computeGraph)}, work ${formatGB(t.computeWork)}, empirical ${formatGB(t.modelExtra)}, output ${formatGB(t.outputBuffer)}`,
    ],
    [
      'overhead',
      formatGB(f.overhead),
      `runtime ${formatGB(t.runtimeAnon + t.runtimeFile)}, growth while filling ${formatGB(t.runtimeGrowth)}, model host ${formatGB(t.modelHost)}, slots ${formatGB(t.slotHost)}` +
        (t.contextCheckpoints > 0 ? `, context checkpoints ${formatGB(t.contextCheckpoints)}` : ''),
    ],
    [
      'total (peak RSS)',
      formatGB(f.total),
      r.source === 'measured' ? 'measured' : 'predicted, context full',
    ],
    ['  anonymous', formatGB(f.byKind.anonymous), ''],
    ['  file-backed', formatGB(f.byKind.fileBacked), 'reclaimable, shared'],
  ];
  f.byDevice.gpus.forEach((b, i) => rows.push([`GPU ${i}`, formatGB(b), '']));
  lines.push(table(['TERM', 'BYTES', 'NOTE'], rows), '');
  if (r.reasons.length > 0) {
    lines.push('reasons');
    for (const x of r.reasons) lines.push(`  - ${x}`);
  }
  if (r.guidance.length > 0) {
    lines.push('guidance');
    for (const x of r.guidance) lines.push(`  - ${x}`);
  }
  if (r.alternatives.length > 0) {
    lines.push(
      '',
      'alternatives that fit',
      table(
        ['CONTEXT', 'KV', 'BATCH', 'FA', 'TOTAL', 'VARIANT'],
        r.alternatives.map((a) => [
          String(a.config.contextSize),
          a.config.kvCacheKeyType,
          String(a.config.batchSize),
          a.config.flashAttention ? 'on' : 'off',
          formatGB(a.footprint.total),
          a.variant ?? '-',
        ]),
      ),
    );
  }
  return lines.join('\n') + '\n';
}
