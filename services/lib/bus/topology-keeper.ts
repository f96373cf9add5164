/**
 * Puts the streams and buckets back after a reconnect. Why: a nats-server restarted on the same
 * store keeps its file streams but not its memory ones (PHOTOLAB_FRAMES unless FRAME_STORAGE=file,
 * and the presence bucket KV_photolab-stages), and nothing recreated them until a service was
 * restarted. Measured before this existed: after one restart every frame write of
 * FRAME_TRANSPORT=auto or bus failed (so did every job of more than one step), and the edge saw
 * no stage process until its own restart. A server that lost its store comes back empty; the
 * same call makes all of it again.
 *
 * Each service does it for its own connection (the first one after a restart makes what is
 * missing, the others find it there), retrying until it succeeds: right after a restart
 * JetStream may not answer yet, and in a cluster a stream may be electing its leader.
 */
import type { Logger } from '../shared/logger.js';

export interface TopologyKeeperOptions {
  /** First pause after a failed try; doubled up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

export class TopologyKeeper {
  private running?: Promise<void>;
  /** A reconnect came while a check was running: check once more after it (the server may have changed again). */
  private again = false;
  private closed = false;
  private readonly listeners: (() => void)[] = [];
  private readonly retryMs: number;
  private readonly maxRetryMs: number;
  private readonly sleep: (ms: number) => Promise<void>;

  /** `ensure` makes what is missing and resolves to its names (ensureTopology). */
  constructor(private readonly ensure: () => Promise<string[]>, private readonly log: Logger, options: TopologyKeeperOptions = {}) {
    this.retryMs = options.retryMs ?? 500;
    this.maxRetryMs = options.maxRetryMs ?? 10_000;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms).unref()));
  }

  /**
   * `listener` runs after each check that followed a reconnect, once the topology is whole again:
   * what follows a stream through a consumer restarts there (a KV watch on a memory bucket does
   * not come back by itself once the bucket has been made anew).
   */
  onRestored(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** Called on each reconnect; resolves when the check it started (or joined) is over. */
  reconnected(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  close(): void {
    this.closed = true;
  }

  private async run(): Promise<void> {
    let pause = this.retryMs;
    while (!this.closed) {
      this.again = false;
      try {
        const made = await this.ensure();
        if (made.length) this.log.warn({ made }, 'NATS reconnect: streams and buckets made again (a restarted nats-server keeps no memory stream)');
        else this.log.info('NATS reconnect: streams and buckets all present');
      } catch (error) {
        if (this.closed) return;
        this.log.warn({ err: error, retryInMs: pause }, 'NATS reconnect: streams and buckets not checked yet; retrying');
        await this.sleep(pause);
        pause = Math.min(pause * 2, this.maxRetryMs);
        continue;
      }
      if (this.again) continue;
      for (const listener of this.listeners) {
        try {
          listener();
        } catch (error) {
          this.log.warn({ err: error }, 'NATS reconnect: a listener failed');
        }
      }
      return;
    }
  }
}
