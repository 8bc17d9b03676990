import { EventEmitter } from 'node:events';
import type { FeedEvent, LevelChange, MonitorFeed, MonitorSample } from '../monitor/feed.js';
import type { PressureLevel } from '../monitor/pressure.js';
import type { Sampler } from '../monitor/sampler.js';
import type { Alert } from '../monitor/trends.js';

type FeedEvents = {
  sample: [MonitorSample];
  'level-change': [LevelChange];
  alert: [Alert];
  event: [FeedEvent];
};

/**
 * The monitor's feed as the daemon serves it (`/admin/monitor/*`, `/admin/events`): the
 * sampler's history, level and alerts, and one event stream that carries the sampler's samples,
 * level changes and alerts together with what the rest of the daemon publishes (the scheduler's
 * loads and unloads, the pressure reactions).
 *
 * The sampler's own events are passed on as they come (inside its sample: listeners must not
 * block). `dispose()` detaches from the sampler; it does not stop it.
 */
export class MonitorHub extends EventEmitter<FeedEvents> implements MonitorFeed {
  readonly sampler: Sampler;
  readonly #detach: () => void;

  constructor(sampler: Sampler) {
    super();
    this.sampler = sampler;
    // Many SSE clients may subscribe; each adds one listener.
    this.setMaxListeners(0);
    const onSample = (sample: MonitorSample): void => {
      this.emit('sample', sample);
      this.emit('event', { type: 'sample', sample });
    };
    const onChange = (change: LevelChange): void => {
      this.emit('level-change', change);
      this.emit('event', { type: 'level-change', change });
    };
    const onAlert = (alert: Alert): void => {
      this.emit('alert', alert);
      this.emit('event', { type: 'alert', alert });
    };
    sampler.on('sample', onSample);
    sampler.on('level-change', onChange);
    sampler.on('alert', onAlert);
    this.#detach = () => {
      sampler.off('sample', onSample);
      sampler.off('level-change', onChange);
      sampler.off('alert', onAlert);
    };
  }

  history(limit?: number): MonitorSample[] {
    return this.sampler.history(limit);
  }

  latest(): MonitorSample | undefined {
    return this.sampler.latest();
  }

  level(): PressureLevel {
    return this.sampler.level();
  }

  alerts(): ReturnType<MonitorFeed['alerts']> {
    return this.sampler.alerts();
  }

  subscribe(listener: (e: FeedEvent) => void): () => void {
    this.on('event', listener);
    return () => this.off('event', listener);
  }

  /** Adds an event from elsewhere (scheduler loads and evictions, reactions) to the stream. */
  publish(e: FeedEvent): void {
    this.emit('event', e);
  }

  /** Detaches from the sampler. Idempotent. */
  dispose(): void {
    this.#detach();
  }
}
