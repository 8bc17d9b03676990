import { describe, expect, it } from 'vitest';
import { HeadroomError } from '../lib/errors.js';
import {
  RUNNER_STATES,
  RUNNER_TRANSITIONS,
  canTransition,
  isTerminal,
  nextState,
  type RunnerState,
} from './state.js';

const LEGAL: ReadonlyArray<[RunnerState, RunnerState]> = [
  ['starting', 'ready'],
  ['starting', 'stopping'],
  ['starting', 'failed'],
  ['ready', 'draining'],
  ['ready', 'stopping'],
  ['ready', 'failed'],
  ['draining', 'stopping'],
  ['draining', 'failed'],
  ['stopping', 'stopped'],
  ['stopping', 'failed'],
];

describe('runner state transitions', () => {
  it('allows exactly the documented edges', () => {
    for (const from of RUNNER_STATES) {
      for (const to of RUNNER_STATES) {
        const legal = LEGAL.some(([f, t]) => f === from && t === to);
        expect(canTransition(from, to), `${from} → ${to}`).toBe(legal);
      }
    }
  });

  it('returns the target of a legal edge', () => {
    for (const [from, to] of LEGAL) expect(nextState(from, to)).toBe(to);
  });

  it('throws an internal error on an illegal edge', () => {
    const attempt = (): RunnerState => nextState('stopped', 'ready');
    expect(attempt).toThrow(HeadroomError);
    expect(attempt).toThrow(/cannot go from stopped to ready/);
    try {
      nextState('ready', 'starting');
    } catch (err) {
      expect((err as HeadroomError).code).toBe('INTERNAL_ILLEGAL_TRANSITION');
    }
    expect(() => nextState('ready', 'ready')).toThrow(HeadroomError);
  });

  it('has stopped and failed as its only terminal states, each reachable from every live state', () => {
    expect(RUNNER_STATES.filter(isTerminal).sort()).toEqual(['failed', 'stopped']);
    for (const s of RUNNER_STATES.filter((x) => !isTerminal(x))) {
      // Every live state can end up failed (the process can always die on its own).
      expect(canTransition(s, 'failed') || canTransition(s, 'stopping')).toBe(true);
    }
    expect(RUNNER_STATES.every((s) => canTransition(s, 'starting') === false)).toBe(true);
  });

  it('is frozen', () => {
    expect(Object.isFrozen(RUNNER_TRANSITIONS)).toBe(true);
    expect(Object.isFrozen(RUNNER_TRANSITIONS.ready)).toBe(true);
  });
});
