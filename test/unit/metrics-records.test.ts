import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidMetricError, parseMetricMessage } from '../../services/metrics-sink/records.js';
import { parseStatsQuery, stageStatsSql, jobStatsSql } from '../../services/lib/metrics/stats.js';
import { assertIdentifier, clickhouseErrorCode, isDataError } from '../../services/lib/metrics/clickhouse.js';
import { checkMigrations, migrations } from '../../services/lib/metrics/migrations.js';
import { AppError } from '../../services/lib/shared/errors.js';
import { jobEvent, jobIdOf, jobMetric, stageEvent, stageMetric } from '../helpers/metrics-fixtures.js';

const NOW = 1_700_000_000_123;
const enc = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

const J = jobIdOf('J', 1);
const asStage = (m: unknown) => { const e = stageEvent(stageMetric(J, 0, 0, NOW)); return [e.subject, { ...e.event, run: m }] as const; };
const asJob = (m: unknown) => { const e = jobEvent(jobMetric(J, NOW)); return [e.subject, { ...e.event, summary: m }] as const; };

test('step events carry stage runs, terminal events carry jobs; both become rows', () => {
  const [subject, event] = asStage(stageMetric('J1', 3, 1, NOW));
  const [s, ...others] = parseMetricMessage(subject, enc(event), 42);
  assert.equal(others.length, 0);
  assert.ok(s);
  assert.equal(s.kind, 'stage');
  assert.equal(s.id, 'J1:1:1');
  assert.deepEqual({ ...s.row }, {
    run_id: 'J1:1:1', job_id: 'J1', sub: 'user-1', tenant: 'acme', step: 'upscale', step_index: 1, attempt: 1, status: 'ok', error_code: '',
    model: 'sr-nomos-compact-x2', model_sha256: '', provider: 'cpu', input_pixels: 307200, output_pixels: 1228800, input_bytes: 1000,
    output_bytes: 2000, queue_wait_ms: 1.5, run_ms: 23, host: 'test-host', started_at_ms: NOW - 100, finished_at_ms: NOW,
    finished_at: 1_700_000_000, ingested_at_ms: 42,
  });
  const [jobSubject, jobEv] = asJob(jobMetric('J1', NOW));
  const [j] = parseMetricMessage(jobSubject, enc(jobEv));
  assert.ok(j);
  assert.equal(j.kind, 'job');
  assert.equal(j.id, 'J1');
  assert.equal((j.row as { pipeline: string }).pipeline, 'decode>upscale>encode');
});

test('messages that can never be rows are refused with a code', () => {
  const cases: [string, unknown, string, RegExp][] = [
    ['photolab.events.' + J + '.step', 'nope', 'invalid_json', /not JSON/],
    ['stage', { runId: 'x' }, 'invalid_metric', /required property 'jobId'/],
    ['stage', { ...stageMetric('J', 0, 0, NOW), extra: 1 }, 'invalid_metric', /additional/],
    ['stage', { ...stageMetric('J', 0, 0, NOW), status: 'weird' }, 'invalid_metric', /status/],
    ['stage', { ...stageMetric('J', 0, 0, NOW), outputBytes: -5 }, 'invalid_metric', /outputBytes/],
    ['stage', { ...stageMetric('J', 0, 0, NOW), index: 70000 }, 'invalid_metric', /index/],
    ['stage', { ...stageMetric('J', 0, 0, NOW), finishedAt: 5 }, 'invalid_metric', /finishedAt/],
    ['stage', { ...stageMetric('J', 0, 0, NOW), runMs: -1 }, 'invalid_metric', /runMs/],
    ['job', { ...jobMetric('J', NOW), jobId: '' }, 'invalid_metric', /jobId/],
    ['photolab.metrics.nope', {}, 'unknown_metric_subject', /photolab\.metrics\.nope/],
    ['photolab.events.' + J + '.progress', {}, 'unknown_metric_subject', /progress/],
  ];
  for (const [kind, value, code, message] of cases) {
    const [subject, event] = kind === 'stage' ? asStage(value) : kind === 'job' ? asJob(value) : [kind, value] as const;
    assert.throws(() => parseMetricMessage(subject, enc(typeof value === 'string' ? value : event)), (e: unknown) => e instanceof InvalidMetricError && e.code === code && message.test(e.message), `${subject} ${JSON.stringify(value).slice(0, 80)}`);
  }
  // A failing last attempt's end carries both rows; an event without either carries none.
  const failed = { ...jobEvent(jobMetric(J, NOW)).event, type: 'job.failed', run: stageMetric(J, 0, 2, NOW, 'error') };
  assert.deepEqual(parseMetricMessage(`photolab.events.${J}.end`, enc(failed)).map((r) => r.kind), ['stage', 'job']);
  assert.deepEqual(parseMetricMessage(`photolab.events.${J}.end`, enc({ type: 'job.canceled', jobId: J, at: NOW })), []);
});

test('stats window: defaults, ISO and epoch input, clear 400s', () => {
  const now = 1_700_000_000_000;
  assert.deepEqual(parseStatsQuery({}, now), { from: now - 3600_000, to: now, groupBy: ['step', 'model', 'provider'] });
  assert.deepEqual(parseStatsQuery({ from: '2023-11-14T22:00:00Z', to: String(now), groupBy: 'provider, step,step' }, now),
    { from: Date.parse('2023-11-14T22:00:00Z'), to: now, groupBy: ['provider', 'step'] });
  const bad = [{ from: '1e3' }, { from: '-5' }, { from: 'now' }, { from: 1.5 }, { from: '20', to: '10' }, { from: '0', to: String(401 * 86_400_000) },
    { groupBy: 'tenant' }, { groupBy: ',' }, { limit: '5' }, { from: "1' OR 1=1 --" }];
  for (const q of bad) assert.throws(() => parseStatsQuery(q as never, now), (e: unknown) => e instanceof AppError && e.status === 400 && e.code === 'invalid_stats_query', JSON.stringify(q));
});

test('stats SQL: parameters where supported, checked numeric literals otherwise', () => {
  const w = parseStatsQuery({ from: '1700000000000', to: '1700000060000', groupBy: 'model' });
  const table = (t: string) => `db.${t}`;
  const withParams = stageStatsSql({ supportsQueryParams: true, table }, w, 'model');
  assert.match(withParams.sql, /finished_at_ms >= \{from_ms:UInt64\} AND finished_at_ms < \{to_ms:UInt64\}/);
  assert.match(withParams.sql, /FROM db\.stage_runs FINAL/);
  assert.deepEqual(withParams.params, { from_ms: 1700000000000, to_ms: 1700000060000, from_s: 1700000000, to_s: 1700000060 });
  const literal = jobStatsSql({ supportsQueryParams: false, table }, w);
  assert.equal(literal.params, undefined);
  assert.match(literal.sql, /finished_at_ms >= 1700000000000 AND finished_at_ms < 1700000060000/);
  assert.match(literal.sql, /FROM db\.jobs FINAL/);
});

test('identifiers, error codes, migration list', () => {
  assert.equal(assertIdentifier('photolab_1'), 'photolab_1');
  assert.throws(() => assertIdentifier('a; DROP'), /must match/);
  assert.equal(clickhouseErrorCode({ message: 'Code: 27, e.displayText() = DB::Exception: Cannot parse' }), 27);
  assert.equal(clickhouseErrorCode({ code: '60', message: 'x' }), 60);
  assert.equal(isDataError({ message: 'Code: 27, e.displayText()' }), true);
  assert.equal(isDataError(new Error('connect ECONNREFUSED 127.0.0.1:1')), false);
  checkMigrations();
  assert.throws(() => checkMigrations([...migrations, { version: 5, name: 'gap', statements: () => [] }]), /versions must be/);
});
