/**
 * One connection to NATS and everything a service reaches through it: JetStream, the job
 * records, blobs, frames and events.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { Config } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { BlobStore } from './blob-store.js';
import { CaseStore } from './case-store.js';
import { BusFrames } from './frames/bus-frames.js';
import type { FrameStore } from './frames/frame-store.js';
import { LocalFrames } from './frames/local-frames.js';
import { TieredFrames } from './frames/tiered-frames.js';
import { JobStore } from './job-store.js';
import { BUCKETS } from './subjects.js';
import { ensureTopology } from './topology.js';
import { TopologyKeeper } from './topology-keeper.js';
import { LostAcks } from './lost-acks.js';

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  /** Job records (as submitted) and the job's terminal event (job-store.ts). */
  jobs: JobStore;
  blobs: BlobStore;
  /** Cases, their jobs and evidence (case-store.ts). */
  cases: CaseStore;
  frames: FrameStore;
  /**
   * This host's frame cache for what is left outside the frame store (the edge's copy of an
   * upload for a first step here); absent with FRAME_TRANSPORT=bus, which keeps nothing on the host.
   */
  localFrames?: LocalFrames;
  idempotency: import('@nats-io/kv').KV;
  /** Re-checks the streams and buckets after each reconnect; its onRestored follows that (topology-keeper.ts). */
  topology: TopologyKeeper;
  close(): Promise<void>;
}

export async function connectBus(config: Config, log: Logger, name: string, options: { steps?: string[] } = {}): Promise<Bus> {
  if (!config.natsUrl) throw new Error('NATS_URL is not set (npm start sets it for the processes it runs)');
  const nc = await connect({
    servers: config.natsUrl.split(','),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    // Otherwise every request builds an Error up front for a nicer stack on timeout: ~8% of
    // the edge's CPU per upload (bench: ingest profile). Our errors carry their own context.
    noAsyncTraces: true,
  });
  const jsm = await jetstreamManager(nc);
  const lostAcks = new LostAcks();
  const js = lostAcks.wrap(jetstream(nc, { timeout: config.natsRequestTimeoutMs }));
  const ensure = () => ensureTopology(nc, jsm, config, options.steps ?? []);
  const topology = new TopologyKeeper(ensure, log);
  (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect') log.warn({ nats: status.type }, 'NATS connection status');
      if (status.type === 'disconnect') lostAcks.disconnected();
      if (status.type === 'reconnect') {
        lostAcks.reconnected();
        void topology.reconnected();
      }
    }
  })().catch(() => undefined);
  await ensure();
  const kvm = new Kvm(nc);
  const jobsKv = await kvm.open(BUCKETS.jobs);
  const idempotency = await kvm.open(BUCKETS.idempotency);
  const cases = new CaseStore(await kvm.open(BUCKETS.cases));
  const localFrames = new LocalFrames(config.frameCacheDir, config.hostId);
  const busFrames = new BusFrames(js, jsm, nc.info?.max_payload ?? 1024 * 1024);
  const frames = new TieredFrames(config.frameTransport, localFrames, busFrames);
  return {
    nc, js, jsm,
    jobs: new JobStore(jobsKv, js, jsm),
    cases,
    // Chunks of up to 4 MiB, within the server's max_payload (with room for headers).
    blobs: new BlobStore(js, jsm, nc.info?.max_payload ?? 1024 * 1024),
    frames,
    localFrames: frames.hostCache,
    idempotency,
    topology,
    async close() {
      topology.close();
      await nc.drain().catch(() => nc.close());
    },
  };
}
