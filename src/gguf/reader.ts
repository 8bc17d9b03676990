/**
 * The GGUF header reader: metadata and tensor infos of a GGUF v2/v3 file, read by streaming the
 * start of the file through one fixed buffer. Tensor data is never read.
 *
 * Contracts:
 * - Any input bytes give either a `GgufFile` or a `GgufError` (stable `code`, message naming the
 *   file and the byte offset, `details: { path, offset }`); an abort rejects with `signal.reason`.
 * - Nothing is allocated from a size the file claims before that size has been checked against
 *   the bytes left in the file and against fixed caps (counts, string length, nesting depth,
 *   total header bytes): a header claiming 2^63 tensors or a 2^40-byte string fails at once.
 * - Memory is bounded: the header may take at most `maxMetadataBytes` of the file, and what it
 *   becomes on the JS heap is charged as it is built (an estimate per string, array and entry)
 *   against HEAP_FACTOR times that, so a header of a million empty arrays or bools cannot
 *   balloon. Numeric arrays become typed arrays of their size in the file.
 * - The file is read in 64 KiB chunks (strings above that in one read of their exact length);
 *   the signal is checked before every read.
 */
import { constants as fsConstants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { abortReason } from '../lib/abort.js';
import { HeadroomError } from '../lib/errors.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufValueType, ggmlType } from './constants.js';

/** Stable codes of `GgufError`. */
export type GgufErrorCode =
  | 'GGUF_NOT_FOUND'
  | 'GGUF_NOT_A_FILE'
  | 'GGUF_IO'
  | 'GGUF_BAD_MAGIC'
  | 'GGUF_UNSUPPORTED_VERSION'
  | 'GGUF_TRUNCATED'
  | 'GGUF_LIMIT'
  | 'GGUF_BAD_VALUE'
  | 'GGUF_DUPLICATE'
  | 'GGUF_BAD_ALIGNMENT'
  | 'GGUF_UNKNOWN_TYPE'
  | 'GGUF_BAD_TENSOR'
  | 'GGUF_UNSUPPORTED_MODEL';

/** A file that is not a GGUF file headroom can read (HTTP 400; the CLI's exit code is the registry's). */
export class GgufError extends HeadroomError {
  override readonly name = 'GgufError';
  declare readonly code: GgufErrorCode;
  /** The file's path and the byte offset the problem was found at (0 when it is the whole file). */
  declare readonly details: Readonly<{ path: string; offset: number } & Record<string, unknown>>;

  constructor(
    code: GgufErrorCode,
    file: string,
    offset: number,
    problem: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(code, `${file}: ${problem} (at byte ${offset})`, {
      status: 400,
      details: { path: file, offset, ...options.details },
      cause: options.cause,
    });
  }
}

/** Numeric arrays are typed arrays of the element type written in the file. */
export type GgufNumberArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array;

/**
 * A metadata value. Integers of 8–32 bits and floats are numbers; 64-bit integers are numbers
 * when they are safe integers and bigints otherwise; arrays of numbers are typed arrays, arrays
 * of strings or bools plain arrays, and arrays of arrays plain arrays of those.
 */
export type GgufValue =
  | number
  | bigint
  | boolean
  | string
  | GgufNumberArray
  | readonly string[]
  | readonly boolean[]
  | readonly GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** Dimensions, innermost first (ggml's ne[0], ne[1], ...). */
  dims: number[];
  /** ggml type id. */
  type: number;
  /** ggml type name ("F32", "F16", "Q8_0", ...). */
  typeName: string;
  /** Number of elements (product of dims). */
  elements: number;
  /** Absolute offset of the tensor's data in the file. */
  offset: number;
  /** Size of the tensor's data in bytes. */
  bytes: number;
}

export interface GgufFile {
  /** The path as given to `readGguf`, resolved to an absolute path. */
  path: string;
  version: 2 | 3;
  fileSize: number;
  /** `general.alignment`, or 32 when absent. */
  alignment: number;
  /** Key/value metadata in file order. */
  metadata: Map<string, GgufValue>;
  /** Tensor infos in file order. */
  tensors: GgufTensorInfo[];
  /** Absolute offset of the tensor data section (end of the header, aligned). */
  dataOffset: number;
}

export interface ReadGgufOptions {
  signal?: AbortSignal;
  /**
   * Largest header (magic to end of tensor infos) accepted, in bytes; the parsed header may take
   * up to 4× this on the heap. Defaults to 64 MiB.
   */
  maxMetadataBytes?: number;
}

/** Default `maxMetadataBytes`. The biggest real headers (256k-token vocabularies, 300k merges) take 5–20 MiB. */
export const GGUF_MAX_METADATA_BYTES = 64 * 1024 * 1024;
/** The parsed header may take this many times `maxMetadataBytes` of JS heap (estimated). Real vocabularies take 2–3×. */
const HEAP_FACTOR = 4;
/** Caps that no real model comes near; they bound work before the byte budget does. */
export const GGUF_LIMITS = {
  tensors: 1_000_000,
  kvs: 1_000_000,
  stringBytes: 64 * 1024 * 1024,
  /** Keys and tensor names (llama.cpp itself caps tensor names at 63 bytes). */
  nameBytes: 65_536,
  arrayDepth: 8,
  dims: 8,
} as const;

const CHUNK = 64 * 1024;
/** Estimated heap bytes of a string (header and slot; content charged at 2 bytes per byte) and of an array object. */
const STRING_COST = 32;
const ARRAY_COST = 96;
/** Estimated heap bytes of a metadata entry or tensor info beside its strings. */
const ENTRY_COST = 96;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Smallest encoding of one value of each type: bounds array counts before anything is allocated. */
function minValueBytes(type: number): number {
  switch (type) {
    case GgufValueType.UINT8:
    case GgufValueType.INT8:
    case GgufValueType.BOOL:
      return 1;
    case GgufValueType.UINT16:
    case GgufValueType.INT16:
      return 2;
    case GgufValueType.UINT32:
    case GgufValueType.INT32:
    case GgufValueType.FLOAT32:
      return 4;
    case GgufValueType.STRING:
    case GgufValueType.UINT64:
    case GgufValueType.INT64:
    case GgufValueType.FLOAT64:
      return 8;
    case GgufValueType.ARRAY:
      return 12; // item type (4) + count (8)
    default:
      return 0;
  }
}

/** Where header bytes come from: an open file, or bytes in memory (`readGgufBytes`). */
interface ByteSource {
  read(into: Buffer, at: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

/** A forward-only buffered reader over the start of a file. */
class HeaderReader {
  readonly #fh: ByteSource;
  readonly #file: string;
  readonly #signal: AbortSignal | undefined;
  /** Bytes the reader may consume: min(file size, header cap). */
  readonly #limit: number;
  readonly #fileSize: number;
  readonly #buf = Buffer.allocUnsafe(CHUNK);
  #start = 0;
  #end = 0;
  readonly #heapLimit: number;
  #heap = 0;
  /** File offset of buf[#start]. */
  #pos = 0;

  constructor(
    fh: ByteSource,
    file: string,
    fileSize: number,
    limit: number,
    signal: AbortSignal | undefined,
  ) {
    this.#fh = fh;
    this.#file = file;
    this.#fileSize = fileSize;
    this.#limit = Math.min(fileSize, limit);
    this.#heapLimit = limit * HEAP_FACTOR;
    this.#signal = signal;
  }

  /** Counts `bytes` of (estimated) heap towards the budget; `at` is the offset blamed when it is spent. */
  charge(bytes: number, at: number): void {
    this.#heap += bytes;
    if (this.#heap > this.#heapLimit) {
      throw this.fail(
        'GGUF_LIMIT',
        `the header's metadata would take more than ${this.#heapLimit} bytes of memory (the limit is ${HEAP_FACTOR}× maxMetadataBytes)`,
        at,
      );
    }
  }

  /** File offset of the next unread byte. */
  get pos(): number {
    return this.#pos;
  }

  /** Bytes that may still be consumed (file end or header cap, whichever comes first). */
  get remaining(): number {
    return this.#limit - this.#pos;
  }

  fail(code: GgufErrorCode, problem: string, offset = this.#pos): GgufError {
    return new GgufError(code, this.#file, offset, problem);
  }

  /** The error for wanting `n` bytes beyond `remaining`: truncation, or the header cap. */
  #short(n: number, what: string): GgufError {
    if (this.#pos + n > this.#fileSize) {
      return this.fail(
        'GGUF_TRUNCATED',
        `file ends inside ${what}: ${n} bytes needed, ${this.#fileSize - this.#pos} left`,
      );
    }
    return this.fail(
      'GGUF_LIMIT',
      `header is larger than the limit of ${this.#limit} bytes while reading ${what}`,
    );
  }

  /** Makes at least `n` (≤ CHUNK) bytes available in the buffer. */
  async need(n: number, what: string): Promise<void> {
    if (this.#end - this.#start >= n) return;
    if (n > this.remaining) throw this.#short(n, what);
    if (this.#start > 0) {
      this.#buf.copy(this.#buf, 0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end < n) {
      await this.#read(
        this.#buf,
        this.#end,
        Math.min(CHUNK - this.#end, this.#limit - this.#pos - this.#end),
        this.#pos + this.#end,
        what,
      );
      this.#end += this.#lastRead;
    }
  }

  #lastRead = 0;
  async #read(
    into: Buffer,
    at: number,
    length: number,
    position: number,
    what: string,
  ): Promise<void> {
    if (this.#signal?.aborted) throw abortReason(this.#signal);
    let bytesRead: number;
    try {
      ({ bytesRead } = await this.#fh.read(into, at, length, position));
    } catch (err) {
      throw new GgufError(
        'GGUF_IO',
        this.#file,
        position,
        `cannot read the file: ${(err as Error).message}`,
        { cause: err },
      );
    }
    // The file shrank after it was stat'ed.
    if (bytesRead <= 0) throw this.fail('GGUF_TRUNCATED', `file ends inside ${what}`, position);
    this.#lastRead = bytesRead;
  }

  /** Consumes `n` bytes that `need` made available; returns their index in `buf`. */
  #take(n: number): number {
    const at = this.#start;
    this.#start += n;
    this.#pos += n;
    return at;
  }

  async u32(what: string): Promise<number> {
    await this.need(4, what);
    return this.#buf.readUInt32LE(this.#take(4));
  }

  async u64(what: string): Promise<bigint> {
    await this.need(8, what);
    return this.#buf.readBigUInt64LE(this.#take(8));
  }

  /** A u64 count or size that must not exceed `max` (checked as a bigint, before any use). */
  async size(what: string, max: number, code: GgufErrorCode = 'GGUF_LIMIT'): Promise<number> {
    const at = this.#pos;
    const v = await this.u64(what);
    if (v > BigInt(max)) throw this.fail(code, `${what} ${v} exceeds the limit of ${max}`, at);
    return Number(v);
  }

  /**
   * The next string when it lies wholly in the buffer and is at most `max` bytes; otherwise
   * undefined and nothing consumed (the caller falls back to `string`, which refills and reports
   * errors). Keeps big vocabularies off the promise machinery.
   */
  stringSync(max: number): string | undefined {
    const avail = this.#end - this.#start;
    if (avail < 8) return undefined;
    const len = this.#buf.readBigUInt64LE(this.#start);
    if (len > BigInt(Math.min(max, avail - 8))) return undefined;
    const n = Number(len);
    this.charge(STRING_COST + 2 * n, this.#pos);
    const i = this.#take(8 + n) + 8;
    return this.#buf.toString('utf8', i, i + n);
  }

  /** A GGUF string; `max` caps its byte length. */
  async string(what: string, max: number): Promise<string> {
    const at = this.#pos;
    const len = await this.u64(`length of ${what}`);
    if (len > BigInt(max))
      throw this.fail(
        'GGUF_LIMIT',
        `${what} claims ${len} bytes, more than the limit of ${max}`,
        at,
      );
    const n = Number(len);
    if (n > this.remaining) throw this.#short(n, what);
    this.charge(STRING_COST + 2 * n, at);
    if (n <= CHUNK) {
      await this.need(n, what);
      const i = this.#take(n);
      return this.#buf.toString('utf8', i, i + n);
    }
    // Longer than the buffer: what is buffered, then the rest in reads of its exact length.
    const out = Buffer.allocUnsafe(n);
    let have = this.#end - this.#start;
    this.#buf.copy(out, 0, this.#start, this.#end);
    this.#pos += have;
    this.#start = this.#end = 0;
    while (have < n) {
      await this.#read(out, have, n - have, this.#pos, what);
      have += this.#lastRead;
      this.#pos += this.#lastRead;
    }
    return out.toString('utf8');
  }

  /** One scalar of `type` (not STRING or ARRAY), the bytes already made available. */
  #scalar(type: number): number | bigint | boolean {
    const b = this.#buf;
    switch (type) {
      case GgufValueType.UINT8:
        return b.readUInt8(this.#take(1));
      case GgufValueType.INT8:
        return b.readInt8(this.#take(1));
      case GgufValueType.BOOL:
        return b.readUInt8(this.#take(1)) !== 0;
      case GgufValueType.UINT16:
        return b.readUInt16LE(this.#take(2));
      case GgufValueType.INT16:
        return b.readInt16LE(this.#take(2));
      case GgufValueType.UINT32:
        return b.readUInt32LE(this.#take(4));
      case GgufValueType.INT32:
        return b.readInt32LE(this.#take(4));
      case GgufValueType.FLOAT32:
        return b.readFloatLE(this.#take(4));
      case GgufValueType.FLOAT64:
        return b.readDoubleLE(this.#take(8));
      case GgufValueType.UINT64:
        return b.readBigUInt64LE(this.#take(8));
      case GgufValueType.INT64:
        return b.readBigInt64LE(this.#take(8));
      default:
        throw new Error(`unreachable: scalar type ${type}`);
    }
  }

  async value(type: number, what: string, depth: number): Promise<GgufValue> {
    if (type === GgufValueType.STRING) return this.string(what, GGUF_LIMITS.stringBytes);
    if (type === GgufValueType.ARRAY) return this.#array(what, depth + 1);
    const size = minValueBytes(type);
    if (size === 0) throw this.fail('GGUF_BAD_VALUE', `${what} has unknown value type ${type}`);
    await this.need(size, what);
    const v = this.#scalar(type);
    return typeof v === 'bigint' && v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : v;
  }

  async #array(what: string, depth: number): Promise<GgufValue> {
    const at = this.#pos;
    if (depth > GGUF_LIMITS.arrayDepth)
      throw this.fail(
        'GGUF_LIMIT',
        `${what} nests arrays deeper than ${GGUF_LIMITS.arrayDepth} levels`,
        at,
      );
    const itemType = await this.u32(`item type of ${what}`);
    const itemBytes = minValueBytes(itemType);
    if (itemBytes === 0)
      throw this.fail(
        'GGUF_BAD_VALUE',
        `${what} is an array of unknown value type ${itemType}`,
        at,
      );
    const countAt = this.#pos;
    const count = await this.u64(`length of ${what}`);
    // Every item takes at least itemBytes: a count the rest of the header cannot hold is a lie,
    // found before anything is allocated for it.
    if (count > BigInt(Math.floor(this.remaining / itemBytes))) {
      if (BigInt(this.pos) + count * BigInt(itemBytes) > BigInt(this.#fileSize)) {
        throw this.fail(
          'GGUF_TRUNCATED',
          `${what} claims ${count} items, more than the ${this.#fileSize - this.pos} bytes left in the file can hold`,
          countAt,
        );
      }
      throw this.fail(
        'GGUF_LIMIT',
        `${what} claims ${count} items, more than the header limit of ${this.#limit} bytes allows`,
        countAt,
      );
    }
    const n = Number(count);
    // The array object and its slots (typed arrays: their elements, at the size read).
    this.charge(
      ARRAY_COST +
        n *
          (itemType === GgufValueType.STRING ||
          itemType === GgufValueType.ARRAY ||
          itemType === GgufValueType.BOOL
            ? 8
            : itemBytes),
      at,
    );
    switch (itemType) {
      case GgufValueType.STRING: {
        const out: string[] = [];
        for (let i = 0; i < n; i++)
          out.push(
            this.stringSync(GGUF_LIMITS.stringBytes) ??
              (await this.string(`${what}[${i}]`, GGUF_LIMITS.stringBytes)),
          );
        return out;
      }
      case GgufValueType.ARRAY: {
        const out: GgufValue[] = [];
        for (let i = 0; i < n; i++) out.push(await this.#array(`${what}[${i}]`, depth + 1));
        return out;
      }
      case GgufValueType.BOOL:
        return Array.from(
          (await this.#numbers(GgufValueType.UINT8, n, what)) as Uint8Array,
          (b) => b !== 0,
        );
      default:
        return this.#numbers(itemType, n, what);
    }
  }

  /** `n` numbers of `type` into a typed array (allocated after `n` was bounded by the caller). */
  async #numbers(type: number, n: number, what: string): Promise<GgufNumberArray> {
    const out = makeTypedArray(type, n);
    const size = out.BYTES_PER_ELEMENT;
    const perChunk = Math.floor(CHUNK / size);
    for (let i = 0; i < n;) {
      const k = Math.min(perChunk, n - i);
      await this.need(k * size, what);
      for (const end = i + k; i < end; i++) out[i] = this.#scalar(type) as never;
    }
    return out;
  }
}

function makeTypedArray(type: number, n: number): GgufNumberArray {
  switch (type) {
    case GgufValueType.UINT8:
      return new Uint8Array(n);
    case GgufValueType.INT8:
      return new Int8Array(n);
    case GgufValueType.UINT16:
      return new Uint16Array(n);
    case GgufValueType.INT16:
      return new Int16Array(n);
    case GgufValueType.UINT32:
      return new Uint32Array(n);
    case GgufValueType.INT32:
      return new Int32Array(n);
    case GgufValueType.FLOAT32:
      return new Float32Array(n);
    case GgufValueType.FLOAT64:
      return new Float64Array(n);
    case GgufValueType.UINT64:
      return new BigUint64Array(n);
    case GgufValueType.INT64:
      return new BigInt64Array(n);
    default:
      throw new Error(`unreachable: numeric type ${type}`);
  }
}

function fsError(err: unknown, file: string): GgufError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR')
    return new GgufError('GGUF_NOT_FOUND', file, 0, 'no such file', { cause: err });
  if (code === 'EISDIR')
    return new GgufError('GGUF_NOT_A_FILE', file, 0, 'is a directory, not a GGUF file', {
      cause: err,
    });
  return new GgufError('GGUF_IO', file, 0, `cannot open the file: ${(err as Error).message}`, {
    cause: err,
  });
}

/**
 * Reads the header of the GGUF file at `file`: metadata, tensor infos, data offset. Rejects with
 * a `GgufError` for anything that is not a readable GGUF v2/v3 file (see the module comment).
 */
export async function readGguf(file: string, opts: ReadGgufOptions = {}): Promise<GgufFile> {
  const { signal } = opts;
  const maxHeader = opts.maxMetadataBytes ?? GGUF_MAX_METADATA_BYTES;
  if (!Number.isSafeInteger(maxHeader) || maxHeader <= 0) {
    throw new RangeError(`maxMetadataBytes must be a positive integer, got ${maxHeader}`);
  }
  if (signal?.aborted) throw abortReason(signal);
  const abs = path.resolve(file);
  let st;
  try {
    st = await stat(abs);
  } catch (err) {
    throw fsError(err, abs);
  }
  if (!st.isFile()) {
    const kind = st.isDirectory()
      ? 'a directory'
      : st.isFIFO()
        ? 'a FIFO'
        : st.isCharacterDevice() || st.isBlockDevice()
          ? 'a device'
          : st.isSocket()
            ? 'a socket'
            : 'not a regular file';
    throw new GgufError('GGUF_NOT_A_FILE', abs, 0, `is ${kind}, not a GGUF file`);
  }
  let fh: FileHandle;
  try {
    // O_NONBLOCK: should the path turn into a FIFO between stat and open, open must not wait for
    // a writer. It changes nothing for regular files.
    fh = await open(abs, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    throw fsError(err, abs);
  }
  try {
    // The path may have been replaced between stat and open: trust what was opened.
    const opened = await fh.stat();
    if (!opened.isFile()) throw new GgufError('GGUF_NOT_A_FILE', abs, 0, 'is not a regular file');
    const size = opened.size;
    return await parse(new HeaderReader(fh, abs, size, maxHeader, signal), abs, size);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * Reads a GGUF header from bytes in memory, the whole file or its start (`fileSize`, when
 * larger, is the size of the file they begin: tensor data is checked against it). `name` names
 * it in errors. The same parser and contracts as `readGguf`; used where the bytes are already
 * at hand (the fuzzer runs millions of mutations through it without touching the disk).
 */
export async function readGgufBytes(
  bytes: Uint8Array,
  name: string,
  opts: ReadGgufOptions & { fileSize?: number } = {},
): Promise<GgufFile> {
  const maxHeader = opts.maxMetadataBytes ?? GGUF_MAX_METADATA_BYTES;
  if (!Number.isSafeInteger(maxHeader) || maxHeader <= 0) {
    throw new RangeError(`maxMetadataBytes must be a positive integer, got ${maxHeader}`);
  }
  if (opts.signal?.aborted) throw abortReason(opts.signal);
  const fileSize = Math.max(bytes.length, opts.fileSize ?? 0);
  const source: ByteSource = {
    read: async (into, at, length, position) => {
      const n = Math.max(0, Math.min(length, bytes.length - position));
      into.set(bytes.subarray(position, position + n), at);
      return { bytesRead: n };
    },
  };
  return parse(new HeaderReader(source, name, fileSize, maxHeader, opts.signal), name, fileSize);
}

async function parse(r: HeaderReader, file: string, fileSize: number): Promise<GgufFile> {
  if (fileSize < 4) throw r.fail('GGUF_BAD_MAGIC', `not a GGUF file: only ${fileSize} bytes`, 0);
  const magic = await r.u32('magic');
  if (magic !== GGUF_MAGIC)
    throw r.fail(
      'GGUF_BAD_MAGIC',
      `not a GGUF file: magic is 0x${magic.toString(16).padStart(8, '0')}, expected "GGUF"`,
      0,
    );
  const version = await r.u32('version');
  if (version !== 2 && version !== 3) {
    const hint =
      version === 1
        ? 'GGUF v1 (2023) is not supported; convert the model again with a current llama.cpp'
        : (version & 0xffff) === 0 && version >>> 16 !== 0
          ? 'this looks like a big-endian GGUF file, which is not supported'
          : 'only GGUF versions 2 and 3 are supported';
    throw r.fail('GGUF_UNSUPPORTED_VERSION', `GGUF version ${version}: ${hint}`, 4);
  }
  // Minimum sizes: a tensor info is name (8) + n_dims (4) + one dim (8) + type (4) + offset (8);
  // a key/value is key (8) + type (4) + one byte of value.
  const tensorCountAt = r.pos;
  const tensorCount = await r.size('tensor count', GGUF_LIMITS.tensors);
  const kvCountAt = r.pos;
  const kvCount = await r.size('metadata key/value count', GGUF_LIMITS.kvs);
  if (tensorCount * 32 + kvCount * 13 > r.remaining) {
    const truncated = r.pos + tensorCount * 32 + kvCount * 13 > fileSize;
    throw r.fail(
      truncated ? 'GGUF_TRUNCATED' : 'GGUF_LIMIT',
      `header claims ${tensorCount} tensors and ${kvCount} metadata entries, more than ${truncated ? 'the file' : 'the header limit'} can hold`,
      tensorCount * 32 > r.remaining ? tensorCountAt : kvCountAt,
    );
  }

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const at = r.pos;
    const key = await r.string(`key of metadata entry ${i}`, GGUF_LIMITS.nameBytes);
    if (metadata.has(key))
      throw r.fail('GGUF_DUPLICATE', `metadata key "${key}" appears twice`, at);
    const typeAt = r.pos;
    const type = await r.u32(`value type of "${key}"`);
    if (minValueBytes(type) === 0)
      throw r.fail('GGUF_BAD_VALUE', `metadata "${key}" has unknown value type ${type}`, typeAt);
    r.charge(ENTRY_COST, at);
    metadata.set(key, await r.value(type, `metadata "${key}"`, 0));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (
      typeof al !== 'number' ||
      !Number.isInteger(al) ||
      al <= 0 ||
      al > 2 ** 30 ||
      (al & (al - 1)) !== 0
    ) {
      throw r.fail(
        'GGUF_BAD_ALIGNMENT',
        `general.alignment must be a power of two from 1 to 2^30, got ${String(al)}`,
        0,
      );
    }
    alignment = al;
  }

  interface Pending extends Omit<GgufTensorInfo, 'offset'> {
    relative: number;
    at: number;
  }
  const pending: Pending[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const at = r.pos;
    const name = await r.string(`name of tensor ${i}`, GGUF_LIMITS.nameBytes);
    if (names.has(name)) throw r.fail('GGUF_DUPLICATE', `tensor "${name}" appears twice`, at);
    names.add(name);
    const nDimsAt = r.pos;
    const nDims = await r.u32(`dimension count of tensor "${name}"`);
    if (nDims < 1 || nDims > GGUF_LIMITS.dims)
      throw r.fail(
        'GGUF_BAD_TENSOR',
        `tensor "${name}" has ${nDims} dimensions (1 to ${GGUF_LIMITS.dims} allowed)`,
        nDimsAt,
      );
    const dims: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const dimAt = r.pos;
      const dim = await r.u64(`dimension ${d} of tensor "${name}"`);
      if (dim === 0n || dim > MAX_SAFE)
        throw r.fail('GGUF_BAD_TENSOR', `tensor "${name}" has dimension ${d} = ${dim}`, dimAt);
      elements *= Number(dim);
      if (!Number.isSafeInteger(elements))
        throw r.fail('GGUF_BAD_TENSOR', `tensor "${name}" has more than 2^53 elements`, dimAt);
      dims.push(Number(dim));
    }
    const typeAt = r.pos;
    const type = await r.u32(`type of tensor "${name}"`);
    const info = ggmlType(type);
    if (!info)
      throw r.fail(
        'GGUF_UNKNOWN_TYPE',
        `tensor "${name}" has ggml type ${type}, which this version of headroom does not know`,
        typeAt,
      );
    if (dims[0]! % info.blockSize !== 0) {
      throw r.fail(
        'GGUF_BAD_TENSOR',
        `tensor "${name}" of type ${info.name} has a first dimension of ${dims[0]}, not a multiple of its block size ${info.blockSize}`,
        typeAt,
      );
    }
    const bytes = (elements / info.blockSize) * info.typeSize;
    if (!Number.isSafeInteger(bytes))
      throw r.fail('GGUF_BAD_TENSOR', `tensor "${name}" is larger than 2^53 bytes`, typeAt);
    const offAt = r.pos;
    const off = await r.u64(`offset of tensor "${name}"`);
    if (off > MAX_SAFE)
      throw r.fail(
        'GGUF_TRUNCATED',
        `tensor "${name}" has its data at ${off}, past the end of the file`,
        offAt,
      );
    const relative = Number(off);
    if (relative % alignment !== 0)
      throw r.fail(
        'GGUF_BAD_TENSOR',
        `tensor "${name}" has its data at offset ${relative}, not a multiple of the alignment ${alignment}`,
        offAt,
      );
    r.charge(2 * ENTRY_COST, at);
    pending.push({ name, dims, type, typeName: info.name, elements, bytes, relative, at: offAt });
  }

  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  const tensors: GgufTensorInfo[] = [];
  for (const t of pending) {
    const offset = dataOffset + t.relative;
    if (offset + t.bytes > fileSize) {
      throw r.fail(
        'GGUF_TRUNCATED',
        `file ends inside the data of tensor "${t.name}" (bytes ${offset} to ${offset + t.bytes}, file size ${fileSize})`,
        t.at,
      );
    }
    tensors.push({
      name: t.name,
      dims: t.dims,
      type: t.type,
      typeName: t.typeName,
      elements: t.elements,
      offset,
      bytes: t.bytes,
    });
  }
  // Tensors' data may come in any order but must not overlap.
  const byOffset = [...pending].sort((a, b) => a.relative - b.relative);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!;
    const cur = byOffset[i]!;
    if (prev.relative + prev.bytes > cur.relative)
      throw r.fail(
        'GGUF_BAD_TENSOR',
        `the data of tensors "${prev.name}" and "${cur.name}" overlap`,
        cur.at,
      );
  }

  return { path: file, version, fileSize, alignment, metadata, tensors, dataOffset };
}
