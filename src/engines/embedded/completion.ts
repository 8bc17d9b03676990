/**
 * The embedded runner's completion endpoints (POST /v1/chat/completions, /v1/completions) over
 * an HTTP response: OpenAI's JSON answer, or its server-sent events when `stream` is set.
 *
 * Backpressure contract for streams: every token's event is written with `write()`, which hands
 * the engine a promise whenever the response's socket holds its high-water mark or more; the
 * engine awaits it before decoding the next token (Engine.generate's TextSink). So a reader that
 * stops stops decoding within the tokens whose events fit in that high-water mark (plus the few
 * a multi-byte character or a stop string holds back), and what the runner buffers per stream is
 * bounded by it too: kernel socket buffers add slack before the socket reports full, never
 * unbounded growth here.
 */
import type { ServerResponse } from 'node:http';
import type { Token } from 'node-llama-cpp';
import { requestSignal } from '../../lib/request-signal.js';
import {
  chatCompletionBody,
  completionBody,
  type ChatCompletionBody,
  type CompletionBody,
} from '../openai.js';
import type { Engine, GenerateResult, SamplingParams } from './engine.js';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  });
  res.end(payload);
}

/**
 * Writes a chunk. Returns nothing when the socket can take more; else a promise that resolves on
 * 'drain' (the reader took enough) or 'close' (the reader went away: the request's signal aborts).
 */
export function write(res: ServerResponse, chunk: string): Promise<void> | void {
  if (res.destroyed || res.write(chunk)) return;
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

function samplingOf(body: CompletionBody | ChatCompletionBody): SamplingParams {
  const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;
  return {
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? undefined,
    topK: body.top_k ?? undefined,
    minP: body.min_p ?? undefined,
    seed: body.seed ?? undefined,
    stop,
    ignoreEos: body.ignore_eos ?? false,
  };
}

function usageOf(r: GenerateResult): Record<string, unknown> {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    total_tokens: r.promptTokens + r.completionTokens,
    prompt_tokens_details: { cached_tokens: r.cachedTokens },
  };
}

/**
 * Answers one completion request (`raw` is its parsed JSON body) on `res`. A body that does not
 * parse throws before anything is sent; a client that goes away aborts the generation and
 * destroys `res`. `modelName` names the model when the body does not.
 */
export async function serveCompletion(
  engine: Engine,
  res: ServerResponse,
  kind: 'chat' | 'text',
  raw: unknown,
  modelName: string,
): Promise<void> {
  let body: CompletionBody | ChatCompletionBody;
  let prompt: Token[];
  if (kind === 'chat') {
    const chat = chatCompletionBody.parse(raw);
    [body, prompt] = [chat, engine.chatPrompt(chat.messages)];
  } else {
    const text = completionBody.parse(raw);
    [body, prompt] = [
      text,
      engine.tokenize(typeof text.prompt === 'string' ? text.prompt : (text.prompt[0] ?? ''), {
        bos: true,
      }),
    ];
  }
  const params = samplingOf(body);
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const created = Math.floor(Date.now() / 1000);
  const model = body.model ?? modelName;
  const object = kind === 'chat' ? 'chat.completion' : 'text_completion';
  const { signal, dispose } = requestSignal(res);
  try {
    if (body.stream) {
      const chunk = (
        delta: string | null,
        finish: string | null,
        extra: Record<string, unknown> = {},
      ): string => {
        const choice =
          kind === 'chat'
            ? { index: 0, delta: delta === null ? {} : { content: delta }, finish_reason: finish }
            : { index: 0, text: delta ?? '', finish_reason: finish };
        return `data: ${JSON.stringify({ id, object: `${object}.chunk`, created, model, choices: [choice], ...extra })}\n\n`;
      };
      let started = false;
      const begin = (): void => {
        if (started) return;
        started = true;
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
        });
        if (kind === 'chat')
          res.write(
            `data: ${JSON.stringify({ id, object: `${object}.chunk`, created, model, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })}\n\n`,
          );
      };
      const result = await engine.generate(
        prompt,
        params,
        (text) => {
          if (started) return write(res, chunk(text, null));
          // The headers, the role chunk and the first token leave in one segment: a reader
          // (the daemon, a client) wakes once for the first token, not three times.
          res.cork();
          begin();
          const wrote = write(res, chunk(text, null));
          process.nextTick(() => res.uncork());
          return wrote;
        },
        signal,
        { chat: kind === 'chat' },
      );
      begin();
      res.write(chunk(null, result.finishReason));
      if (body.stream_options?.include_usage)
        res.write(
          `data: ${JSON.stringify({ id, object: `${object}.chunk`, created, model, choices: [], usage: usageOf(result) })}\n\n`,
        );
      res.end('data: [DONE]\n\n');
    } else {
      let text = '';
      const result = await engine.generate(prompt, params, (t) => void (text += t), signal, {
        chat: kind === 'chat',
      });
      const choice =
        kind === 'chat'
          ? {
              index: 0,
              message: { role: 'assistant', content: text },
              finish_reason: result.finishReason,
            }
          : { index: 0, text, finish_reason: result.finishReason };
      sendJson(res, 200, {
        id,
        object,
        created,
        model,
        choices: [choice],
        usage: usageOf(result),
      });
    }
  } catch (err) {
    if (signal.aborted) {
      res.destroy();
      return;
    }
    throw err;
  } finally {
    dispose();
  }
}
