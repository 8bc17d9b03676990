import type { FastifyInstance } from 'fastify';
import { watch, type FSWatcher } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { normaliseConfig, type Config } from '../config/load.js';
import { describeError } from '../lib/errors.js';
import { createApp } from '../server/app.js';
import { ConnectionTracker } from '../server/connections.js';
import { metricsOf } from '../server/metrics-routes.js';
import { assertSafeBind } from '../server/security.js';
import { Headroom, isConfig, type HeadroomOptions } from './headroom.js';

/** How often a closing server ends the connections that serve nothing since it last looked. */
const IDLE_SWEEP_MS = 100;

export interface DaemonOptions extends HeadroomOptions {
  /** Deadline for the whole shutdown (drain + stop runners). Defaults to 10 s. */
  shutdownDeadlineMs?: number;
  /** Reload the config when its file (`configFile`) changes. Defaults to true. */
  watchConfig?: boolean;
}

/** Changes of the config file closer than this are one reload (editors write in several steps). */
const WATCH_SETTLE_MS = 250;

/** The HTTP daemon: the core plus the app, bound to the configured address. */
export class Daemon {
  readonly core: Headroom;
  readonly app: FastifyInstance;
  #closing: Promise<void> | undefined;
  readonly #deadlineMs: number;
  readonly #connections: ConnectionTracker;
  #watcher: FSWatcher | undefined;
  #settle: NodeJS.Timeout | undefined;

  private constructor(core: Headroom, app: FastifyInstance, deadlineMs: number) {
    this.core = core;
    this.app = app;
    this.#deadlineMs = deadlineMs;
    this.#connections = new ConnectionTracker(app.server);
  }

  static async start(opts: DaemonOptions = {}): Promise<Daemon> {
    const given = opts.config ?? {};
    const config: Config = isConfig(given) ? given : normaliseConfig(given);
    // Before anything starts: no runner is spawned for a daemon that would refuse to bind.
    assertSafeBind(config.host, config.security.apiKey);
    const core = await Headroom.create({ ...opts, config });
    const { host, security } = core.config;
    const app = createApp(core, {
      log: core.log,
      bodyLimit: core.config.limits.maxBodyBytes,
      security: { ...security, boundHost: host },
    });
    core.stateKeeper?.register(metricsOf(core).registry);
    const d = new Daemon(core, app, opts.shutdownDeadlineMs ?? 10_000);
    try {
      await app.listen({ host: core.config.host, port: core.config.port });
    } catch (err) {
      await core.dispose();
      throw err;
    }
    core.log.info({ url: d.url, models: core.manager.names() }, 'headroom is listening');
    if (opts.configFile && opts.watchConfig !== false) d.#watch(opts.configFile.path);
    return d;
  }

  /**
   * Reloads the config file (SIGHUP, a change of the file): logs what changed, or why the new
   * config was refused (the old one stays). Never rejects.
   */
  async reload(trigger: string): Promise<void> {
    try {
      const r = await this.core.reloadFromFile();
      if (r.applied) this.core.log.info({ trigger, ...r }, 'config reload applied');
      else this.core.log.info({ trigger }, 'config reload: no change');
    } catch (err) {
      this.core.log.error(
        { trigger, err: describeError(err) },
        'config reload refused; the config in force stays',
      );
    }
  }

  /**
   * Watches the config file's directory (an editor or an atomic write replaces the file, which
   * a watch on the file itself would lose) for changes of that name.
   */
  #watch(file: string): void {
    const name = path.basename(file);
    try {
      this.#watcher = watch(path.dirname(file), { persistent: false }, (_event, changed) => {
        if (changed !== null && changed !== name) return;
        clearTimeout(this.#settle);
        this.#settle = setTimeout(() => void this.reload('file change'), WATCH_SETTLE_MS);
        this.#settle.unref();
      });
      this.#watcher.on('error', (err) =>
        this.core.log.warn({ err: describeError(err) }, 'watching the config file failed'),
      );
    } catch (err) {
      this.core.log.warn(
        { file, err: describeError(err) },
        'cannot watch the config file: reload with SIGHUP or PUT /admin/config',
      );
    }
  }

  get url(): string {
    const addr = this.app.server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${host}:${addr.port}`;
  }

  /**
   * Ordered, bounded shutdown: stop accepting and let requests in flight finish, then stop
   * every runner; one deadline for all of it, after which open connections are cut.
   * Idempotent; teardown errors are logged, not thrown.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#watcher?.close();
      clearTimeout(this.#settle);
      const server = this.app.server;
      const backstop = setTimeout(() => server.closeAllConnections(), this.#deadlineMs);
      backstop.unref();
      // A keep-alive connection (every HTTP client's default) serving nothing would hold the
      // shutdown until its client hangs up or the deadline passes: each is ended once its last
      // response is out (Node ends only those idle when the server closes, and not all of them).
      const connections = this.#connections;
      connections.closeIdle();
      const { serving } = connections.counts;
      if (serving > 0)
        this.core.log.info(
          { connections: serving },
          'shutting down: waiting for answers under way',
        );
      const idle = setInterval(() => connections.closeIdle(), IDLE_SWEEP_MS);
      idle.unref();
      try {
        await this.app.close();
      } catch (err) {
        this.core.log.error({ err }, 'closing the HTTP server failed');
      } finally {
        clearTimeout(backstop);
        clearInterval(idle);
      }
      try {
        await this.core.dispose();
      } catch (err) {
        this.core.log.error({ err }, 'stopping runners failed');
      }
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
