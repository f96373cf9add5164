/**
 * Which stage processes are alive, and what they run on: each stage process refreshes its key
 * in the KV bucket photolab-stages every few seconds; the bucket's TTL removes processes that
 * died without saying goodbye. The edge keeps a view of it (StagePresenceView) for admission
 * and its health report.
 */
import { Kvm, type KV } from '@nats-io/kv';
import { StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { StagePresence } from '../shared/schema-types.js';
import type { Logger } from '../shared/logger.js';
import { BUCKETS } from './subjects.js';

export const PRESENCE_TTL_MS = 30_000;
export const PRESENCE_INTERVAL_MS = 5_000;

export async function openPresence(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).create(BUCKETS.stages, { history: 1, storage: StorageType.Memory, ttl: PRESENCE_TTL_MS });
}

/**
 * Announces this process until the returned function is called. `refreshOn` registers a second
 * trigger for a refresh: the bus's topology keeper, so that the record is back as soon as a
 * restarted nats-server has the bucket again (its puts fail until then), not at the next interval.
 */
export async function announceStage(nc: NatsConnection, presence: Omit<StagePresence, 'seenAt'>, describe: () => Partial<StagePresence> = () => ({}), refreshOn?: (refresh: () => void) => void): Promise<() => Promise<void>> {
  const kv = await openPresence(nc);
  const key = `${presence.step}.${presence.worker.replace(/[^\w-]/g, '_')}`;
  const put = () => kv.put(key, JSON.stringify({ ...presence, ...describe(), seenAt: Date.now() })).catch(() => undefined);
  await put();
  refreshOn?.(() => void put());
  const timer = setInterval(() => void put(), PRESENCE_INTERVAL_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await kv.delete(key).catch(() => undefined);
  };
}


/**
 * The stage processes as the edge sees them, kept up to date by one watch on the presence bucket
 * (no read per submission). A process that died without saying goodbye drops out when its
 * record is older than three refresh intervals (the bucket's TTL removes it without an event).
 *
 * The watch is made anew when it ends and when `restart` is called (the bus calls it once the
 * topology is whole after a reconnect). Why: the bucket is a memory stream, which a restarted
 * nats-server no longer has; once it is made again, the old watch stays silent for good
 * (measured: the view stayed empty while the stages refreshed their records every 5 s).
 */
export class StagePresenceView {
  private readonly byKey = new Map<string, StagePresence>();
  private watch?: { stop(): void };
  private stopped = false;
  /** The current watch is being replaced (restart): the next one is opened at once. */
  private restarting = false;

  private constructor(private readonly kv: KV, private readonly log?: Logger, private readonly retryMs = 1000) {}

  /** Resolves once the first watch is open (so the view is filled from the bucket's records). */
  static async start(nc: NatsConnection, options: { log?: Logger; retryMs?: number } = {}): Promise<StagePresenceView> {
    const view = new StagePresenceView(await openPresence(nc), options.log, options.retryMs);
    const first = await view.kv.watch({ key: '>' });
    void view.follow(first);
    return view;
  }

  /** Replaces the watch with a new one, which reads every record again. */
  restart(): void {
    this.restarting = true;
    this.watch?.stop();
  }

  private async follow(first?: Awaited<ReturnType<KV['watch']>>): Promise<void> {
    let watch = first;
    while (!this.stopped) {
      try {
        watch ??= await this.kv.watch({ key: '>' });
        this.watch = watch;
        if (this.stopped) break;
        for await (const entry of watch) this.apply(entry.key, entry.operation, entry.length, () => entry.json<StagePresence>());
        // Ended by itself (not replaced): a pause, so that a watch that keeps ending is not remade in a loop.
        if (!this.restarting && !this.stopped) await this.pause();
      } catch (error) {
        this.log?.warn({ err: error, retryInMs: this.retryMs }, 'stage presence: watch failed; trying again');
        await this.pause();
      }
      this.restarting = false;
      watch = undefined;
    }
    this.watch?.stop();
  }

  private pause(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.retryMs).unref());
  }

  private apply(key: string, operation: string, length: number, record: () => StagePresence): void {
    if (operation !== 'PUT' || length === 0) {
      this.byKey.delete(key);
      return;
    }
    try {
      this.byKey.set(key, record());
    } catch {
      this.byKey.delete(key); // not JSON: not a stage's record
    }
  }

  /** The stage processes seen in the last few refresh intervals. */
  all(): StagePresence[] {
    const recent = Date.now() - 3 * PRESENCE_INTERVAL_MS;
    return [...this.byKey.values()].filter((p) => p.seenAt >= recent);
  }

  /** The live processes that host `step`. */
  hostsOf(step: string): StagePresence[] {
    return this.all().filter((p) => p.step === step);
  }

  stop(): void {
    this.stopped = true;
    this.watch?.stop();
  }
}
