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
import { BUCKETS } from './subjects.js';

export const PRESENCE_TTL_MS = 30_000;
export const PRESENCE_INTERVAL_MS = 5_000;

export async function openPresence(nc: NatsConnection): Promise<KV> {
  return new Kvm(nc).create(BUCKETS.stages, { history: 1, storage: StorageType.Memory, ttl: PRESENCE_TTL_MS });
}

/** Announces this process until the returned function is called. */
export async function announceStage(nc: NatsConnection, presence: Omit<StagePresence, 'seenAt'>, describe: () => Partial<StagePresence> = () => ({})): Promise<() => Promise<void>> {
  const kv = await openPresence(nc);
  const key = `${presence.step}.${presence.worker.replace(/[^\w-]/g, '_')}`;
  const put = () => kv.put(key, JSON.stringify({ ...presence, ...describe(), seenAt: Date.now() })).catch(() => undefined);
  await put();
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
 */
export class StagePresenceView {
  private readonly byKey = new Map<string, StagePresence>();

  private constructor(private readonly watch: { stop(): void }) {}

  static async start(nc: NatsConnection): Promise<StagePresenceView> {
    const kv = await openPresence(nc);
    const watch = await kv.watch({ key: '>' });
    const view = new StagePresenceView(watch);
    void (async () => {
      for await (const entry of watch) {
        if (entry.operation !== 'PUT' || entry.length === 0) view.byKey.delete(entry.key);
        else {
          try {
            view.byKey.set(entry.key, entry.json<StagePresence>());
          } catch {
            view.byKey.delete(entry.key); // not JSON: not a stage's record
          }
        }
      }
    })().catch(() => undefined);
    return view;
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
    this.watch.stop();
  }
}
