import { z } from 'zod';

/**
 * A runner's sizes as a person or a client may ask for them: the config's defaults and per-model
 * overrides, a management load and Ollama's `num_ctx` share these ranges so that what one accepts
 * the others accept too.
 */
export const contextSizeSchema = z.number().int().min(128).max(1_048_576);
export const parallelSchema = z.number().int().min(1).max(64);
export const kvCacheTypeSchema = z.enum(['f16', 'q8_0', 'q4_0']);
