import { z } from 'zod';

/**
 * The OpenAI request bodies as headroom's runners accept them, shared by the daemon (which checks
 * them before a model is loaded) and the embedded runner (which may be called directly). Unknown
 * fields pass through unchanged. Extensions beyond OpenAI: `top_k`, `min_p`, `ignore_eos`.
 */

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() });

export const chatMessage = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(contentPart), z.null()]).optional(),
  name: z.string().optional(),
});

export const samplingFields = {
  model: z.string().optional(),
  max_tokens: z.number().int().positive().max(1_048_576).nullish(),
  max_completion_tokens: z.number().int().positive().max(1_048_576).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  n: z.literal(1, { error: 'only n = 1 is supported' }).nullish(),
  ignore_eos: z.boolean().nullish(),
};

export const chatCompletionBody = z.looseObject({
  ...samplingFields,
  messages: z.array(chatMessage).min(1, 'messages must hold at least one message'),
});

export const completionBody = z.looseObject({
  ...samplingFields,
  prompt: z.union([
    z.string(),
    z.array(z.string()).length(1, 'only one prompt per request is supported'),
  ]),
});

export type ChatMessage = z.infer<typeof chatMessage>;
export type ChatCompletionBody = z.infer<typeof chatCompletionBody>;
export type CompletionBody = z.infer<typeof completionBody>;

/** The text of a message's content: a string, or the text parts of a content array joined. */
export function messageText(content: ChatMessage['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text ?? '').join('');
}
