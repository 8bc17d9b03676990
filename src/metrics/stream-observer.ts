/**
 * Watches a runner's answer as it passes through the daemon, without holding it back: when the
 * first bytes of the answer came (time to first token for a stream, since the runner writes its
 * headers together with the first token), how many SSE events passed, and the `usage` object the
 * runner sends last.
 *
 * Contracts:
 * - Cost per chunk on the hot path: two byte compares, one native `indexOf` for the usage key and
 *   one per event boundary. No string decoding, no copying, unless the chunk holds the usage event
 *   (once per request) or ends inside an event (TCP split a write; rare on loopback).
 * - Never buffers more than one incomplete SSE event (`MAX_CARRY` bytes); past that it stops
 *   observing and passes bytes through untouched.
 * - With `stripUsage`, the usage event is removed from the stream (the daemon asks the runner for
 *   usage so that it can count tokens; a client that did not ask for it must not see it).
 *   JSON escaping makes the key `"usage":` impossible inside generated text (its quotes would be
 *   `\"`), so finding it is exact.
 */

const SEP = Buffer.from('\n\n');
const USAGE_KEY = Buffer.from('"usage":');
const EMPTY = Buffer.alloc(0);
/** Largest incomplete event carried between chunks. */
export const MAX_CARRY = 1024 * 1024;
/** Bytes of a JSON answer's end kept to read its usage. */
const JSON_TAIL = 4096;

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  cachedTokens?: number;
}

/** Reads OpenAI's usage object (snake_case); undefined when it is not one. */
export function usageOf(u: unknown): Usage | undefined {
  if (typeof u !== 'object' || u === null) return undefined;
  const o = u as Record<string, unknown>;
  if (typeof o.prompt_tokens !== 'number' || typeof o.completion_tokens !== 'number')
    return undefined;
  const details = o.prompt_tokens_details as Record<string, unknown> | undefined | null;
  const cached = details?.cached_tokens;
  return {
    promptTokens: o.prompt_tokens,
    completionTokens: o.completion_tokens,
    ...(typeof cached === 'number' ? { cachedTokens: cached } : {}),
  };
}

export interface StreamObserverOptions {
  /** True for `text/event-stream`, false for a JSON body. */
  sse: boolean;
  /** Remove the usage event from an SSE stream. Defaults to false. */
  stripUsage?: boolean;
  now?: () => number;
}

/** The OpenAI stream's last event. */
const DONE_EVENT = Buffer.from('data: [DONE]\n\n');

export class StreamObserver {
  /** When the first chunk arrived (`now()` clock). */
  firstAt: number | undefined;
  /** Complete SSE events seen (0 for JSON). */
  events = 0;
  usage: Usage | undefined;
  /** The `error.code` of a JSON error answer, read at `end()`. */
  errorCode: string | undefined;
  /** The stream's last event (`data: [DONE]`) went out: the client has the whole answer. */
  done = false;
  readonly #sse: boolean;
  readonly #strip: boolean;
  readonly #now: () => number;
  #carry: Buffer | undefined;
  #passthrough = false;
  #tail: Buffer = EMPTY;

  constructor(opts: StreamObserverOptions) {
    this.#sse = opts.sse;
    this.#strip = opts.stripUsage === true;
    this.#now = opts.now ?? performance.now.bind(performance);
  }

  /** Takes a chunk from the runner; returns the bytes to send to the client now (maybe none). */
  push(chunk: Buffer): Buffer {
    if (this.firstAt === undefined) this.firstAt = this.#now();
    if (!this.#sse) {
      this.#keepTail(chunk);
      return chunk;
    }
    if (this.#passthrough) return chunk;
    let buf = chunk;
    if (this.#carry !== undefined) {
      buf = Buffer.concat([this.#carry, chunk]);
      this.#carry = undefined;
    }
    const n = buf.length;
    let out = buf;
    if (n < 2 || buf[n - 1] !== 0x0a || buf[n - 2] !== 0x0a) {
      // The chunk ends inside an event: send the complete events, carry the rest.
      const cut = buf.lastIndexOf(SEP);
      if (cut === -1) {
        if (n > MAX_CARRY) {
          this.#passthrough = true;
          return buf;
        }
        this.#carry = buf;
        return EMPTY;
      }
      this.#carry = buf.subarray(cut + 2);
      out = buf.subarray(0, cut + 2);
    }
    for (let i = out.indexOf(SEP); i !== -1; i = out.indexOf(SEP, i + 2)) this.events++;
    if (out.length >= DONE_EVENT.length && out.subarray(-DONE_EVENT.length).equals(DONE_EVENT))
      this.done = true;
    if (out.indexOf(USAGE_KEY) !== -1) return this.#takeUsage(out);
    return out;
  }

  /** At the end of the answer: bytes still carried (an unterminated last event), and reads a JSON body's usage. */
  end(): Buffer {
    if (!this.#sse) {
      const tail = this.#tail.toString('utf8');
      this.usage ??= usageFromJsonTail(tail);
      if (tail.includes('"error":')) this.errorCode = /"code":"([^"\\]{1,64})"/.exec(tail)?.[1];
      this.#tail = EMPTY;
      return EMPTY;
    }
    const rest = this.#carry ?? EMPTY;
    this.#carry = undefined;
    return rest;
  }

  /** Bytes held back now (at most one incomplete event). */
  get carried(): number {
    return this.#carry?.length ?? 0;
  }

  #takeUsage(out: Buffer): Buffer {
    const text = out.toString('utf8');
    const events = text.split('\n\n');
    let found = -1;
    for (let i = 0; i < events.length; i++) {
      const ev = events[i]!;
      if (!ev.includes('"usage":')) continue;
      const data = ev.startsWith('data: ')
        ? ev.slice(6)
        : ev.startsWith('data:')
          ? ev.slice(5)
          : '';
      try {
        const u = usageOf((JSON.parse(data) as { usage?: unknown }).usage);
        if (u) {
          this.usage = u;
          found = i;
        }
      } catch {
        // not JSON: leave it alone
      }
    }
    if (!this.#strip || found === -1) return out;
    events.splice(found, 1);
    this.events--;
    return Buffer.from(events.join('\n\n'), 'utf8');
  }

  #keepTail(chunk: Buffer): void {
    if (chunk.length >= JSON_TAIL)
      this.#tail = Buffer.from(chunk.subarray(chunk.length - JSON_TAIL));
    else {
      const joined = Buffer.concat([this.#tail, chunk]);
      this.#tail = joined.length > JSON_TAIL ? joined.subarray(joined.length - JSON_TAIL) : joined;
    }
  }
}

/**
 * The usage object of a JSON answer from its last bytes: the last `"usage":` key and the object
 * after it, read up to its matching brace (the embedded runner writes usage last; llama-server
 * writes `id` and `timings` after it).
 */
export function usageFromJsonTail(tail: string): Usage | undefined {
  const i = tail.lastIndexOf('"usage":');
  if (i === -1) return undefined;
  const start = tail.indexOf('{', i + 8);
  if (start === -1 || tail.slice(i + 8, start).trim() !== '') return undefined;
  let depth = 0;
  let inString = false;
  for (let k = start; k < tail.length; k++) {
    const c = tail[k];
    if (inString) {
      if (c === '\\') k++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) {
      try {
        return usageOf(JSON.parse(tail.slice(start, k + 1)));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}
