import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { normaliseConfig, type Config } from '../config/load.js';
import { createApp } from '../server/app.js';
import { assertSafeBind } from '../server/security.js';
import { Headroom, isConfig, type HeadroomOptions } from './headroom.js';

export interface DaemonOptions extends HeadroomOptions {
  /** Deadline for the whole shutdown (drain + stop runners). Defaults to 10 s. */
  shutdownDeadlineMs?: number;
}

/** The HTTP daemon: the core plus the app, bound to the configured address. */
export class Daemon {
  readonly core: Headroom;
  readonly app: FastifyInstance;
  #closing: Promise<void> | undefined;
  readonly #deadlineMs: number;

  private constructor(core: Headroom, app: FastifyInstance, deadlineMs: number) {
    this.core = core;
    this.app = app;
    this.#deadlineMs = deadlineMs;
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
    const d = new Daemon(core, app, opts.shutdownDeadlineMs ?? 10_000);
    try {
      await app.listen({ host: core.config.host, port: core.config.port });
    } catch (err) {
      await core.dispose();
      throw err;
    }
    core.log.info({ url: d.url, models: core.manager.names() }, 'headroom is listening');
    return d;
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
      const backstop = setTimeout(() => this.app.server.closeAllConnections(), this.#deadlineMs);
      backstop.unref();
      try {
        await this.app.close();
      } catch (err) {
        this.core.log.error({ err }, 'closing the HTTP server failed');
      } finally {
        clearTimeout(backstop);
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
