import { z } from 'zod';
import { chatCompletionBody, completionBody } from '../../engines/openai.js';

/**
 * What the daemon checks of OpenAI requests before a model is loaded: the runner's body shapes
 * (src/engines/openai.ts) with `model` required, since the daemon routes by it.
 */
const model = z
  .string({ error: 'model is required: the name of a model (GET /v1/models lists them)' })
  .min(1);

export const chatCompletionRequest = chatCompletionBody.extend({ model });
export const completionRequest = completionBody.extend({ model });

export type ChatCompletionRequest = z.infer<typeof chatCompletionRequest>;
export type CompletionRequest = z.infer<typeof completionRequest>;
