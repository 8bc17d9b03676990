import type { FastifyReply } from 'fastify';
import { isAbortError } from '../lib/abort.js';
import { describeError, isHeadroomError } from '../lib/errors.js';
import { requestSignal } from '../lib/request-signal.js';
import type { RequestSpan } from '../metrics/requests.js';
import type { AcquireOptions, Lease } from '../scheduler/model-manager.js';
import type { ServerCore } from './core.js';
import {
  answerError,
  forwardToRunner,
  runnerUnreachableError,
  type AnswerTransform,
  type ForwardOptions,
} from './forward.js';
import { metricsOf } from './metrics-routes.js';

/**
 * The one path of a request to a model, for every API the daemon speaks: open a metrics span →
 * acquire a lease (queue, load) → prepare the body (may use the lease, e.g. count tokens) →
 * forward to the runner and stream back (forward.ts). The client going away at any point is an
 * abort: while queued or loading it leaves the queue (a load others share goes on), while the
 * body is prepared the work is abandoned and the lease released, and while the runner works the
 * upstream request is destroyed. A runner that refused or dropped the request before answering
 * (it is exiting) sends it through the queue again once its exit is seen, once. Every request is
 * measured once, whatever way it ends.
 *
 * Errors before the forward are thrown: the route's error handler renders them (the OpenAI
 * envelope, or Ollama's shape).
 */

export interface PreparedBody {
  body: unknown;
  /** Remove the usage event the daemon asked for (forward.ts `stripUsage`). */
  stripUsage?: boolean;
  headers?: Record<string, string>;
}

export interface RelayRequest {
  model: string;
  /** The route, as metrics label it (e.g. `/v1/chat/completions`, `/api/chat`). */
  endpoint: string;
  /** Whether the client asked for a stream (metrics). */
  stream: boolean;
  /** The runner's path. */
  path: string;
  /** What the request needs of the loaded config (context size, keep-alive). */
  acquire?: Omit<AcquireOptions, 'signal'>;
  /** The body to forward, built once the lease is held. */
  prepare: (lease: Lease, signal: AbortSignal, span: RequestSpan) => Promise<PreparedBody>;
  /** Rewrites the answer into the route's API (forward.ts `transform`), built per lease. */
  transform?: (lease: Lease) => AnswerTransform;
}

export async function relay(core: ServerCore, reply: FastifyReply, r: RelayRequest): Promise<void> {
  const metrics = metricsOf(core);
  const span = metrics.begin({ model: r.model, endpoint: r.endpoint, stream: r.stream });
  const first = await leaseAndPrepare(core, reply, r, span);
  reply.hijack();
  const forward = (lease: Lease, prepared: PreparedBody, onLost?: () => void): void =>
    forwardToRunner({
      lease,
      path: r.path,
      body: prepared.body,
      res: reply.raw,
      span,
      metrics,
      ...(prepared.stripUsage ? { stripUsage: true } : {}),
      ...(prepared.headers ? { headers: prepared.headers } : {}),
      ...(r.transform ? { transform: r.transform(lease) } : {}),
      ...engineForwarding(core, lease),
      ...(onLost ? { onLost } : {}),
    });
  // A runner that refused or dropped the connection before answering is dying (or hung and being
  // killed): once its exit is seen, the request goes through the queue again (a new runner is
  // loaded) rather than failing. Once only.
  forward(first.lease, first.prepared, () => {
    void (async () => {
      const gone = await first.lease.gone(LOST_EXIT_WAIT_MS);
      const transform = r.transform?.(first.lease);
      if (!gone) {
        span.end({ outcome: 'error', status: 502, error: 'runner_unreachable' });
        answerError(reply.raw, runnerUnreachableError(r.model), transform);
        return;
      }
      let next: { lease: Lease; prepared: PreparedBody };
      try {
        next = await leaseAndPrepare(core, reply, r, span);
      } catch (err) {
        answerError(reply.raw, err, transform);
        return;
      }
      forward(next.lease, next.prepared);
    })();
  });
}

/**
 * How long a request whose runner refused or dropped it waits for the runner's exit to be seen
 * before it is answered 502: a dying process's port closes a moment before its exit is seen; a
 * runner that stays up (an external command's server that closed its port) is not retried.
 */
const LOST_EXIT_WAIT_MS = 2000;

/**
 * Acquires a lease and prepares the body on it. Throws what the route renders; the span is
 * ended then.
 */
async function leaseAndPrepare(
  core: ServerCore,
  reply: FastifyReply,
  r: RelayRequest,
  span: RequestSpan,
): Promise<{ lease: Lease; prepared: PreparedBody }> {
  const { signal, dispose } = requestSignal(reply.raw);
  let lease: Lease | undefined;
  try {
    try {
      lease = await core.manager.acquire(r.model, { ...r.acquire, signal });
    } catch (err) {
      if (signal.aborted) {
        // Queued or loading: the manager says which (a load goes on for others).
        const stage = modelState(core, r.model) === 'loading' ? 'loading' : 'queued';
        span.end({ outcome: 'cancelled', stage, status: 0 });
      }
      throw err;
    }
    span.leased(lease.timing);
    let prepared = await r.prepare(lease, signal, span);
    if (core.restoreState)
      prepared = {
        ...prepared,
        body: await core.restoreState(lease, r.path, prepared.body, signal),
      };
    // The client may have left in the same tick the lease came: never start work for nobody.
    if (signal.aborted) throw signal.reason;
    return { lease, prepared };
  } catch (err) {
    lease?.release();
    if (!span.ended)
      span.end(
        signal.aborted
          ? { outcome: 'cancelled', status: 0 }
          : {
              outcome: 'error',
              status: isHeadroomError(err) ? err.status : 500,
              error: isHeadroomError(err)
                ? err.code
                : isAbortError(err)
                  ? 'aborted'
                  : describeError(err).slice(0, 64),
            },
      );
    throw err;
  } finally {
    dispose();
  }
}

function modelState(core: ServerCore, name: string): string | undefined {
  try {
    return core.manager.status(name).state;
  } catch {
    return undefined;
  }
}

/**
 * How to forward to the engine a lease's runner runs on: its error answers in headroom's codes,
 * and a new connection per streamed request when it closes the connection after one.
 */
export function engineForwarding(
  core: ServerCore,
  lease: Lease,
): Pick<ForwardOptions, 'translateError' | 'closeAfterStream'> {
  const engine = core.engineOf?.(lease.config);
  if (!engine) return {};
  return {
    translateError: (status, body) => engine.translateError(status, body),
    closeAfterStream: !engine.capabilities.keepAliveAfterStream,
  };
}
