import { z } from 'zod';
import { contextSizeSchema } from '../../lib/runner-sizes.js';
import type { ChatMessage } from '../../engines/openai.js';

/**
 * Ollama's request shapes and their mapping onto the runner's OpenAI bodies. Pure: no I/O.
 * Ollama's API is described in its docs/api.md; we accept the fields clients send and map the
 * sampling options the runner understands.
 */

/** `keep_alive`: seconds as a number, a duration ("5m", "1h", "0"), negative = keep forever. */
export const keepAliveSchema = z.union([z.number(), z.string().max(32)]).optional();

const optionsSchema = z
  .object({
    num_ctx: contextSizeSchema.optional(),
    num_predict: z.number().int().min(-2).optional(),
    temperature: z.number().min(0).max(2).optional(),
    top_p: z.number().min(0).max(1).optional(),
    top_k: z.number().int().min(0).optional(),
    min_p: z.number().min(0).max(1).optional(),
    seed: z.number().int().optional(),
    stop: z.array(z.string()).max(16).optional(),
  })
  .passthrough()
  .optional();

const messageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant', 'tool']),
  content: z.string(),
  images: z.array(z.string()).optional(),
});

export const ollamaChatBody = z.object({
  model: z.string().min(1),
  messages: z.array(messageSchema).default([]),
  stream: z.boolean().default(true),
  format: z.unknown().optional(),
  options: optionsSchema,
  keep_alive: keepAliveSchema,
});

export const ollamaGenerateBody = z.object({
  model: z.string().min(1),
  prompt: z.string().optional(),
  system: z.string().optional(),
  raw: z.boolean().optional(),
  stream: z.boolean().default(true),
  format: z.unknown().optional(),
  options: optionsSchema,
  keep_alive: keepAliveSchema,
});

export const ollamaEmbedBody = z.object({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.string()).min(1).max(2048)]),
  keep_alive: keepAliveSchema,
});

export type OllamaChatBody = z.infer<typeof ollamaChatBody>;
export type OllamaGenerateBody = z.infer<typeof ollamaGenerateBody>;
type Options = NonNullable<OllamaChatBody['options']>;

/**
 * keep_alive in milliseconds for the scheduler: undefined = the model's default TTL, null = never
 * unload, 0 = unload as soon as idle. Throws a RangeError a person can read for a bad value.
 */
export function keepAliveMs(v: number | string | undefined): number | null | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new RangeError('keep_alive must be a finite number of seconds');
    return v < 0 ? null : Math.round(v * 1000);
  }
  const s = v.trim();
  if (/^-/.test(s)) return null;
  if (/^\d+(?:\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(s);
  if (!m)
    throw new RangeError(`keep_alive "${v}" is not a duration such as "5m", "30s", "1h", 0 or -1`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

/** The runner's sampling fields for Ollama's options (unknown options are ignored, as Ollama does). */
export function samplingFrom(options: Options | undefined): Record<string, unknown> {
  const o = options ?? {};
  const out: Record<string, unknown> = {};
  if (o.temperature !== undefined) out.temperature = o.temperature;
  if (o.top_p !== undefined) out.top_p = o.top_p;
  if (o.top_k !== undefined) out.top_k = o.top_k;
  if (o.min_p !== undefined) out.min_p = o.min_p;
  if (o.seed !== undefined) out.seed = o.seed;
  if (o.stop !== undefined && o.stop.length > 0) out.stop = o.stop;
  // num_predict: -1 = until the context ends, -2 = until the context is full: no max_tokens.
  if (o.num_predict !== undefined && o.num_predict >= 0) out.max_tokens = o.num_predict;
  return out;
}

/** The runner body for /api/chat. */
export function chatRunnerBody(b: OllamaChatBody): Record<string, unknown> {
  const messages: ChatMessage[] = b.messages.map((m) => ({
    role: m.role === 'tool' ? 'user' : m.role,
    content: m.content,
  }));
  return {
    messages,
    ...samplingFrom(b.options),
    stream: true,
    stream_options: { include_usage: true },
  };
}

/** The runner path and body for /api/generate: raw prompts go to completions, others to chat. */
export function generateRunnerRequest(b: OllamaGenerateBody): {
  path: string;
  body: Record<string, unknown>;
} {
  const sampling = {
    ...samplingFrom(b.options),
    stream: true,
    stream_options: { include_usage: true },
  };
  if (b.raw === true)
    return { path: '/v1/completions', body: { prompt: b.prompt ?? '', ...sampling } };
  const messages: ChatMessage[] = [
    ...(b.system ? [{ role: 'system' as const, content: b.system }] : []),
    { role: 'user', content: b.prompt ?? '' },
  ];
  return { path: '/v1/chat/completions', body: { messages, ...sampling } };
}

/** One parsed SSE event of the runner's stream. */
export interface RunnerChunk {
  text: string;
  finishReason?: string;
  usage?: { prompt_tokens: number; completion_tokens: number };
  error?: { message: string; code?: string };
}

/** Reads one SSE `data:` payload (chat or completion chunk); undefined for [DONE] and comments. */
export function parseRunnerEvent(event: string): RunnerChunk | undefined {
  const line = event.split('\n').find((l) => l.startsWith('data: '));
  if (!line) return undefined;
  const data = line.slice(6);
  if (data === '[DONE]') return undefined;
  const j = JSON.parse(data) as {
    choices?: Array<{ delta?: { content?: string }; text?: string; finish_reason?: string | null }>;
    usage?: { prompt_tokens: number; completion_tokens: number } | null;
    error?: { message: string; code?: string };
  };
  const c = j.choices?.[0];
  return {
    text: c?.delta?.content ?? c?.text ?? '',
    ...(c?.finish_reason ? { finishReason: c.finish_reason } : {}),
    ...(j.usage ? { usage: j.usage } : {}),
    ...(j.error ? { error: j.error } : {}),
  };
}

/** Splits a growing SSE text buffer into complete events and the incomplete rest. */
export function splitEvents(buffer: string): { events: string[]; rest: string } {
  const parts = buffer.split('\n\n');
  const rest = parts.pop() ?? '';
  return { events: parts.filter((p) => p.length > 0), rest };
}
