import { envelopeOf, type ErrorEnvelope } from '../../lib/envelope.js';
import { isErrorCode } from '../../lib/error-codes.js';
import { HeadroomError } from '../../lib/errors.js';
import type { AnswerTransform } from '../forward.js';
import { parseRunnerEvent, splitEvents, type RunnerChunk } from './translate.js';

/**
 * The runner's OpenAI answers rewritten as Ollama's, for forwardToRunner's `transform`. Pure:
 * bytes in, text out; the clock is injectable.
 *
 * A chat or generate answer arrives as an SSE stream (the routes always ask the runner to stream,
 * with usage). Streamed to the client, each event with text becomes one NDJSON line at once, and
 * a final line carries the counts and durations. Not streamed, the text is gathered and sent as
 * one object at the end. An error event from the runner becomes `{"error": message}`: a whole
 * 502 answer when nothing was sent yet, else the stream's last line.
 */

/** Ollama's error shape: `{"error": "message"}` (a stream ends with it as one more line). */
export function ollamaError(envelope: ErrorEnvelope, midStream = false): string {
  const text = JSON.stringify({ error: envelope.error.message });
  return midStream ? `${text}\n` : text;
}

/** An error event of the runner's stream, in headroom's envelope (its code kept when it is one of ours). */
function runnerError(e: { message: string; code?: string }): ErrorEnvelope {
  return envelopeOf(
    new HeadroomError(isErrorCode(e.code) ? e.code : 'runner_failed', e.message, { status: 502 }),
  ).body;
}

export interface OllamaAnswerOptions {
  model: string;
  /** /api/chat (a `message`) or /api/generate (a `response`). */
  chat: boolean;
  /** Whether the client asked for an NDJSON stream. */
  stream: boolean;
  /** When the request arrived (`now()` clock, ns). */
  startedNs: bigint;
  /** How long the request waited for the model's load, ns (0 when it was loaded). */
  loadNs: bigint;
  /** Monotonic nanoseconds. Defaults to process.hrtime.bigint. */
  now?: () => bigint;
  /** Wall clock for `created_at`. Defaults to Date.now. */
  wallMs?: () => number;
}

export function ollamaAnswer(o: OllamaAnswerOptions): AnswerTransform {
  const now = o.now ?? process.hrtime.bigint;
  const wallMs = o.wallMs ?? Date.now;
  let carry = '';
  let text = '';
  let finish = 'stop';
  let usage: RunnerChunk['usage'];
  let firstTokenAt: bigint | undefined;
  /** Lines already given out (the stream has begun). */
  let sent = false;
  /** The runner's error event, as headroom's envelope. */
  let failed: ErrorEnvelope | undefined;

  const object = (extra: Record<string, unknown>): string =>
    JSON.stringify({ model: o.model, created_at: new Date(wallMs()).toISOString(), ...extra });
  const piece = (t: string): Record<string, unknown> =>
    o.chat ? { message: { role: 'assistant', content: t } } : { response: t };

  return {
    contentType: o.stream ? 'application/x-ndjson' : 'application/json',
    push(chunk) {
      if (failed !== undefined || chunk.length === 0) return '';
      const { events, rest } = splitEvents(carry + chunk.toString('utf8'));
      carry = rest;
      let out = '';
      for (const ev of events) {
        let c: RunnerChunk | undefined;
        try {
          c = parseRunnerEvent(ev);
        } catch {
          continue; // not JSON: nothing an Ollama client could use
        }
        if (!c) continue;
        if (c.error) {
          failed = runnerError(c.error);
          if (!sent && !out) return '';
          sent = true;
          return out + ollamaError(failed, true);
        }
        if (c.usage) usage = c.usage;
        if (c.finishReason) finish = c.finishReason;
        if (c.text) {
          firstTokenAt ??= now();
          if (o.stream) out += `${object({ ...piece(c.text), done: false })}\n`;
          else text += c.text;
        }
      }
      if (out) sent = true;
      return out;
    },
    end() {
      if (failed !== undefined) {
        // Sent as a line already when the stream had begun.
        return sent ? { body: '' } : { body: ollamaError(failed), status: 502 };
      }
      const t = now();
      const evalStart = firstTokenAt ?? t;
      const promptNs = evalStart - o.startedNs - o.loadNs;
      const final = object({
        ...piece(o.stream ? '' : text),
        done: true,
        done_reason: finish === 'length' ? 'length' : 'stop',
        total_duration: Number(t - o.startedNs),
        load_duration: Number(o.loadNs),
        prompt_eval_count: usage?.prompt_tokens ?? 0,
        prompt_eval_duration: Number(promptNs > 0n ? promptNs : 0n),
        eval_count: usage?.completion_tokens ?? 0,
        eval_duration: Number(t - evalStart),
      });
      return { body: o.stream ? `${final}\n` : final };
    },
    error: ollamaError,
  };
}

/** The runner's /v1/embeddings answer (one JSON object) rewritten as /api/embed's. */
export function ollamaEmbedAnswer(
  o: Pick<OllamaAnswerOptions, 'model' | 'startedNs' | 'loadNs' | 'now'>,
): AnswerTransform {
  const now = o.now ?? process.hrtime.bigint;
  const chunks: Buffer[] = [];
  return {
    contentType: 'application/json',
    push(chunk) {
      if (chunk.length > 0) chunks.push(chunk);
      return '';
    },
    end() {
      let out: { data?: Array<{ embedding: number[] }>; usage?: { prompt_tokens?: number } };
      try {
        out = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof out;
      } catch {
        out = {};
      }
      if (!Array.isArray(out.data)) {
        const failed = envelopeOf(
          new HeadroomError('runner_failed', 'The runner answered without embeddings; retry.'),
        );
        return { body: ollamaError(failed.body), status: failed.status };
      }
      return {
        body: JSON.stringify({
          model: o.model,
          embeddings: out.data.map((d) => d.embedding),
          total_duration: Number(now() - o.startedNs),
          load_duration: Number(o.loadNs),
          prompt_eval_count: out.usage?.prompt_tokens ?? 0,
        }),
      };
    },
    error: ollamaError,
  };
}
