import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PROMETHEUS_CONTENT_TYPE, Registry } from '../../services/lib/metrics/prometheus.js';

test('counters, gauges and histograms render in text format 0.0.4', async () => {
  const r = new Registry();
  const runs = r.counter('photolab_stage_runs_total', 'Stage runs.\nBy step.', ['step', 'status']);
  runs.inc({ step: 'decode', status: 'ok' });
  runs.inc({ step: 'decode', status: 'ok' }, 2);
  runs.inc({ step: 'we"ird\\name\n', status: 'error' });
  const inflight = r.gauge('photolab_inflight', 'In flight.');
  inflight.set(3);
  inflight.dec();
  const h = r.histogram('photolab_run_seconds', 'Run time.', ['step'], [0.1, 1]);
  h.observe({ step: 'decode' }, 0.05);
  h.observe({ step: 'decode' }, 0.5);
  h.observe({ step: 'decode' }, 5);
  const backlog = r.gauge('photolab_backlog', 'Backlog.', ['step']);
  r.onCollect(() => backlog.set({ step: 'encode' }, 7));
  const text = await r.collect();
  assert.equal(PROMETHEUS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
  assert.equal(text, [
    '# HELP photolab_stage_runs_total Stage runs.\\nBy step.',
    '# TYPE photolab_stage_runs_total counter',
    'photolab_stage_runs_total{step="decode",status="ok"} 3',
    'photolab_stage_runs_total{step="we\\"ird\\\\name\\n",status="error"} 1',
    '# HELP photolab_inflight In flight.',
    '# TYPE photolab_inflight gauge',
    'photolab_inflight 2',
    '# HELP photolab_run_seconds Run time.',
    '# TYPE photolab_run_seconds histogram',
    'photolab_run_seconds_bucket{step="decode",le="0.1"} 1',
    'photolab_run_seconds_bucket{step="decode",le="1"} 2',
    'photolab_run_seconds_bucket{step="decode",le="+Inf"} 3',
    'photolab_run_seconds_sum{step="decode"} 5.55',
    'photolab_run_seconds_count{step="decode"} 3',
    '# HELP photolab_backlog Backlog.',
    '# TYPE photolab_backlog gauge',
    'photolab_backlog{step="encode"} 7',
    '',
  ].join('\n'));
});

test('bad names, labels and values are refused with clear errors', () => {
  const r = new Registry();
  assert.throws(() => r.counter('bad-name', 'x'), /invalid metric name/);
  assert.throws(() => r.counter('ok_total', 'x', ['bad-label']), /invalid label name/);
  assert.throws(() => r.histogram('h', 'x', ['le']), /reserved/);
  assert.throws(() => r.histogram('h2', 'x', [], [1, 0.5]), /increase/);
  const c = r.counter('c_total', 'x', ['a']);
  assert.throws(() => c.inc({ a: '1' }, -1), /increase/);
  assert.throws(() => c.inc({ b: '1' }), /unknown label "b"/);
  assert.throws(() => c.inc({}), /label a missing/);
  assert.equal(r.counter('c_total', 'x', ['a']), c, 'same metric twice returns the first');
  assert.throws(() => r.gauge('c_total', 'x', ['a']), /already registered as a counter/);
  assert.throws(() => r.histogram('h3', 'x').observe(undefined, NaN), /finite/);
});

test('a failing collector does not fail the scrape', async () => {
  const r = new Registry();
  r.gauge('g', 'x').set(1);
  r.onCollect(() => {
    throw new Error('nats down');
  });
  const text = await r.collect();
  assert.match(text, /^g 1$/m);
  assert.match(text, /^photolab_metrics_collector_errors_total 1$/m);
});
