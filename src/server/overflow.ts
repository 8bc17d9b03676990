/**
 * Context overflow policy for chat requests: what happens when a conversation does not fit the
 * model's context.
 *
 * - `error` (the default): the runner answers 400 `context_length_exceeded` with the prompt's
 *   token count and the context size; nothing is done here.
 * - `truncate_middle`: keep every system/developer message and the most recent turns that fit,
 *   leaving room for `max_tokens`; drop the oldest other messages. The request goes on with the
 *   shorter conversation; the response says how many messages were dropped (header
 *   `x-headroom-context-dropped-messages`). When even the system prompt and the last message do
 *   not fit, 400 `context_length_exceeded` with the counts.
 *
 * Token counts come from the runner's tokenizer (POST /tokenize), one call per message, and only
 * when a cheap upper bound says the conversation might not fit. The chat template's tokens are not
 * visible through /tokenize; each message is charged the tokens of a ChatML-style wrapper
 * (tokenized as plain text, which over-counts real special tokens), so the estimate errs on the
 * side of dropping one message too many rather than overflowing.
 *
 * `planTruncateMiddle` is the pure core; `applyOverflowPolicy` does the I/O around it.
 */
import { z } from 'zod';
import type { ChatMessage } from '../engines/openai.js';
import { messageText } from '../engines/openai.js';
import { HeadroomError } from '../lib/errors.js';

export const contextOverflowPolicy = z.enum(['error', 'truncate_middle']);
export type ContextOverflowPolicy = z.infer<typeof contextOverflowPolicy>;

export class ContextLengthError extends HeadroomError {
  override readonly name = 'ContextLengthError';
  constructor(promptTokens: number, contextSize: number, maxTokens: number) {
    super(
      'context_length_exceeded',
      `Even the system prompt and the last message take ${promptTokens} tokens, and ${maxTokens} more are reserved for the answer, but this model's context holds ${contextSize}: shorten the last message, lower max_tokens, or load the model with a larger context.`,
      { status: 400, details: { param: 'messages', promptTokens, contextSize, maxTokens } },
    );
  }
}

export interface CountedMessage {
  role: string;
  /** Tokens of the message as the template renders it (content + wrapper). */
  tokens: number;
}

export type TruncatePlan =
  | { fits: true; keep: number[]; dropped: number; promptTokens: number }
  | { fits: false; promptTokens: number };

const isSystem = (role: string): boolean => role === 'system' || role === 'developer';

/**
 * Which messages to keep so that `baseTokens + Σ kept tokens + maxTokens ≤ contextSize`.
 * Every system/developer message and the last message are always kept; other messages are
 * dropped oldest first; the kept tail of the conversation starts with a user message when it
 * can (an answer without its question confuses a model more than a missing turn).
 */
export function planTruncateMiddle(input: {
  messages: readonly CountedMessage[];
  baseTokens: number;
  contextSize: number;
  maxTokens: number;
}): TruncatePlan {
  const { messages, baseTokens, contextSize, maxTokens } = input;
  const limit = contextSize - maxTokens;
  const n = messages.length;
  const total = messages.reduce((a, m) => a + m.tokens, baseTokens);
  if (total <= limit)
    return { fits: true, keep: messages.map((_, i) => i), dropped: 0, promptTokens: total };
  const last = n - 1;
  let required = baseTokens;
  for (let i = 0; i < n; i++)
    if (isSystem(messages[i]!.role) || i === last) required += messages[i]!.tokens;
  if (required > limit) return { fits: false, promptTokens: required };
  // Walk back from the newest: take other messages while they fit.
  let used = required;
  let start = last;
  for (let i = last - 1; i >= 0; i--) {
    const m = messages[i]!;
    if (isSystem(m.role)) continue;
    if (used + m.tokens > limit) break;
    used += m.tokens;
    start = i;
  }
  // Start the kept tail at a user message when one is in it.
  while (start < last && !isSystem(messages[start]!.role) && messages[start]!.role !== 'user') {
    const hasUserLater = messages.slice(start + 1, last + 1).some((m) => m.role === 'user');
    if (!hasUserLater) break;
    used -= messages[start]!.tokens;
    start++;
    while (start < last && isSystem(messages[start]!.role)) start++;
  }
  const keep: number[] = [];
  for (let i = 0; i < n; i++) if (isSystem(messages[i]!.role) || i >= start) keep.push(i);
  return { fits: true, keep, dropped: n - keep.length, promptTokens: used };
}

/** Tokens reserved for the answer when the request sets no max_tokens. */
export function defaultReserve(contextSize: number): number {
  return Math.max(1, Math.min(512, Math.floor(contextSize / 8)));
}

/** Bytes charged per message in the no-tokenizing upper bound (a generous template wrapper). */
const WRAPPER_BYTES = 64;

/**
 * An upper bound of the prompt's tokens without tokenizing: a SentencePiece/BPE tokenizer with
 * byte fallback never makes more tokens than UTF-8 bytes.
 */
export function tokenUpperBound(messages: readonly ChatMessage[]): number {
  let n = WRAPPER_BYTES;
  for (const m of messages) n += Buffer.byteLength(messageText(m.content), 'utf8') + WRAPPER_BYTES;
  return n;
}

export type Tokenize = (text: string, signal: AbortSignal) => Promise<number>;

/** POST /tokenize on a runner: the number of tokens of `text` (no special tokens). */
export function runnerTokenizer(runnerUrl: string): Tokenize {
  return async (text, signal) => {
    const res = await fetch(new URL('/tokenize', runnerUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ content: text }),
      signal,
    });
    if (!res.ok)
      throw new HeadroomError(
        'tokenize_failed',
        `The runner could not count the prompt's tokens (HTTP ${res.status}); retry, or use context_overflow "error".`,
        { status: 502 },
      );
    const body = (await res.json()) as { tokens?: unknown };
    if (!Array.isArray(body.tokens))
      throw new HeadroomError('tokenize_failed', 'The runner answered /tokenize without tokens.', {
        status: 502,
      });
    return body.tokens.length;
  };
}

export interface OverflowResult {
  messages: ChatMessage[];
  dropped: number;
  /** Estimated prompt tokens after truncation (undefined when nothing was counted). */
  promptTokens?: number;
}

/**
 * Applies `truncate_middle` to a chat request's messages. Resolves with the messages to send
 * (the same array when nothing was dropped); rejects with ContextLengthError when even the
 * system prompt and the last message do not fit, or with the signal's reason.
 */
export async function truncateMiddle(input: {
  messages: ChatMessage[];
  contextSize: number;
  maxTokens: number | undefined;
  tokenize: Tokenize;
  signal: AbortSignal;
}): Promise<OverflowResult> {
  const { messages, contextSize, tokenize, signal } = input;
  const reserve = input.maxTokens ?? defaultReserve(contextSize);
  if (tokenUpperBound(messages) + reserve <= contextSize) return { messages, dropped: 0 };
  const roles = [...new Set(messages.map((m) => m.role))];
  const [wrappers, contents] = await Promise.all([
    Promise.all(roles.map((r) => tokenize(`<|im_start|>${r}\n<|im_end|>\n`, signal))),
    Promise.all(messages.map((m) => tokenize(messageText(m.content), signal))),
  ]);
  const wrapper = new Map(roles.map((r, i) => [r, Math.max(4, wrappers[i]!)]));
  const counted = messages.map((m, i) => ({
    role: m.role,
    tokens: contents[i]! + wrapper.get(m.role)!,
  }));
  const baseTokens = Math.max(4, wrapper.get('assistant') ?? 8);
  const plan = planTruncateMiddle({
    messages: counted,
    baseTokens,
    contextSize,
    maxTokens: reserve,
  });
  if (!plan.fits) throw new ContextLengthError(plan.promptTokens, contextSize, reserve);
  if (plan.dropped === 0) return { messages, dropped: 0, promptTokens: plan.promptTokens };
  return {
    messages: plan.keep.map((i) => messages[i]!),
    dropped: plan.dropped,
    promptTokens: plan.promptTokens,
  };
}
