/**
 * Creates the streams, consumers and buckets, idempotently: every service calls this at
 * start, so any of them can come up first, and a second call changes nothing. The services
 * call it again after each reconnect (topology-keeper.ts): memory streams do not outlive a
 * nats-server restart.
 * Only features of nats-server 2.9 are used (Debian's 2.9.10): no stream metadata,
 * no multi-filter consumers, no per-message TTL.
 */
import { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Config } from '../shared/config.js';
import { isAlreadyExists, isConsumerNotFound, isStreamNotFound } from './nats-errors.js';
import { scaleUpInPlaceIsUnsafe } from './rescale.js';
import { BUCKETS, STREAMS, stageConsumer, subjects } from './subjects.js';
import { PRESENCE_TTL_MS } from './stage-presence.js';

const NS_PER_MS = 1_000_000;
const seconds = (s: number) => s * 1000 * NS_PER_MS;

export function streamConfigs(config: Config): Partial<StreamConfig>[] {
  return withReplicas(config, [
    {
      name: STREAMS.stages,
      subjects: [subjects.stageAll],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      duplicate_window: seconds(120),
      max_age: seconds(Math.ceil(config.jobMaxDeadlineMs / 1000) * 2),
    },
    {
      name: STREAMS.frames,
      subjects: [subjects.framesAll],
      retention: RetentionPolicy.Limits,
      storage: config.frameStorage === 'file' ? StorageType.File : StorageType.Memory,
      max_age: seconds(config.frameTtlS),
      max_bytes: config.frameStreamMaxBytes,
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.Old,
      allow_direct: true,
    },
    {
      // Only the durable facts: progress (photolab.progress.*) stays core NATS. The custody
      // records of the cases are facts of the same kind and take the same way to ClickHouse.
      name: STREAMS.events,
      subjects: [subjects.eventsAll, subjects.auditAll],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: seconds(config.eventsTtlS),
      duplicate_window: seconds(120),
      allow_direct: true,
    },
    {
      name: STREAMS.blobs,
      subjects: [subjects.blobsAll],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: seconds(config.blobTtlS),
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.Old,
      allow_direct: true,
    },
    {
      // No max_age and no discard of old messages: evidence goes only when its case is deleted
      // by an operator (nothing in the product deletes it).
      name: STREAMS.evidence,
      subjects: [subjects.evidenceAll],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_msgs_per_subject: 1,
      allow_direct: true,
    },
    {
      name: STREAMS.deadLetters,
      subjects: [subjects.deadLettersAll],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      max_age: seconds(30 * 24 * 3600),
    },
  ]);
}

/**
 * NATS_REPLICAS on every stream: 1 on a single server, 3 on a cluster. Consumers inherit their
 * stream's count (num_replicas 0), so the stage consumers follow without a setting of their own.
 */
function withReplicas(config: Config, streams: Partial<StreamConfig>[]): Partial<StreamConfig>[] {
  const replicas = replicaCount(config);
  return streams.map((s) => ({ ...s, num_replicas: replicas }));
}

function replicaCount(config: Config): number {
  const replicas = config.natsReplicas ?? 1;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) throw new Error(`NATS_REPLICAS must be 1 to 5 (JetStream's limit), got ${replicas}`);
  return replicas;
}

/**
 * A KV bucket with NATS_REPLICAS replicas. Kvm.create leaves an existing bucket as it is, so a
 * bucket first made on a single server (or with another count) is scaled here: the same
 * idempotent rule as the streams.
 */
/** Whether the bucket had to be made. */
async function ensureBucket(kvm: Kvm, jsm: JetStreamManager, name: string, options: Parameters<Kvm['create']>[1], replicas: number, serverVersion: string | undefined): Promise<boolean> {
  const stream = `KV_${name}`;
  // One info call when the bucket exists (the usual start); Kvm.create only when it does not.
  const info = await jsm.streams.info(stream).catch((error: unknown) => {
    if (isStreamNotFound(error)) return undefined;
    throw error;
  });
  if (!info) {
    await kvm.create(name, { ...options, replicas });
    return true;
  }
  const current = info.config.num_replicas || 1;
  if (current !== replicas) {
    refuseUnsafeScaleUp(stream, current, replicas, serverVersion);
    await jsm.streams.update(stream, { ...info.config, num_replicas: replicas });
  }
  return false;
}

/**
 * An in-place scale-up loses acknowledged messages on nats-server 2.9 (rescale.ts says how it
 * was measured): such a start stops at that stream, saying what to do instead.
 */
function refuseUnsafeScaleUp(stream: string, current: number, wanted: number, serverVersion: string | undefined): void {
  if (wanted <= current || !scaleUpInPlaceIsUnsafe(serverVersion)) return;
  throw new Error(`${stream} has ${current} replica(s) and NATS_REPLICAS is ${wanted}: nats-server ${serverVersion ?? '(version unknown)'} loses acknowledged messages after a stream is scaled up in place, so it is not done at start. Stop the services and run \`npm run cli -- rescale\` with NATS_REPLICAS=${wanted} (it copies each stream into one made with ${wanted} replicas), or upgrade nats-server to 2.10 or later; docs/deploy.md, "Changing NATS_REPLICAS"`);
}

/** PHOTOLAB_EVENTS, which the metrics sink also ensures (it may start before any other service). */
export function eventsStreamConfig(config: Config): Partial<StreamConfig> {
  return streamConfigs(config).find((s) => s.name === STREAMS.events)!;
}

/**
 * `serverVersion` (NatsConnection.info.version) decides whether a scale-up may be done in place.
 * Resolves to whether the stream had to be made (by this call or, racing it, another service's).
 */
export async function ensureStream(jsm: JetStreamManager, wanted: Partial<StreamConfig>, serverVersion: string | undefined): Promise<boolean> {
  try {
    const info = await jsm.streams.info(wanted.name!);
    const current = info.config as unknown as Record<string, unknown>;
    const differs = Object.entries(wanted).some(([k, v]) => JSON.stringify(current[k]) !== JSON.stringify(v));
    // Storage and retention cannot change on a live stream; everything else we set can.
    if (differs) {
      refuseUnsafeScaleUp(wanted.name!, info.config.num_replicas || 1, wanted.num_replicas ?? 1, serverVersion);
      const { storage: _s, retention: _r, ...updatable } = wanted;
      await jsm.streams.update(wanted.name!, updatable);
    }
    return false;
  } catch (error) {
    if (!isStreamNotFound(error)) throw error;
    try {
      await jsm.streams.add(wanted as StreamConfig);
    } catch (addError) {
      if (!isAlreadyExists(addError)) throw addError;
    }
    return true;
  }
}

/** The durable pull consumer shared by all replicas of a step; resolves to whether it had to be made. */
export async function ensureStageConsumer(jsm: JetStreamManager, step: string, config: Config): Promise<boolean> {
  const durable = stageConsumer(step);
  const wanted = {
    durable_name: durable,
    filter_subject: subjects.stage(step),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: config.ackWaitMs * NS_PER_MS,
    // The runner counts attempts itself and dead-letters; this is only a backstop.
    max_deliver: config.maxAttempts + 2,
    max_ack_pending: 1000,
  };
  try {
    await jsm.consumers.info(STREAMS.stages, durable);
    await jsm.consumers.update(STREAMS.stages, durable, { ack_wait: wanted.ack_wait, max_deliver: wanted.max_deliver, max_ack_pending: wanted.max_ack_pending });
    return false;
  } catch (error) {
    if (!isConsumerNotFound(error)) throw error;
    try {
      await jsm.consumers.add(STREAMS.stages, wanted);
    } catch (addError) {
      // Another replica created it between our info and add.
      if (!isAlreadyExists(addError)) throw addError;
    }
    return true;
  }
}

/** Resolves to the names of what had to be made (streams, stage consumers, buckets' streams): none when all was there. */
export async function ensureTopology(nc: NatsConnection, jsm: JetStreamManager, config: Config, steps: string[] = []): Promise<string[]> {
  const serverVersion = nc.info?.version;
  const made: string[] = [];
  for (const stream of streamConfigs(config)) if (await ensureStream(jsm, stream, serverVersion)) made.push(stream.name!);
  for (const step of steps) if (await ensureStageConsumer(jsm, step, config)) made.push(`${STREAMS.stages}/${stageConsumer(step)}`);
  const kvm = new Kvm(nc);
  const replicas = replicaCount(config);
  const bucket = async (name: string, options: Parameters<Kvm['create']>[1]) => {
    if (await ensureBucket(kvm, jsm, name, options, replicas, serverVersion)) made.push(`KV_${name}`);
  };
  // A job is its record plus its events: both are kept equally long.
  await bucket(BUCKETS.jobs, { history: 1, storage: StorageType.File, ttl: config.eventsTtlS * 1000 });
  await bucket(BUCKETS.idempotency, { history: 1, storage: StorageType.File, ttl: 24 * 3600 * 1000 });
  // Cases are records of an investigation: no TTL.
  await bucket(BUCKETS.cases, { history: 1, storage: StorageType.File });
  // Created here with the replica count (same options as stage-presence.ts, which then finds it made).
  await bucket(BUCKETS.stages, { history: 1, storage: StorageType.Memory, ttl: PRESENCE_TTL_MS });
  return made;
}
