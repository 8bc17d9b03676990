import type { Engine, LaunchContext, LaunchSpec, TrimOutcome } from '../engine.js';
import type { RunnerConfig } from '../types.js';

/**
 * Any OpenAI-compatible server as a runner, given as a command (whisper-server, mlx_lm.server,
 * vLLM, a llama-server of one's own build with its own flags): `${PORT}` and `${HOST}` in its
 * arguments become the loopback port the daemon chose, `${MODEL}` the model's path (or its name
 * when the config gives no path). Ready when its health path answers 200. headroom knows nothing
 * of its insides: it plans the memory the config states, measures the process, and forwards.
 */
export class CommandEngine implements Engine {
  readonly kind = 'command' as const;
  readonly capabilities = {
    embeddings: 'always',
    tokenize: false,
    trim: false,
    cancelsPromptEvaluation: false,
    backpressure: false,
    // Nothing is known of the server: a new connection per stream is the safe side.
    keepAliveAfterStream: false,
  } as const;
  readonly needsPort = true;

  launch(config: RunnerConfig, ctx: LaunchContext): LaunchSpec {
    const c = config.command;
    if (!c || c.argv.length === 0)
      throw new Error('a command-engine model needs `command` (the server to run) in its config');
    const fill = (a: string): string =>
      a
        .replaceAll('${PORT}', String(ctx.port))
        .replaceAll('${HOST}', '127.0.0.1')
        .replaceAll('${MODEL}', config.modelPath || (ctx.name ?? ''));
    const [command, ...args] = c.argv.map(fill);
    return {
      command: command!,
      args,
      env: process.env,
      readiness: { kind: 'http', port: ctx.port, path: c.health },
    };
  }

  /** A command's server does not say how full it is. */
  load(): Promise<undefined> {
    return Promise.resolve(undefined);
  }

  trim(): Promise<TrimOutcome> {
    return Promise.reject(new Error('a command-engine runner cannot be trimmed'));
  }

  translateError(): undefined {
    return undefined;
  }
}
