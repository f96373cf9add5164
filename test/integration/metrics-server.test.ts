/**
 * Metrics sink and stats against a real clickhouse-server 18.16 (the oldest supported server:
 * no query parameters). Outage (server killed during a load, restarted on the same data dir)
 * and a sink process SIGKILLed between insert and ack.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { openMetricsStore, type MetricsStore } from '../../services/lib/metrics/clickhouse.js';
import { METRICS_CONSUMER, METRICS_STREAM } from '../../services/lib/metrics/constants.js';
import { migrate } from '../../services/lib/metrics/migrations.js';
import { MetricsSink } from '../../services/metrics-sink/sink.js';
import { ensureStream, eventsStreamConfig } from '../../services/lib/bus/topology.js';
import { loadConfig } from '../../services/lib/shared/config.js';
import { queryStats } from '../../services/lib/metrics/stats.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { STEPS, publishJobs, waitFor } from '../helpers/metrics-fixtures.js';
import { startMetricsNats, type TestNatsServer } from '../helpers/server-binaries.js';
import { startClickHouseServer, type ClickHouseServer } from '../helpers/clickhouse-server.js';

async function count(store: MetricsStore, table: string, final = true): Promise<number> {
  const rs = await store.client.query({ query: `SELECT count() AS n FROM ${store.table(table)}${final ? ' FINAL' : ''}`, format: 'JSONEachRow' });
  const [row] = await rs.json<{ n: number | string }>();
  return Number(row?.n ?? 0);
}
async function doubled(store: MetricsStore): Promise<number> {
  const rs = await store.client.query({ query: `SELECT count() AS n FROM (SELECT run_id FROM ${store.table('stage_runs')} FINAL GROUP BY run_id HAVING count() > 1)`, format: 'JSONEachRow' });
  const [row] = await rs.json<{ n: number | string }>();
  return Number(row?.n ?? 0);
}
async function backlog(jsm: JetStreamManager): Promise<{ pending: number; ackPending: number }> {
  const ci = await jsm.consumers.info(METRICS_STREAM, METRICS_CONSUMER);
  return { pending: ci.num_pending, ackPending: ci.num_ack_pending };
}

describe('metrics on clickhouse-server 18.16', () => {
  let ch: ClickHouseServer;
  let nats: TestNatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: MetricsStore;
  let sink: MetricsSink | undefined;
  let child: ChildProcess | undefined;
  const now = Date.now();
  let stageTotal = 0;
  let jobTotal = 0;

  before(async () => {
    ch = await startClickHouseServer();
    nats = await startMetricsNats();
    nc = await connect({ servers: nats.url });
    jsm = await jetstreamManager(nc);
    await ensureStream(jsm, eventsStreamConfig(loadConfig({})), nc.info?.version);
    store = await openMetricsStore({ url: ch.url, database: 'photolab_test', requestTimeoutMs: 3000 });
  });
  after(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await sink?.stop();
    await nc?.drain().catch(() => undefined);
    await store?.close();
    await nats?.stop();
    await ch?.stop();
  });

  test('server 18.16: no query parameters; migrations apply once', async () => {
    assert.equal(store.backend, 'server');
    assert.match(store.version, /^18\.16\./);
    assert.equal(store.supportsQueryParams, false);
    assert.deepEqual(await migrate(store), [1, 2]);
    assert.deepEqual(await migrate(store), []);
  });

  test('N jobs give exactly N x steps stage rows and N job rows; stats with checked literals', async () => {
    sink = new MetricsSink({ nc, store, batchRows: 50, batchMs: 200, retryInitialMs: 100, retryMaxMs: 500, ackWaitMs: 5000 });
    await sink.start();
    const p = await publishJobs(nc, 'SRVA', 0, 20, now);
    stageTotal += p.stage;
    jobTotal += p.job;
    await waitFor(async () => (await count(store, 'stage_runs')) === stageTotal && (await count(store, 'jobs')) === jobTotal, 'rows', 30_000,
      async () => `stage_runs=${await count(store, 'stage_runs')} jobs=${await count(store, 'jobs')}`);
    const stats = await queryStats(store, { from: now - 60_000, to: now + 1 });
    assert.deepEqual(stats.groups.step!.map((r) => [r.key, r.count]), STEPS.slice().sort().map((s) => [s, 20]));
    assert.equal(stats.jobs.count, 20);
    assert.equal(typeof stats.groups.step![0]!.p95Ms, 'number');
  });

  test('ClickHouse killed during a load and restarted: every row arrives, none doubled', async () => {
    await ch.signal('SIGKILL');
    const failuresBefore = sink!.stats.insertFailures;
    const p = await publishJobs(nc, 'SRVB', 0, 40, now);
    stageTotal += p.stage;
    jobTotal += p.job;
    await waitFor(() => sink!.stats.insertFailures > failuresBefore, 'the sink to notice the outage', 30_000);
    // Nothing was acked while the server was down.
    const during = await backlog(jsm);
    assert.equal(during.pending + during.ackPending, p.stage + p.job, JSON.stringify(during));
    await ch.restart();
    await waitFor(async () => (await count(store, 'stage_runs')) === stageTotal && (await count(store, 'jobs')) === jobTotal, 'all rows after the restart', 60_000,
      async () => `stage_runs=${await count(store, 'stage_runs')}/${stageTotal} jobs=${await count(store, 'jobs')}/${jobTotal} ${JSON.stringify(sink!.stats)}`);
    assert.equal(await doubled(store), 0);
    await waitFor(async () => {
      const b = await backlog(jsm);
      return b.pending === 0 && b.ackPending === 0;
    }, 'consumer drained', 15_000);
  });

  test('ClickHouse frozen (SIGSTOP) during a load: rows arrive once it continues', async () => {
    await ch.signal('SIGSTOP');
    const failuresBefore = sink!.stats.insertFailures;
    const p = await publishJobs(nc, 'SRVC', 0, 10, now);
    stageTotal += p.stage;
    jobTotal += p.job;
    try {
      await waitFor(() => sink!.stats.insertFailures > failuresBefore, 'the sink to time out on the frozen server', 30_000);
    } finally {
      await ch.signal('SIGCONT');
    }
    await waitFor(async () => (await count(store, 'stage_runs')) === stageTotal && (await count(store, 'jobs')) === jobTotal, 'all rows after SIGCONT', 60_000,
      async () => `stage_runs=${await count(store, 'stage_runs')}/${stageTotal} jobs=${await count(store, 'jobs')}/${jobTotal}`);
    assert.equal(await doubled(store), 0);
    await sink!.stop();
    sink = undefined;
  });

  test('sink process SIGKILLed after an insert, before the ack: after a restart no row missing, none doubled', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'metrics-sink-'));
    const env = {
      ...process.env,
      NATS_URL: nats.url,
      CLICKHOUSE_URL: ch.url,
      CLICKHOUSE_DATABASE: 'photolab_test',
      DATA_DIR: dataDir,
      METRICS_BATCH_ROWS: '25',
      METRICS_BATCH_MS: '300',
      METRICS_ACK_WAIT_MS: '2000',
      LOG_LEVEL: 'warn',
    };
    const main = path.join(REPO_ROOT, 'dist/services/metrics-sink/main.js');
    let output = '';
    // The crashing sink: the real service with a hook that SIGKILLs it after its first insert, before the ack.
    const crashing = path.join(REPO_ROOT, 'dist/test/helpers/crashing-metrics-sink.js');
    const run = (options: { crash?: boolean }) => {
      const c = spawn(process.execPath, [options.crash ? crashing : main], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      c.stdout!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
      c.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-8000)));
      child = c;
      return c;
    };
    const exited = (c: ChildProcess) => new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) resolve({ code: c.exitCode, signal: c.signalCode });
      else c.once('exit', (code, signal) => resolve({ code, signal }));
    });
    try {
      const stageBefore = await count(store, 'stage_runs');
      // 30 stage metrics first, then 10 job metrics: the first batch is 25 stage rows.
      const p = await publishJobs(nc, 'SRVD', 0, 10, now);
      stageTotal += p.stage;
      jobTotal += p.job;
      const crashed = run({ crash: true });
      const end = await Promise.race([exited(crashed), new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000))]);
      assert.notEqual(end, 'timeout', `the sink did not crash itself:\n${output}`);
      assert.equal((end as { signal: string }).signal, 'SIGKILL', output);
      // The insert happened and nothing was acked.
      assert.ok((await count(store, 'stage_runs')) > stageBefore, 'rows were inserted before the crash');
      const b = await backlog(jsm);
      assert.equal(b.pending + b.ackPending, p.stage + p.job, JSON.stringify(b));

      const healthy = run({});
      await waitFor(async () => (await count(store, 'stage_runs')) === stageTotal && (await count(store, 'jobs')) === jobTotal, 'all rows after the sink restart', 60_000,
        async () => `stage_runs=${await count(store, 'stage_runs')}/${stageTotal} jobs=${await count(store, 'jobs')}/${jobTotal}\n${output}`);
      assert.equal(await doubled(store), 0);
      const stats = await queryStats(store, { from: now - 60_000, to: now + 1, groupBy: 'step' });
      assert.equal(stats.groups.step!.reduce((n, r) => n + r.count, 0), stageTotal);
      await waitFor(async () => {
        const x = await backlog(jsm);
        return x.pending === 0 && x.ackPending === 0;
      }, 'consumer drained', 15_000);
      healthy.kill('SIGTERM');
      const stopped = await exited(healthy);
      assert.equal(stopped.code, 0, `graceful stop:\n${output}`);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
