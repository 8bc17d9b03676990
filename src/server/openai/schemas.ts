import { z } from 'zod';
import { chatCompletionBody, completionBody } from '../../engines/openai.js';
import { contextOverflowPolicy } from '../overflow.js';

/**
 * What the daemon checks of OpenAI requests before a model is loaded: the runner's body shapes
 * (src/engines/openai.ts) with `model` required, since the daemon routes by it.
 * headroom's extension: `context_overflow` ("error" | "truncate_middle", see server/overflow.ts);
 * the daemon consumes it and does not forward it.
 */
const model = z
  .string({ error: 'model is required: the name of a model (GET /v1/models lists them)' })
  .min(1);

export const chatCompletionRequest = chatCompletionBody.extend({
  model,
  context_overflow: contextOverflowPolicy.optional(),
});
export const completionRequest = completionBody.extend({ model });

/** OpenAI's embeddings request: one string or up to 2048 strings; float or base64 (float32 LE) vectors. */
export const embeddingRequest = z.looseObject({
  model,
  input: z.union([z.string(), z.array(z.string()).min(1).max(2048)]),
  encoding_format: z.enum(['float', 'base64']).optional(),
});

export type ChatCompletionRequest = z.infer<typeof chatCompletionRequest>;
export type CompletionRequest = z.infer<typeof completionRequest>;
