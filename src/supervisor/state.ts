import { HeadroomError } from '../lib/errors.js';

/**
 * The lifecycle of one runner process (DESIGN.md in this folder says why each edge exists).
 *
 *   starting ─► ready ─► draining ─► stopping ─► stopped
 *      │          │         │           │
 *      └──────────┴─────────┴───────────┴──────► failed
 *
 * `starting → stopping` is a start that was aborted or gave up (timeout, stall, load error);
 * `stopping → failed` is such a start (the process was killed because it failed), while
 * `stopping → stopped` is an exit we asked for. Every other state goes straight to `failed` when
 * the process exits on its own. `stopped` and `failed` are terminal.
 */
export type RunnerState = 'starting' | 'ready' | 'draining' | 'stopping' | 'stopped' | 'failed';

export const RUNNER_TRANSITIONS: Readonly<Record<RunnerState, readonly RunnerState[]>> =
  Object.freeze({
    starting: Object.freeze(['ready', 'stopping', 'failed'] as const),
    ready: Object.freeze(['draining', 'stopping', 'failed'] as const),
    draining: Object.freeze(['stopping', 'failed'] as const),
    stopping: Object.freeze(['stopped', 'failed'] as const),
    stopped: Object.freeze([] as const),
    failed: Object.freeze([] as const),
  });

export const RUNNER_STATES: readonly RunnerState[] = Object.freeze(
  Object.keys(RUNNER_TRANSITIONS) as RunnerState[],
);

export function canTransition(from: RunnerState, to: RunnerState): boolean {
  return RUNNER_TRANSITIONS[from].includes(to);
}

export function isTerminal(state: RunnerState): boolean {
  return RUNNER_TRANSITIONS[state].length === 0;
}

/** Returns `to`, or throws an internal error (a bug in the supervisor) for an illegal edge. */
export function nextState(from: RunnerState, to: RunnerState): RunnerState {
  if (!canTransition(from, to)) {
    throw new HeadroomError(
      'INTERNAL_ILLEGAL_TRANSITION',
      `internal error: runner state cannot go from ${from} to ${to}`,
      {
        details: { from, to },
      },
    );
  }
  return to;
}
