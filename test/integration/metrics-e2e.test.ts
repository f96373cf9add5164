/**
 * Metrics through real jobs: the stage runner's records travel inside the jobs' events to the
 * sink and into chDB — exactly one row per stage run and one per job — and a stage process
 * serves its Prometheus text.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { openMetricsStore, type MetricsStore } from '../../services/lib/metrics/clickhouse.js';
import { MetricsSink } from '../../services/metrics-sink/sink.js';
import { migrate } from '../../services/lib/metrics/migrations.js';
import { queryStats, serveStats } from '../../services/lib/metrics/stats.js';
import type { HealthResponse, StatsResponse } from '../../services/lib/shared/schema-types.js';
import { freePort } from '../../services/launcher/nats-server.js';
import { fixture } from '../helpers/paths.js';
import { startSystem, waitFor, type TestSystem } from '../helpers/system.js';

let system: TestSystem;
let store: MetricsStore;
let sink: MetricsSink;
let dir: string;
let stopStats: () => void;

before(async () => {
  system = await startSystem({ steps: ['decode'] });
  dir = mkdtempSync(path.join(os.tmpdir(), 'metrics-e2e-'));
  store = await openMetricsStore({ dataDir: dir, database: 'photolab_e2e' });
  await migrate(store); // the sink also applies it, in the background; the queries below need the tables now
  sink = new MetricsSink({ nc: system.nc, store, batchRows: 50, batchMs: 200 });
  await sink.start();
  stopStats = serveStats(system.nc, store);
});
after(async () => {
  stopStats?.();
  await sink?.stop();
  await store?.close();
  await system?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function rows<T>(sql: string): Promise<T[]> {
  const result = await store.client.query({ query: sql, format: 'JSONEachRow' });
  return result.json<T>();
}

test('N jobs give exactly N x steps stage rows and N job rows; a failed job is recorded as failed', async () => {
  const metricsPort = await freePort();
  system.spawnWorker('encode', { STAGE_METRICS_PORT: String(metricsPort) });
  const dog = readFileSync(fixture('dog.jpg'));
  const N = 5;
  const jobs = await Promise.all(Array.from({ length: N }, () => system.submit(dog, [{ step: 'decode' }, { step: 'encode' }])));
  const broken = await system.submit(Buffer.from('not an image'), [{ step: 'decode' }, { step: 'encode' }]);
  for (const job of [...jobs, broken]) await system.waitForJob(job.jobId);

  const runs = store.table('stage_runs');
  const jobTable = store.table('jobs');
  await waitFor(async () => Number((await rows<{ n: string }>(`SELECT count() AS n FROM ${jobTable} FINAL`))[0]!.n) === N + 1, 'job rows', 20_000);
  await waitFor(async () => Number((await rows<{ n: string }>(`SELECT count() AS n FROM ${runs} FINAL`))[0]!.n) === N * 2 + 1, 'stage rows', 20_000);

  const byStep = await rows<{ step: string; status: string; n: string }>(`SELECT step, status, count() AS n FROM ${runs} FINAL GROUP BY step, status ORDER BY step, status`);
  assert.deepEqual(byStep.map((r) => [r.step, r.status, Number(r.n)]), [['decode', 'error', 1], ['decode', 'ok', N], ['encode', 'ok', N]]);
  const failed = await rows<{ job_id: string; status: string; error_code: string }>(`SELECT job_id, status, error_code FROM ${jobTable} FINAL WHERE status != 'done'`);
  assert.deepEqual(failed, [{ job_id: broken.jobId, status: 'failed', error_code: 'undecodable_image' }]);
  const sample = (await rows<Record<string, string | number>>(`SELECT * FROM ${runs} FINAL WHERE job_id = '${jobs[0]!.jobId}' AND step = 'decode'`))[0]!;
  assert.equal(sample.sub, 'alice');
  assert.equal(Number(sample.output_pixels), 768 * 576);
  assert.equal(Number(sample.input_bytes), dog.length);
  assert.ok(Number(sample.run_ms) > 0);

  const stats = await queryStats(store, { from: Date.now() - 600_000, to: Date.now() + 1000 });
  const decodeStats = JSON.stringify(stats);
  assert.match(decodeStats, /decode/);

  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(text, new RegExp(`photolab_stage_runs_total\\{step="encode",status="ok"\\} ${N}`));
  assert.match(text, /photolab_stage_run_seconds_count\{step="encode"\} 5/);
  assert.match(text, /photolab_stage_backlog\{step="encode"\} 0/);
  await waitFor(() => sink.stats.stageRows >= N * 2 + 1, 'sink stats');
});

test('the edge serves GET /api/stats from ClickHouse, Prometheus /metrics, and live stage processes in /api/health', async () => {
  const token = await system.token();
  const stats = await fetch(`${system.baseUrl}/api/stats?groupBy=step,model&from=${Date.now() - 600_000}`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(stats.status, 200);
  const body = await stats.json() as StatsResponse;
  const decode = body.groups.step!.find((row) => row.key === 'decode')!;
  assert.equal(decode.count, 6);
  assert.equal(decode.errors, 1);
  assert.ok(decode.p50Ms !== null && decode.p50Ms > 0);
  assert.equal(body.jobs.count, 6);
  const bad = await fetch(`${system.baseUrl}/api/stats?from=yesterday`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(bad.status, 400);
  assert.equal((await fetch(`${system.baseUrl}/api/stats`)).status, 401);

  const text = await (await fetch(`${system.baseUrl}/metrics`)).text();
  assert.match(text, /photolab_edge_requests_total\{route="\/api\/jobs",method="POST",status="202"\} 6/);
  assert.match(text, /photolab_stage_backlog\{step="decode"\} 0/);
  assert.match(text, /photolab_edge_ws_connections 0/);

  const health = await (await fetch(`${system.baseUrl}/api/health`)).json() as HealthResponse;
  const decodeReplicas = health.stages.decode!.replicas!;
  assert.equal(decodeReplicas.length, 1);
  assert.equal(decodeReplicas[0]!.pid, process.pid, 'the in-process decode worker announced itself');
  assert.equal(typeof decodeReplicas[0]!.handled, 'number', 'refreshed every few seconds with the messages handled');
});
