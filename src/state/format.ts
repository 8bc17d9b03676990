import { open } from 'node:fs/promises';

/**
 * llama.cpp's sequence state file (llama_state_seq_save_file, which both llama-server's slot save
 * and node-llama-cpp's saveStateToFile call): u32 magic "ggsq", u32 version, u32 token count,
 * the tokens (i32 each), then the sequence's KV cells. llama-server stores its tokens packed
 * (server_tokens::serialize): -1, a format version (1), the token count, the tokens, then a media
 * chunk count; node-llama-cpp stores them plain. Only the header is read here, never the cells.
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
