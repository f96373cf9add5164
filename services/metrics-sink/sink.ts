/**
 * The metrics sink: reads the jobs' events (stream PHOTOLAB_EVENTS, where each step event
 * carries its stage-run row and each terminal event its job row) through the durable pull
 * consumer `metrics-sink` into ClickHouse, in batches bounded by size (batchRows) and time (batchMs,
 * counted from the batch's first message; JetStream pulls last at least 1 s, so a batchMs below
 * 1000 acts as about 1000). Three tables: stage_runs (the `run` of step events), jobs (the
 * `summary` of terminal events) and audit (photolab.audit.<caseId>, the chain of custody: the
 * same guarantees matter most there).
 *
 * Guarantees:
 * - A message is acked only after the insert holding its row succeeded. A crash between insert
 *   and ack gets the batch redelivered and inserted again; the tables are ReplacingMergeTree
 *   keyed on run_id / job_id / audit_id, and every read uses FINAL, so no row shows twice.
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
  jetstream,
  jetstreamManager,
  type Consumer,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
} from '@nats-io/jetstream';
import { isAlreadyExists, isConsumerNotFound } from '../lib/bus/nats-errors.js';
import { ensureStream } from '../lib/bus/topology.js';
import type { NatsConnection } from '@nats-io/transport-node';
import type { DeadLetter } from '../lib/shared/schema-types.js';
import type { Logger } from '../lib/shared/logger.js';
import { isDataError, type MetricsStore } from '../lib/metrics/clickhouse.js';
import { METRICS_CONSUMER, METRICS_DLQ_SUBJECT, METRICS_STREAM } from '../lib/metrics/constants.js';
import { AUDIT_TABLE, JOBS_TABLE, STAGE_RUNS_TABLE, migrate } from '../lib/metrics/migrations.js';
import { InvalidMetricError, parseMetricMessage, type MetricRecord } from './records.js';
import type { Counter, Gauge, Registry } from '../lib/metrics/prometheus.js';

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
  /** PHOTOLAB_EVENTS as the bus topology defines it (eventsStreamConfig): created when absent. */
  streamConfig?: Partial<StreamConfig>;
  /** How long stop() still tries to insert the batch in hand before giving it back (nak), ms. */
  stopFlushMs?: number;
  /** Counters and gauges of the sink are registered here when given. */
  registry?: Registry;
  /** Test hook: runs after an insert succeeded and before its messages are acked. */
  afterInsert?: (batch: { stage: number; job: number; audit: number }) => void | Promise<void>;
}

export interface MetricsSinkStats {
  stageRows: number;
  jobRows: number;
  /** Chain-of-custody rows (table audit). */
  auditRows: number;
  batches: number;
  deadLettered: number;
  insertFailures: number;
  lastError?: string;
}

interface Pending {
  msg: JsMsg;
  /** The rows this message carries (a message with none is acked at once). */
  records: MetricRecord[];
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
    if (!isConsumerNotFound(error)) throw error;
    try {
      await jsm.consumers.add(METRICS_STREAM, {
        durable_name: METRICS_CONSUMER,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        // No filter: every stored subject of PHOTOLAB_EVENTS (job events and custody records).
        ...tunables,
      });
    } catch (addError) {
      if (!isAlreadyExists(addError)) throw addError;
    }
  }
}

export class MetricsSink {
  private readonly opts: Required<Omit<MetricsSinkOptions, 'logger' | 'registry' | 'afterInsert' | 'streamConfig'>> & Pick<MetricsSinkOptions, 'logger' | 'afterInsert' | 'streamConfig'>;
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
  readonly stats: MetricsSinkStats = { stageRows: 0, jobRows: 0, auditRows: 0, batches: 0, deadLettered: 0, insertFailures: 0 };

  constructor(options: MetricsSinkOptions) {
    if (!Number.isInteger(options.batchRows) || options.batchRows < 1) throw new Error(`batchRows must be an integer >= 1, got ${options.batchRows}`);
    if (!Number.isInteger(options.batchMs) || options.batchMs < 1) throw new Error(`batchMs must be an integer >= 1, got ${options.batchMs}`);
    this.opts = {
      ackWaitMs: 30_000,
      retryInitialMs: 250,
      retryMaxMs: 15_000,
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
    this.jsm = await jetstreamManager(this.opts.nc);
    await this.ensure();
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

  /** The events stream (when the sink is to make it) and the `metrics-sink` consumer, made or updated. */
  private async ensure(): Promise<void> {
    if (this.opts.streamConfig) await ensureStream(this.jsm!, this.opts.streamConfig, this.opts.nc.info?.version);
    await ensureMetricsConsumer(this.jsm!, { ackWaitMs: this.opts.ackWaitMs, maxAckPending: Math.max(1000, this.opts.batchRows * 2) });
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
        this.log?.warn({ err: this.stats.lastError, failures }, 'metrics sink: pulling from PHOTOLAB_EVENTS failed; retrying');
        if (!this.stopping) await this.sleep(this.backoff(failures));
        // A nats-server that came back without its store has neither stream nor consumer: made
        // again here (two info calls when both are there), or the sink would retry for good.
        if (!this.stopping) await this.ensure().catch(() => undefined);
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
        let records: MetricRecord[];
        try {
          records = parseMetricMessage(msg.subject, msg.data);
        } catch (error) {
          await this.deadLetter(msg, error);
          continue;
        }
        if (records.length === 0) {
          msg.ack(); // an event without rows (an old terminal event, say): nothing to insert
          continue;
        }
        if (seqs.has(msg.seq)) {
          // A redelivery of a message already in this batch (its ack timer ran out): one copy is enough.
          msg.working();
          continue;
        }
        seqs.add(msg.seq);
        batch.push({ msg, records });
        deadline ??= Date.now() + batchMs;
      }
    }
    this.counters.held?.set(batch.length);
    return batch;
  }

  /** Inserts the batch (retrying while ClickHouse is down), then acks it. */
  private async flush(batch: Pending[]): Promise<void> {
    // One insert per table, in this order; a message is acked once every row it carries is in.
    const groups = ([['stage', STAGE_RUNS_TABLE, 'stageRows'], ['job', JOBS_TABLE, 'jobRows'], ['audit', AUDIT_TABLE, 'auditRows']] as const)
      .map(([kind, table, stat]) => ({ table, stat, rows: batch.flatMap((pending) => pending.records.filter((r) => r.kind === kind).map((record) => ({ pending, record }))) }));
    const held = () => groups.reduce((n, g) => n + g.rows.length, 0);
    let attempt = 0;
    let lastWorking = Date.now();
    const keepAlive = () => {
      if (Date.now() - lastWorking < this.opts.ackWaitMs / 3) return;
      for (const p of batch) p.msg.working();
      lastWorking = Date.now();
    };
    const rejected = new Set<Pending>();
    for (;;) {
      try {
        if (!this.migrated) {
          await migrate(this.opts.store, { logger: this.log });
          this.migrated = true;
        }
        // A crash between insert and ack inserts the batch again, which the ReplacingMergeTree
        // tables fold (reads use FINAL).
        for (const g of groups) {
          if (g.rows.length === 0) continue;
          const kept = await this.insert(g.table, g.rows, rejected);
          this.stats[g.stat] += kept;
          this.counters.rows?.inc({ table: g.table }, kept);
          g.rows = [];
        }
        await this.ackAll(batch.filter((p) => !rejected.has(p)));
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
        if (attempt === 1 || attempt % 10 === 0) {
          this.log?.warn({ err: this.stats.lastError, attempt, rows: held() }, 'metrics sink: insert failed; keeping the batch un-acked and retrying');
        }
        if (this.stopping && Date.now() >= this.stopDeadline) {
          for (const p of batch) if (!rejected.has(p)) p.msg.nak();
          await this.opts.nc.flush().catch(() => undefined);
          this.log?.warn({ rows: held() }, 'metrics sink: stopping with ClickHouse unreachable; batch given back to the stream');
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
      const rows = pendings.flatMap((p) => p.records);
      await this.opts.afterInsert({ stage: rows.filter((r) => r.kind === 'stage').length, job: rows.filter((r) => r.kind === 'job').length, audit: rows.filter((r) => r.kind === 'audit').length });
    }
    for (const p of pendings) p.msg.ack();
    // Make sure the acks left this process before we count the batch as done.
    await this.opts.nc.flush();
  }

  /**
   * Inserts the rows of one table. When ClickHouse rejects the rows as data (never expected:
   * records are validated first), inserts them one by one and dead-letters the messages whose
   * rows it rejects (added to `rejected`, never acked). Returns how many rows are now in.
   */
  private async insert(table: string, items: { pending: Pending; record: MetricRecord }[], rejected: Set<Pending>): Promise<number> {
    const { store } = this.opts;
    try {
      await store.client.insert({ table: store.table(table), values: items.map((i) => i.record.row), format: 'JSONEachRow' });
      return items.length;
    } catch (error) {
      if (!isDataError(error)) throw error;
      this.log?.warn({ err: String((error as Error).message), table }, 'metrics sink: ClickHouse rejected a batch as data; inserting row by row');
    }
    let kept = 0;
    for (const item of items) {
      if (rejected.has(item.pending)) continue;
      try {
        await store.client.insert({ table: store.table(table), values: [item.record.row], format: 'JSONEachRow' });
        kept++;
      } catch (error) {
        if (!isDataError(error)) throw error;
        rejected.add(item.pending);
        await this.deadLetter(item.pending.msg, new InvalidMetricError('rejected_by_clickhouse', String((error as Error).message)));
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
