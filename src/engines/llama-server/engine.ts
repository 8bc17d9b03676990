import type {
  Engine,
  EngineCapabilities,
  EngineState,
  SlotView,
  LaunchContext,
  RunnerLoad,
  TranslatedError,
  TrimOutcome,
} from '../engine.js';
import type { RunnerConfig } from '../types.js';
import { llamaServerArgs } from './argv.js';

/**
 * llama.cpp's own server as the runner: one `llama-server` process per loaded model, told its
 * port in argv, ready when GET /health answers 200 (503 while the model loads).
 *
 * What it does not do that the embedded runner does (measured, docs/ENGINES.md): it generates up
 * to max_tokens whatever the reader does (no backpressure to decoding). A client that leaves while
 * its prompt is evaluated stops that evaluation in the build headroom makes (patches/
 * cancel-prompt.patch); a llama-server from PATH or the config evaluates the prompt to its end,
 * and closes the connection after each streamed answer (patches/keep-alive-stream.patch fixes
 * that in headroom's build).
 */
export interface LlamaServerEngineOptions {
  /** The llama-server binary (engines/llama-server/binary.ts resolves it). */
  binary: string;
  /** The binary's environment. Defaults to the daemon's. */
  env?: NodeJS.ProcessEnv;
  /** Arguments appended to headroom's (config `engines.llamaServer.args`). */
  extraArgs?: readonly string[];
  /**
   * The binary carries headroom's patches (the one npm install builds does): a client that leaves
   * stops its prompt's evaluation, a streamed answer keeps its connection open, and a saved slot
   * of a sliding-window or recurrent model is gone on from after its restore. A binary from PATH
   * or the config has none of them. Defaults to false.
   */
  patched?: boolean;
}

const slotSchema = {
  parse(
    v: unknown,
  ): Array<{ id: number; processing: boolean; tokens: number; contextSize: number }> {
    if (!Array.isArray(v)) throw new Error('GET /slots did not answer an array');
    return v.map((s: unknown) => {
      const o = (typeof s === 'object' && s !== null ? s : {}) as Record<string, unknown>;
      const num = (x: unknown): number => (typeof x === 'number' && Number.isFinite(x) ? x : 0);
      return {
        id: num(o.id),
        processing: o.is_processing === true,
        // Every token in the slot's cells, generated ones included: server_slot::to_json reports
        // prompt.tokens, which each sampled token joins (n_decoded counts those again).
        tokens: num(o.n_prompt_tokens),
        contextSize: num(o.n_ctx),
      };
    });
  },
};

export class LlamaServerEngine implements Engine {
  readonly kind = 'llama-server' as const;
  readonly capabilities: EngineCapabilities;
  readonly needsPort = true;
  readonly #opts: LlamaServerEngineOptions;

  constructor(opts: LlamaServerEngineOptions) {
    this.#opts = opts;
    this.capabilities = {
      embeddings: 'dedicated-runner',
      tokenize: true,
      trim: true,
      cancelsPromptEvaluation: opts.patched === true,
      backpressure: false,
      keepAliveAfterStream: opts.patched === true,
    };
    this.state = {
      ...llamaServerState,
      // A restored slot of such a model holds the window layers' last window (or the recurrent
      // state of its last token): an unpatched llama-server, with no context checkpoint to go
      // back to, evaluates the whole prompt again; headroom's build saves the slot as of its
      // newest checkpoint and takes one at the restore (slot-checkpoints.patch, docs/STATE.md).
      reusesRestored: ({ slidingWindow, recurrent }) =>
        opts.patched === true || (!slidingWindow && !recurrent),
    };
  }

  readonly state: EngineState;

  get binary(): string {
    return this.#opts.binary;
  }

  launch(config: RunnerConfig, ctx: LaunchContext) {
    return {
      command: this.#opts.binary,
      args: llamaServerArgs(config, {
        port: ctx.port,
        ...(ctx.name !== undefined ? { alias: ctx.name } : {}),
        // llama-server refuses every POST /slots action (trim's erase too) without a save path.
        ...(ctx.stateDir !== undefined ? { slotSavePath: ctx.stateDir } : {}),
        ...(this.#opts.extraArgs ? { extraArgs: this.#opts.extraArgs } : {}),
      }),
      env: this.#opts.env ?? process.env,
      readiness: { kind: 'http', port: ctx.port } as const,
    };
  }

  async load(
    url: string,
    _config: RunnerConfig,
    signal: AbortSignal,
  ): Promise<RunnerLoad | undefined> {
    const res = await fetch(new URL('/slots', url), { signal });
    if (!res.ok) return undefined;
    const slots = slotSchema.parse(await res.json());
    return {
      // A slot keeps its last prompt and answer in its cells until a new one replaces them.
      tokensInUse: slots.reduce((n, s) => n + s.tokens, 0),
      busy: slots.filter((s) => s.processing).length,
    };
  }

  /**
   * Erases the cached tokens of every idle slot (POST /slots/ID?action=erase). llama.cpp keeps
   * the KV buffer allocated, so this frees cells for reuse, not resident memory: freedBytes is 0.
   */
  async trim(
    url: string,
    _config: RunnerConfig,
    _reason: string,
    signal: AbortSignal,
  ): Promise<TrimOutcome> {
    const res = await fetch(new URL('/slots', url), { signal });
    if (!res.ok) throw new Error(`GET /slots answered ${res.status}`);
    const slots = slotSchema.parse(await res.json());
    let erased = 0;
    for (const s of slots) {
      if (s.processing || s.tokens === 0) continue;
      const r = await fetch(new URL(`/slots/${s.id}?action=erase`, url), {
        method: 'POST',
        signal,
      });
      // A slot that took a request since the listing answers an error: it is left alone.
      if (r.ok) erased++;
      await r.body?.cancel();
    }
    return {
      freedBytes: 0,
      released: erased > 0 ? ['prompt-cache'] : [],
      busySlots: slots.filter((s) => s.processing).length,
    };
  }

  translateError(status: number, body: unknown): TranslatedError | undefined {
    return translateLlamaServerError(status, body);
  }
}

async function postJson(
  url: string,
  path: string,
  body: unknown,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  const res = await fetch(new URL(path, url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (!res.ok || typeof json !== 'object' || json === null) {
    const e = (json as { error?: { message?: unknown } } | undefined)?.error?.message;
    throw new Error(
      `POST ${path} answered ${res.status}: ${typeof e === 'string' ? e : text.slice(0, 200)}`,
    );
  }
  return json as Record<string, unknown>;
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);

/**
 * llama-server's slot files: POST /slots/ID?action=save|restore `{ filename }` in its
 * --slot-save-path (the request waits while the slot serves one). The prompt a request
 * evaluates: /apply-template for chat bodies (the template the server itself applies), then
 * /tokenize with the special tokens added and parsed, as its completion handler does. `id_slot`
 * in a body runs it in that slot, whose cells it reuses for the common prefix.
 */
const llamaServerState: Omit<EngineState, 'reusesRestored'> = {
  async slots(url: string, signal: AbortSignal): Promise<SlotView[]> {
    const res = await fetch(new URL('/slots', url), { signal });
    if (!res.ok) throw new Error(`GET /slots answered ${res.status}`);
    return slotSchema
      .parse(await res.json())
      .map((s) => ({ id: s.id, tokens: s.tokens, busy: s.processing, contextSize: s.contextSize }));
  },
  async save(url, slot, fileName, signal) {
    const r = await postJson(url, `/slots/${slot}?action=save`, { filename: fileName }, signal);
    return { tokens: count(r.n_saved), bytes: count(r.n_written) };
  },
  async restore(url, slot, fileName, signal) {
    const r = await postJson(url, `/slots/${slot}?action=restore`, { filename: fileName }, signal);
    return { tokens: count(r.n_restored) };
  },
  async promptTokens(url, path, body, signal) {
    if (typeof body !== 'object' || body === null) return undefined;
    const b = body as Record<string, unknown>;
    let prompt: unknown;
    if (path === '/v1/chat/completions' && Array.isArray(b.messages)) {
      // The whole body: the template's inputs (tools, template kwargs) are parsed as for chat.
      const t = await postJson(url, '/apply-template', b, signal);
      prompt = t.prompt;
    } else if (
      (path === '/v1/completions' || path === '/completion') &&
      typeof b.prompt === 'string'
    )
      prompt = b.prompt;
    if (typeof prompt !== 'string') return undefined;
    const r = await postJson(
      url,
      '/tokenize',
      { content: prompt, add_special: true, parse_special: true },
      signal,
    );
    return Array.isArray(r.tokens) && r.tokens.every((t) => typeof t === 'number')
      ? (r.tokens as number[])
      : undefined;
  },
  // --no-kv-unified (argv.ts): one stream per slot.
  streams: (config) => config.parallel,
  pinToSlot(body, slot) {
    return { ...body, id_slot: slot, cache_prompt: true };
  },
};

/**
 * llama-server's error answers in headroom's codes: `{ error: { code, message, type, … } }` with
 * its own types (exceed_context_size_error, not_supported_error, …).
 */
export function translateLlamaServerError(
  status: number,
  body: unknown,
): TranslatedError | undefined {
  const e = (body as { error?: Record<string, unknown> } | null)?.error;
  if (typeof e !== 'object' || e === null) return undefined;
  const message = typeof e.message === 'string' ? e.message : '';
  if (e.type === 'exceed_context_size_error') {
    const prompt = typeof e.n_prompt_tokens === 'number' ? e.n_prompt_tokens : undefined;
    const ctx = typeof e.n_ctx === 'number' ? e.n_ctx : undefined;
    return {
      status: 400,
      code: 'context_length_exceeded',
      message:
        prompt !== undefined && ctx !== undefined
          ? `the prompt is ${prompt} tokens but this model's context holds ${ctx}: shorten the conversation, load the model with a larger context, or send context_overflow "truncate_middle"`
          : `${message}: shorten the conversation or load the model with a larger context`,
      details: {
        param: 'messages',
        ...(prompt !== undefined ? { promptTokens: prompt } : {}),
        ...(ctx !== undefined ? { contextSize: ctx } : {}),
      },
    };
  }
  if (e.type === 'not_supported_error' && /embedding/i.test(message)) {
    return {
      status: 400,
      code: 'embeddings_unsupported',
      message:
        'this model runs in a llama-server started for chat, which serves no embeddings: set `embeddings: true` for it under models: in the config (its runner is then started for embeddings), or `engine: embedded`',
    };
  }
  // A model whose GGUF declares no pooling type (chat models) gets none, and llama-server's
  // OpenAI embeddings need one vector per input (server-context.cpp, handle_embeddings_impl).
  if (e.type === 'invalid_request_error' && /pooling type 'none'/i.test(message)) {
    return {
      status: 400,
      code: 'embeddings_unsupported',
      message:
        'this model declares no pooling type, so llama-server cannot make one vector per input: add a pooling to engines.llamaServer.args (e.g. ["--pooling", "mean"]), or run the model with `engine: embedded`',
    };
  }
  if (status >= 400 && status < 500 && e.type === 'invalid_request_error') {
    return {
      status,
      code: 'invalid_request',
      message: message || 'the runner refused the request',
    };
  }
  return undefined;
}
