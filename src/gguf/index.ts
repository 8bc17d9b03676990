/** The gguf folder's public API: header reader, ModelSpec derivation, forge, format constants. */
export {
  readGguf,
  readGgufBytes,
  GgufError,
  GGUF_LIMITS,
  GGUF_MAX_METADATA_BYTES,
  type GgufErrorCode,
  type GgufFile,
  type GgufNumberArray,
  type GgufTensorInfo,
  type GgufValue,
  type ReadGgufOptions,
} from './reader.js';
export { readModelSpec, specFromGguf } from './spec.js';
export {
  forgeModel,
  forgeVocabulary,
  llamaParamCount,
  parseParamCount,
  resolveForgeOptions,
  shapeForParams,
  f32ToF16Bits,
  ForgeError,
  CHATML_TEMPLATE,
  FORGE_DEFAULT_CTX,
  FORGE_DEFAULT_PARAMS,
  type ForgeOptions,
  type ForgeResult,
  type ForgeShape,
  type ForgeTensorType,
} from './forge.js';
export type { ModelSpec, GgmlTypeName } from './types.js';
export {
  GGUF_MAGIC,
  GGUF_DEFAULT_ALIGNMENT,
  GGML_TYPES,
  GgufValueType,
  LLAMA_FTYPE,
  fileTypeName,
  ggmlType,
  ggmlTypeByName,
  type GgmlTypeInfo,
} from './constants.js';
export { ByteWriter } from './writer.js';
