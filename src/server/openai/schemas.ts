import { z } from 'zod';

/**
 * What the daemon checks of OpenAI requests before a model is loaded: the fields it needs and
 * the ranges runners accept. Unknown fields pass through to the runner unchanged.
 */

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });

const message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  name: z.string().optional(),
});

const sampling = {
  model: z.string({ error: 'model is required: the name of a model (GET /v1/models lists them)' }).min(1),
  max_tokens: z.number().int().positive().max(1_048_576).nullish(),
  max_completion_tokens: z.number().int().positive().max(1_048_576).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  seed: z.number().int().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  n: z.literal(1, { error: 'only n = 1 is supported' }).nullish(),
};

export const chatCompletionRequest = z.looseObject({
  ...sampling,
  messages: z.array(message).min(1, 'messages must hold at least one message'),
});

export const completionRequest = z.looseObject({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).length(1, 'only one prompt per request is supported')]),
});

export type ChatCompletionRequest = z.infer<typeof chatCompletionRequest>;
export type CompletionRequest = z.infer<typeof completionRequest>;
