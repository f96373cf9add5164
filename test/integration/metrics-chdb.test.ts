/**
 * Metrics sink and stats on the embedded backend (chDB through @clickhouse/client's connection
 * plug), in-process, with a real nats-server. One chDB session for the whole file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { openMetricsStore, type MetricsStore } from '../../services/lib/metrics/clickhouse.js';
import { METRICS_CONSUMER, METRICS_STREAM } from '../../services/lib/metrics/constants.js';
import { migrate } from '../../services/lib/metrics/migrations.js';
import { parseMetricMessage } from '../../services/metrics-sink/records.js';
import { MetricsSink } from '../../services/metrics-sink/sink.js';
import { ensureStream, eventsStreamConfig } from '../../services/lib/bus/topology.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { queryStats, requestStats, serveStats } from '../../services/lib/metrics/stats.js';
import { Registry } from '../../services/lib/metrics/prometheus.js';
import { readStageBacklog, registerBacklogGauges, totalBacklog } from '../../services/lib/metrics/backlog.js';
import { AckPolicy, RetentionPolicy, StorageType, jetstream } from '@nats-io/jetstream';
import { AppError } from '../../services/lib/shared/errors.js';
import { schemaValidator } from '../../services/lib/shared/schemas.js';
import type { DeadLetter } from '../../services/lib/shared/schema-types.js';
import { STEPS, jobIdOf, publishJobs, runMsOf, stageEvent, stageMetric, waitFor } from '../helpers/metrics-fixtures.js';
import { startMetricsNats, type TestNatsServer } from '../helpers/server-binaries.js';

async function count(store: MetricsStore, table: string, final = true): Promise<number> {
  const rs = await store.client.query({ query: `SELECT count() AS n FROM ${store.table(table)}${final ? ' FINAL' : ''}`, format: 'JSONEachRow' });
  const [row] = await rs.json<{ n: number | string }>();
  return Number(row?.n ?? 0);
}

describe('metrics on chDB', () => {
  let nats: TestNatsServer;
  let nc: NatsConnection;
  let store: MetricsStore;
  let dir: string;
  let sink: MetricsSink | undefined;
  const now = Date.now();

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'metrics-chdb-'));
    nats = await startMetricsNats();
    nc = await connect({ servers: nats.url });
    store = await openMetricsStore({ dataDir: dir, database: 'photolab_test' });
  });
  after(async () => {
    await sink?.stop();
    await nc?.drain().catch(() => undefined);
    await store?.close();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('store is chDB with query parameters; migrations apply once', async () => {
    assert.equal(store.backend, 'chdb');
    assert.equal(store.supportsQueryParams, true);
    assert.deepEqual(await migrate(store), [1, 2]);
    assert.deepEqual(await migrate(store), [], 'second run applies nothing');
  });

  test('N jobs give exactly N x steps stage rows and N job rows; bad messages are dead-lettered', async () => {
    const jsm = await jetstreamManager(nc);
    const streamConfig = eventsStreamConfig(loadConfig({}));
    await ensureStream(jsm, streamConfig, nc.info?.version);
    await ensureStream(jsm, streamConfig, nc.info?.version); // idempotent
    const info = await jsm.streams.info(METRICS_STREAM);
    assert.equal(info.config.retention, 'limits', 'the events are the jobs\' history: the sink reads them, it does not take them');
    assert.equal(info.config.storage, 'file');
    assert.deepEqual(info.config.subjects, ['photolab.events.>', 'photolab.audit.>']);

    const dead: DeadLetter[] = [];
    const dlqSub = nc.subscribe('photolab.dlq.metrics', { callback: (_e, m) => { dead.push(m.json<DeadLetter>()); } });
    const registry = new Registry();
    sink = new MetricsSink({ nc, store, batchRows: 40, batchMs: 200, registry });
    await sink.start();

    const N = 30;
    const published = await publishJobs(nc, 'CHDB', 0, N, now);
    // Bad ones: not JSON, schema violation, negative size, unknown subject under the stream.
    // Bad ones: not JSON, schema violation, negative size, an event of the wrong shape.
    const bad = stageEvent(stageMetric(jobIdOf('BAD', 0), 0, 0, now));
    nc.publish(bad.subject, 'not json');
    nc.publish(bad.subject, JSON.stringify({ ...bad.event, run: { runId: 'x' } }));
    nc.publish(bad.subject, JSON.stringify({ ...bad.event, run: { ...bad.event.run, inputBytes: -1 } }));
    nc.publish(bad.subject, JSON.stringify({ ...bad.event, type: 'no.such.event' }));
    await nc.flush();

    await waitFor(async () => (await count(store, 'stage_runs')) === published.stage && (await count(store, 'jobs')) === published.job, 'all rows in ClickHouse', 30_000,
      async () => `stage_runs=${await count(store, 'stage_runs')} jobs=${await count(store, 'jobs')} stats=${JSON.stringify(sink!.stats)}`);
    await waitFor(() => dead.length === 4, '4 dead letters', 10_000, () => JSON.stringify(dead));
    dlqSub.unsubscribe();

    assert.equal(await count(store, 'stage_runs'), N * STEPS.length);
    assert.equal(await count(store, 'jobs'), N);
    const validate = schemaValidator<DeadLetter>('messages/dead-letter.schema.json');
    for (const d of dead) assert.ok(validate(d), JSON.stringify(validate.errors));
    assert.deepEqual(dead.map((d) => d.error.code).sort(), ['invalid_json', 'invalid_metric', 'invalid_metric', 'invalid_metric']);
    assert.match(dead.find((d) => d.payload.includes('-1'))!.error.message, /inputBytes/);

    // Everything acked or terminated: nothing left for the consumer.
    await waitFor(async () => {
      const ci = await jsm.consumers.info(METRICS_STREAM, METRICS_CONSUMER);
      return ci.num_pending === 0 && ci.num_ack_pending === 0;
    }, 'consumer drained', 10_000);
    assert.equal(sink.stats.stageRows, N * STEPS.length);
    assert.equal(sink.stats.deadLettered, 4);
    assert.match(registry.render(), /photolab_metrics_sink_rows_total\{table="stage_runs"\} 90/);
  });

  test('a batch inserted twice (redelivery) shows once, in counts and in stats', async () => {
    const before = await count(store, 'stage_runs');
    const rows = [0, 1, 2].map((n) => {
      const { subject, event } = stageEvent(stageMetric(jobIdOf('CHDB', n), n, 0, now));
      return parseMetricMessage(subject, Buffer.from(JSON.stringify(event)))[0]!.row;
    });
    await store.client.insert({ table: store.table('stage_runs'), values: rows, format: 'JSONEachRow' });
    assert.equal(await count(store, 'stage_runs', false) >= before + 3, true, 'the copies are really there');
    assert.equal(await count(store, 'stage_runs'), before, 'FINAL folds them');
    const stats = await queryStats(store, { from: now - 60_000, to: now + 1 });
    const decode = stats.groups.step!.find((r) => r.key === 'decode')!;
    assert.equal(decode.count, 30);
  });

  test('stats: count, percentiles, error rate, throughput per step, model and provider', async () => {
    const from = now - 60_000;
    const stats = await queryStats(store, { from: String(from), to: String(now + 1) });
    assert.deepEqual(stats.groupBy, ['step', 'model', 'provider']);
    assert.equal(stats.windowSeconds, 60.001);
    const steps = stats.groups.step!;
    assert.deepEqual(steps.map((r) => r.key), ['decode', 'encode', 'upscale']);
    const upscale = steps.find((r) => r.key === 'upscale')!;
    // runMs of upscale (index 1) for n = 0..29: 20 + n; exact quantiles.
    assert.equal(upscale.count, 30);
    assert.equal(upscale.errors, 0);
    assert.equal(upscale.errorRate, 0);
    const values = Array.from({ length: 30 }, (_, n) => runMsOf(n, 1));
    assert.ok(upscale.p50Ms! >= values[14]! && upscale.p50Ms! <= values[15]!, `p50 ${upscale.p50Ms}`);
    assert.ok(upscale.p99Ms! >= values[28]! && upscale.p99Ms! <= values[29]!, `p99 ${upscale.p99Ms}`);
    assert.ok(Math.abs(upscale.throughput - 30 / 60.001) < 1e-9);
    assert.deepEqual(stats.groups.provider!.map((r) => [r.key, r.count]), [['cpu', 30], ['none', 60]]);
    assert.deepEqual(stats.groups.model!.map((r) => [r.key, r.count]), [['', 60], ['sr-nomos-compact-x2', 30]]);
    assert.equal(stats.jobs.count, 30);
    assert.equal(stats.jobs.done, 30);
    assert.equal(stats.jobs.p50Ms, 123.5);
    assert.ok(schemaValidator('http/stats-response.schema.json')(stats));

    // A window without runs; a single dimension.
    const empty = await queryStats(store, { from: 1_000_000_000_000, to: 1_000_000_060_000, groupBy: 'model' });
    assert.deepEqual(empty.groups, { model: [] });
    assert.equal(empty.jobs.count, 0);
    assert.equal(empty.jobs.p95Ms, null);
  });

  test('stats reject bad parameters with 400 and never reach SQL', async () => {
    for (const q of [{ from: "1; DROP TABLE jobs" }, { from: '10', to: '5' }, { groupBy: 'step,tenant' }, { to: 'yesterday' }, { extra: '1' }]) {
      await assert.rejects(queryStats(store, q as never), (e: unknown) => e instanceof AppError && e.status === 400 && e.code === 'invalid_stats_query', JSON.stringify(q));
    }
    assert.equal(await count(store, 'jobs'), 30);
  });

  test('stats over NATS request/reply (what the edge calls)', async () => {
    const stop = serveStats(nc, store);
    try {
      const stats = await requestStats(nc, { from: String(now - 60_000), to: String(now + 1), groupBy: 'step' });
      assert.equal(stats.groups.step!.length, 3);
      await assert.rejects(requestStats(nc, { groupBy: 'nope' }), (e: unknown) => e instanceof AppError && e.status === 400);
    } finally {
      stop();
    }
    await assert.rejects(requestStats(nc, {}, 300), (e: unknown) => e instanceof AppError && e.status === 503);
  });

  test('stage backlog: num_pending + num_ack_pending per stage-<step> consumer', async () => {
    const jsm = await jetstreamManager(nc);
    assert.deepEqual(await readStageBacklog(jsm, ['decode']), [{ step: 'decode', consumer: 'stage-decode', pending: 0, ackPending: 0, backlog: 0 }], 'no stream yet');
    await jsm.streams.add({ name: 'PHOTOLAB_STAGES', subjects: ['photolab.stage.*'], retention: RetentionPolicy.Workqueue, storage: StorageType.File });
    for (const step of ['decode', 'encode']) {
      await jsm.consumers.add('PHOTOLAB_STAGES', { durable_name: `stage-${step}`, filter_subject: `photolab.stage.${step}`, ack_policy: AckPolicy.Explicit });
    }
    const js = jetstream(nc);
    for (let i = 0; i < 3; i++) await js.publish('photolab.stage.decode', 'x');
    await js.publish('photolab.stage.encode', 'x');
    const c = await js.consumers.get('PHOTOLAB_STAGES', 'stage-decode');
    const m = await c.next({ expires: 2000 });
    assert.ok(m, 'one message taken, not acked');
    const list = await readStageBacklog(jsm);
    assert.deepEqual(list, [
      { step: 'decode', consumer: 'stage-decode', pending: 2, ackPending: 1, backlog: 3 },
      { step: 'encode', consumer: 'stage-encode', pending: 1, ackPending: 0, backlog: 1 },
    ]);
    assert.equal(totalBacklog(list), 4);
    const registry = new Registry();
    registerBacklogGauges(registry, jsm);
    const text = await registry.collect();
    assert.match(text, /^photolab_stage_backlog\{step="decode"\} 3$/m);
    assert.match(text, /^photolab_stage_ack_pending\{step="decode"\} 1$/m);
    m!.ack();
  });

  test('a consumer that is gone (a nats-server back without its store) is made again: later jobs arrive, nothing counted twice', async () => {
    const jsm = await jetstreamManager(nc);
    const [stageBefore, jobsBefore] = [await count(store, 'stage_runs'), await count(store, 'jobs')];
    await jsm.consumers.delete(METRICS_STREAM, METRICS_CONSUMER);
    const published = await publishJobs(nc, 'BACK', 0, 5, now);
    // The remade consumer reads the stream from its start again: the earlier rows come twice
    // and FINAL folds them (the tables replace by run and job id).
    await waitFor(async () => (await count(store, 'stage_runs')) === stageBefore + published.stage && (await count(store, 'jobs')) === jobsBefore + published.job,
      'the later jobs in ClickHouse', 60_000, async () => `stage_runs=${await count(store, 'stage_runs')} jobs=${await count(store, 'jobs')} stats=${JSON.stringify(sink!.stats)}`);
    assert.ok((await jsm.consumers.info(METRICS_STREAM, METRICS_CONSUMER)).config.durable_name, 'the consumer is back');
  });

});
