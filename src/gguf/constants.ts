/**
 * GGUF format constants shared by the reader and the forge: metadata value types and the ggml
 * tensor type table (block size in elements, bytes per block), as in ggml's `type_traits`.
 */

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian uint32
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types (gguf_type in ggml's gguf.h). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

export interface GgmlTypeInfo {
  /** ggml type id as stored in a tensor info. */
  readonly id: number;
  /** Name as llama.cpp prints it ("F16", "Q8_0", "Q4_K", ...). */
  readonly name: string;
  /** Elements per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

/**
 * The ggml tensor types a GGUF file may contain. Ids 4 and 5 (Q4_2, Q4_3) were removed from ggml
 * before GGUF existed and are absent. The repacked types 31–33 and 36–38 are no longer written by
 * llama.cpp but old files carry them; their layout is that of Q4_0 / IQ4_NL. Ids 40+ (NVFP4,
 * Q1_0, Q2_0) are too new to have a settled layout here and read as an unknown type.
 */
const TYPES: readonly GgmlTypeInfo[] = [
  { id: 0, name: 'F32', blockSize: 1, typeSize: 4 },
  { id: 1, name: 'F16', blockSize: 1, typeSize: 2 },
  { id: 2, name: 'Q4_0', blockSize: 32, typeSize: 18 },
  { id: 3, name: 'Q4_1', blockSize: 32, typeSize: 20 },
  { id: 6, name: 'Q5_0', blockSize: 32, typeSize: 22 },
  { id: 7, name: 'Q5_1', blockSize: 32, typeSize: 24 },
  { id: 8, name: 'Q8_0', blockSize: 32, typeSize: 34 },
  { id: 9, name: 'Q8_1', blockSize: 32, typeSize: 36 },
  { id: 10, name: 'Q2_K', blockSize: 256, typeSize: 84 },
  { id: 11, name: 'Q3_K', blockSize: 256, typeSize: 110 },
  { id: 12, name: 'Q4_K', blockSize: 256, typeSize: 144 },
  { id: 13, name: 'Q5_K', blockSize: 256, typeSize: 176 },
  { id: 14, name: 'Q6_K', blockSize: 256, typeSize: 210 },
  { id: 15, name: 'Q8_K', blockSize: 256, typeSize: 292 },
  { id: 16, name: 'IQ2_XXS', blockSize: 256, typeSize: 66 },
  { id: 17, name: 'IQ2_XS', blockSize: 256, typeSize: 74 },
  { id: 18, name: 'IQ3_XXS', blockSize: 256, typeSize: 98 },
  { id: 19, name: 'IQ1_S', blockSize: 256, typeSize: 50 },
  { id: 20, name: 'IQ4_NL', blockSize: 32, typeSize: 18 },
  { id: 21, name: 'IQ3_S', blockSize: 256, typeSize: 110 },
  { id: 22, name: 'IQ2_S', blockSize: 256, typeSize: 82 },
  { id: 23, name: 'IQ4_XS', blockSize: 256, typeSize: 136 },
  { id: 24, name: 'I8', blockSize: 1, typeSize: 1 },
  { id: 25, name: 'I16', blockSize: 1, typeSize: 2 },
  { id: 26, name: 'I32', blockSize: 1, typeSize: 4 },
  { id: 27, name: 'I64', blockSize: 1, typeSize: 8 },
  { id: 28, name: 'F64', blockSize: 1, typeSize: 8 },
  { id: 29, name: 'IQ1_M', blockSize: 256, typeSize: 56 },
  { id: 30, name: 'BF16', blockSize: 1, typeSize: 2 },
  { id: 31, name: 'Q4_0_4_4', blockSize: 32, typeSize: 18 },
  { id: 32, name: 'Q4_0_4_8', blockSize: 32, typeSize: 18 },
  { id: 33, name: 'Q4_0_8_8', blockSize: 32, typeSize: 18 },
  { id: 34, name: 'TQ1_0', blockSize: 256, typeSize: 54 },
  { id: 35, name: 'TQ2_0', blockSize: 256, typeSize: 66 },
  { id: 36, name: 'IQ4_NL_4_4', blockSize: 32, typeSize: 18 },
  { id: 37, name: 'IQ4_NL_4_8', blockSize: 32, typeSize: 18 },
  { id: 38, name: 'IQ4_NL_8_8', blockSize: 32, typeSize: 18 },
  { id: 39, name: 'MXFP4', blockSize: 32, typeSize: 17 },
];

const BY_ID = new Map<number, GgmlTypeInfo>(TYPES.map((t) => [t.id, t]));
const BY_NAME = new Map<string, GgmlTypeInfo>(TYPES.map((t) => [t.name, t]));

/** The type with this id, or undefined when ggml has no such type (or it is unsupported here). */
export function ggmlType(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

export function ggmlTypeByName(name: string): GgmlTypeInfo | undefined {
  return BY_NAME.get(name);
}

export const GGML_TYPES: readonly GgmlTypeInfo[] = TYPES;

/** `general.file_type` (llama_ftype) names, by value. */
const FILE_TYPES: readonly (string | undefined)[] = [
  'ALL_F32',
  'MOSTLY_F16',
  'MOSTLY_Q4_0',
  'MOSTLY_Q4_1',
  'MOSTLY_Q4_1_SOME_F16',
  'MOSTLY_Q4_2',
  'MOSTLY_Q4_3',
  'MOSTLY_Q8_0',
  'MOSTLY_Q5_0',
  'MOSTLY_Q5_1',
  'MOSTLY_Q2_K',
  'MOSTLY_Q3_K_S',
  'MOSTLY_Q3_K_M',
  'MOSTLY_Q3_K_L',
  'MOSTLY_Q4_K_S',
  'MOSTLY_Q4_K_M',
  'MOSTLY_Q5_K_S',
  'MOSTLY_Q5_K_M',
  'MOSTLY_Q6_K',
  'MOSTLY_IQ2_XXS',
  'MOSTLY_IQ2_XS',
  'MOSTLY_Q2_K_S',
  'MOSTLY_IQ3_XS',
  'MOSTLY_IQ3_XXS',
  'MOSTLY_IQ1_S',
  'MOSTLY_IQ4_NL',
  'MOSTLY_IQ3_S',
  'MOSTLY_IQ3_M',
  'MOSTLY_IQ2_S',
  'MOSTLY_IQ2_M',
  'MOSTLY_IQ4_XS',
  'MOSTLY_IQ1_M',
  'MOSTLY_BF16',
  'MOSTLY_Q4_0_4_4',
  'MOSTLY_Q4_0_4_8',
  'MOSTLY_Q4_0_8_8',
  'MOSTLY_TQ1_0',
  'MOSTLY_TQ2_0',
  'MOSTLY_MXFP4_MOE',
  'MOSTLY_NVFP4',
  'MOSTLY_Q1_0',
  'MOSTLY_Q2_0',
];

/** Name of a `general.file_type` value; `FILE_TYPE_<n>` when unknown. */
export function fileTypeName(value: number): string {
  return FILE_TYPES[value] ?? `FILE_TYPE_${value}`;
}

export const LLAMA_FTYPE = { ALL_F32: 0, MOSTLY_F16: 1, MOSTLY_Q8_0: 7 } as const;
