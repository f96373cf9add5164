/**
 * The metrics sink: drains stream PHOTOLAB_METRICS through the durable pull consumer
 * `metrics-sink` into ClickHouse, in batches bounded by size (batchRows) and time (batchMs,
 * counted from the batch's first message; JetStream pulls last at least 1 s, so a batchMs below
 * 1000 acts as about 1000).
 *
 * Guarantees:
 * - A message is acked only after the insert holding its row succeeded. A crash between insert
 *   and ack gets the batch redelivered and inserted again; the tables are ReplacingMergeTree
 *   keyed on run_id / job_id, and every read uses FINAL, so no row shows twice.
 * - While ClickHouse is unreachable the batch stays un-acked: the sink retries with exponential
 *   backoff, keeps the messages' ack timers alive with in-progress acks (no redelivery storm)
 *   and pulls nothing more; the rest waits in the stream. Nothing is lost.
 * - A message that can never become a row (unknown subject, not JSON, schema violation, value
 *   out of range, or a row ClickHouse itself rejects as data) goes to photolab.dlq.metrics as a
 *   DeadLetter and is terminated; it never blocks or crashes the sink.
 */
import {
  AckPolicy,
  DeliverPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { DeadLetter } from '../shared/schema-types.js';
import type { Logger } from '../shared/logger.js';
import { isDataError, type MetricsStore } from './clickhouse.js';
import { METRICS_CONSUMER, METRICS_DLQ_SUBJECT, METRICS_STREAM, METRICS_SUBJECTS } from './constants.js';
import { JOBS_TABLE, STAGE_RUNS_TABLE, migrate } from './migrations.js';
import { InvalidMetricError, parseMetricMessage, type MetricRecord } from './records.js';
import type { Counter, Gauge, Registry } from './prometheus.js';

const NS_PER_MS = 1_000_000;

export interface MetricsSinkOptions {
  nc: NatsConnection;
  store: MetricsStore;
  /** Largest insert (METRICS_BATCH_ROWS). */
  batchRows: number;
  /** Longest a partial batch waits (METRICS_BATCH_MS). */
  batchMs: number;
  logger?: Logger;
  /** Ack wait of the `metrics-sink` consumer, ms (default 30 s). */
  ackWaitMs?: number;
  /** First and longest delay between insert retries while ClickHouse is down, ms. */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Create PHOTOLAB_METRICS when it does not exist (default true; the bus topology normally has). */
  ensureStream?: boolean;
  /** Replicas of PHOTOLAB_METRICS when the sink creates it (NATS_REPLICAS; default 1). */
  streamReplicas?: number;
  /** How long stop() still tries to insert the batch in hand before giving it back (nak), ms. */
  stopFlushMs?: number;
  /** Counters and gauges of the sink are registered here when given. */
  registry?: Registry;
  /** Test hook: runs after an insert succeeded and before its messages are acked. */
  afterInsert?: (batch: { stage: number; job: number }) => void | Promise<void>;
}

export interface MetricsSinkStats {
  stageRows: number;
  jobRows: number;
  batches: number;
  deadLettered: number;
  insertFailures: number;
  lastError?: string;
}

interface Pending {
  msg: JsMsg;
  record: MetricRecord;
}

/** PHOTOLAB_METRICS as the bus topology defines it; created only when absent. */
export const METRICS_STREAM_CONFIG = {
  name: METRICS_STREAM,
  subjects: [METRICS_SUBJECTS.all],
  retention: RetentionPolicy.Workqueue,
  storage: StorageType.File,
  duplicate_window: 120_000 * NS_PER_MS,
};

function isNotFound(error: unknown, what: 'stream' | 'consumer'): boolean {
  const name = (error as { name?: string }).name ?? '';
  return name === (what === 'stream' ? 'StreamNotFoundError' : 'ConsumerNotFoundError') || new RegExp(`${what} not found`, 'i').test(String(error));
}

/** Creates stream PHOTOLAB_METRICS (subjects photolab.metrics.>, work queue, file) if it is absent; leaves an existing one alone. */
export async function ensureMetricsStream(jsm: JetStreamManager, replicas = 1): Promise<void> {
  try {
    await jsm.streams.info(METRICS_STREAM);
  } catch (error) {
    if (!isNotFound(error, 'stream')) throw error;
    try {
      // On a cluster the sink may come up before any other service: it must not make an R1 stream there.
      await jsm.streams.add({ ...METRICS_STREAM_CONFIG, num_replicas: replicas });
    } catch (addError) {
      if (!/already in use|already exists/i.test(String(addError))) throw addError;
    }
  }
}

/** Creates (or updates the tunables of) the durable pull consumer `metrics-sink`. */
export async function ensureMetricsConsumer(jsm: JetStreamManager, options: { ackWaitMs: number; maxAckPending: number }): Promise<void> {
  const tunables = { ack_wait: options.ackWaitMs * NS_PER_MS, max_ack_pending: options.maxAckPending };
  try {
    const info = await jsm.consumers.info(METRICS_STREAM, METRICS_CONSUMER);
    if (info.config.ack_wait !== tunables.ack_wait || info.config.max_ack_pending !== tunables.max_ack_pending) {
      await jsm.consumers.update(METRICS_STREAM, METRICS_CONSUMER, tunables);
    }
  } catch (error) {
    if (!isNotFound(error, 'consumer')) throw error;
    try {
      await jsm.consumers.add(METRICS_STREAM, {
        durable_name: METRICS_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ...tunables,
      });
    } catch (addError) {
      if (!/already (exists|in use)/i.test(String(addError))) throw addError;
    }
  }
}

export class MetricsSink {
  private readonly opts: Required<Omit<MetricsSinkOptions, 'logger' | 'registry' | 'afterInsert'>> & Pick<MetricsSinkOptions, 'logger' | 'afterInsert'>;
  private readonly log?: Logger;
  private js?: JetStreamClient;
  private loop?: Promise<void>;
  private stopping = false;
  private stopDeadline = 0;
  private wake?: () => void;
  private migrated = false;
  private jsm?: JetStreamManager;
  /** Whether a stream captures photolab.dlq.metrics (then dead letters go through JetStream), checked at most every 30 s. */
  private dlqStream: { known: boolean; checkedAt: number } = { known: false, checkedAt: 0 };
  private readonly counters: { rows?: Counter; batches?: Counter; dlq?: Counter; failures?: Counter; held?: Gauge };
  readonly stats: MetricsSinkStats = { stageRows: 0, jobRows: 0, batches: 0, deadLettered: 0, insertFailures: 0 };

  constructor(options: MetricsSinkOptions) {
    if (!Number.isInteger(options.batchRows) || options.batchRows < 1) throw new Error(`batchRows must be an integer >= 1, got ${options.batchRows}`);
    if (!Number.isInteger(options.batchMs) || options.batchMs < 1) throw new Error(`batchMs must be an integer >= 1, got ${options.batchMs}`);
    this.opts = {
      ackWaitMs: 30_000,
      retryInitialMs: 250,
      retryMaxMs: 15_000,
      ensureStream: true,
      streamReplicas: 1,
      stopFlushMs: 5_000,
      ...options,
    };
    if (!Number.isInteger(this.opts.ackWaitMs) || this.opts.ackWaitMs < 1000) throw new Error(`ackWaitMs must be an integer >= 1000, got ${this.opts.ackWaitMs}`);
    this.log = options.logger;
    const r = options.registry;
    this.counters = r
      ? {
          rows: r.counter('photolab_metrics_sink_rows_total', 'Rows the metrics sink inserted into ClickHouse.', ['table']),
          batches: r.counter('photolab_metrics_sink_batches_total', 'Inserts (batches) the metrics sink completed.'),
          dlq: r.counter('photolab_metrics_sink_dead_letters_total', 'Metrics messages sent to photolab.dlq.metrics.'),
          failures: r.counter('photolab_metrics_sink_insert_failures_total', 'Failed insert attempts (retried).'),
          held: r.gauge('photolab_metrics_sink_batch_rows', 'Rows in the batch the sink holds un-acked right now.'),
        }
      : {};
  }

  /** Ensures stream and consumer, then consumes in the background until stop(). */
  async start(): Promise<void> {
    if (this.loop) throw new Error('MetricsSink already started');
    const jsm = await jetstreamManager(this.opts.nc);
    this.jsm = jsm;
    if (this.opts.ensureStream) await ensureMetricsStream(jsm, this.opts.streamReplicas);
    await ensureMetricsConsumer(jsm, { ackWaitMs: this.opts.ackWaitMs, maxAckPending: Math.max(1000, this.opts.batchRows * 2) });
    this.js = jetstream(this.opts.nc);
    this.stopping = false;
    this.loop = this.run();
  }

  /**
   * Stops pulling, tries for stopFlushMs to insert the batch in hand, and gives back (nak) what
   * it could not insert. Resolves when the loop has ended.
   */
  async stop(): Promise<void> {
    if (!this.loop) return;
    this.stopping = true;
    this.stopDeadline = Date.now() + this.opts.stopFlushMs;
    this.wake?.();
    await this.loop;
    this.loop = undefined;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private backoff(attempt: number): number {
    const base = Math.min(this.opts.retryMaxMs, this.opts.retryInitialMs * 2 ** Math.min(attempt, 20));
    return Math.round(base * (0.75 + Math.random() * 0.5));
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      try {
        const consumer = await this.js!.consumers.get(METRICS_STREAM, METRICS_CONSUMER);
        failures = 0;
        while (!this.stopping) {
          const batch = await this.fill(consumer);
          if (batch.length > 0) await this.flush(batch);
        }
      } catch (error) {
        failures++;
        this.stats.lastError = String((error as Error)?.message ?? error);
        this.log?.warn({ err: this.stats.lastError, failures }, 'metrics sink: pulling from PHOTOLAB_METRICS failed; retrying');
        if (!this.stopping) await this.sleep(this.backoff(failures));
      }
    }
  }

  /** Pulls until batchRows rows or batchMs after the first row (or until stop). */
  private async fill(consumer: Consumer): Promise<Pending[]> {
    const { batchRows, batchMs } = this.opts;
    const batch: Pending[] = [];
    const seqs = new Set<number>();
    let deadline: number | undefined;
    while (!this.stopping && batch.length < batchRows) {
      const wait = deadline === undefined ? batchMs : deadline - Date.now();
      if (wait <= 0) break;
      const messages = await consumer.fetch({ max_messages: batchRows - batch.length, expires: Math.max(1000, wait) });
      for await (const msg of messages) {
        let record: MetricRecord;
        try {
          record = parseMetricMessage(msg.subject, msg.data);
        } catch (error) {
          await this.deadLetter(msg, error);
          continue;
        }
        if (seqs.has(msg.seq)) {
          // A redelivery of a message already in this batch (its ack timer ran out): one copy is enough.
          msg.working();
          continue;
        }
        seqs.add(msg.seq);
        batch.push({ msg, record });
        deadline ??= Date.now() + batchMs;
      }
    }
    this.counters.held?.set(batch.length);
    return batch;
  }

  /** Inserts the batch (retrying while ClickHouse is down), then acks it. */
  private async flush(batch: Pending[]): Promise<void> {
    let stage = batch.filter((p) => p.record.kind === 'stage');
    let job = batch.filter((p) => p.record.kind === 'job');
    let attempt = 0;
    let lastWorking = Date.now();
    const keepAlive = () => {
      if (Date.now() - lastWorking < this.opts.ackWaitMs / 3) return;
      for (const p of [...stage, ...job]) p.msg.working();
      lastWorking = Date.now();
    };
    for (;;) {
      try {
        if (!this.migrated) {
          await migrate(this.opts.store, { logger: this.log });
          this.migrated = true;
        }
        if (stage.length > 0) {
          stage = await this.insert(STAGE_RUNS_TABLE, stage);
          this.stats.stageRows += stage.length;
          this.counters.rows?.inc({ table: STAGE_RUNS_TABLE }, stage.length);
          await this.ackAll(stage);
          stage = [];
        }
        if (job.length > 0) {
          job = await this.insert(JOBS_TABLE, job);
          this.stats.jobRows += job.length;
          this.counters.rows?.inc({ table: JOBS_TABLE }, job.length);
          await this.ackAll(job);
          job = [];
        }
        this.stats.batches++;
        this.counters.batches?.inc();
        this.counters.held?.set(0);
        if (attempt > 0) this.log?.info({ attempts: attempt + 1 }, 'metrics sink: ClickHouse reachable again, batch inserted');
        return;
      } catch (error) {
        attempt++;
        this.stats.insertFailures++;
        this.counters.failures?.inc();
        this.stats.lastError = String((error as Error)?.message ?? error);
        const held = stage.length + job.length;
        if (attempt === 1 || attempt % 10 === 0) {
          this.log?.warn({ err: this.stats.lastError, attempt, rows: held }, 'metrics sink: insert failed; keeping the batch un-acked and retrying');
        }
        if (this.stopping && Date.now() >= this.stopDeadline) {
          for (const p of [...stage, ...job]) p.msg.nak();
          await this.opts.nc.flush().catch(() => undefined);
          this.log?.warn({ rows: held }, 'metrics sink: stopping with ClickHouse unreachable; batch given back to the stream');
          return;
        }
        keepAlive();
        const delay = this.backoff(attempt - 1);
        await this.sleep(this.stopping ? Math.min(delay, Math.max(0, this.stopDeadline - Date.now())) : delay);
        keepAlive();
      }
    }
  }

  /** Acks after the test hook (which may end the process between insert and ack). */
  private async ackAll(pendings: Pending[]): Promise<void> {
    if (this.opts.afterInsert) {
      await this.opts.afterInsert({
        stage: pendings.filter((p) => p.record.kind === 'stage').length,
        job: pendings.filter((p) => p.record.kind === 'job').length,
      });
    }
    for (const p of pendings) p.msg.ack();
    // Make sure the acks left this process before we count the batch as done.
    await this.opts.nc.flush();
  }

  /**
   * Inserts the rows of one table. When ClickHouse rejects the rows as data (never expected:
   * records are validated first), inserts them one by one and dead-letters those it rejects.
   * Returns the pendings whose rows are now in the table.
   */
  private async insert(table: string, pendings: Pending[]): Promise<Pending[]> {
    const { store } = this.opts;
    try {
      await store.client.insert({ table: store.table(table), values: pendings.map((p) => p.record.row), format: 'JSONEachRow' });
      return pendings;
    } catch (error) {
      if (!isDataError(error)) throw error;
      this.log?.warn({ err: String((error as Error).message), table }, 'metrics sink: ClickHouse rejected a batch as data; inserting row by row');
    }
    const kept: Pending[] = [];
    for (const p of pendings) {
      try {
        await store.client.insert({ table: store.table(table), values: [p.record.row], format: 'JSONEachRow' });
        kept.push(p);
      } catch (error) {
        if (!isDataError(error)) throw error;
        await this.deadLetter(p.msg, new InvalidMetricError('rejected_by_clickhouse', String((error as Error).message)));
      }
    }
    return kept;
  }

  private async deadLetter(msg: JsMsg, error: unknown): Promise<void> {
    const code = error instanceof InvalidMetricError ? error.code : 'metrics_sink_error';
    const message = error instanceof Error ? error.message : String(error);
    const letter: DeadLetter = {
      step: 'metrics',
      subject: msg.subject,
      error: { code, message, ...(error instanceof InvalidMetricError && error.details !== undefined ? { details: error.details } : {}) },
      attempts: msg.info.deliveryCount,
      at: Date.now(),
      payload: Buffer.from(msg.data).toString('utf8'),
    };
    const body = JSON.stringify(letter);
    if (Date.now() - this.dlqStream.checkedAt > 30_000) {
      const known = await this.jsm!.streams.find(METRICS_DLQ_SUBJECT).then(() => true, () => false);
      this.dlqStream = { known, checkedAt: Date.now() };
    }
    let published = false;
    if (this.dlqStream.known) {
      try {
        await this.js!.publish(METRICS_DLQ_SUBJECT, body, { msgID: `metrics:${msg.info.stream}:${msg.seq}`, timeout: 5000 });
        published = true;
      } catch (publishError) {
        this.dlqStream.checkedAt = 0;
        this.log?.warn({ err: String(publishError) }, 'metrics sink: dead letter could not be stored in JetStream; publishing it plainly');
      }
    }
    // No stream captures photolab.dlq.> (the bus topology creates PHOTOLAB_DLQ): still tell whoever listens, and the log.
    if (!published) this.opts.nc.publish(METRICS_DLQ_SUBJECT, body);
    this.log?.warn({ subject: msg.subject, seq: msg.seq, code, err: message }, 'metrics sink: invalid metrics message dead-lettered and terminated');
    // No reason text: nats-server 2.9 does not know `+TERM <reason>`.
    msg.term();
    this.stats.deadLettered++;
    this.counters.dlq?.inc();
  }
}
