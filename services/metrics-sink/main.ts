/**
 * The metrics service process: reads the jobs' events (PHOTOLAB_EVENTS) into ClickHouse (MetricsSink) and answers
 * stats requests (serveStats) from the same store, since embedded chDB lives in one process.
 *
 *   NATS_URL=nats://127.0.0.1:4222 node dist/services/metrics-sink/main.js
 *
 * Settings: NATS_URL, CLICKHOUSE_URL (empty: chDB under DATA_DIR/chdb), CLICKHOUSE_USER,
 * CLICKHOUSE_PASSWORD, CLICKHOUSE_DATABASE, METRICS_BATCH_ROWS, METRICS_BATCH_MS, DATA_DIR.
 * METRICS_ACK_WAIT_MS, METRICS_RETRY_MAX_MS (services/lib/shared/config.ts).
 *
 * Stops cleanly on SIGINT/SIGTERM (the batch in hand is inserted or given back), and when its
 * parent process is gone (re-parented to init), so it never outlives the launcher.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { applyCollectorSettings, loadConfig, type Config } from '../lib/shared/config.js';
import { isEntryPoint, runUntilStopped } from '../lib/shared/lifecycle.js';
import { createLogger } from '../lib/shared/logger.js';
import { openMetricsStore, storeOptionsFromConfig, type MetricsStore } from '../lib/metrics/clickhouse.js';
import { MetricsSink } from './sink.js';
import { eventsStreamConfig } from '../lib/bus/topology.js';
import { serveStats } from '../lib/metrics/stats.js';
import { serveAudit } from '../lib/metrics/audit.js';

const log = createLogger('metrics');

async function openStoreWithRetry(config: Config, isStopping: () => boolean): Promise<MetricsStore | undefined> {
  const options = storeOptionsFromConfig(config, log);
  for (let attempt = 1; !isStopping(); attempt++) {
    try {
      const store = await openMetricsStore(options);
      log.info({ backend: store.backend, version: store.version, database: store.database }, 'metrics store open');
      return store;
    } catch (error) {
      // chDB failing to open is not going to get better by waiting.
      if (!options.url) throw error;
      const delay = Math.min(15_000, 250 * 2 ** Math.min(attempt, 10));
      if (attempt === 1 || attempt % 10 === 0) log.warn({ err: (error as Error).message, attempt, url: options.url }, 'ClickHouse not reachable; retrying (metrics wait in the stream)');
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  return undefined;
}

export interface MetricsServiceOptions {
  /** Called after each insert, before its ack (a crash test kills the process there). */
  afterInsert?: (batch: { stage: number; job: number; audit: number }) => void | Promise<void>;
}

/** Runs the metrics service until SIGINT/SIGTERM or the parent's end. */
export async function runMetricsService(config: Config = loadConfig(), options: MetricsServiceOptions = {}): Promise<void> {
  if (!config.natsUrl) throw new Error('NATS_URL is empty: the metrics service needs the address of nats-server (the launcher sets it)');
  const ackWaitMs = Math.max(1000, config.metricsAckWaitMs);
  const retryMaxMs = Math.max(10, config.metricsRetryMaxMs);
  if (config.metricsBatchRows < 1) throw new Error(`METRICS_BATCH_ROWS must be >= 1, got ${config.metricsBatchRows}`);
  if (config.metricsBatchMs < 1) throw new Error(`METRICS_BATCH_MS must be >= 1, got ${config.metricsBatchMs}`);

  let stopping = false;
  let nc: NatsConnection | undefined;
  let store: MetricsStore | undefined;
  let sink: MetricsSink | undefined;
  let stopStats: (() => void) | undefined;

  runUntilStopped(log, async () => {
    stopping = true;
    stopStats?.();
    await sink?.stop();
    await nc?.drain().catch(() => undefined);
    await store?.close();
  }, { watchParent: true });

  nc = await connect({ servers: config.natsUrl.split(',').map((s) => s.trim()), name: `photolab-metrics-${process.pid}`, maxReconnectAttempts: -1 });
  store = await openStoreWithRetry(config, () => stopping);
  if (!store) return;
  sink = new MetricsSink({
    nc,
    store,
    batchRows: config.metricsBatchRows,
    batchMs: config.metricsBatchMs,
    ackWaitMs,
    retryMaxMs,
    logger: log,
    streamConfig: eventsStreamConfig(config),
    afterInsert: options.afterInsert,
  });
  await sink.start();
  const stopStatsOnly = serveStats(nc, store, log);
  const stopAudit = serveAudit(nc, store, log);
  stopStats = () => {
    stopStatsOnly();
    stopAudit();
  };
  log.info({ batchRows: config.metricsBatchRows, batchMs: config.metricsBatchMs, backend: store.backend }, 'metrics sink ready');
}

if (isEntryPoint(import.meta.url)) {
  const config = loadConfig();
  applyCollectorSettings(config);
  runMetricsService(config).catch((error) => {
    log.fatal({ err: (error as Error)?.message ?? String(error) }, 'metrics service failed to start');
    process.exit(1);
  });
}
