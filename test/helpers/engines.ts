import { describe, it } from 'vitest';
import type { EngineCapabilities, EngineKind } from '../../src/engines/engine.js';
import { embeddedEngine } from '../../src/engines/embedded/index.js';
import { resolveLlamaServer } from '../../src/engines/llama-server/binary.js';
import { LlamaServerEngine } from '../../src/engines/llama-server/engine.js';

/**
 * The engines the e2e suites run on, and an engine-neutral view of a runner's work for their
 * assertions. The embedded runner is always there; llama-server when a binary is found.
 */

/**
 * The llama-server binary the tests run, or why there is none: HEADROOM_TEST_LLAMA_SERVER when
 * set, else what the daemon itself would find (a `llama-server` on PATH, else the one npm install
 * built into the engine cache). Resolved once, when this module loads.
 */
const resolved = await resolveLlamaServer(
  process.env.HEADROOM_TEST_LLAMA_SERVER
    ? { configuredPath: process.env.HEADROOM_TEST_LLAMA_SERVER }
    : {},
);

export function testLlamaServerBinary(): { path: string } | { missing: string } {
  return resolved.unavailable
    ? { missing: `${resolved.reason}; ${resolved.fix}` }
    : { path: resolved.path };
}

export interface EngineUnderTest {
  kind: EngineKind;
  capabilities: EngineCapabilities;
  /** The daemon config's `engines` section that runs every model on this engine. */
  engines: Record<string, unknown>;
  /** Why this engine cannot run here (no binary); undefined when it can. */
  unavailable?: string;
}

let listed: EngineUnderTest[] | undefined;

/** Both engines, llama-server marked `unavailable` when no binary is found. */
export function enginesUnderTest(): EngineUnderTest[] {
  if (listed) return listed;
  const embedded: EngineUnderTest = {
    kind: 'embedded',
    capabilities: embeddedEngine.capabilities,
    engines: { default: 'embedded' },
  };
  const binary = testLlamaServerBinary();
  const capabilities = new LlamaServerEngine({
    binary: 'llama-server',
    patched: !resolved.unavailable && resolved.obtained === 'built',
  }).capabilities;
  if ('missing' in binary) {
    listed = [
      embedded,
      { kind: 'llama-server', capabilities, engines: {}, unavailable: binary.missing },
    ];
    return listed;
  }
  listed = [
    embedded,
    {
      kind: 'llama-server',
      capabilities,
      // The forged llama models declare no pooling type (as chat models do), which llama-server's
      // OpenAI embeddings refuse. `mean` evaluates every input whole: with `last` a repeated input
      // reuses the slot's cached prefix and its vector differs in the sixth digit. Chat ignores it.
      engines: {
        default: 'llama-server',
        llamaServer: { path: binary.path, args: ['--pooling', 'mean'] },
      },
    },
  ];
  return listed;
}

/**
 * One `describe` per engine, named `title (kind)`. An unavailable engine's suite is skipped with
 * the reason printed, except under CI=true, where it fails: the gate builds llama-server at
 * install, so a missing binary there is a broken install, not a reason to test less.
 */
export function describeEachEngine(title: string, fn: (engine: EngineUnderTest) => void): void {
  for (const engine of enginesUnderTest()) {
    const name = `${title} (${engine.kind})`;
    const reason = engine.unavailable;
    if (reason === undefined) describe(name, () => fn(engine));
    else if (process.env.CI === 'true')
      describe(name, () => {
        it('has an engine to run on', () => {
          throw new Error(`${engine.kind} is unavailable under CI: ${reason}`);
        });
      });
    else {
      console.warn(`skipping "${name}": ${reason}`);
      describe.skip(name, () => fn(engine));
    }
  }
}

/** What a runner is doing, the same way for every engine. */
export interface RunnerProbe {
  /** Requests decoding or evaluating a prompt now. */
  busy: number;
  /** Requests the runner holds waiting for a slot. */
  queued: number;
  /** Tokens generated since the runner started, including those of requests under way. */
  generated: number;
  /** Cells of the context holding tokens, over all slots. */
  tokensInUse: number;
  /** Moves whenever the runner does any work (evaluates, decodes, embeds); never goes back. */
  work: number;
  /** Requests the runner has taken, where it counts them (embedded); llama-server does not. */
  requests?: number;
  /**
   * Changes exactly when the runner takes a request: the embedded runner's request count,
   * llama-server's task id per slot (tasks of its own, like /slots reads, never sit in a slot).
   */
  taken: string;
}

/** Reads a runner's work through its engine's own API (see RunnerProbe). */
export async function runnerProbe(
  engine: EngineKind | EngineUnderTest,
  runnerUrl: string,
): Promise<RunnerProbe> {
  const kind = typeof engine === 'string' ? engine : engine.kind;
  return kind === 'embedded' ? embeddedProbe(runnerUrl) : llamaServerProbe(runnerUrl);
}

async function embeddedProbe(url: string): Promise<RunnerProbe> {
  const res = await fetch(new URL('/stats', url));
  if (!res.ok) throw new Error(`GET /stats answered ${res.status}`);
  const s = (await res.json()) as {
    busy: number;
    queued: number;
    generated: number;
    requests: number;
    tokensInUse: number;
  };
  return {
    busy: s.busy,
    queued: s.queued,
    generated: s.generated,
    tokensInUse: s.tokensInUse,
    work: s.requests + s.generated,
    requests: s.requests,
    taken: String(s.requests),
  };
}

interface Slot {
  id: number;
  id_task?: number;
  is_processing: boolean;
  n_prompt_tokens?: number;
  next_token?: Array<{ n_decoded?: number }>;
}

async function slots(url: string): Promise<Slot[]> {
  const res = await fetch(new URL('/slots', url));
  if (!res.ok) throw new Error(`GET /slots answered ${res.status}`);
  return (await res.json()) as Slot[];
}

/** Which task each slot holds and whether it works on it: equal keys, no slot changed task. */
const slotKey = (s: Slot[]): string =>
  s.map((x) => `${x.id}:${x.id_task ?? '-'}:${x.is_processing}`).join(',');

/**
 * llama-server's work from GET /slots and the `llamacpp:*` counters of GET /metrics.
 * `tokens_predicted_total` grows only when a slot is released (server-context.cpp,
 * callback_on_reset → metrics_on_prediction), so the tokens of requests under way are their
 * slots' `n_decoded`. The counters are read between two /slots reads and the three reads are
 * retried until no slot changed task between them: a release in between would count a request's
 * tokens twice or not at all. `n_prompt_tokens` is every token in the slot's cells, generated
 * ones included (server_slot::to_json: prompt.tokens, which each sampled token joins).
 */
async function llamaServerProbe(url: string): Promise<RunnerProbe> {
  for (let attempt = 0; ; attempt++) {
    const first = await slots(url);
    const res = await fetch(new URL('/metrics', url));
    if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
    const text = await res.text();
    const last = await slots(url);
    if (slotKey(first) !== slotKey(last) && attempt < 20) continue;
    const metric = (name: string): number => {
      const m = new RegExp(`^llamacpp:${name} (\\S+)$`, 'm').exec(text);
      if (!m) throw new Error(`GET /metrics has no llamacpp:${name}`);
      return Number(m[1]);
    };
    const processing = last.filter((s) => s.is_processing);
    const decoding = processing.reduce((n, s) => n + (s.next_token?.[0]?.n_decoded ?? 0), 0);
    return {
      busy: processing.length,
      queued: metric('requests_deferred'),
      generated: metric('tokens_predicted_total') + decoding,
      tokensInUse: last.reduce((n, s) => n + (s.n_prompt_tokens ?? 0), 0),
      work: metric('n_decode_total'),
      taken: last.map((s) => s.id_task ?? '-').join(','),
    };
  }
}
