import assert from 'node:assert/strict';
import { test } from 'node:test';
import { projectJob } from '../../services/lib/bus/job-state.js';
import type { JobEvent, JobRecord, StageMetric } from '../../services/lib/shared/schema-types.js';

const JOB = '01JB0000000000000000000000';
const record: JobRecord = {
  jobId: JOB, owner: { sub: 'alice' }, status: 'pending', createdAt: 1000, deadline: 99_000,
  pipeline: [{ step: 'decode' }, { step: 'upscale' }, { step: 'encode' }],
  input: { kind: 'blob', stream: 'PHOTOLAB_BLOBS', name: `uploads/${JOB}`, bytes: 10, chunks: 1, sha256: 'a'.repeat(64) },
  steps: [0, 1, 2].map((index) => ({ index, step: ['decode', 'upscale', 'encode'][index]!, status: 'pending' as const })),
};
const run = (index: number, startedAt: number, finishedAt: number, attempt = 1): StageMetric => ({
  runId: `${JOB}:${index}:${attempt}`, jobId: JOB, sub: 'alice', tenant: '', step: record.pipeline[index]!.step, index, attempt, status: 'ok', errorCode: '',
  model: '', modelSha256: '', provider: '', inputPixels: 0, outputPixels: 0, inputBytes: 0, outputBytes: 0, queueWaitMs: 0, runMs: finishedAt - startedAt, host: 'h', startedAt, finishedAt,
});
const finished = (index: number, startedAt: number, finishedAt: number): JobEvent => ({ type: 'step.finished', jobId: JOB, at: finishedAt, index, step: record.pipeline[index]!.step, ms: finishedAt - startedAt, attempt: 1, run: run(index, startedAt, finishedAt) });

test('a submitted job with no events is pending; the stored record is left as it was', () => {
  const job = projectJob(record, [], null);
  assert.equal(job.status, 'pending');
  assert.deepEqual(job.steps.map((s) => s.status), ['pending', 'pending', 'pending']);
  assert.equal(record.steps[0]!.status, 'pending');
});

test('running: steps done from their facts, the running one from live progress', () => {
  const live = { started: new Map([[1, { at: 2100, attempt: 1 }]]), stepEvents: [], complete: false };
  const job = projectJob(record, [finished(0, 1100, 2000)], null, live);
  assert.equal(job.status, 'running');
  assert.deepEqual(job.steps.map((s) => s.status), ['done', 'running', 'pending']);
  assert.deepEqual([job.steps[0]!.startedAt, job.steps[0]!.finishedAt, job.steps[0]!.ms], [1100, 2000, 900]);
  assert.equal(job.startedAt, 1100);
});

test('a retry keeps the step running with its next attempt', () => {
  const retrying: JobEvent = { type: 'step.retrying', jobId: JOB, at: 2500, index: 1, step: 'upscale', attempt: 1, run: { ...run(1, 2100, 2500), status: 'error' } };
  const job = projectJob(record, [finished(0, 1100, 2000), retrying], null);
  assert.deepEqual([job.steps[1]!.status, job.steps[1]!.attempt], ['running', 2]);
});

test('done: every step from the provenance, times included', () => {
  const end: JobEvent = {
    type: 'job.done', jobId: JOB, at: 5000,
    result: { findings: {}, provenance: [0, 1, 2].map((index) => ({ index, step: record.pipeline[index]!.step, params: {}, status: index === 1 ? 'skipped' as const : 'done' as const, startedAt: 1000 + index * 1000, finishedAt: 1500 + index * 1000, ms: 500, attempt: 1 })) },
  };
  const job = projectJob(record, [], end);
  assert.equal(job.status, 'done');
  assert.deepEqual(job.steps.map((s) => s.status), ['done', 'skipped', 'done']);
  assert.equal(job.finishedAt, 5000);
  assert.equal(job.steps[2]!.finishedAt, 3500);
});

test('failed: the failing step is failed, the rest canceled; canceled: whatever had not finished', () => {
  const failedEnd: JobEvent = { type: 'job.failed', jobId: JOB, at: 3000, index: 1, error: { code: 'model_failed', message: 'x', step: 'upscale' }, run: { ...run(1, 2100, 2900), status: 'error' } };
  const failed = projectJob(record, [finished(0, 1100, 2000)], failedEnd);
  assert.equal(failed.status, 'failed');
  assert.deepEqual(failed.steps.map((s) => s.status), ['done', 'failed', 'canceled']);
  assert.equal(failed.error?.code, 'model_failed');
  const canceled = projectJob(record, [finished(0, 1100, 2000)], { type: 'job.canceled', jobId: JOB, at: 2500 });
  assert.deepEqual(canceled.steps.map((s) => s.status), ['done', 'canceled', 'canceled']);
  assert.equal(canceled.status, 'canceled');
});
