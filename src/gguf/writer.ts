/**
 * A growable little-endian byte writer for GGUF headers (metadata and tensor infos). The forge
 * uses it for the header of a forged model; tests use it to build headers other writers produce.
 * Tensor data never goes through it: the forge streams that separately.
 */
import { GgufValueType } from './constants.js';

const textEncoder = new TextEncoder();

export class ByteWriter {
  #buf: Buffer;
  #len = 0;

  constructor(initial = 4096) {
    this.#buf = Buffer.alloc(Math.max(16, initial));
  }

  get length(): number {
    return this.#len;
  }

  #reserve(n: number): number {
    const need = this.#len + n;
    if (need > this.#buf.length) {
      let cap = this.#buf.length * 2;
      while (cap < need) cap *= 2;
      const next = Buffer.alloc(cap);
      this.#buf.copy(next, 0, 0, this.#len);
      this.#buf = next;
    }
    const at = this.#len;
    this.#len = need;
    return at;
  }

  u8(v: number): this {
    const at = this.#reserve(1);
    this.#buf.writeUInt8(v, at);
    return this;
  }
  i8(v: number): this {
    const at = this.#reserve(1);
    this.#buf.writeInt8(v, at);
    return this;
  }
  u16(v: number): this {
    const at = this.#reserve(2);
    this.#buf.writeUInt16LE(v, at);
    return this;
  }
  i16(v: number): this {
    const at = this.#reserve(2);
    this.#buf.writeInt16LE(v, at);
    return this;
  }
  u32(v: number): this {
    const at = this.#reserve(4);
    this.#buf.writeUInt32LE(v >>> 0, at);
    return this;
  }
  i32(v: number): this {
    const at = this.#reserve(4);
    this.#buf.writeInt32LE(v, at);
    return this;
  }
  u64(v: number | bigint): this {
    const at = this.#reserve(8);
    this.#buf.writeBigUInt64LE(BigInt(v), at);
    return this;
  }
  i64(v: number | bigint): this {
    const at = this.#reserve(8);
    this.#buf.writeBigInt64LE(BigInt(v), at);
    return this;
  }
  f32(v: number): this {
    const at = this.#reserve(4);
    this.#buf.writeFloatLE(v, at);
    return this;
  }
  f64(v: number): this {
    const at = this.#reserve(8);
    this.#buf.writeDoubleLE(v, at);
    return this;
  }
  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }
  bytes(b: Uint8Array): this {
    const at = this.#reserve(b.length);
    this.#buf.set(b, at);
    return this;
  }
  /** A GGUF string: uint64 byte length, then UTF-8 bytes (no terminator). */
  string(s: string): this {
    const b = textEncoder.encode(s);
    return this.u64(b.length).bytes(b);
  }
  /** Zero bytes up to the next multiple of `alignment`. */
  pad(alignment: number): this {
    const rem = this.#len % alignment;
    if (rem !== 0) this.#reserve(alignment - rem);
    return this;
  }

  // Metadata key/value pairs: key string, uint32 value type, value.
  kvU32(key: string, v: number): this {
    return this.string(key).u32(GgufValueType.UINT32).u32(v);
  }
  kvI32(key: string, v: number): this {
    return this.string(key).u32(GgufValueType.INT32).i32(v);
  }
  kvU64(key: string, v: number | bigint): this {
    return this.string(key).u32(GgufValueType.UINT64).u64(v);
  }
  kvF32(key: string, v: number): this {
    return this.string(key).u32(GgufValueType.FLOAT32).f32(v);
  }
  kvBool(key: string, v: boolean): this {
    return this.string(key).u32(GgufValueType.BOOL).bool(v);
  }
  kvBools(key: string, vs: readonly boolean[]): this {
    this.string(key).u32(GgufValueType.ARRAY).u32(GgufValueType.BOOL).u64(vs.length);
    for (const v of vs) this.bool(v);
    return this;
  }
  kvString(key: string, v: string): this {
    return this.string(key).u32(GgufValueType.STRING).string(v);
  }
  kvStrings(key: string, vs: readonly string[]): this {
    this.string(key).u32(GgufValueType.ARRAY).u32(GgufValueType.STRING).u64(vs.length);
    for (const v of vs) this.string(v);
    return this;
  }
  kvF32s(key: string, vs: ArrayLike<number>): this {
    this.string(key).u32(GgufValueType.ARRAY).u32(GgufValueType.FLOAT32).u64(vs.length);
    const at = this.#reserve(vs.length * 4);
    for (let i = 0; i < vs.length; i++) this.#buf.writeFloatLE(vs[i]!, at + i * 4);
    return this;
  }
  kvI32s(key: string, vs: ArrayLike<number>): this {
    this.string(key).u32(GgufValueType.ARRAY).u32(GgufValueType.INT32).u64(vs.length);
    const at = this.#reserve(vs.length * 4);
    for (let i = 0; i < vs.length; i++) this.#buf.writeInt32LE(vs[i]!, at + i * 4);
    return this;
  }
  kvU32s(key: string, vs: ArrayLike<number>): this {
    this.string(key).u32(GgufValueType.ARRAY).u32(GgufValueType.UINT32).u64(vs.length);
    const at = this.#reserve(vs.length * 4);
    for (let i = 0; i < vs.length; i++) this.#buf.writeUInt32LE(vs[i]!, at + i * 4);
    return this;
  }

  /** A tensor info: name, n_dims, dims (innermost first), ggml type, offset in the data section. */
  tensorInfo(
    name: string,
    dims: readonly (number | bigint)[],
    type: number,
    offset: number | bigint,
  ): this {
    this.string(name).u32(dims.length);
    for (const d of dims) this.u64(d);
    return this.u32(type).u64(offset);
  }

  /** A copy of the bytes written so far. */
  toBuffer(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}
