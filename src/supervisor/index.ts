export {
  RunnerProcess,
  DEFAULT_LOG_MAX_BYTES,
  DEFAULT_OOM_SCORE_ADJ,
  DEFAULT_STOP_GRACE_MS,
  type RunnerEvents,
  type RunnerExitInfo,
  type RunnerStartOptions,
  type SpawnSpec,
} from './runner-process.js';
export { RunnerLog, readLogTail, type LogFileOptions } from './log-file.js';
export {
  RUNNER_STATES,
  RUNNER_TRANSITIONS,
  canTransition,
  isTerminal,
  nextState,
  type RunnerState,
} from './state.js';
