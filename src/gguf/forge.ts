/**
 * The forge: writes a valid llama-architecture (or Gemma 3) GGUF v3 model with random weights and a
 * SentencePiece-style tokenizer that llama.cpp accepts (see ENGINE-NOTES.md "Forged models load
 * and run"). Inference on a forged model is real compute with real memory; only the text is
 * gibberish. Used by tests, benchmarks, the first-run demo and `headroom forge`.
 *
 * Contracts:
 * - Deterministic: the same options and seed give a byte-identical file.
 * - Bounded memory: tensor data is generated in chunks into two fixed buffers of CHUNK_BYTES and
 *   streamed to disk (one chunk is written while the next is generated), whatever the model size.
 * - Atomic: the file is written under a temporary name in the target directory and renamed at the
 *   end; on error or abort the temporary file is removed and `out` is untouched.
 * - The signal is checked between chunks; an abort rejects with `signal.reason`.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { throwIfAborted } from '../lib/abort.js';
import { HeadroomError } from '../lib/errors.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, LLAMA_FTYPE, ggmlTypeByName } from './constants.js';
import { ByteWriter } from './writer.js';

export type ForgeTensorType = 'f32' | 'f16' | 'q8_0';

/**
 * The block a forged model is built of. `llama`: llama.cpp's llama architecture. `gemma3`: Gemma
 * 3's block (norms on the query and key heads, after attention and after the feed-forward), whose
 * llama.cpp cache holds `slidingWindow` tokens in 5 layers of every 6: the shape the planner's
 * sliding-window terms are measured on. `mamba2`: Mamba 2's block (no attention; `heads` SSM heads
 * over an inner size of twice the width, a state of `ssmState`, `ssmGroups` groups, a convolution
 * of 4), whose llama.cpp memory is one recurrent state per sequence.
 */
export type ForgeArchitecture = 'llama' | 'gemma3' | 'mamba2';

/** Mamba 2's convolution width, as its published models have it. */
const MAMBA_CONV = 4;

/** The hyper-parameters of a forged llama model. */
export interface ForgeShape {
  /** Transformer blocks. */
  layers: number;
  /** Embedding (hidden) size. */
  embd: number;
  /** Attention heads. */
  heads: number;
  /** Key/value heads (GQA when below `heads`; must divide it). */
  kvHeads: number;
  /** Feed-forward (intermediate) size. */
  ff: number;
  /** Vocabulary size (at least 262: 3 specials, 256 byte tokens, a few pieces). */
  vocab: number;
}

export interface ForgeOptions {
  /** Output file. Its directory is created when missing. */
  out: string;
  /** Explicit shape fields override what `params` (or the default size) would choose. */
  layers?: number;
  embd?: number;
  heads?: number;
  kvHeads?: number;
  ff?: number;
  vocab?: number;
  /** Target parameter count; the shape is chosen by `shapeForParams`. Defaults to 15M when no shape is given. */
  params?: number;
  /** Trained context length written as `llama.context_length`. Defaults to 32768. */
  ctx?: number;
  /** Type of the 2-D weight tensors; norms are always F32. Defaults to 'f16'. */
  type?: ForgeTensorType;
  /** Tie the output projection to `token_embd` (no `output.weight`). Defaults to false. */
  tied?: boolean;
  /** 'chatml' writes a ChatML template (and `<|im_start|>`/`<|im_end|>` control tokens); any other string is written verbatim as `tokenizer.chat_template`. */
  chatTemplate?: 'chatml' | (string & {});
  /** PRNG seed for the weights. Defaults to 1. */
  seed?: number;
  /** `general.name`. Defaults to "forged-<architecture>-<N>M". */
  name?: string;
  /** Defaults to 'llama'. */
  architecture?: ForgeArchitecture;
  /** The sliding window of a `gemma3` model, in tokens. Defaults to 512. */
  slidingWindow?: number;
  /** The SSM state size of a `mamba2` model. Defaults to 64. */
  ssmState?: number;
  /** The SSM groups of a `mamba2` model (they divide the inner size). Defaults to 1. */
  ssmGroups?: number;
}

export interface ForgeResult {
  /** Absolute path of the written file. */
  path: string;
  /** File size in bytes. */
  bytes: number;
  /** Total number of weights over all tensors. */
  parameterCount: number;
  /** Sum of tensor data bytes (without header and alignment padding). */
  tensorBytes: number;
  shape: ForgeShape;
  type: ForgeTensorType;
  ctx: number;
  tied: boolean;
  architecture: ForgeArchitecture;
}

/** Invalid forge options (HTTP 400). */
export class ForgeError extends HeadroomError {
  override readonly name = 'ForgeError';
  constructor(message: string, details: Record<string, unknown> = {}) {
    super('FORGE_INVALID_OPTIONS', message, { status: 400, details });
  }
}

export const FORGE_DEFAULT_PARAMS = 15_000_000;
export const FORGE_DEFAULT_CTX = 32_768;
const CHUNK_BYTES = 4 * 1024 * 1024;
/** Uniform weight range: small enough that activations of a random network stay finite. */
const WEIGHT_RANGE = 0.02;
const NORM_JITTER = 0.01;

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// ---------------------------------------------------------------------------------------------
// Parameter counts and shapes

const PARAM_SUFFIX: Record<string, number> = { '': 1, k: 1e3, m: 1e6, b: 1e9, g: 1e9, t: 1e12 };

/** "50M" → 50_000_000; accepts plain integers, decimals with K/M/B/T suffixes ("1.5B"), and `_` separators. */
export function parseParamCount(text: string | number): number {
  if (typeof text === 'number') {
    if (Number.isSafeInteger(text) && text > 0) return text;
    throw new ForgeError(`parameter count must be a positive integer, got ${text}`);
  }
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmbgt]?)\s*$/i.exec(text.replaceAll('_', ''));
  const n = m ? Number(m[1]) * PARAM_SUFFIX[m[2]!.toLowerCase()]! : NaN;
  const rounded = Math.round(n);
  if (!Number.isSafeInteger(rounded) || rounded <= 0) {
    throw new ForgeError(
      `cannot read "${text}" as a parameter count: use a number with an optional K, M, B or T suffix, e.g. 50M or 1.5B`,
    );
  }
  return rounded;
}

/** Exact number of weights of a llama model of this shape (a gemma3 or mamba2 one: `arch`). */
export function llamaParamCount(
  shape: ForgeShape,
  tied = false,
  arch: ForgeArchitecture = 'llama',
  ssm: { state: number; groups: number } = { state: 64, groups: 1 },
): number {
  const { layers, embd, heads, kvHeads, ff, vocab } = shape;
  if (arch === 'mamba2') {
    const m = mambaDims(shape, ssm);
    const perLayer =
      embd +
      embd * m.inProj +
      MAMBA_CONV * m.convDim +
      m.convDim +
      3 * heads +
      m.inner +
      m.inner * embd;
    return vocab * embd * (tied ? 1 : 2) + embd + layers * perLayer;
  }
  const headDim = embd / heads;
  const kvDim = headDim * kvHeads;
  const gemmaNorms = arch === 'gemma3' ? 2 * embd + 2 * headDim : 0;
  const perLayer = 2 * embd + 2 * embd * embd + 2 * embd * kvDim + 3 * embd * ff + gemmaNorms;
  return vocab * embd * (tied ? 1 : 2) + embd + layers * perLayer;
}

/** Mamba 2's sizes for a width: inner size, the convolution's channels, the input projection. */
function mambaDims(
  shape: Pick<ForgeShape, 'embd' | 'heads'>,
  ssm: { state: number; groups: number },
): { inner: number; convDim: number; inProj: number } {
  const inner = 2 * shape.embd;
  const convDim = inner + 2 * ssm.groups * ssm.state;
  return { inner, convDim, inProj: inner + convDim + shape.heads };
}

const EMBD_CANDIDATES = [
  64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 768, 896, 1024, 1280, 1536, 1792, 2048, 2560,
  3072, 3584, 4096, 5120, 6144, 7168, 8192,
];

function defaultVocab(params: number): number {
  if (params < 5e6) return 2048;
  if (params < 40e6) return 8192;
  if (params < 200e6) return 16384;
  return 32000;
}

function headDimFor(embd: number): number {
  if (embd < 512) return 32;
  if (embd < 2048) return 64;
  return 128;
}

/** Heads, GQA and feed-forward size a llama model of this width would have. */
function widthDefaults(embd: number): Pick<ForgeShape, 'heads' | 'kvHeads' | 'ff'> {
  const headDim =
    embd % headDimFor(embd) === 0
      ? headDimFor(embd)
      : embd % 32 === 0
        ? 32
        : embd % 2 === 0
          ? 2
          : 1;
  const heads = embd / headDim;
  const kvHeads =
    heads >= 8 && heads % 4 === 0 ? heads / 4 : heads >= 4 && heads % 2 === 0 ? heads / 2 : heads;
  const ff = Math.max(32, Math.round((embd * 8) / 3 / 64) * 64);
  return { heads, kvHeads, ff };
}

/**
 * A sensible llama shape for about `params` weights: the width whose layer count comes closest
 * to the usual depth for that width (≈ 6 + embd/160, e.g. 2048 → 19, 4096 → 32), GQA 4:1 from 8
 * heads up (2:1 from 4), SwiGLU feed-forward ≈ 8/3 × width. `vocab` and `tied` change the budget left for
 * the blocks. The exact count of the result is `llamaParamCount(shape, tied)`.
 */
export function shapeForParams(
  params: number,
  opts: { vocab?: number; tied?: boolean } = {},
): ForgeShape {
  if (!Number.isFinite(params) || params <= 0)
    throw new ForgeError(`parameter count must be positive, got ${params}`);
  const vocab = opts.vocab ?? defaultVocab(params);
  const tied = opts.tied ?? false;
  let best: { shape: ForgeShape; score: number } | undefined;
  for (const embd of EMBD_CANDIDATES) {
    const w = widthDefaults(embd);
    const one = llamaParamCount({ layers: 1, embd, vocab, ...w }, tied);
    const zero = llamaParamCount({ layers: 0, embd, vocab, ...w }, tied);
    const perLayer = one - zero;
    const layers = Math.round((params - zero) / perLayer);
    if (layers < 1) continue;
    const target = Math.min(80, 6 + embd / 160);
    const score = Math.abs(Math.log(layers / target));
    if (!best || score < best.score) best = { shape: { layers, embd, vocab, ...w }, score };
  }
  // Below the smallest shape: one thin block.
  return best?.shape ?? { layers: 1, embd: 64, vocab, ...widthDefaults(64) };
}

interface ResolvedOptions {
  out: string;
  shape: ForgeShape;
  ctx: number;
  type: ForgeTensorType;
  tied: boolean;
  chatTemplate: string | undefined;
  chatml: boolean;
  seed: number;
  name: string;
  architecture: ForgeArchitecture;
  /** Tokens (gemma3 only). */
  slidingWindow: number | undefined;
  /** State size and groups (mamba2 only). */
  ssm: { state: number; groups: number };
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw new ForgeError(`${name} must be an integer from ${min} to ${max}, got ${v}`, {
      param: name,
    });
  }
}

/** Completes and validates the options (pure; exported for tests and the CLI's dry runs). */
export function resolveForgeOptions(opts: ForgeOptions): ResolvedOptions {
  if (typeof opts.out !== 'string' || opts.out.length === 0)
    throw new ForgeError('out (the output file) is required', { param: 'out' });
  const type = opts.type ?? 'f16';
  if (type !== 'f32' && type !== 'f16' && type !== 'q8_0')
    throw new ForgeError(`type must be f32, f16 or q8_0, got "${String(type)}"`, { param: 'type' });
  const tied = opts.tied ?? false;
  if (opts.params !== undefined) checkInt('params', opts.params, 1, 1e13);
  if (opts.vocab !== undefined) checkInt('vocab', opts.vocab, 262, 4_000_000);
  if (opts.embd !== undefined) checkInt('embd', opts.embd, 2, 65_536);

  const base = shapeForParams(opts.params ?? FORGE_DEFAULT_PARAMS, { vocab: opts.vocab, tied });
  const embd = opts.embd ?? base.embd;
  // A width given without its companions gets the companions that suit it.
  const w = opts.embd !== undefined && opts.embd !== base.embd ? widthDefaults(embd) : base;
  const heads = opts.heads ?? w.heads;
  const shape: ForgeShape = {
    layers: opts.layers ?? base.layers,
    embd,
    heads,
    kvHeads: opts.kvHeads ?? (opts.heads !== undefined ? heads : w.kvHeads),
    ff: opts.ff ?? w.ff,
    vocab: opts.vocab ?? base.vocab,
  };
  checkInt('layers', shape.layers, 1, 4096);
  checkInt('heads', shape.heads, 1, 4096);
  checkInt('kvHeads', shape.kvHeads, 1, 4096);
  checkInt('ff', shape.ff, 1, 1_048_576);
  if (shape.embd % shape.heads !== 0)
    throw new ForgeError(`embd (${shape.embd}) must be a multiple of heads (${shape.heads})`, {
      param: 'heads',
    });
  if ((shape.embd / shape.heads) % 2 !== 0) {
    throw new ForgeError(
      `head size embd/heads = ${shape.embd / shape.heads} must be even (rotary embeddings rotate pairs)`,
      { param: 'heads' },
    );
  }
  if (shape.heads % shape.kvHeads !== 0)
    throw new ForgeError(
      `heads (${shape.heads}) must be a multiple of kvHeads (${shape.kvHeads})`,
      { param: 'kvHeads' },
    );
  if (type === 'q8_0' && (shape.embd % 32 !== 0 || shape.ff % 32 !== 0)) {
    throw new ForgeError(
      `q8_0 needs embd and ff to be multiples of 32 (blocks of 32), got embd ${shape.embd}, ff ${shape.ff}`,
      { param: 'type' },
    );
  }
  const ctx = opts.ctx ?? FORGE_DEFAULT_CTX;
  checkInt('ctx', ctx, 1, 16_777_216);
  const seed = opts.seed ?? 1;
  checkInt('seed', seed, 0, 2 ** 32 - 1);
  const chatml = opts.chatTemplate === 'chatml';
  const chatTemplate = chatml ? CHATML_TEMPLATE : opts.chatTemplate;
  const architecture = opts.architecture ?? 'llama';
  if (architecture !== 'llama' && architecture !== 'gemma3' && architecture !== 'mamba2')
    throw new ForgeError(
      `architecture must be llama, gemma3 or mamba2, got "${String(architecture)}"`,
      { param: 'architecture' },
    );
  const ssm = { state: opts.ssmState ?? 64, groups: opts.ssmGroups ?? 1 };
  if (architecture === 'mamba2') {
    checkInt('ssmState', ssm.state, 1, 65_536);
    checkInt('ssmGroups', ssm.groups, 1, 4096);
    if ((2 * shape.embd) % ssm.groups !== 0 || (2 * shape.embd) % shape.heads !== 0)
      throw new ForgeError(
        `mamba2's inner size 2 × embd = ${2 * shape.embd} must be a multiple of heads (${shape.heads}) and ssmGroups (${ssm.groups})`,
        { param: 'heads' },
      );
  } else if (opts.ssmState !== undefined || opts.ssmGroups !== undefined)
    throw new ForgeError('ssmState and ssmGroups need architecture mamba2', { param: 'ssmState' });
  let slidingWindow: number | undefined;
  if (architecture === 'gemma3') {
    slidingWindow = opts.slidingWindow ?? 512;
    checkInt('slidingWindow', slidingWindow, 1, 16_777_216);
  } else if (opts.slidingWindow !== undefined)
    throw new ForgeError('slidingWindow needs architecture gemma3', { param: 'slidingWindow' });
  const params = llamaParamCount(shape, tied, architecture, ssm);
  const name =
    opts.name ??
    `forged-${architecture}-${params >= 1e9 ? `${(params / 1e9).toFixed(1)}B` : `${Math.round(params / 1e6)}M`}`;
  return {
    out: path.resolve(opts.out),
    shape,
    ctx,
    type,
    tied,
    chatTemplate,
    chatml,
    seed,
    name,
    architecture,
    slidingWindow,
    ssm,
  };
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;
const SP = '\u2581'; // "▁", SentencePiece's word-start marker

const WORDS = (
  'the of and to in is that it for was on are as with his they at be this from have or by one had not but what all were ' +
  'when we there can an your which their said if do will each about how up out them then she many some so these would ' +
  'other into has more her two like him see time could no make than first been its who now people my made over did down ' +
  'only way find use may water long little very after words called just where most know get through back much before go ' +
  'good new write our used me man too any day same right look think also around another came come work three word must ' +
  'because does part even place well such here take why things help put years different away again off went old number'
).split(' ');
const ONSETS = [
  '',
  'b',
  'c',
  'd',
  'f',
  'g',
  'h',
  'j',
  'k',
  'l',
  'm',
  'n',
  'p',
  'r',
  's',
  't',
  'v',
  'w',
  'z',
  'th',
  'st',
  'ch',
  'sh',
];
const VOWELS = ['a', 'e', 'i', 'o', 'u'];
const CODAS = ['', 'n', 'r', 's', 't', 'l'];
const PUNCT = '.,;:!?\'"-()[]{}<>/\\@#$%&*+=_`~|^';

/** Ordinary pieces in a fixed order: common words, single characters, then ever longer syllable strings. */
function* pieces(): Generator<string> {
  for (const w of WORDS) yield SP + w;
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789' + PUNCT;
  for (const c of chars) {
    yield c;
    yield SP + c;
  }
  yield SP;
  const syllables: string[] = [];
  for (const o of ONSETS) for (const v of VOWELS) for (const c of CODAS) syllables.push(o + v + c);
  // k-syllable strings, k = 1, 2, 3, ... (690^k of them): unbounded, so any vocabulary fills up.
  for (let k = 1; ; k++) {
    const idx = new Array<number>(k).fill(0);
    for (;;) {
      const s = idx.map((i) => syllables[i]).join('');
      yield SP + s;
      yield s;
      let j = k - 1;
      while (j >= 0 && ++idx[j]! === syllables.length) idx[j--] = 0;
      if (j < 0) break;
    }
  }
}

interface Vocabulary {
  tokens: string[];
  scores: Float32Array;
  types: Int32Array;
}

/** `<unk>`, `<s>`, `</s>`, [ChatML controls], the 256 byte tokens, then unique ordinary pieces. */
export function forgeVocabulary(size: number, chatml: boolean): Vocabulary {
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
  if (chatml) {
    tokens.push('<|im_start|>', '<|im_end|>');
    types.push(TOKEN_CONTROL, TOKEN_CONTROL);
  }
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TOKEN_BYTE);
  }
  if (tokens.length > size)
    throw new ForgeError(`vocab must be at least ${tokens.length + 1}, got ${size}`, {
      param: 'vocab',
    });
  const scores = new Float32Array(size);
  const seen = new Set(tokens);
  const first = tokens.length;
  for (const p of pieces()) {
    if (tokens.length >= size) break;
    if (seen.has(p)) continue;
    seen.add(p);
    // Earlier (more common) pieces score higher, like a trained SentencePiece model.
    scores[tokens.length] = -(tokens.length - first);
    tokens.push(p);
    types.push(TOKEN_NORMAL);
  }
  return { tokens, scores, types: Int32Array.from(types) };
}

// ---------------------------------------------------------------------------------------------
// Tensors

interface TensorPlan {
  name: string;
  /** Innermost first. */
  dims: number[];
  kind: 'weight' | 'norm';
  ggml: 'F32' | 'F16' | 'Q8_0';
  elements: number;
  bytes: number;
  /** Offset in the data section (aligned). */
  offset: number;
}

function tensorBytes(ggml: TensorPlan['ggml'], elements: number): number {
  const t = ggmlTypeByName(ggml)!;
  return (elements / t.blockSize) * t.typeSize;
}

function planTensors(o: ResolvedOptions): TensorPlan[] {
  const { layers, embd, heads, kvHeads, ff, vocab } = o.shape;
  const kvDim = (embd / heads) * kvHeads;
  const wtype: TensorPlan['ggml'] = o.type === 'f32' ? 'F32' : o.type === 'f16' ? 'F16' : 'Q8_0';
  const list: Omit<TensorPlan, 'elements' | 'bytes' | 'offset'>[] = [];
  const w = (name: string, dims: number[]): void =>
    void list.push({ name, dims, kind: 'weight', ggml: wtype });
  const n = (name: string, size = embd): void =>
    void list.push({ name, dims: [size], kind: 'norm', ggml: 'F32' });
  const gemma = o.architecture === 'gemma3';
  w('token_embd.weight', [embd, vocab]);
  if (o.architecture === 'mamba2') {
    const m = mambaDims(o.shape, o.ssm);
    // Small F32 tensors: ggml's SSM operators take the convolution and the per-head terms in F32.
    const f = (name: string, dims: number[]): void =>
      void list.push({ name, dims, kind: 'weight', ggml: 'F32' });
    for (let i = 0; i < layers; i++) {
      n(`blk.${i}.attn_norm.weight`);
      w(`blk.${i}.ssm_in.weight`, [embd, m.inProj]);
      f(`blk.${i}.ssm_conv1d.weight`, [MAMBA_CONV, m.convDim]);
      f(`blk.${i}.ssm_conv1d.bias`, [m.convDim]);
      f(`blk.${i}.ssm_dt.bias`, [heads]);
      f(`blk.${i}.ssm_a`, [1, heads]);
      f(`blk.${i}.ssm_d`, [1, heads]);
      list.push({
        name: `blk.${i}.ssm_norm.weight`,
        dims: [m.inner / o.ssm.groups, o.ssm.groups],
        kind: 'norm',
        ggml: 'F32',
      });
      w(`blk.${i}.ssm_out.weight`, [m.inner, embd]);
    }
  } else
    for (let i = 0; i < layers; i++) {
      n(`blk.${i}.attn_norm.weight`);
      w(`blk.${i}.attn_q.weight`, [embd, embd]);
      w(`blk.${i}.attn_k.weight`, [embd, kvDim]);
      w(`blk.${i}.attn_v.weight`, [embd, kvDim]);
      if (gemma) {
        n(`blk.${i}.attn_q_norm.weight`, embd / heads);
        n(`blk.${i}.attn_k_norm.weight`, embd / heads);
      }
      w(`blk.${i}.attn_output.weight`, [embd, embd]);
      if (gemma) n(`blk.${i}.post_attention_norm.weight`);
      n(`blk.${i}.ffn_norm.weight`);
      w(`blk.${i}.ffn_gate.weight`, [embd, ff]);
      w(`blk.${i}.ffn_down.weight`, [ff, embd]);
      w(`blk.${i}.ffn_up.weight`, [embd, ff]);
      if (gemma) n(`blk.${i}.post_ffw_norm.weight`);
    }
  n('output_norm.weight');
  if (!o.tied) w('output.weight', [embd, vocab]);
  let offset = 0;
  return list.map((t) => {
    const elements = t.dims.reduce((a, b) => a * b, 1);
    const bytes = tensorBytes(t.ggml, elements);
    const plan = { ...t, elements, bytes, offset };
    offset = alignUp(offset + bytes, GGUF_DEFAULT_ALIGNMENT);
    return plan;
  });
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

function buildHeader(o: ResolvedOptions, tensors: TensorPlan[]): Buffer {
  const { layers, embd, heads, kvHeads, ff, vocab } = o.shape;
  const vocabulary = forgeVocabulary(vocab, o.chatml);
  const kv = new ByteWriter(64 * 1024 + vocab * 24);
  let count = 0;
  const add = (f: (w: ByteWriter) => void): void => {
    f(kv);
    count++;
  };
  const ftype =
    o.type === 'f32'
      ? LLAMA_FTYPE.ALL_F32
      : o.type === 'f16'
        ? LLAMA_FTYPE.MOSTLY_F16
        : LLAMA_FTYPE.MOSTLY_Q8_0;
  const arch = o.architecture;
  add((w) => w.kvString('general.architecture', arch));
  add((w) => w.kvString('general.type', 'model'));
  add((w) => w.kvString('general.name', o.name));
  add((w) =>
    w.kvString(
      'general.description',
      'Synthetic model forged by headroom: random weights, gibberish output.',
    ),
  );
  add((w) => w.kvU32('general.file_type', ftype));
  if (o.type === 'q8_0') add((w) => w.kvU32('general.quantization_version', 2));
  add((w) => w.kvU32('general.alignment', GGUF_DEFAULT_ALIGNMENT));
  add((w) => w.kvU32(`${arch}.context_length`, o.ctx));
  add((w) => w.kvU32(`${arch}.embedding_length`, embd));
  add((w) => w.kvU32(`${arch}.block_count`, layers));
  if (arch === 'mamba2') {
    const m = mambaDims(o.shape, o.ssm);
    add((w) => w.kvU32(`${arch}.feed_forward_length`, 0));
    add((w) => w.kvU32(`${arch}.attention.head_count`, 0));
    add((w) => w.kvU32(`${arch}.ssm.conv_kernel`, MAMBA_CONV));
    add((w) => w.kvU32(`${arch}.ssm.inner_size`, m.inner));
    add((w) => w.kvU32(`${arch}.ssm.state_size`, o.ssm.state));
    add((w) => w.kvU32(`${arch}.ssm.time_step_rank`, heads));
    add((w) => w.kvU32(`${arch}.ssm.group_count`, o.ssm.groups));
  } else {
    add((w) => w.kvU32(`${arch}.feed_forward_length`, ff));
    add((w) => w.kvU32(`${arch}.attention.head_count`, heads));
    add((w) => w.kvU32(`${arch}.attention.head_count_kv`, kvHeads));
    add((w) => w.kvU32(`${arch}.rope.dimension_count`, embd / heads));
    add((w) => w.kvF32(`${arch}.rope.freq_base`, 10000));
  }
  add((w) => w.kvF32(`${arch}.attention.layer_norm_rms_epsilon`, 1e-5));
  add((w) => w.kvU32(`${arch}.vocab_size`, vocab));
  if (o.slidingWindow !== undefined) {
    add((w) => w.kvU32(`${arch}.attention.key_length`, embd / heads));
    add((w) => w.kvU32(`${arch}.attention.value_length`, embd / heads));
    add((w) => w.kvU32(`${arch}.attention.sliding_window`, o.slidingWindow!));
  }
  add((w) => w.kvString('tokenizer.ggml.model', 'llama'));
  add((w) => w.kvStrings('tokenizer.ggml.tokens', vocabulary.tokens));
  add((w) => w.kvF32s('tokenizer.ggml.scores', vocabulary.scores));
  add((w) => w.kvI32s('tokenizer.ggml.token_type', vocabulary.types));
  add((w) => w.kvU32('tokenizer.ggml.unknown_token_id', 0));
  add((w) => w.kvU32('tokenizer.ggml.bos_token_id', 1));
  add((w) => w.kvU32('tokenizer.ggml.eos_token_id', 2));
  add((w) => w.kvBool('tokenizer.ggml.add_bos_token', true));
  add((w) => w.kvBool('tokenizer.ggml.add_eos_token', false));
  if (o.chatTemplate !== undefined)
    add((w) => w.kvString('tokenizer.chat_template', o.chatTemplate!));

  const h = new ByteWriter(kv.length + tensors.length * 96 + 64);
  h.u32(GGUF_MAGIC).u32(3).u64(tensors.length).u64(count).bytes(kv.toBuffer());
  for (const t of tensors) h.tensorInfo(t.name, t.dims, ggmlTypeByName(t.ggml)!.id, t.offset);
  h.pad(GGUF_DEFAULT_ALIGNMENT);
  return h.toBuffer();
}

// ---------------------------------------------------------------------------------------------
// Random data

/** f32 → IEEE half bits, round to nearest even (only used to build tables). */
export function f32ToF16Bits(value: number): number {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++;
  return sign | half;
}

function uniformTable(center: number, range: number): Float32Array {
  const t = new Float32Array(65536);
  for (let i = 0; i < 65536; i++) t[i] = center + ((i + 0.5) / 65536 - 0.5) * 2 * range;
  return t;
}

let tables:
  { w32: Float32Array; norm32: Float32Array; w16: Uint16Array; q8Scale: number } | undefined;
function getTables(): NonNullable<typeof tables> {
  if (!tables) {
    const w32 = uniformTable(0, WEIGHT_RANGE);
    const w16 = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) w16[i] = f32ToF16Bits(w32[i]!);
    tables = {
      w32,
      norm32: uniformTable(1, NORM_JITTER),
      w16,
      q8Scale: f32ToF16Bits(WEIGHT_RANGE / 127),
    };
  }
  return tables;
}

/** xorshift128 state, seeded through splitmix32 so nearby seeds give unrelated streams. */
class Rng {
  a: number;
  b: number;
  c: number;
  d: number;
  constructor(seed: number, stream: number) {
    let s = (Math.imul(seed >>> 0, 0x9e3779b9) ^ Math.imul(stream + 1, 0x85ebca6b)) >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() || 1;
  }

  /** Fills `out[start, start + count)` with random uint32s. */
  fill(out: Uint32Array, start: number, count: number): void {
    let { a, b, c, d } = this;
    const end = start + count;
    for (let i = start; i < end; i++) {
      let t = d;
      const s = a;
      d = c;
      c = b;
      b = s;
      t ^= t << 11;
      t ^= t >>> 8;
      a = t ^ s ^ (s >>> 19);
      out[i] = a;
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
  }
}

/** Two fixed buffers: one is being written to disk while the other is filled. */
class ChunkWriter {
  readonly #fh: FileHandle;
  readonly #bufs: ArrayBuffer[];
  #cur = 0;
  #fileOffset: number;
  #pending: Promise<void> | undefined;
  pos = 0;
  u8!: Uint8Array;
  u16!: Uint16Array;
  u32!: Uint32Array;
  f32!: Float32Array;

  constructor(fh: FileHandle, fileOffset: number, capacity: number) {
    this.#fh = fh;
    this.#fileOffset = fileOffset;
    // 64 bytes of slack: the last fill of a tensor may round up to whole words past `pos`.
    this.#bufs = [new ArrayBuffer(capacity + 64), new ArrayBuffer(capacity + 64)];
    this.#select(0);
  }

  get capacity(): number {
    return this.#bufs[0]!.byteLength - 64;
  }

  #select(i: number): void {
    this.#cur = i;
    const ab = this.#bufs[i]!;
    this.u8 = new Uint8Array(ab);
    this.u16 = new Uint16Array(ab);
    this.u32 = new Uint32Array(ab);
    this.f32 = new Float32Array(ab);
  }

  async flush(signal?: AbortSignal): Promise<void> {
    if (this.#pending) await this.#pending;
    this.#pending = undefined;
    throwIfAborted(signal);
    if (this.pos === 0) return;
    this.#pending = writeAll(this.#fh, this.u8, this.pos, this.#fileOffset);
    this.#fileOffset += this.pos;
    this.pos = 0;
    this.#select(this.#cur ^ 1);
  }

  /** Waits for the write in flight, ignoring its failure (cleanup path). */
  async settle(): Promise<void> {
    await this.#pending?.catch(() => undefined);
    this.#pending = undefined;
  }
}

async function writeAll(
  fh: FileHandle,
  data: Uint8Array,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await fh.write(data, done, length - done, position + done);
    if (bytesWritten <= 0) throw new Error('short write');
    done += bytesWritten;
  }
}

async function writeTensor(
  cw: ChunkWriter,
  t: TensorPlan,
  rng: Rng,
  signal?: AbortSignal,
): Promise<void> {
  const tab = getTables();
  // Bytes per fill step: every chunk but a tensor's last stays a multiple of it, so `pos` keeps
  // the 4-byte alignment the typed views need (tensors start 32-aligned).
  const unit = t.ggml === 'Q8_0' ? 68 : 4;
  let remaining = t.bytes;
  while (remaining > 0) {
    const n = Math.min(remaining, Math.max(0, Math.floor((cw.capacity - cw.pos) / unit) * unit));
    if (n === 0) {
      await cw.flush(signal);
      continue;
    }
    const pos = cw.pos;
    if (t.ggml === 'F16') {
      const words = Math.ceil(n / 4);
      const w0 = pos >>> 2;
      rng.fill(cw.u32, w0, words);
      const u32 = cw.u32;
      const u16 = cw.u16;
      const table = tab.w16;
      // In place: word i becomes halves 2i and 2i+1 of the same 4 bytes.
      for (let i = w0, end = w0 + words; i < end; i++) {
        const r = u32[i]!;
        u16[2 * i] = table[r & 0xffff]!;
        u16[2 * i + 1] = table[r >>> 16]!;
      }
    } else if (t.ggml === 'F32') {
      const words = n / 4;
      const w0 = pos >>> 2;
      rng.fill(cw.u32, w0, words);
      const u32 = cw.u32;
      const f32 = cw.f32;
      const table = t.kind === 'norm' ? tab.norm32 : tab.w32;
      for (let i = w0, end = w0 + words; i < end; i++) f32[i] = table[u32[i]! >>> 16]!;
    } else {
      // Q8_0 blocks: f16 scale then 32 random int8 quants.
      rng.fill(cw.u32, pos >>> 2, Math.ceil(n / 4));
      const u8 = cw.u8;
      const lo = tab.q8Scale & 0xff;
      const hi = tab.q8Scale >>> 8;
      for (let p = pos, end = pos + n; p < end; p += 34) {
        u8[p] = lo;
        u8[p + 1] = hi;
      }
    }
    cw.pos += n;
    remaining -= n;
  }
  // Zero padding up to the next tensor's aligned offset (the slack bytes past pos may be dirty).
  const padded = alignUp(cw.pos, GGUF_DEFAULT_ALIGNMENT);
  cw.u8.fill(0, cw.pos, padded);
  cw.pos = padded;
}

// ---------------------------------------------------------------------------------------------

/** Writes a forged model to `opts.out` (see the module comment for the contracts). */
export async function forgeModel(opts: ForgeOptions, signal?: AbortSignal): Promise<ForgeResult> {
  throwIfAborted(signal);
  const o = resolveForgeOptions(opts);
  const tensors = planTensors(o);
  const header = buildHeader(o, tensors);
  const last = tensors[tensors.length - 1]!;
  const dataBytes = last.offset + alignUp(last.bytes, GGUF_DEFAULT_ALIGNMENT);
  const fileBytes = header.length + dataBytes;

  const dir = path.dirname(o.out);
  await mkdir(dir, { recursive: true });
  const tmp = path.join(
    dir,
    `.${path.basename(o.out)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  const fh = await open(tmp, 'wx');
  let cw: ChunkWriter | undefined;
  let ok = false;
  try {
    await writeAll(fh, header, header.length, 0);
    cw = new ChunkWriter(fh, header.length, CHUNK_BYTES);
    for (let i = 0; i < tensors.length; i++) {
      await writeTensor(cw, tensors[i]!, new Rng(o.seed, i), signal);
    }
    await cw.flush(signal);
    await cw.flush(signal);
    await fh.close();
    await rename(tmp, o.out);
    ok = true;
  } finally {
    if (!ok) {
      await cw?.settle();
      await fh.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
  }
  return {
    path: o.out,
    bytes: fileBytes,
    parameterCount: tensors.reduce((a, t) => a + t.elements, 0),
    tensorBytes: tensors.reduce((a, t) => a + t.bytes, 0),
    shape: o.shape,
    type: o.type,
    ctx: o.ctx,
    tied: o.tied,
    architecture: o.architecture,
  };
}
