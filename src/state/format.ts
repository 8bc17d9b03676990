import { createReadStream, createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';

/**
 * llama.cpp's sequence state file (llama_state_seq_save_file, which both llama-server's slot save
 * and node-llama-cpp's saveStateToFile call): u32 magic "ggsq", u32 version, u32 token count,
 * the tokens (i32 each), then the sequence's KV cells. llama-server stores its tokens packed
 * (server_tokens::serialize): -1, a format version (1), the token count, the tokens, then a media
 * chunk count; node-llama-cpp stores them plain. The cells are never read into memory: only their
 * layout, to rewrite a state for a runner with another slot count.
 */

export const STATE_SEQ_MAGIC = 0x67677371; // "ggsq", LLAMA_FILE_MAGIC_GGSQ
export const STATE_SEQ_VERSION = 3;
const PACKED_MARKER = -1; // LLAMA_TOKEN_NULL
const PACKED_VERSION = 1;

export interface StateHeader {
  /** The tokens whose KV cells the file holds, in order. */
  tokens: Int32Array;
  /** Bytes before the cells (magic, version, token list). */
  headerBytes: number;
}

/** Why a state file is refused (its header does not parse, or is not llama.cpp's). */
export class StateFormatError extends Error {}

/**
 * Reads the token list of a state file. Rejects with StateFormatError when the magic or version
 * is not llama.cpp's, the token count exceeds `maxTokens` or the file's size, or a packed list is
 * malformed (media chunks, which headroom never saves, count as malformed).
 */
export async function readStateHeader(file: string, maxTokens: number): Promise<StateHeader> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(12);
    if (size < 12 || (await fh.read(head, 0, 12, 0)).bytesRead < 12)
      throw new StateFormatError(`shorter than a state header (${size} bytes)`);
    const magic = head.readUInt32LE(0);
    const version = head.readUInt32LE(4);
    if (magic !== STATE_SEQ_MAGIC || version !== STATE_SEQ_VERSION)
      throw new StateFormatError(
        `not a llama.cpp sequence state (magic ${magic.toString(16)}, version ${version})`,
      );
    const count = head.readUInt32LE(8);
    // The packed form adds 4 words around the tokens; anything longer is not a list we wrote.
    if (count > maxTokens + 4 || 12 + count * 4 > size)
      throw new StateFormatError(`token count ${count} exceeds the limit or the file's size`);
    const buf = Buffer.alloc(count * 4);
    if ((await fh.read(buf, 0, buf.length, 12)).bytesRead < buf.length)
      throw new StateFormatError('truncated token list');
    const words = new Int32Array(buf.buffer, buf.byteOffset, count);
    const headerBytes = 12 + count * 4;
    if (count === 0 || words[0] !== PACKED_MARKER) return { tokens: words.slice(), headerBytes };
    if (count < 4 || words[1] !== PACKED_VERSION)
      throw new StateFormatError('malformed packed token list');
    const n = words[2]!;
    if (n < 0 || 3 + n + 1 !== count || words[3 + n] !== 0)
      throw new StateFormatError('packed token list with media chunks or a wrong length');
    return { tokens: words.slice(3, 3 + n), headerBytes };
  } finally {
    await fh.close();
  }
}

/** Tokens `a` and `b` share from their start. */
export function commonPrefix(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * Where a state's cells lie. After the token list, llama.cpp's KV cache writes its stream count
 * (one stream per slot when slots do not share a cache, as headroom runs them) and, per stream,
 * a cell count and that stream's cells; a sequence's cells are in one stream, the others count
 * 0. On restore the cells go to the target slot's stream whatever their position, but the count
 * of streams must equal the runner's: a state saved with one slot count loads into a runner with
 * another only once rewritten (`writeWithStreams`).
 */
export interface StateLayout {
  headerBytes: number;
  streams: number;
  /** The one stream holding cells: its record's offset and length (cell count, meta, data). */
  cells?: { offset: number; bytes: number };
}

/** The KV stream count a state file was written with (the word after its token list). */
export async function readStreamCount(file: string, headerBytes: number): Promise<number> {
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(4);
    if ((await fh.read(b, 0, 4, headerBytes)).bytesRead < 4)
      throw new StateFormatError('no cells after the token list');
    return b.readUInt32LE(0);
  } finally {
    await fh.close();
  }
}

/** A cell's meta in a sequence state: position, seq-id count (1), the seq id. */
const CELL_META_BYTES = 12;
const MAX_STREAMS = 4096;
const MAX_LAYERS = 65536;
/** ggml's type ids are small; anything larger is not a type. */
const MAX_GGML_TYPE = 1024;

/**
 * Parses the KV part of a state file whose header ends at `headerBytes` as one plain KV cache
 * (not a sliding-window pair, recurrent state or cells with extended positions), checking that it
 * ends exactly at the end of the file, with at most `maxCells` cells. Rejects with
 * StateFormatError for anything else: such a file is restored only into a runner of the slot
 * count it was saved with.
 */
export async function readStateLayout(
  file: string,
  headerBytes: number,
  maxCells: number,
): Promise<StateLayout> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    let pos = headerBytes;
    const word = Buffer.alloc(8);
    const u32 = async (): Promise<number> => {
      if (pos + 4 > size) throw new StateFormatError('cells end early');
      await fh.read(word, 0, 4, pos);
      pos += 4;
      return word.readUInt32LE(0);
    };
    const u64 = async (): Promise<number> => {
      if (pos + 8 > size) throw new StateFormatError('cells end early');
      await fh.read(word, 0, 8, pos);
      pos += 8;
      const v = word.readBigUInt64LE(0);
      if (v > BigInt(size)) throw new StateFormatError('a row size beyond the file');
      return Number(v);
    };
    const skip = (n: number): void => {
      if (n > size - pos) throw new StateFormatError('cells end early');
      pos += n;
    };
    const streams = await u32();
    if (streams < 1 || streams > MAX_STREAMS) throw new StateFormatError(`stream count ${streams}`);
    let cells: StateLayout['cells'];
    for (let s = 0; s < streams; s++) {
      const offset = pos;
      const count = await u32();
      if (count === 0) continue;
      if (cells) throw new StateFormatError('cells in more than one stream');
      // Bounds what is read into memory below (12 bytes a cell).
      if (count > maxCells) throw new StateFormatError(`${count} cells, more than ${maxCells}`);
      if (count * CELL_META_BYTES > size - pos) throw new StateFormatError('cells end early');
      const meta = Buffer.alloc(count * CELL_META_BYTES);
      await fh.read(meta, 0, meta.length, pos);
      for (let i = 0; i < count; i++)
        if (meta.readUInt32LE(i * CELL_META_BYTES + 4) !== 1)
          throw new StateFormatError('cells that are not one sequence plain cells');
      pos += meta.length;
      const vTrans = await u32();
      const layers = await u32();
      if (vTrans > 1 || layers < 1 || layers > MAX_LAYERS)
        throw new StateFormatError('not a plain KV cache');
      const type = async (): Promise<void> => {
        if ((await u32()) > MAX_GGML_TYPE) throw new StateFormatError('not a plain KV cache');
      };
      for (let l = 0; l < layers; l++) {
        await type();
        skip(count * (await u64()));
      }
      for (let l = 0; l < layers; l++) {
        await type();
        if (vTrans === 0) skip(count * (await u64()));
        else {
          const el = await u32();
          skip(count * el * (await u32()));
        }
      }
      cells = { offset, bytes: pos - offset };
    }
    if (pos !== size) throw new StateFormatError('bytes after the cells: not a plain KV cache');
    return { headerBytes, streams, ...(cells ? { cells } : {}) };
  } finally {
    await fh.close();
  }
}

/**
 * Writes `src` (with `layout`) to `dst` for a runner of `streams` streams: the same header and
 * cells, the cells as the first stream and the others empty. Streamed: no copy held in memory.
 */
export async function writeWithStreams(
  src: string,
  layout: StateLayout,
  dst: string,
  streams: number,
): Promise<void> {
  const u32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v, 0);
    return b;
  };
  async function* parts(): AsyncGenerator<Buffer> {
    yield* createReadStream(src, { start: 0, end: layout.headerBytes - 1, highWaterMark: 4 << 20 });
    yield u32(streams);
    const cells = layout.cells;
    if (cells)
      yield* createReadStream(src, {
        start: cells.offset,
        end: cells.offset + cells.bytes - 1,
        highWaterMark: 4 << 20,
      });
    for (let s = cells ? 1 : 0; s < streams; s++) yield u32(0);
  }
  await pipeline(parts, createWriteStream(dst, { flags: 'wx' }));
}
