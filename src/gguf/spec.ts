/**
 * ModelSpec: what the planner needs of a model, derived from a GGUF header. Hyper-parameters are
 * read under `{general.architecture}.*` (llama.cpp's convention, followed by every writer), so
 * qwen2, gemma, phi3 and the rest need no per-architecture code.
 */
import path from 'node:path';
import { fileTypeName } from './constants.js';
import { GgufError, readGguf, type GgufFile, type GgufValue } from './reader.js';
import type { ModelSpec } from './types.js';

/** `specFromGguf` for the file at `file`; split models (`x-00001-of-00003.gguf`) are summed over every part. */
export async function readModelSpec(file: string, signal?: AbortSignal): Promise<ModelSpec> {
  const first = await readGguf(file, { signal });
  const parts = splitCount(first);
  if (parts <= 1) return specFromGguf(first);
  const m = SPLIT_NAME.exec(path.basename(first.path));
  if (!m) {
    throw new GgufError(
      'GGUF_UNSUPPORTED_MODEL',
      first.path,
      0,
      `is part of a model split into ${parts} files, but its name does not follow the "<name>-00001-of-0000N.gguf" pattern, so the other parts cannot be found`,
    );
  }
  const files = [first];
  const width = m[2]!.length;
  for (let i = 2; i <= parts; i++) {
    const name = `${m[1]}-${String(i).padStart(width, '0')}-of-${m[3]}.gguf`;
    files.push(await readGguf(path.join(path.dirname(first.path), name), { signal }));
  }
  return specFromGguf(first, files.slice(1));
}

const SPLIT_NAME = /^(.*)-(\d+)-of-(\d+)\.gguf$/i;

function splitCount(file: GgufFile): number {
  const v = file.metadata.get('split.count');
  return typeof v === 'number' && Number.isInteger(v) && v > 1 ? v : 1;
}

/**
 * Derives a ModelSpec from a header. `extraParts` are the other files of a split model: their
 * tensors count towards the parameter and byte totals. Throws `GgufError` GGUF_UNSUPPORTED_MODEL
 * when `general.architecture`, `{arch}.block_count` or `{arch}.embedding_length` is missing or
 * not a positive integer.
 */
export function specFromGguf(file: GgufFile, extraParts: readonly GgufFile[] = []): ModelSpec {
  const md = file.metadata;
  const fail = (problem: string): GgufError =>
    new GgufError('GGUF_UNSUPPORTED_MODEL', file.path, 0, problem);

  const architecture = md.get('general.architecture');
  if (typeof architecture !== 'string' || architecture.length === 0) {
    throw fail(
      'general.architecture is missing: headroom needs it to find the model\'s hyper-parameters ("{architecture}.block_count", ...)',
    );
  }
  const key = (k: string): string => `${architecture}.${k}`;

  /** Integer values of a key (a scalar is one value); undefined when absent. */
  const ints = (k: string): number[] | undefined => {
    const v = md.get(k);
    if (v === undefined) return undefined;
    const list = toNumbers(v);
    if (!list || !list.every((n) => Number.isSafeInteger(n) && n >= 0))
      throw fail(`${k} must be a non-negative integer (or a list of them), got ${describe(v)}`);
    return list;
  };
  const maxOf = (k: string): number | undefined => {
    const list = ints(k);
    return list === undefined ? undefined : list.reduce((a, b) => Math.max(a, b), 0);
  };
  const required = (k: string): number => {
    const v = maxOf(k);
    if (v === undefined)
      throw fail(`${k} is missing: headroom cannot plan memory for this model without it`);
    if (v <= 0) throw fail(`${k} must be positive, got ${v}`);
    return v;
  };

  const layers = required(key('block_count'));
  const embeddingSize = required(key('embedding_length'));
  const headCountList = ints(key('attention.head_count'));
  const headCount = max(headCountList) ?? 0;
  const kvList = ints(key('attention.head_count_kv'));
  const headCountKv = max(kvList) ?? headCount;
  const defaultHeadDim = headCount > 0 ? Math.floor(embeddingSize / headCount) : 0;
  const headDimK = maxOf(key('attention.key_length')) ?? defaultHeadDim;
  const headDimV = maxOf(key('attention.value_length')) ?? defaultHeadDim;
  const ffList = ints(key('feed_forward_length'));

  let parameterCount = 0;
  let tensorBytes = 0;
  const bytesByType: Record<string, number> = Object.create(null) as Record<string, number>;
  for (const part of [file, ...extraParts]) {
    for (const t of part.tensors) {
      parameterCount += t.elements;
      tensorBytes += t.bytes;
      bytesByType[t.typeName] = (bytesByType[t.typeName] ?? 0) + t.bytes;
    }
  }

  const spec: ModelSpec = {
    architecture,
    parameterCount,
    tensorBytes,
    bytesByType: { ...bytesByType },
    layers,
    embeddingSize,
    feedForwardSize: max(ffList) ?? 0,
    headCount,
    headCountKv,
    headDimK,
    headDimV,
    contextLength: maxOf(key('context_length')) ?? 0,
    vocabSize: vocabSize(file, key('vocab_size'), maxOf),
    hasChatTemplate: typeof md.get('tokenizer.chat_template') === 'string',
  };
  const name = md.get('general.name');
  if (typeof name === 'string') spec.name = name;
  const ftype = md.get('general.file_type');
  if (typeof ftype === 'number' && Number.isInteger(ftype) && ftype >= 0)
    spec.fileType = fileTypeName(ftype);
  const swa = SWA_PATTERNS[architecture];
  const sliding = maxOf(key('attention.sliding_window')) ?? swa?.window;
  if (sliding !== undefined && sliding > 0) {
    spec.slidingWindow = sliding;
    if (swa)
      spec.slidingWindowLayers = swaLayers(
        md.get(key('attention.sliding_window_pattern')),
        layers,
        swa,
      );
  }
  const experts = maxOf(key('expert_count'));
  if (experts !== undefined && experts > 0) {
    spec.expertCount = experts;
    const used = maxOf(key('expert_used_count'));
    if (used !== undefined && used > 0) spec.expertUsedCount = used;
  }
  const recurrent = RECURRENT[architecture];
  if (recurrent) {
    const flags = recurrentLayers(recurrent, layers, kvList, ffList, (k) => md.get(key(k)));
    const perLayer = recurrentBytesPerLayer((k) => maxOf(key(k)));
    if (flags.some(Boolean)) {
      spec.recurrentLayers = flags;
      if (perLayer !== undefined)
        spec.recurrentStateBytes = perLayer * flags.filter(Boolean).length;
    }
  }
  if (kvList && kvList.length > 1) spec.headCountKvPerLayer = kvList;
  if (ffList && ffList.length > 1) spec.feedForwardSizePerLayer = ffList;
  return spec;
}

/**
 * The architectures whose llama.cpp loader (the version node-llama-cpp bundles) gives some layers
 * a sliding-window KV cache, with its default pattern: in each `period` of layers all but the
 * last attend within the window. `window`: what it assumes when the file gives none (otherwise
 * such a file has no sliding window). Any other architecture keeps a whole-context cache in every
 * layer whatever its `sliding_window` key says (llama.cpp ignores it for `llama`, Mistral's
 * files among them), so planning it whole is exact, not only safe. Architectures with more to
 * them (per-layer head sizes, layers sharing a cache, chunked attention) are left out: whole is an
 * overestimate for them.
 */
const SWA_PATTERNS: Readonly<Record<string, { period: number; window?: number }>> = {
  gemma2: { period: 2, window: 4096 },
  gemma3: { period: 6 },
  cohere2: { period: 4 },
  'gpt-oss': { period: 2 },
  olmo2: { period: 4 },
};

/**
 * One flag per layer, as llama.cpp reads `{arch}.attention.sliding_window_pattern`: a list of
 * flags (one per layer), else a period (0: every layer), else the architecture's own period.
 */
function swaLayers(
  pattern: GgufValue | undefined,
  layers: number,
  arch: { period: number },
): boolean[] {
  const listed = layerFlags(pattern, layers);
  if (listed) return listed;
  const explicit = pattern === undefined ? undefined : toNumbers(pattern);
  const period =
    explicit?.length === 1 && Number.isSafeInteger(explicit[0]) && explicit[0]! >= 0
      ? explicit[0]!
      : arch.period;
  return Array.from({ length: layers }, (_, i) => period === 0 || i % period < period - 1);
}

/**
 * A per-layer key given as one flag per layer (booleans, or numbers: non-zero is set), as
 * llama.cpp's get_arr reads it; undefined when the value is no such list (absent, or a scalar).
 */
function layerFlags(v: GgufValue | undefined, layers: number): boolean[] | undefined {
  if (Array.isArray(v) && v.length > 0 && typeof v[0] === 'boolean')
    return Array.from({ length: layers }, (_, i) => v[i] === true);
  const numbers = v === undefined ? undefined : toNumbers(v);
  if (numbers && numbers.length > 1)
    return Array.from({ length: layers }, (_, i) => (numbers[i] ?? 0) !== 0);
  return undefined;
}

/**
 * The architectures with recurrent layers whose llama.cpp loaders (the version node-llama-cpp
 * bundles) use Mamba's state sizes, and how each marks its recurrent layers: every layer; the
 * layers without KV heads (and, for nemotron_h, without a feed-forward); or
 * `{arch}.attention.recurrent_layers`, else all but every `full_attention_interval`-th (4).
 * Others (RWKV, LFM2's short convolutions, Falcon-H1's parallel blocks, Kimi's delta attention)
 * size their state otherwise and are left out: their state is not planned.
 */
const RECURRENT: Readonly<Record<string, 'all' | 'no-kv' | 'no-kv-no-ff' | 'interval'>> = {
  mamba: 'all',
  mamba2: 'all',
  jamba: 'no-kv',
  granitehybrid: 'no-kv',
  nemotron_h: 'no-kv-no-ff',
  qwen3next: 'interval',
  qwen35: 'interval',
  qwen35moe: 'interval',
};

function recurrentLayers(
  rule: (typeof RECURRENT)[string],
  layers: number,
  kv: number[] | undefined,
  ff: number[] | undefined,
  get: (k: string) => GgufValue | undefined,
): boolean[] {
  const each = (f: (i: number) => boolean): boolean[] =>
    Array.from({ length: layers }, (_, i) => f(i));
  // A scalar stands for every layer, as llama.cpp's get_key_or_arr reads it.
  const at = (list: number[] | undefined, i: number): number | undefined =>
    list === undefined ? undefined : list.length === 1 ? list[0] : list[i];
  switch (rule) {
    case 'all':
      return each(() => true);
    case 'no-kv':
      return each((i) => at(kv, i) === 0);
    case 'no-kv-no-ff':
      return each((i) => at(kv, i) === 0 && at(ff, i) === 0);
    case 'interval': {
      const listed = layerFlags(get('attention.recurrent_layers'), layers);
      if (listed) return listed;
      const interval = toNumbers(get('full_attention_interval') ?? 4)?.[0] ?? 4;
      return each((i) => interval > 0 && (i + 1) % interval !== 0);
    }
  }
}

/** n_embd_r + n_embd_s of one layer in f32 bytes, from `{arch}.ssm.*`; undefined without them. */
function recurrentBytesPerLayer(maxOf: (k: string) => number | undefined): number | undefined {
  const dInner = maxOf('ssm.inner_size');
  const dState = maxOf('ssm.state_size');
  if (dInner === undefined || dState === undefined) return undefined;
  const dConv = maxOf('ssm.conv_kernel') ?? 0;
  const groups = maxOf('ssm.group_count') ?? 0;
  const r = (dConv > 0 ? dConv - 1 : 0) * (dInner + 2 * groups * dState);
  const s = dState * dInner;
  return (r + s) * 4;
}

/** `{arch}.vocab_size`, else the tokenizer's token count, else token_embd's outer dimension, else 0. */
function vocabSize(
  file: GgufFile,
  vocabKey: string,
  maxOf: (k: string) => number | undefined,
): number {
  const explicit = maxOf(vocabKey);
  if (explicit !== undefined && explicit > 0) return explicit;
  const tokens = file.metadata.get('tokenizer.ggml.tokens');
  if (Array.isArray(tokens) && tokens.length > 0) return tokens.length;
  const embd = file.tensors.find((t) => t.name === 'token_embd.weight');
  return embd?.dims[1] ?? 0;
}

function max(list: number[] | undefined): number | undefined {
  return list === undefined ? undefined : list.reduce((a, b) => Math.max(a, b), 0);
}

/** A value as a list of numbers, or undefined when it holds anything else. */
function toNumbers(v: GgufValue): number[] | undefined {
  if (typeof v === 'number') return [v];
  if (typeof v === 'bigint') return [Number(v)]; // only unsafe 64-bit values stay bigints: fails the integer check
  if (ArrayBuffer.isView(v)) return Array.from(v as ArrayLike<number | bigint>, Number);
  return undefined;
}

function describe(v: GgufValue): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'bigint' || typeof v === 'number' || typeof v === 'boolean') return String(v);
  return `an array of ${v.length}`;
}
