/**
 * Every error code headroom uses, in one table: the HTTP status it renders with, the CLI's exit
 * code for it, whether clients see it, and what it means. `HeadroomError` takes only these codes
 * (its constructor is typed by this table), so a code cannot be thrown without being listed here;
 * error-codes.test.ts also checks that every code written in src/ is listed, and that none listed
 * is unused.
 *
 * Convention:
 * - **Public** codes are `lower_snake_case`, in OpenAI's style (`model_not_found`,
 *   `context_length_exceeded`). They are the `error.code` of HTTP answers, from the daemon or
 *   passed through from a runner; clients match on them, so they never change.
 * - **Internal** codes are `UPPER_SNAKE_CASE` with their folder as prefix (`GGUF_`, `RUNNER_`,
 *   `PLAN_`, `CONFIG_`, `MONITOR_`, `FORGE_`, `SCHEDULER_`, `CLI_`, `INTERNAL_`). They name failures inside
 *   headroom: in logs, in the CLI, in the `details` or message of the public error that wraps
 *   them (a runner that failed to start becomes `model_load_failed`). One may reach an HTTP
 *   answer whole (a bad GGUF file in a management call); its name says it is not an API promise.
 *
 * `status` is the default: a few codes carry the status of what they describe (`runner_failed`
 * with the status the runner answered, `invalid_request` with a runner's 4xx).
 */

/** Exit codes of the CLI. */
export const EXIT_CODES = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  daemonUnreachable: 4,
  badModelFile: 5,
  refused: 6,
} as const;

export type ExitCodeName = keyof typeof EXIT_CODES;

export interface ErrorCodeInfo {
  /** HTTP status it renders with by default. */
  readonly status: number;
  /** The CLI's exit code for it. */
  readonly exit: ExitCodeName;
  /** Clients see it on the wire (a stable API); else internal. */
  readonly public: boolean;
  /** One line: what happened. */
  readonly meaning: string;
}

const pub = (status: number, exit: ExitCodeName, meaning: string): ErrorCodeInfo => ({
  status,
  exit,
  public: true,
  meaning,
});
const internal = (status: number, exit: ExitCodeName, meaning: string): ErrorCodeInfo => ({
  status,
  exit,
  public: false,
  meaning,
});

/** GGUF reader codes: a file headroom cannot read as a model. */
const gguf = (meaning: string): ErrorCodeInfo => internal(400, 'badModelFile', meaning);

export const ERROR_CODES = {
  // Requests the daemon (or a runner) refuses as they are.
  invalid_parameter: pub(
    400,
    'failure',
    'A field of the request body is invalid (names it in param).',
  ),
  invalid_request: pub(
    400,
    'failure',
    'The request cannot be served as sent (a runner may say why).',
  ),
  invalid_json: pub(400, 'failure', 'The request body is not JSON, or is empty.'),
  body_too_large: pub(413, 'failure', 'The request body is larger than the limit.'),
  unknown_route: pub(404, 'notFound', 'No such route.'),
  invalid_api_key: pub(401, 'refused', 'The API key is missing or wrong.'),
  forbidden_host: pub(
    403,
    'refused',
    'The Host header names no address of this daemon (DNS rebinding guard).',
  ),
  forbidden_origin: pub(
    403,
    'refused',
    'A cross-origin browser request from an origin not allowed.',
  ),
  model_not_found: pub(
    404,
    'notFound',
    'No model has that name (the answer lists the known ones).',
  ),
  context_length_exceeded: pub(400, 'failure', "The prompt does not fit the model's context."),
  embeddings_unsupported: pub(400, 'failure', "The model's runner serves no embeddings."),
  // The scheduler's refusals.
  queue_full: pub(429, 'refused', "The model's queue is full; retry later."),
  queue_timeout: pub(429, 'refused', 'The request waited longer than the queue allows.'),
  insufficient_memory: pub(
    503,
    'refused',
    'The model does not fit the memory budget, even degraded.',
  ),
  memory_pressure: pub(503, 'refused', 'Memory pressure is critical: no new loads for now.'),
  model_load_failed: pub(503, 'refused', "The model's runner failed to load it."),
  model_unavailable: pub(
    503,
    'refused',
    'The model is stopping (or the daemon is) and takes no new requests.',
  ),
  model_backoff: pub(
    503,
    'refused',
    'The model failed repeatedly and is not loaded again for a while.',
  ),
  request_cancelled: pub(503, 'refused', 'headroom cancelled a request in flight to free memory.'),
  // The runner, as the daemon sees it.
  runner_failed: pub(
    502,
    'failure',
    'The runner failed mid-answer, or answered an error of its own.',
  ),
  runner_unreachable: pub(502, 'failure', 'The runner could not be reached (it may have crashed).'),
  runner_not_ready: pub(503, 'refused', 'The runner is still loading its model.'),
  runner_stopping: pub(503, 'refused', 'The runner is shutting down.'),
  tokenize_failed: pub(502, 'failure', "The runner could not count the prompt's tokens."),
  monitor_disabled: pub(503, 'refused', 'The memory monitor is off in the config.'),
  internal_error: pub(500, 'failure', 'A bug: an error headroom did not expect.'),

  CONFIG_INVALID: internal(400, 'usage', 'The config file is not valid (each problem on a line).'),
  CONFIG_HOME_UNWRITABLE: internal(
    500,
    'failure',
    "headroom's home ($HEADROOM_HOME) cannot hold its folders (read-only, full, not a directory).",
  ),
  CONFIG_UNSAFE_BIND: internal(
    400,
    'usage',
    'A non-loopback address to bind without an API key: refused.',
  ),
  FORGE_INVALID_OPTIONS: internal(400, 'failure', 'Options of the model forge are invalid.'),
  PLAN_INVALID_INPUT: internal(
    400,
    'failure',
    'The planner cannot compute a footprint for this spec or config.',
  ),
  PLAN_STORE_FAILED: internal(500, 'failure', 'The measurement store cannot be read or written.'),
  RUNNER_START_FAILED: internal(
    500,
    'failure',
    'A runner could not be started, or reported a load error.',
  ),
  RUNNER_START_TIMEOUT: internal(504, 'failure', 'A runner did not become ready in time.'),
  RUNNER_EXITED: internal(500, 'failure', 'A runner exited before it was ready.'),
  RUNNER_INVALID_OPTIONS: internal(
    500,
    'failure',
    'The supervisor was asked to start a runner with invalid options.',
  ),
  RUNNER_BAD_CONFIG: internal(
    500,
    'failure',
    'The embedded runner could not read its config (reported over IPC).',
  ),
  RUNNER_LOAD_FAILED: internal(
    500,
    'failure',
    'The embedded runner could not load the model (reported over IPC).',
  ),
  MONITOR_PARSE: internal(
    500,
    'failure',
    'A kernel file or tool output the monitor cannot make sense of.',
  ),
  MONITOR_BAD_ARGUMENT: internal(
    400,
    'failure',
    'The monitor was asked about something that is not a process.',
  ),
  GGUF_NOT_FOUND: gguf('The model file does not exist.'),
  GGUF_NOT_A_FILE: gguf('The path is not a regular file.'),
  GGUF_IO: gguf('The model file cannot be read.'),
  GGUF_BAD_MAGIC: gguf('The file is not a GGUF file.'),
  GGUF_UNSUPPORTED_VERSION: gguf('The GGUF version is not one headroom reads.'),
  GGUF_TRUNCATED: gguf('The file ends before its header or tensors do.'),
  GGUF_LIMIT: gguf('A count or length in the header is beyond what headroom reads.'),
  GGUF_BAD_VALUE: gguf('A metadata value has an unknown type or an impossible value.'),
  GGUF_DUPLICATE: gguf('A metadata key or tensor name appears twice.'),
  GGUF_BAD_ALIGNMENT: gguf('general.alignment is not a power of two.'),
  GGUF_UNKNOWN_TYPE: gguf('A tensor has a type headroom does not know.'),
  GGUF_BAD_TENSOR: gguf('A tensor has impossible dimensions or offset.'),
  GGUF_UNSUPPORTED_MODEL: gguf('The metadata lacks what planning needs.'),
  GGUF_UNKNOWN_ARCHITECTURE: gguf('The bundled llama.cpp cannot run this architecture.'),
  CLI_USAGE: internal(
    400,
    'usage',
    'A command line headroom cannot run (the message says how to fix it).',
  ),
  CLI_DAEMON_UNREACHABLE: internal(503, 'daemonUnreachable', 'The CLI cannot reach the daemon.'),
  CLI_DAEMON_ERROR: internal(
    500,
    'failure',
    'The daemon answered an error without a code headroom knows.',
  ),
  SCHEDULER_LOAD_CANCELLED: internal(
    500,
    'failure',
    'A load was stopped before it was ready (the abort reason of the load).',
  ),
  INTERNAL_ILLEGAL_TRANSITION: internal(
    500,
    'failure',
    'A bug: a runner state change the table forbids.',
  ),
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** The CLI's exit code for an error code. */
export function exitCodeOf(code: ErrorCode): number {
  return EXIT_CODES[ERROR_CODES[code].exit];
}
